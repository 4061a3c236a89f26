//! A race behind a publish delay tells the public what its delayed feed shows: the organiser's
//! `finish` does not make the race list or the race page say "finished" until the delay has
//! passed, and a rider's track holds only the fixes the delayed feed has shown, whatever their
//! time stamps say; an undelayed race shows both at once.

use std::time::{Duration, Instant};

use flevum_engine::ingest::TokenStore;

use crate::support::{
    ADMIN_TOKEN, Proc, SERVERS, free_tcp_port, free_udp_port, http, http_get, race_toml,
    setup_server, start_server, track_times, wait_ready,
};

/// Race `id` of [`race_toml`] (one rider) behind a publish delay of `delay_s`, its rider on
/// device `{id}-dev-1` with token `{id}-token-1` (so that it shares no device with the others).
fn delayed_race(id: &str, start_ms: i64, delay_s: u32) -> String {
    race_toml(id, "Delayed race", start_ms, 1000, 1)
        // A top-level key goes before the `[[riders]]` tables.
        .replacen("\n", &format!("\npublish_delay_s = {delay_s}\n"), 1)
        .replace("dev-1", &format!("{id}-dev-1"))
        .replace(
            &TokenStore::sha256_hex("token-1"),
            &TokenStore::sha256_hex(&format!("{id}-token-1")),
        )
}

/// The race's `status` on `GET /v1/races/{race}`.
fn status(port: u16, race: &str) -> String {
    let (code, body) = http_get(port, &format!("/v1/races/{race}")).expect("the race answers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("the race is JSON");
    v["status"].as_str().expect("a status").to_string()
}

/// The statuses `GET /v1/races` lists, by race id.
fn listed(port: u16) -> Vec<(String, String)> {
    let (code, body) = http_get(port, "/v1/races").expect("the race list answers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("the list is JSON");
    let mut out: Vec<(String, String)> = v
        .as_array()
        .or_else(|| v["races"].as_array())
        .expect("a list of races")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_delayed_race_is_not_called_finished_before_its_feed_shows_the_finish() {
    let _one_at_a_time = SERVERS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let (http_port, quic_port) = (free_tcp_port(), free_udp_port());
    // Started two hours ago: live for an undelayed feed and for one an hour behind.
    let start_ms = flevum_engine::shard::wall_ms() - 2 * 3_600_000;
    let (config, _pin) = setup_server(dir.path(), http_port, quic_port, start_ms, "direct", 2);
    // The same race an hour behind.
    let delayed = delayed_race("delayed", start_ms, 3600);
    std::fs::write(dir.path().join("races/delayed.toml"), delayed).unwrap();
    // Started half an hour ago, an hour behind: its feed still shows the race before the start.
    let recent = delayed_race("recent", flevum_engine::shard::wall_ms() - 1_800_000, 3600);
    std::fs::write(dir.path().join("races/recent.toml"), recent).unwrap();
    let _server = Proc(start_server(&config));
    wait_ready(http_port);

    assert_eq!(status(http_port, "direct"), "live");
    assert_eq!(status(http_port, "delayed"), "live");
    assert_eq!(status(http_port, "recent"), "scheduled");
    for race in ["direct", "delayed"] {
        let (code, body) = http(
            http_port,
            "POST",
            &format!("/v1/admin/races/{race}"),
            Some(ADMIN_TOKEN),
            Some("{\"action\":\"finish\"}"),
        )
        .expect("the organiser command answers");
        assert_eq!(code, 200, "{race}: {body}");
    }
    assert_eq!(status(http_port, "direct"), "finished");
    assert_eq!(
        status(http_port, "delayed"),
        "live",
        "the delayed feed shows the finish only in an hour"
    );
    assert_eq!(
        listed(http_port),
        vec![
            ("delayed".to_string(), "live".to_string()),
            ("direct".to_string(), "finished".to_string()),
            ("recent".to_string(), "scheduled".to_string()),
        ]
    );
}

#[test]
fn a_delayed_track_shows_a_fix_only_once_the_delayed_feed_has() {
    let _one_at_a_time = SERVERS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let (http_port, quic_port) = (free_tcp_port(), free_udp_port());
    let now = flevum_engine::shard::wall_ms();
    let start_ms = now - 3 * 3_600_000;
    let (config, _pin) = setup_server(dir.path(), http_port, quic_port, start_ms, "direct", 1);
    // The same race 10 s behind, its rider on another device and token.
    let delayed = delayed_race("delayed", start_ms, 10);
    std::fs::write(dir.path().join("races/delayed.toml"), delayed).unwrap();
    let _server = Proc(start_server(&config));
    wait_ready(http_port);

    // A device whose clock runs two hours behind: its fix of now says "two hours ago", far older
    // than the delay. Sent to both races through the OsmAnd ingest, at the course's start.
    let stamped = flevum_engine::shard::wall_ms() - 2 * 3_600_000;
    for token in ["token-1", "delayed-token-1"] {
        let path = format!("/v1/ingest/osmand?id={token}&lat=52.52&lon=5.43&timestamp={stamped}");
        let (code, body) = http(http_port, "POST", &path, None, None).expect("the ingest answers");
        assert_eq!(code, 200, "{token}: {body}");
    }
    let sent = Instant::now();
    let deadline = sent + Duration::from_secs(20);
    while track_times(http_port, "direct", 1).unwrap_or_default() != vec![stamped] {
        assert!(
            Instant::now() < deadline,
            "the undelayed race never showed the fix"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both shards tick every 200 ms behind the same 2 s reorder window: a second more and the
    // delayed race has applied it too, but its feed shows it only 10 s later.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        sent.elapsed() < Duration::from_secs(9),
        "too slow to tell the delay apart"
    );
    assert_eq!(
        track_times(http_port, "delayed", 1),
        Some(vec![]),
        "the delayed track showed a fix its feed has not"
    );
    // Meanwhile the rider's new state waits in the delayed feed, and the gauge counts it; an
    // undelayed race holds nothing back and has no such gauge.
    let (code, metrics) = http_get(http_port, "/metrics").expect("the metrics answer");
    assert_eq!(code, 200, "{metrics}");
    let held = |race: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("flevum_shard_delayed_rider_states{")
                    && l.contains(&format!("race=\"{race}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(
        held("delayed").is_some_and(|n| n >= 1.0),
        "rider states held for the delayed race: {:?}",
        held("delayed")
    );
    assert_eq!(held("direct"), None);
    // Once the delayed feed has shown it, the track has it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while track_times(http_port, "delayed", 1).unwrap_or_default() != vec![stamped] {
        assert!(
            Instant::now() < deadline,
            "the delayed track never showed the fix"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        sent.elapsed() >= Duration::from_secs(10),
        "shown {:?} after it was sent, before the 10 s delay",
        sent.elapsed()
    );
}
