//! The split layout over a real `nats-server` on loopback: one `flevum engine` and two
//! `flevum gateway` processes. Fans on both gateways see the same frames; a gateway follows a
//! race only while it has fans; a fan of a killed gateway resumes on the other one.
//!
//! SKIP (pass) without the `nats-server` binary, unless `FLEVUM_REQUIRE_NATS=1`.

use std::path::Path;
use std::time::{Duration, Instant};

use flevum_bus::testnats::{NatsServer, free_port};
use flevum_engine::shard::wall_ms;
use flevum_protocol::{FanFrame, decode_frame_binary};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Proc, SERVERS, get, race_toml};

const RACE: &str = "split";

/// Races the gateway on `port` follows on the bus (its Prometheus gauge; absent = 0).
async fn watched(port: u16) -> u64 {
    let (_, body) = get(port, "/metrics").await.unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("flevum_bus_watched_races "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, logs: &Path, f: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        if Instant::now() > deadline {
            let mut all = String::new();
            for name in ["engine.log", "gw-a.log", "gw-b.log"] {
                let text = std::fs::read_to_string(logs.join(name)).unwrap_or_default();
                all += &format!("--- {name}\n{text}\n");
            }
            panic!("timed out: {what}\n{all}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn fan(port: u16, query: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/v1/races/{RACE}/live?encoding=binary{query}");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next snapshot or delta frame (alerts and pings skipped), or None when the socket ends.
async fn next_frame(ws: &mut Ws) -> Option<FanFrame> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Binary(b) = msg {
            match decode_frame_binary(&b) {
                Ok(FanFrame::Alert(_)) => continue,
                Ok(f) => return Some(f),
                Err(e) => panic!("undecodable frame: {e}"),
            }
        }
    }
}

fn position(f: &FanFrame) -> (u64, u64) {
    match f {
        FanFrame::Snapshot(s) => (s.epoch, s.tick),
        FanFrame::Delta(d) => (d.epoch, d.tick),
        FanFrame::Alert(a) => (a.epoch, 0),
    }
}

/// Writes the engine's and gateways' configs and a live race into `dir`.
fn write_configs(dir: &Path, gw_ports: [u16; 2], engine_metrics: u16) {
    let races = dir.join("races");
    std::fs::create_dir_all(&races).unwrap();
    let race = race_toml(RACE, "Split test", wall_ms() - 60_000, 5000, 3);
    std::fs::write(races.join("split.toml"), race).unwrap();
    std::fs::write(
        dir.join("engine.toml"),
        format!(
            "[ingest]\nlisten = \"127.0.0.1:0\"\n[engine]\ntick_ms = 100\nraces_dir = \"{}\"\n\
             [journal]\ndir = \"{}\"\nfsync = false\n\
             [telemetry]\nengine_metrics_listen = \"127.0.0.1:{engine_metrics}\"\n",
            races.display(),
            dir.join("journal").display()
        ),
    )
    .unwrap();
    for (name, port) in [("gw-a.toml", gw_ports[0]), ("gw-b.toml", gw_ports[1])] {
        std::fs::write(
            dir.join(name),
            format!("[gateway]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"test-admin-token-0123456789\"\n"),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_one_engine_fans_share_frames_and_fail_over() {
    let _one_at_a_time = SERVERS.lock().await;
    let Some(nats) = NatsServer::start("two_gateways_one_engine", None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pa, pb, pm) = (free_port(), free_port(), free_port());
    write_configs(d, [pa, pb], pm);
    let url = nats.url();
    let cfg = |n: &str| d.join(n).display().to_string();
    let _engine = Proc::spawn(
        &["engine", "--bus", &url, "--config", &cfg("engine.toml")],
        &d.join("engine.log"),
    );
    let gateway = |conf: &str, log: &str| {
        Proc::spawn(
            &[
                "gateway",
                "--bus",
                &url,
                "--config",
                &cfg(conf),
                "--bus-linger-ms",
                "300",
            ],
            &d.join(log),
        )
    };
    let mut ga = gateway("gw-a.toml", "gw-a.log");
    let _gb = gateway("gw-b.toml", "gw-b.log");
    for port in [pa, pb] {
        until(
            "gateway ready with the engine behind it",
            d,
            || async move { get(port, "/readyz").await.is_some_and(|(s, _)| s == 200) },
        )
        .await;
    }
    // The race list comes from the engine over NATS request/reply.
    let (status, races) = get(pa, "/v1/races").await.unwrap();
    assert_eq!(status, 200);
    assert!(races.contains(&format!("\"id\":\"{RACE}\"")), "{races}");
    let (status, standings) = get(pb, &format!("/v1/races/{RACE}/standings"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{standings}");
    assert!(standings.contains("Rider 2"), "{standings}");
    // The engine serves its own health and metrics: control requests it answered, frames it
    // published on the bus.
    assert_eq!(get(pm, "/readyz").await.map(|r| r.0), Some(200));
    let (status, metrics) = get(pm, "/metrics").await.expect("engine metrics");
    assert_eq!(status, 200);
    for name in [
        "flevum_bus_control_requests_total",
        "flevum_bus_published_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // No fan yet: neither gateway follows the race.
    assert_eq!(watched(pa).await, 0);
    assert_eq!(watched(pb).await, 0);

    let mut fa = fan(pa, "").await;
    let mut fb = fan(pb, "").await;
    let first_a = next_frame(&mut fa).await.expect("a frame on gateway A");
    let first_b = next_frame(&mut fb).await.expect("a frame on gateway B");
    assert!(matches!(first_a, FanFrame::Snapshot(_)), "{first_a:?}");
    assert!(matches!(first_b, FanFrame::Snapshot(_)), "{first_b:?}");
    assert_eq!(
        position(&first_a).0,
        position(&first_b).0,
        "one engine epoch"
    );
    assert_eq!(
        watched(pa).await,
        1,
        "gateway A follows the race once a fan is there"
    );

    // Both fans receive the same deltas, tick after tick.
    let from = position(&first_a).1.max(position(&first_b).1) + 1;
    let to = from + 8;
    let mut seen_a = std::collections::BTreeMap::new();
    let mut seen_b = std::collections::BTreeMap::new();
    let mut last_a = position(&first_a);
    while last_a.1 < to {
        let f = next_frame(&mut fa).await.expect("gateway A keeps sending");
        let p = position(&f);
        assert!(
            p.1 == last_a.1 + 1 || matches!(f, FanFrame::Snapshot(_)),
            "no gap on A"
        );
        last_a = p;
        seen_a.insert(p.1, f);
    }
    let mut last_b = position(&first_b);
    while last_b.1 < to {
        let f = next_frame(&mut fb).await.expect("gateway B keeps sending");
        last_b = position(&f);
        seen_b.insert(last_b.1, f);
    }
    for t in from..=to {
        assert_eq!(
            seen_a.get(&t),
            seen_b.get(&t),
            "tick {t} differs between gateways"
        );
        assert!(matches!(seen_a.get(&t), Some(FanFrame::Delta(_))));
    }

    // Gateway A dies: its fan reconnects to B with its resume token and continues without a gap.
    ga.kill();
    assert!(
        next_frame(&mut fa).await.is_none(),
        "the fan of the killed gateway sees its socket end"
    );
    let mut fa2 = fan(pb, &format!("&resume={}:{}", last_a.0, last_a.1)).await;
    let resumed = next_frame(&mut fa2).await.expect("a frame after failover");
    match &resumed {
        FanFrame::Delta(d) => {
            assert_eq!(
                (d.epoch, d.tick),
                (last_a.0, last_a.1 + 1),
                "resumed without a gap"
            )
        }
        FanFrame::Snapshot(s) => {
            assert_eq!(s.epoch, last_a.0);
            assert!(
                s.tick >= last_a.1,
                "the snapshot is not older than what the fan had"
            );
        }
        FanFrame::Alert(_) => unreachable!(),
    }
    let after = next_frame(&mut fa2).await.expect("frames keep coming");
    assert_eq!(position(&after).1, position(&resumed).1 + 1);

    // Every fan leaves gateway B: it stops following the race after its linger time.
    drop(fa2);
    drop(fb);
    until("gateway B no longer follows the race", d, || async move {
        watched(pb).await == 0
    })
    .await;
}
