//! Race failover over a real `nats-server -js`: two `flevum engine`s with the JetStream journal
//! and one `flevum gateway`. Devices stream to both engines (the non-owner forwards to the
//! owner); the owner is SIGKILLed and the other engine takes the race over from JetStream; the
//! NATS server restarts on its store. Every acknowledged fix must be in the race exactly once
//! (API) and in the JetStream journal.
//!
//! SKIP (pass) without the `nats-server` binary, unless `FLEVUM_REQUIRE_NATS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use flevum_bus::jetstream::{JetStreamConfig, JetStreamJournal};
use flevum_bus::testnats::{NatsServer, free_port};
use flevum_engine::journal::{JournalEntry, decode_batch};
use flevum_engine::shard::wall_ms;
use flevum_engine::simulator::Simulation;
use flevum_protocol::client::{CertPin, ClientConfig, DeviceClient};

use crate::support::{
    Proc, SERVERS, demo_course, demo_peloton, free_udp_port, get, missing_fixes, post_json,
    push_due, race_toml,
};

const RACE: &str = "failover";
const RIDERS: u32 = 8;
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// `POST path` with the organiser token and a JSON body: (status, body).
async fn post_admin(port: u16, path: &str, json: &str) -> Option<(u16, String)> {
    post_json(port, path, ADMIN_TOKEN, json).await
}

