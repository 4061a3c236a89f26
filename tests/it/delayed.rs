//! A race behind a publish delay tells the public what its delayed feed shows: the organiser's
//! `finish` does not make the race list or the race page say "finished" until the delay has
//! passed, while an undelayed race says it at once.

use crate::support::{
    ADMIN_TOKEN, Proc, SERVERS, free_tcp_port, free_udp_port, http, http_get, race_toml,
    setup_server, start_server, wait_ready,
};

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
    // The same race an hour behind (a top-level key goes before the `[[riders]]` tables).
    let delayed = race_toml("delayed", "Delayed race", start_ms, 1000, 2).replacen(
        "\n",
        "\npublish_delay_s = 3600\n",
        1,
    );
    std::fs::write(dir.path().join("races/delayed.toml"), delayed).unwrap();
    let _server = Proc(start_server(&config));
    wait_ready(http_port);

    assert_eq!(status(http_port, "direct"), "live");
    assert_eq!(status(http_port, "delayed"), "live");
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
        ]
    );
}
