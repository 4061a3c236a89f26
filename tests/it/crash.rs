//! Crash recovery of the whole server: `flevum serve` is killed with SIGKILL while 50 devices
//! stream over QUIC, restarted on the same journal, and every acknowledged fix must be in the
//! recovered race state exactly once. Devices use the real client (buffer, reconnect, backfill).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flevum_engine::shard::wall_ms;
use flevum_engine::simulator::Simulation;
use flevum_protocol::client::{CertPin, ClientConfig, DeviceClient};

use crate::support::{
    Proc, SERVERS, demo_peloton, flevum, free_tcp_port, free_udp_port, http_get, missing_fixes,
    push_due, setup_server, start_server, wait_ready,
};

const RIDERS: u32 = 50;

#[test]
fn sigkill_while_fifty_devices_stream_loses_no_acknowledged_fix() {
    let _one_at_a_time = SERVERS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let (http, quic_port) = (free_tcp_port(), free_udp_port());
    let start_ms = wall_ms() - 30_000;
    let (config, pin) = setup_server(dir.path(), http, quic_port, start_ms, "crash", RIDERS);

    let mut sim = demo_peloton(RIDERS, start_ms);

    let mut server = Proc(start_server(&config));
    wait_ready(http);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let clients: BTreeMap<u32, DeviceClient> = (1..=RIDERS)
        .map(|i| {
            let c = DeviceClient::spawn(ClientConfig {
                server: SocketAddr::from(([127, 0, 0, 1], quic_port)),
                server_name: "localhost".into(),
                pin: CertPin::Sha256(pin.clone()),
                token: format!("token-{i}"),
                backoff_max: Duration::from_secs(1),
                ..ClientConfig::default()
            })
            .expect("client starts");
            (i, c)
        })
        .collect();
    let mut pushed: BTreeMap<u32, BTreeSet<i64>> = BTreeMap::new();
    let mut stream_for = |until: Instant, sim: &mut Simulation| {
        while Instant::now() < until {
            for (rider, record) in push_due(sim, &clients) {
                pushed.entry(rider).or_default().insert(record.time_ms);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Stream, then kill the server mid-stream.
    stream_for(Instant::now() + Duration::from_secs(4), &mut sim);
    let acked_before: u32 = clients.values().map(|c| c.acked_seq()).sum();
    assert!(
        acked_before > 0,
        "devices were acknowledged before the crash"
    );
    server.kill();
    // Devices keep recording while the server is down.
    stream_for(Instant::now() + Duration::from_secs(2), &mut sim);

    let mut server = Proc(start_server(&config));
    wait_ready(http);
    stream_for(Instant::now() + Duration::from_secs(2), &mut sim);
    runtime.block_on(async {
        for (i, c) in &clients {
            c.flush(Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("device {i} did not get everything acknowledged: {e}"));
        }
    });

    // Every fix pushed (hence every acknowledged one) is in the race state exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing = missing_fixes(http, "crash", &pushed);
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        missing.is_empty(),
        "fixes missing after recovery: {missing:?}"
    );
    let total: usize = pushed.values().map(BTreeSet::len).sum();
    eprintln!("{total} fixes from {RIDERS} devices, server killed once, none lost or duplicated");
    server.kill();

    // `flevum replay` re-runs the recovered journal at 20× and serves it like a live race.
    let replay = flevum()
        .args(["replay", "crash", "--speed", "20", "--config"])
        .arg(&config)
        .env("FLEVUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flevum replay starts");
    let mut replay = Proc(replay);
    wait_ready(http);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut moving = 0;
    while Instant::now() < deadline && moving < RIDERS as usize {
        std::thread::sleep(Duration::from_millis(500));
        if let Some((200, body)) = http_get(http, "/v1/races/crash/standings") {
            let rows: serde_json::Value = serde_json::from_str(&body).expect("standings JSON");
            moving = rows.as_array().map_or(0, |r| {
                r.iter()
                    .filter(|s| s["distanceM"].as_f64() > Some(100.0))
                    .count()
            });
        }
    }
    replay.kill();
    assert_eq!(moving, RIDERS as usize, "every rider moves in the replay");
    runtime.block_on(async {
        for (_, c) in clients {
            c.close().await;
        }
    });
}