/// Where the race puts checkpoint `name` now, metres along the course.
async fn checkpoint_m(http: u16, name: &str) -> Option<f64> {
    let (status, body) = get(http, &format!("/v1/races/{RACE}")).await?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["checkpoints"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["distanceM"]
        .as_f64()
}

/// Whether the JetStream stream of `race` exists.
async fn journal_exists(nats: &NatsServer, race: &str) -> bool {
    let client = flevum_bus::async_nats::connect(nats.url()).await.unwrap();
    flevum_bus::async_nats::jetstream::new(client)
        .get_stream(flevum_bus::jetstream::stream_name(race))
        .await
        .is_ok()
}

fn logs(dir: &Path) -> String {
    let mut all = String::new();
    for name in ["engine-a.log", "engine-b.log", "gateway.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        all += &format!("--- {name}\n{text}\n");
    }
    all
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, dir: &Path, f: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !f().await {
        if Instant::now() > deadline {
            panic!("timed out: {what}\n{}", logs(dir));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the race, a shared TLS certificate, two engine configs and a gateway config; returns
/// the certificate pin.
fn write_configs(dir: &Path, quic: [u16; 2], http: u16, start_ms: i64) -> String {
    let races = dir.join("races");
    std::fs::create_dir_all(&races).unwrap();
    let race = race_toml(RACE, "Failover test", start_ms, 1000, RIDERS);
    std::fs::write(races.join("failover.toml"), race).unwrap();
    let pin = flevum_engine::ingest::write_self_signed(
        &["localhost".to_string()],
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
    )
    .unwrap();
    for (name, port) in [("engine-a.toml", quic[0]), ("engine-b.toml", quic[1])] {
        std::fs::write(
            dir.join(name),
            format!(
                "[ingest]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\n\
                 [engine]\ntick_ms = 200\nraces_dir = {:?}\n\
                 [journal]\ndir = {:?}\nfsync = false\n\
                 [bus]\njournal = \"jetstream\"\nreplicas = 1\nlease_ttl_ms = 2000\n",
                dir.join("cert.pem").display().to_string(),
                dir.join("key.pem").display().to_string(),
                races.display().to_string(),
                dir.join(format!("{name}.journal")).display().to_string(),
            ),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("gateway.toml"),
        format!("[gateway]\nlisten = \"127.0.0.1:{http}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .unwrap();
    pin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_engine_takes_over_a_killed_owner_and_no_acknowledged_fix_is_lost() {
    let _one_at_a_time = SERVERS.lock().await;
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6} ms] {what}", t0.elapsed().as_millis());
    let store = tempfile::tempdir().unwrap();
    let Some(mut nats) = NatsServer::start("engine_failover", Some(store.path().to_path_buf()))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (quic_a, quic_b, http) = (free_udp_port(), free_udp_port(), free_port());
    let start_ms = wall_ms() - 30_000;
    let pin = write_configs(d, [quic_a, quic_b], http, start_ms);
    let url = nats.url();
    let cfg = |n: &str| d.join(n).display().to_string();
    let engine = |name: &str| {
        Proc::spawn(
            &[
                "engine",
                "--bus",
                &url,
                "--config",
                &cfg(&format!("{name}.toml")),
                "--name",
                name,
            ],
            &d.join(format!("{name}.log")),
        )
    };
    let mut engine_a = engine("engine-a");
    let _gateway = Proc::spawn(
        &["gateway", "--bus", &url, "--config", &cfg("gateway.toml")],
        &d.join("gateway.log"),
    );
    // Only engine A runs: once the race answers, A owns it.
    until("engine A owns the race", d, || async move {
        get(http, &format!("/v1/races/{RACE}/standings"))
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    phase("engine A owns the race");
    let _engine_b = engine("engine-b");
    until("engine B is up", d, || async move {
        std::fs::read_to_string(d.join("engine-b.log"))
            .unwrap_or_default()
            .contains("engine ready")
    })
    .await;

    // Odd riders send to A (the owner), even riders to B (which forwards to A).
    let clients: BTreeMap<u32, DeviceClient> = (1..=RIDERS)
        .map(|i| {
            let port = if i % 2 == 1 { quic_a } else { quic_b };
            let c = DeviceClient::spawn(ClientConfig {
                server: SocketAddr::from(([127, 0, 0, 1], port)),
                server_name: "localhost".into(),
                pin: CertPin::Sha256(pin.clone()),
                token: format!("token-{i}"),
                backoff_max: Duration::from_millis(500),
                // A SIGKILLed engine sends no close: notice it quickly.
                keep_alive: Duration::from_millis(500),
                idle_timeout: Duration::from_secs(2),
                ..ClientConfig::default()
            })
            .expect("client starts");
            (i, c)
        })
        .collect();
    let mut sim = demo_peloton(RIDERS, start_ms);
    let mut pushed: BTreeMap<u32, BTreeSet<i64>> = BTreeMap::new();
    let mut seqs: BTreeMap<u32, u32> = BTreeMap::new();
    let mut stream_for = async |d: Duration, sim: &mut Simulation| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            for (rider, record) in push_due(sim, &clients) {
                pushed.entry(rider).or_default().insert(record.time_ms);
                seqs.insert(rider, record.seq);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    phase("devices connected");
    stream_for(Duration::from_secs(3), &mut sim).await;
    let acked = |clients: &BTreeMap<u32, DeviceClient>, odd: bool| -> u32 {
        clients
            .iter()
            .filter(|(i, _)| (*i % 2 == 1) == odd)
            .map(|(_, c)| c.acked_seq())
            .sum()
    };
    assert!(
        acked(&clients, true) > 0,
        "the owner acknowledged its devices"
    );
    // An organiser command through the gateway reaches the owner (whichever engine the gateway
    // asked) and is journaled on JetStream.
    let feed_zone = checkpoint_m(http, "Feed zone").await.expect("checkpoint");
    let moved = (feed_zone - 250.0).round();
    let (status, body) = post_admin(
        http,
        &format!("/v1/admin/races/{RACE}"),
        &format!(
            "{{\"action\":\"move_checkpoint\",\"name\":\"Feed zone\",\"distance_m\":{moved}}}"
        ),
    )
    .await
    .expect("admin request");
    assert_eq!(status, 200, "{body}");
    assert!(
        acked(&clients, false) > 0,
        "the non-owner acknowledged forwarded fixes"
    );

    // The owner dies; B takes the race over once the lease expired and rebuilds it from JetStream.
    phase("streamed; killing A");
    engine_a.kill();
    let killed_at = Instant::now();
    stream_for(Duration::from_secs(1), &mut sim).await;
    until("engine B took the race over", d, || async move {
        std::fs::read_to_string(d.join("engine-b.log"))
            .unwrap_or_default()
            .contains("race open (owner)")
    })
    .await;
    eprintln!(
        "takeover {} ms after the SIGKILL",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(
        checkpoint_m(http, "Feed zone").await,
        Some(moved),
        "the new owner replayed the organiser's command"
    );
    // A comes back as the standby; its devices reconnect to it and are forwarded to B.
    phase("B took over");
    let _engine_a = engine("engine-a");
    stream_for(Duration::from_secs(3), &mut sim).await;
    // The race list, whichever engine answers it (the standby asks the owner).
    for _ in 0..4 {
        let (status, races) = get(http, "/v1/races").await.expect("race list");
        assert_eq!(status, 200);
        assert!(races.contains(&format!("\"id\":\"{RACE}\"")), "{races}");
    }

    // The NATS server restarts on its store.
    phase("restarting NATS");
    let port = nats.port;
    nats.kill();
    stream_for(Duration::from_millis(1500), &mut sim).await;
    let nats = NatsServer::start_on("engine_failover_restart", port, Some(store.path().into()))
        .expect("nats-server starts again");
    stream_for(Duration::from_secs(3), &mut sim).await;

    phase("flushing");
    for (i, c) in &clients {
        if let Err(e) = c.flush(Duration::from_secs(60)).await {
            panic!(
                "device {i} did not get everything acknowledged: {e}\n{}",
                logs(d)
            );
        }
    }

    phase("flushed");
    // Every pushed fix (so every acknowledged one) is in the race exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing = tokio::task::block_in_place(|| missing_fixes(http, RACE, &pushed));
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        missing.is_empty(),
        "fixes missing after failover: {missing:?}\n{}",
        logs(d)
    );

    phase("race checked");
    // And in the JetStream journal: every sequence each device was acknowledged for.
    let client = flevum_bus::async_nats::connect(nats.url()).await.unwrap();
    let journal = JetStreamJournal::open(client, RACE, &JetStreamConfig::default())
        .await
        .unwrap();
    let mut journaled: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    journal
        .replay_to_last(|bytes| {
            for e in decode_batch(&bytes).expect("journal batches decode") {
                if let JournalEntry::Fix {
                    rider_id, record, ..
                } = e
                {
                    journaled.entry(rider_id).or_default().push(record.seq);
                }
            }
        })
        .await
        .unwrap();
    let mut duplicated = 0;
    for (rider, c) in &clients {
        let got = journaled.get(rider).cloned().unwrap_or_default();
        let unique: BTreeSet<u32> = got.iter().copied().collect();
        duplicated += got.len() - unique.len();
        let acked = c.acked_seq();
        assert_eq!(
            acked, seqs[rider],
            "rider {rider}: all pushed fixes acknowledged"
        );
        for s in 1..=acked {
            assert!(
                unique.contains(&s),
                "rider {rider}: acknowledged seq {s} not journaled"
            );
        }
    }
    // A race created through the organiser API also runs on JetStream under a lease, and the
    // gateway reaches it whichever engine it asks.
    let gpx = std::fs::read_to_string(demo_course()).unwrap();
    let config_toml = format!(
        "id = \"uploaded\"\nname = \"Uploaded\"\nsport = \"road_cycling\"\nstart_ms = {start_ms}\n\
         course = \"uploaded.gpx\"\n\n[[riders]]\nid = 1\nbib = \"1\"\nname = \"Solo\"\n\
         device_id = \"solo\"\n"
    );
    let create =
        serde_json::json!({ "action": "create_race", "config_toml": config_toml, "gpx": gpx });
    let (status, body) = post_admin(http, "/v1/admin/races", &create.to_string())
        .await
        .expect("create request");
    assert_eq!(status, 200, "{body}");
    for _ in 0..4 {
        let (status, body) = get(http, "/v1/races/uploaded/standings").await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        journal_exists(&nats, "uploaded").await,
        "the uploaded race journals on JetStream"
    );

    let total: usize = pushed.values().map(BTreeSet::len).sum();
    eprintln!(
        "{total} fixes from {RIDERS} devices through an owner kill and a NATS restart: none lost \
         or duplicated in the race; {duplicated} re-sent batches journaled twice"
    );
    for (_, c) in clients {
        c.close().await;
    }
}
