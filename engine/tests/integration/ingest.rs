//! QUIC ingest end to end on loopback: real endpoint, real device client, in-memory sink.
//!
//! Covers the handshake (ok, bad token, wrong version, revocation), live datagrams and acks,
//! offline buffering and backfill across a server restart, per-record validation inside batches,
//! per-device rate limiting and many concurrent devices. Does not test the journal.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flevum_engine::ingest::{
    DeviceGrant, IngestConfig, IngestControl, IngestServer, IngestSink, IngestStats, SubmitFuture,
    TlsConfig, TokenStore, write_self_signed,
};
use flevum_protocol::client::{
    CertPin, ClientConfig, ClientStatus, DeviceClient, ZeroRtt, quic_client_config,
};
use flevum_protocol::{
    DeviceMessage, Hello, PROTOCOL_VERSION, PositionBatch, PositionRecord, RecordFlags,
    RefusalReason, decode_message, encode_datagram, encode_message, message_len,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// In-memory sink: stores records per device, counts duplicate submissions.
#[derive(Default)]
struct FakeSink {
    /// Artificial time until "durable".
    delay: Duration,
    /// device id → seq → record.
    stored: Arc<Mutex<HashMap<String, BTreeMap<u32, PositionRecord>>>>,
    /// Records submitted that were already stored (must stay 0: exactly once).
    duplicates: Arc<AtomicUsize>,
}

impl FakeSink {
    fn with_delay(delay: Duration) -> Self {
        FakeSink {
            delay,
            ..FakeSink::default()
        }
    }

    fn seqs(&self, device: &str) -> Vec<u32> {
        self.stored
            .lock()
            .unwrap()
            .get(device)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    fn records(&self, device: &str) -> Vec<PositionRecord> {
        self.stored
            .lock()
            .unwrap()
            .get(device)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default()
    }

    fn total(&self) -> usize {
        self.stored
            .lock()
            .unwrap()
            .values()
            .map(BTreeMap::len)
            .sum()
    }
}

impl IngestSink for FakeSink {
    fn submit(&self, grant: &DeviceGrant, records: Vec<PositionRecord>) -> SubmitFuture {
        let stored = self.stored.clone();
        let duplicates = self.duplicates.clone();
        let delay = self.delay;
        let device = grant.device_id.clone();
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut map = stored.lock().unwrap();
            let dev = map.entry(device).or_default();
            for r in records {
                if dev.insert(r.seq, r).is_some() {
                    duplicates.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(())
        })
    }

    fn durable_seq(&self, grant: &DeviceGrant) -> u32 {
        let map = self.stored.lock().unwrap();
        let mut n = 0;
        if let Some(dev) = map.get(&grant.device_id) {
            for &s in dev.keys() {
                if s == n + 1 {
                    n = s;
                } else if s > n + 1 {
                    break;
                }
            }
        }
        n
    }
}

fn grant(device: &str, rider: u32) -> DeviceGrant {
    DeviceGrant {
        race_id: "race1".into(),
        rider_id: rider,
        device_id: device.into(),
        report_interval_ms: 1000,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rec(seq: u32) -> PositionRecord {
    PositionRecord::from_degrees(
        seq,
        now_ms() - 1000,
        52.0 + f64::from(seq) * 1e-5,
        5.0,
        Some(3.0),
        Some(8.0),
        Some(90.0),
        Some(4.0),
    )
}

fn test_config() -> IngestConfig {
    IngestConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsConfig::SelfSigned {
            names: vec!["localhost".into()],
        },
        shutdown_grace: Duration::from_secs(2),
        ..IngestConfig::default()
    }
}

/// A running server and the means to stop it.
struct Running {
    addr: SocketAddr,
    fingerprint: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn start(config: IngestConfig, tokens: Arc<TokenStore>, sink: Arc<dyn IngestSink>) -> Running {
    let server = IngestServer::bind(config, tokens, sink).expect("bind");
    let addr = server.local_addr();
    let fingerprint = server.cert_fingerprint();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("run");
    });
    Running {
        addr,
        fingerprint,
        stop,
        task,
    }
}

fn client_config(server: &Running, token: &str) -> ClientConfig {
    ClientConfig {
        server: server.addr,
        server_name: "localhost".into(),
        pin: CertPin::Sha256(server.fingerprint.clone()),
        token: token.into(),
        resend_after: Duration::from_secs(2),
        backfill_tick: Duration::from_millis(50),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(3),
        ..ClientConfig::default()
    }
}

/// A raw QUIC connection to the ingest, for tests that speak the protocol by hand.
async fn raw_connect(server: &Running) -> (quinn::Endpoint, quinn::Connection) {
    let cfg = quic_client_config(
        &CertPin::Sha256(server.fingerprint.clone()),
        quinn::TransportConfig::default(),
    )
    .unwrap();
    let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    ep.set_default_client_config(cfg);
    let conn = ep.connect(server.addr, "localhost").unwrap().await.unwrap();
    (ep, conn)
}

async fn read_msg(recv: &mut quinn::RecvStream) -> Option<DeviceMessage> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.ok()?;
    let len = message_len(prefix).unwrap();
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.ok()?;
    Some(decode_message(&body, now_ms()).unwrap())
}

/// Sends `hello_bytes` on a new bidirectional stream and returns the answer and the streams.
async fn raw_handshake(
    conn: &quinn::Connection,
    hello_bytes: Vec<u8>,
) -> (quinn::SendStream, quinn::RecvStream, DeviceMessage) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&hello_bytes).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_msg(&mut recv))
        .await
        .expect("answer in time")
        .expect("an answer");
    (send, recv, answer)
}

fn hello(token: &str, version: u16) -> Vec<u8> {
    encode_message(&DeviceMessage::Hello(Hello {
        protocol_version: version,
        device_token: token.into(),
        last_acked_seq: 0,
    }))
}

/// Waits until the client has been welcomed (or panics after 5 s).
async fn wait_connected(client: &DeviceClient) {
    wait_connected_within(client, Duration::from_secs(5)).await;
}

/// Waits until the client has been welcomed (or panics after `limit`).
async fn wait_connected_within(client: &DeviceClient, limit: Duration) {
    tokio::time::timeout(limit, async {
        while client.status() != ClientStatus::Connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connected");
}

/// Reads acks until `target` is acknowledged (or panics after 10 s).
/// A server with an in-memory sink and one device welcomed on a raw QUIC connection (no
/// device client), to send it hand-made batches and datagrams.
struct RawDevice {
    server: Running,
    sink: Arc<FakeSink>,
    /// Kept open for the connection's life.
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    /// Kept open: closing it ends the device's session.
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl RawDevice {
    async fn welcomed(device: &str, rider: u32) -> RawDevice {
        let tokens = Arc::new(TokenStore::new());
        let token = tokens.issue(grant(device, rider));
        let sink = Arc::new(FakeSink::default());
        let server = start(test_config(), tokens, sink.clone());
        let (endpoint, conn) = raw_connect(&server).await;
        let (send, recv, answer) = raw_handshake(&conn, hello(&token, PROTOCOL_VERSION)).await;
        assert!(matches!(answer, DeviceMessage::Welcome(_)));
        RawDevice {
            server,
            sink,
            _endpoint: endpoint,
            conn,
            _send: send,
            recv,
        }
    }
}

/// Sends `records` as one batch on a stream of their own, as a device's backlog goes.
async fn send_batch(conn: &quinn::Connection, records: Vec<PositionRecord>) {
    let mut uni = conn.open_uni().await.unwrap();
    uni.write_all(&encode_message(&DeviceMessage::Batch(PositionBatch {
        version: PROTOCOL_VERSION,
        records,
    })))
    .await
    .unwrap();
    uni.finish().unwrap();
}

async fn wait_ack(recv: &mut quinn::RecvStream, target: u32) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_msg(recv).await {
                Some(DeviceMessage::Ack(a)) if a.acked_seq >= target => return a.acked_seq,
                Some(_) => {}
                None => panic!("stream ended before ack {target}"),
            }
        }
    })
    .await
    .expect("ack in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshake_and_live_datagrams_are_acknowledged() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-a", 7));
    let sink = Arc::new(FakeSink::default());
    let server = start(test_config(), tokens, sink.clone());

    let (_ep, conn) = raw_connect(&server).await;
    let (_send, _recv, answer) = raw_handshake(&conn, hello(&token, PROTOCOL_VERSION)).await;
    let DeviceMessage::Welcome(w) = answer else {
        panic!("expected Welcome, got {answer:?}");
    };
    assert_eq!(
        (w.race_id.as_str(), w.rider_id, w.acked_seq),
        ("race1", 7, 0)
    );
    assert_eq!(w.report_interval_ms, 1000);
    assert!((w.server_time_ms - now_ms()).abs() < 60_000);
    conn.close(0u32.into(), b"done");

    let client = DeviceClient::spawn(ClientConfig {
        // Long resend timeout: everything must arrive as live datagrams.
        resend_after: Duration::from_secs(60),
        min_resend_after: Duration::from_secs(60),
        ..client_config(&server, &token)
    })
    .unwrap();
    wait_connected(&client).await;
    for s in 1..=20 {
        client.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(client.acked_seq(), 20);
    assert_eq!(client.pending(), 0);
    assert_eq!(sink.seqs("dev-a"), (1..=20).collect::<Vec<_>>());
    // Sent live, not as backlog.
    assert!(
        sink.records("dev-a")
            .iter()
            .all(|r| r.flags & RecordFlags::BACKFILL == 0)
    );
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_token_and_wrong_version_are_refused() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-a", 1));
    let server = start(test_config(), tokens, Arc::new(FakeSink::default()));

    let (_ep, conn) = raw_connect(&server).await;
    let (_s, _r, answer) = raw_handshake(&conn, hello("not-a-token", PROTOCOL_VERSION)).await;
    match answer {
        DeviceMessage::Refusal(r) => {
            assert_eq!(r.reason, RefusalReason::BadToken);
            assert_eq!(r.retry_after_ms, 0);
        }
        other => panic!("expected refusal, got {other:?}"),
    }

    // Version inside Hello.
    let (_ep, conn) = raw_connect(&server).await;
    let (_s, _r, answer) = raw_handshake(&conn, hello(&token, PROTOCOL_VERSION + 1)).await;
    assert!(
        matches!(&answer, DeviceMessage::Refusal(r) if r.reason == RefusalReason::UnsupportedVersion),
        "{answer:?}"
    );

    // Version of the message body itself.
    let mut bytes = hello(&token, PROTOCOL_VERSION);
    bytes[4..6].copy_from_slice(&(PROTOCOL_VERSION + 7).to_le_bytes());
    let (_ep, conn) = raw_connect(&server).await;
    let (_s, _r, answer) = raw_handshake(&conn, bytes).await;
    assert!(
        matches!(&answer, DeviceMessage::Refusal(r) if r.reason == RefusalReason::UnsupportedVersion),
        "{answer:?}"
    );

    // The device client reports a bad token as a refusal.
    let client = DeviceClient::spawn(client_config(&server, "wrong")).unwrap();
    client.push(rec(1)).unwrap();
    let err = client.flush(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, flevum_protocol::client::ClientError::Refused(r) if r.reason == RefusalReason::BadToken),
        "{err:?}"
    );
    assert_eq!(client.pending(), 1);
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_token_is_refused_at_next_handshake() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-r", 3));
    let sink = Arc::new(FakeSink::default());
    let server = start(test_config(), tokens.clone(), sink.clone());

    let (_ep, conn) = raw_connect(&server).await;
    let (_s, _r, answer) = raw_handshake(&conn, hello(&token, PROTOCOL_VERSION)).await;
    assert!(matches!(answer, DeviceMessage::Welcome(_)), "{answer:?}");
    conn.close(0u32.into(), b"done");

    assert_eq!(tokens.revoke_device("race1", "dev-r"), 1);
    let (_ep, conn) = raw_connect(&server).await;
    let (_s, _r, answer) = raw_handshake(&conn, hello(&token, PROTOCOL_VERSION)).await;
    assert!(
        matches!(&answer, DeviceMessage::Refusal(r) if r.reason == RefusalReason::BadToken),
        "{answer:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_token_closes_its_open_connection_and_accepts_nothing_more() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-r", 3));
    let other = tokens.issue(grant("dev-o", 4));
    let sink = Arc::new(FakeSink::default());
    let server = start(test_config(), tokens.clone(), sink.clone());

    let (_ep, conn) = raw_connect(&server).await;
    let (_s, mut recv, answer) = raw_handshake(&conn, hello(&token, PROTOCOL_VERSION)).await;
    assert!(matches!(answer, DeviceMessage::Welcome(_)), "{answer:?}");
    let (_ep_o, conn_o) = raw_connect(&server).await;
    let (_s_o, mut recv_o, answer) = raw_handshake(&conn_o, hello(&other, PROTOCOL_VERSION)).await;
    assert!(matches!(answer, DeviceMessage::Welcome(_)), "{answer:?}");
    conn.send_datagram(encode_datagram(&[rec(1)]).into())
        .unwrap();
    wait_ack(&mut recv, 1).await;

    // Revoked while connected: the next batch closes the connection and is not accepted; the
    // other device goes on.
    assert_eq!(tokens.revoke_device("race1", "dev-r"), 1);
    conn.send_datagram(encode_datagram(&[rec(2)]).into())
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("closed in time");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.reason.as_ref() == b"token revoked"),
        "{closed:?}"
    );
    conn_o
        .send_datagram(encode_datagram(&[rec(1)]).into())
        .unwrap();
    wait_ack(&mut recv_o, 1).await;
    assert_eq!(sink.seqs("dev-r"), vec![1]);
    assert_eq!(sink.seqs("dev-o"), vec![1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_record_in_a_batch_loses_none_of_the_good_ones() {
    let mut dev = RawDevice::welcomed("dev-c", 4).await;

    let mut records: Vec<PositionRecord> = (1..=10).map(rec).collect();
    records[4].lat_e7 = 1_234_567_890; // seq 5: latitude beyond 90°
    records[7].time_ms = now_ms() + 3_600_000; // seq 8: an hour in the future
    send_batch(&dev.conn, records).await;

    // A datagram with one bad record among good ones.
    let mut dg = vec![rec(11), rec(12), rec(13)];
    dg[1].battery_pct = 180;
    dev.conn.send_datagram(encode_datagram(&dg).into()).unwrap();

    // Invalid records count as handled: the ack covers them, so the device stops resending.
    wait_ack(&mut dev.recv, 13).await;
    assert_eq!(
        dev.sink.seqs("dev-c"),
        vec![1, 2, 3, 4, 6, 7, 9, 10, 11, 13]
    );
    dev.server.stop().await;
}

/// A large batch that repeats its records (a client resending into the same batch) stores
/// each once; a repeated invalid record is skipped once and counted as handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_batch_with_repeats_stores_each_record_once() {
    let mut dev = RawDevice::welcomed("dev-r", 5).await;

    // 1..=60, then all of them again in reverse, with seq 30 invalid both times.
    let mut records: Vec<PositionRecord> = (1..=60).chain((1..=60).rev()).map(rec).collect();
    for r in records.iter_mut().filter(|r| r.seq == 30) {
        r.lat_e7 = 1_234_567_890;
    }
    send_batch(&dev.conn, records).await;

    wait_ack(&mut dev.recv, 60).await;
    let want: Vec<u32> = (1..=60).filter(|&s| s != 30).collect();
    assert_eq!(dev.sink.seqs("dev-r"), want);
    assert_eq!(dev.sink.duplicates.load(Ordering::SeqCst), 0);
    dev.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_buffer_is_backfilled_exactly_once_after_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pin = write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let tls = TlsConfig::Files {
        cert: cert.clone(),
        key: key.clone(),
    };
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-b", 9));
    // The sink outlives both servers (it stands for the journal) and is slow to make durable.
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(20)));

    let first = start(
        IngestConfig {
            tls: tls.clone(),
            ..test_config()
        },
        tokens.clone(),
        sink.clone(),
    );
    assert_eq!(first.fingerprint, pin);
    let addr = first.addr;
    let client = DeviceClient::spawn(ClientConfig {
        buffer_path: Some(dir.path().join("device.buf")),
        ..client_config(&first, &token)
    })
    .unwrap();
    wait_connected(&client).await;
    for s in 1..=10 {
        client.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(client.acked_seq(), 10);
    first.stop().await;

    // Offline: fixes pile up in the buffer.
    for s in 11..=40 {
        client.push(rec(s)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.pending(), 30);
    assert_eq!(client.acked_seq(), 10);

    // A new server on the same port (retry while the old socket is released).
    let (stop, task) = restart_on(
        addr,
        IngestConfig {
            tls: tls.clone(),
            ..test_config()
        },
        tokens.clone(),
        sink.clone(),
    )
    .await;

    client.flush(Duration::from_secs(15)).await.unwrap();
    assert_eq!(client.acked_seq(), 40);
    assert_eq!(client.pending(), 0);
    assert_eq!(sink.seqs("dev-b"), (1..=40).collect::<Vec<_>>());
    assert_eq!(
        sink.duplicates.load(Ordering::SeqCst),
        0,
        "a record was submitted twice"
    );
    let backfilled: Vec<u32> = sink
        .records("dev-b")
        .iter()
        .filter(|r| r.flags & RecordFlags::BACKFILL != 0)
        .map(|r| r.seq)
        .collect();
    // What was pushed while connected went live; what was pushed offline came as backlog.
    assert_eq!(backfilled, (11..=40).collect::<Vec<_>>());
    client.close().await;
    let _ = stop.send(());
    task.await.unwrap();

    // Everything acknowledged: a client reopened on the same buffer file has nothing pending.
    let reopened =
        flevum_protocol::client::OfflineBuffer::open(&dir.path().join("device.buf"), 100).unwrap();
    assert_eq!(reopened.len(), 0);
    assert_eq!(reopened.acked(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_device_is_rate_limited_without_slowing_another() {
    let tokens = Arc::new(TokenStore::new());
    let flood_token = tokens.issue(grant("flood", 1));
    let calm_token = tokens.issue(grant("calm", 2));
    let sink = Arc::new(FakeSink::default());
    let server = start(
        IngestConfig {
            device_rate_per_s: 50.0,
            device_burst: 100.0,
            ..test_config()
        },
        tokens,
        sink.clone(),
    );

    let (_ep, conn) = raw_connect(&server).await;
    let (_s, _r, answer) = raw_handshake(&conn, hello(&flood_token, PROTOCOL_VERSION)).await;
    assert!(matches!(answer, DeviceMessage::Welcome(_)));
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut seq = 1u32;
        for _ in 0..300 {
            let batch: Vec<PositionRecord> = (seq..seq + 10).map(rec).collect();
            seq += 10;
            let _ = conn.send_datagram(encode_datagram(&batch).into());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        conn
    });

    let calm = DeviceClient::spawn(client_config(&server, &calm_token)).unwrap();
    for s in 1..=30 {
        calm.push(rec(s)).unwrap();
    }
    calm.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(sink.seqs("calm"), (1..=30).collect::<Vec<_>>());

    let _conn = flood.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let flooded = sink.seqs("flood").len();
    let allowed = 100.0 + 50.0 * elapsed + 10.0;
    assert!(
        (flooded as f64) <= allowed,
        "flood got {flooded} records through in {elapsed:.2} s (allowed {allowed:.0})"
    );
    assert!(
        flooded >= 50,
        "the flooding device got nothing through: {flooded}"
    );
    calm.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn five_hundred_concurrent_devices_connect_and_send() {
    const DEVICES: usize = 500;
    const FIXES: u32 = 5;
    let tokens = Arc::new(TokenStore::new());
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(5)));
    let toks: Vec<String> = (0..DEVICES)
        .map(|i| tokens.issue(grant(&format!("d{i}"), i as u32)))
        .collect();
    let server = start(test_config(), tokens, sink.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in toks {
        let cfg = client_config(&server, &token);
        tasks.push(tokio::spawn(async move {
            let client = DeviceClient::spawn(cfg).unwrap();
            let t0 = Instant::now();
            wait_connected_within(&client, Duration::from_secs(60)).await;
            let connect_s = t0.elapsed().as_secs_f64();
            for s in 1..=FIXES {
                client.push(rec(s)).unwrap();
            }
            let res = client.flush(Duration::from_secs(60)).await;
            let acked = client.acked_seq();
            let flush_s = t0.elapsed().as_secs_f64() - connect_s;
            client.close().await;
            (res, acked, connect_s, flush_s)
        }));
    }
    let (mut max_connect, mut max_flush) = (0f64, 0f64);
    for t in tasks {
        let (res, acked, connect_s, flush_s) = t.await.unwrap();
        res.unwrap();
        assert_eq!(acked, FIXES);
        max_connect = max_connect.max(connect_s);
        max_flush = max_flush.max(flush_s);
    }
    eprintln!(
        "{DEVICES} devices × {FIXES} fixes acknowledged in {:.2} s (slowest connect {max_connect:.2} s, slowest push→all acked {max_flush:.3} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(sink.total(), DEVICES * FIXES as usize);
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_connection_limit_devices_are_told_when_to_retry() {
    let tokens = Arc::new(TokenStore::new());
    let first = tokens.issue(grant("one", 1));
    let second = tokens.issue(grant("two", 2));
    let server = start(
        IngestConfig {
            max_connections: 1,
            overload_retry_after_ms: 1_234,
            ..test_config()
        },
        tokens,
        Arc::new(FakeSink::default()),
    );
    let (_ep1, conn1) = raw_connect(&server).await;
    let (_s1, _r1, answer) = raw_handshake(&conn1, hello(&first, PROTOCOL_VERSION)).await;
    assert!(matches!(answer, DeviceMessage::Welcome(_)), "{answer:?}");
    let (_ep2, conn2) = raw_connect(&server).await;
    let (_s2, _r2, answer) = raw_handshake(&conn2, hello(&second, PROTOCOL_VERSION)).await;
    match answer {
        DeviceMessage::Refusal(r) => {
            assert_eq!(r.reason, RefusalReason::Overloaded);
            assert_eq!(r.retry_after_ms, 1_234);
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixes_buffered_on_disk_survive_an_app_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let tls = TlsConfig::Files { cert, key };
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-p", 5));
    let sink = Arc::new(FakeSink::default());
    let buffer_path = dir.path().join("device.buf");

    let first = start(
        IngestConfig {
            tls: tls.clone(),
            ..test_config()
        },
        tokens.clone(),
        sink.clone(),
    );
    let addr = first.addr;
    let cfg = ClientConfig {
        buffer_path: Some(buffer_path.clone()),
        ..client_config(&first, &token)
    };
    let app = DeviceClient::spawn(cfg.clone()).unwrap();
    for s in 1..=5 {
        app.push(rec(s)).unwrap();
    }
    app.flush(Duration::from_secs(10)).await.unwrap();
    first.stop().await;
    // Offline, then the app is killed: the fixes exist only in the buffer file.
    for s in 6..=25 {
        app.push(rec(s)).unwrap();
    }
    app.close().await;

    let (stop, task) = restart_on(
        addr,
        IngestConfig {
            tls: tls.clone(),
            ..test_config()
        },
        tokens.clone(),
        sink.clone(),
    )
    .await;
    // The file alone holds the 20 unacknowledged fixes (checked before a client can send them).
    let on_disk = flevum_protocol::client::OfflineBuffer::open(&buffer_path, 1000).unwrap();
    assert_eq!(on_disk.len(), 20);
    assert_eq!((on_disk.acked(), on_disk.last_seq()), (5, 25));
    drop(on_disk);
    let restarted = DeviceClient::spawn(cfg).unwrap();
    assert_eq!(restarted.next_seq(), 26);
    restarted.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(restarted.acked_seq(), 25);
    assert_eq!(sink.seqs("dev-p"), (1..=25).collect::<Vec<_>>());
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    restarted.close().await;
    let _ = stop.send(());
    task.await.unwrap();
}

/// Discards frames; the end-to-end test only checks what became durable and applied.
struct NoFrames;

impl flevum_engine::shard::FramePublisher for NoFrames {
    fn snapshot(&self, _snapshot: flevum_protocol::Snapshot) {}
    fn delta(&self, _delta: flevum_protocol::Delta) {}
    fn alert(&self, _race_id: &str, _alert: flevum_protocol::Alert) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_reach_the_real_shard_and_journal_through_quic() {
    use flevum_engine::core::{Course, CourseIndex};
    use flevum_engine::ingest::ShardSink;
    use flevum_engine::journal::JournalConfig;
    use flevum_engine::shard::{ShardConfig, open_race, wall_ms};
    use flevum_engine::simulator::{SimConfig, Simulation};

    let dir = tempfile::tempdir().unwrap();
    let course_path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/courses/flevum_demo.gpx");
    let course = CourseIndex::new(Course::from_gpx_file(course_path).expect("demo course"));
    let now = wall_ms();
    let mut sim = Simulation::new(
        course,
        SimConfig {
            riders: 4,
            start_ms: now - 10 * 60_000,
            ..SimConfig::default()
        },
    );
    let race_config = sim.race_config("quic-e2e", "QUIC end to end");
    let events = sim.step_until(now - 5_000);
    let shard_config = ShardConfig {
        journal: JournalConfig {
            dir: dir.path().to_path_buf(),
            ..JournalConfig::default()
        },
        tick_interval: Duration::from_millis(50),
        command_queue: 64,
        clock: Default::default(),
    };
    let (stop_shard, shard_stopped) = oneshot::channel::<()>();
    let (race, _report, shard_task) = open_race(
        &shard_config,
        race_config,
        sim.course().clone(),
        Arc::new(NoFrames),
        async move {
            let _ = shard_stopped.await;
        },
    )
    .unwrap();
    let sink = Arc::new(ShardSink::new());
    sink.insert("quic-e2e", race.clone());

    let mut by_rider: BTreeMap<u32, Vec<PositionRecord>> = BTreeMap::new();
    for e in &events {
        by_rider.entry(e.rider_id).or_default().push(e.record);
    }
    let tokens = Arc::new(TokenStore::new());
    let server = start(test_config(), tokens.clone(), sink);
    let mut clients = Vec::new();
    for (rider, records) in &by_rider {
        let token = tokens.issue(DeviceGrant {
            race_id: "quic-e2e".into(),
            rider_id: *rider,
            device_id: format!("phone-{rider}"),
            report_interval_ms: 1000,
        });
        let client = DeviceClient::spawn(client_config(&server, &token)).unwrap();
        for r in records {
            client.push(*r).unwrap();
        }
        clients.push((*rider, records.len(), client));
    }
    for (rider, n, client) in clients {
        client.flush(Duration::from_secs(20)).await.unwrap();
        let last = by_rider[&rider].iter().map(|r| r.seq).max().unwrap();
        assert_eq!(client.acked_seq(), last, "rider {rider}");
        assert_eq!(
            race.durable_seq(rider),
            last,
            "rider {rider} durable in the shard"
        );
        assert!(n > 100, "rider {rider} sent {n} fixes");
        client.close().await;
    }
    // The shard applied them: every rider is on the course and has progressed.
    let mut progressed = 0;
    for _ in 0..100 {
        let views = race
            .query(|r| r.views().iter().filter(|v| v.distance_m > 500.0).count())
            .await
            .unwrap();
        progressed = views;
        if progressed == by_rider.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(progressed, by_rider.len());
    server.stop().await;
    let _ = stop_shard.send(());
    shard_task.await.unwrap();
}

/// Binds a server on `addr` (retrying while the old socket is released) and runs it.
async fn restart_on(
    addr: SocketAddr,
    config: IngestConfig,
    tokens: Arc<TokenStore>,
    sink: Arc<dyn IngestSink>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let server = loop {
        match IngestServer::bind(
            IngestConfig {
                listen: addr,
                ..config.clone()
            },
            tokens.clone(),
            sink.clone(),
        ) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    };
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

/// Issue 10: a mass start through admission control (most devices wait for a handshake token or
/// are refused at the QUIC level and retry), then the server restarts under all of them. Every
/// fix pushed before, during and after the blip reaches the sink exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mass_start_and_server_blip_lose_no_fix() {
    const DEVICES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let config = IngestConfig {
        tls: TlsConfig::Files { cert, key },
        // A small admission budget so the storm exercises the queue and the refusals.
        handshake_rate_per_s: 150.0,
        handshake_burst: 30.0,
        handshake_queue: 60,
        ..test_config()
    };
    let tokens = Arc::new(TokenStore::new());
    let toks: Vec<String> = (0..DEVICES)
        .map(|i| tokens.issue(grant(&format!("m{i}"), i as u32)))
        .collect();
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(2)));
    let server = IngestServer::bind(config.clone(), tokens.clone(), sink.clone()).unwrap();
    let addr = server.local_addr();
    let fingerprint = server.cert_fingerprint();
    let stats = server.stats();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let running = Running {
        addr,
        fingerprint,
        stop,
        task,
    };
    // Devices share four UDP sockets, as a load generator does.
    let endpoints: Vec<quinn::Endpoint> = (0..4)
        .map(|_| quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap())
        .collect();
    let clients: Vec<DeviceClient> = toks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            DeviceClient::spawn_on(
                ClientConfig {
                    refused_retry_after: Duration::from_millis(200),
                    connect_timeout: Duration::from_secs(10),
                    ..client_config(&running, t)
                },
                endpoints[i % endpoints.len()].clone(),
            )
            .unwrap()
        })
        .collect();
    // Fixes 1..=5 are pushed at the gun, while the devices are still connecting.
    for c in &clients {
        for s in 1..=5 {
            c.push(rec(s)).unwrap();
        }
    }
    for c in &clients {
        wait_connected_within(c, Duration::from_secs(60)).await;
    }
    let admitted = stats.admitted.load(Ordering::Relaxed);
    let queued = stats.queued.load(Ordering::Relaxed);
    let refused = stats.refused.load(Ordering::Relaxed);
    eprintln!("mass start: admitted {admitted}, queued {queued}, refused {refused}");
    assert!(admitted >= DEVICES as u64);
    // Live fixes, then the blip: the server goes away under all of them.
    for c in &clients {
        for s in 6..=10 {
            c.push(rec(s)).unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    for c in &clients {
        for s in 11..=15 {
            c.push(rec(s)).unwrap();
        }
    }
    let (stop, task) = restart_on(addr, config, tokens, sink.clone()).await;
    for c in &clients {
        for s in 16..=20 {
            c.push(rec(s)).unwrap();
        }
    }
    for c in &clients {
        c.flush(Duration::from_secs(60)).await.unwrap();
        assert_eq!(c.acked_seq(), 20);
    }
    for i in 0..DEVICES {
        assert_eq!(sink.seqs(&format!("m{i}")), (1..=20).collect::<Vec<_>>());
    }
    assert_eq!(sink.total(), DEVICES * 20);
    assert_eq!(
        sink.duplicates.load(Ordering::SeqCst),
        0,
        "a fix was submitted twice"
    );
    for c in clients {
        c.close().await;
    }
    let _ = stop.send(());
    task.await.unwrap();
}

/// Binds `config` (retrying while the old socket of a stopped instance is still held) and runs
/// it; returns the handle and its counters.
async fn start_observed(
    config: IngestConfig,
    tokens: Arc<TokenStore>,
    sink: Arc<dyn IngestSink>,
) -> (Running, Arc<IngestStats>, IngestControl) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let server = loop {
        match IngestServer::bind(config.clone(), tokens.clone(), sink.clone()) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("binding {}: {e}", config.listen),
        }
    };
    let addr = server.local_addr();
    let fingerprint = server.cert_fingerprint();
    let stats = server.stats();
    let control = server.control();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("run");
    });
    let running = Running {
        addr,
        fingerprint,
        stop,
        task,
    };
    (running, stats, control)
}

/// Waits until `connected` reports `want` (or panics after 30 s: a liveness bound, generous so
/// a loaded machine's reconnect back-off cannot trip it).
async fn wait_connected_is(connected: &mut tokio::sync::watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c == want))
        .await
        .expect("connection state in time")
        .expect("client alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnect_resumes_with_zero_rtt_and_loses_no_fix() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-z", 3));
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(2)));
    let (server, stats, control) = start_observed(test_config(), tokens, sink.clone()).await;
    let client = DeviceClient::spawn(client_config(&server, &token)).unwrap();
    let mut connected = client.subscribe_connected();
    for s in 1..=5 {
        client.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    // First contact: no ticket yet, so no 0-RTT.
    assert_eq!(client.last_zero_rtt(), ZeroRtt::NotAttempted);
    assert_eq!(stats.zero_rtt_accepted.load(Ordering::Relaxed), 0);

    // Blip: the engine drops the connection; fixes pile up in the buffer meanwhile and leave
    // with the 0-RTT flight of the reconnect.
    assert_eq!(control.disconnect_all(), 1);
    wait_connected_is(&mut connected, false).await;
    for s in 6..=15 {
        client.push(rec(s)).unwrap();
    }
    wait_connected_is(&mut connected, true).await;
    for s in 16..=20 {
        client.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();

    assert_eq!(client.last_zero_rtt(), ZeroRtt::Accepted);
    assert_eq!(client.zero_rtt_counts().accepted, 1);
    assert_eq!(stats.zero_rtt_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(stats.tls_resumed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.zero_rtt_rejected.load(Ordering::Relaxed), 0);
    assert_eq!(client.acked_seq(), 20);
    assert_eq!(sink.seqs("dev-z"), (1..=20).collect::<Vec<_>>());
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_rtt_refused_after_a_restart_falls_back_and_loses_no_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    // The same certificate across the restart (the pin holds), but the session cache is gone.
    write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let config = IngestConfig {
        tls: TlsConfig::Files { cert, key },
        ..test_config()
    };
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-r", 4));
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(2)));
    let (first, _, control) = start_observed(config.clone(), tokens.clone(), sink.clone()).await;
    let addr = first.addr;
    let client = DeviceClient::spawn(ClientConfig {
        // Attempts while the old instance shuts down spend tickets: keep them few.
        backoff_min: Duration::from_millis(500),
        backoff_max: Duration::from_millis(1000),
        ..client_config(&first, &token)
    })
    .unwrap();
    let mut connected = client.subscribe_connected();
    for s in 1..=5 {
        client.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    // A reconnect to the same instance proves the client holds a usable ticket.
    control.disconnect_all();
    wait_connected_is(&mut connected, false).await;
    wait_connected_is(&mut connected, true).await;
    assert_eq!(client.last_zero_rtt(), ZeroRtt::Accepted);
    // A round trip on the resumed connection: its new session tickets (sent with the end of
    // the handshake) have arrived before the instance stops. Without it, a loaded machine
    // could stop the instance first, and the client would reconnect without a ticket.
    client.push(rec(6)).unwrap();
    client.flush(Duration::from_secs(10)).await.unwrap();

    first.stop().await;
    wait_connected_is(&mut connected, false).await;
    for s in 7..=20 {
        client.push(rec(s)).unwrap();
    }
    let (second, stats, _) = start_observed(
        IngestConfig {
            listen: addr,
            ..config
        },
        tokens,
        sink.clone(),
    )
    .await;
    client.flush(Duration::from_secs(20)).await.unwrap();

    assert_eq!(client.last_zero_rtt(), ZeroRtt::Rejected);
    assert_eq!(client.zero_rtt_counts().rejected, 1);
    assert!(stats.zero_rtt_rejected.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.zero_rtt_accepted.load(Ordering::Relaxed), 0);
    assert_eq!(stats.tls_resumed.load(Ordering::Relaxed), 0);
    assert_eq!(client.acked_seq(), 20);
    assert_eq!(sink.seqs("dev-r"), (1..=20).collect::<Vec<_>>());
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    client.close().await;
    second.stop().await;
}

/// A UDP relay between one device and the engine that can record the device's long-header
/// datagrams (Initial, 0-RTT, Handshake), so a test can replay a first flight as an attacker.
struct Relay {
    /// Where the device connects.
    addr: SocketAddr,
    /// Record the device's long-header datagrams while set.
    recording: Arc<std::sync::atomic::AtomicBool>,
    /// What was recorded.
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Drop every n-th short-header (1-RTT) datagram from the device while non-zero: a lossy
    /// uplink for live datagrams.
    drop_one_in: Arc<std::sync::atomic::AtomicU32>,
    /// Datagrams dropped so far.
    dropped: Arc<std::sync::atomic::AtomicU32>,
}

async fn relay_to(server: SocketAddr) -> Relay {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let recording = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let device = Arc::new(Mutex::new(None::<SocketAddr>));
    let drop_one_in = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let dropped = Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        let (front, back, recording, recorded, device, drop_one_in, dropped) = (
            front.clone(),
            back.clone(),
            recording.clone(),
            recorded.clone(),
            device.clone(),
            drop_one_in.clone(),
            dropped.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            let mut short = 0u32;
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *device.lock().unwrap() = Some(from);
                let datagram = &buf[..n];
                // Long header: the top bit of the first byte.
                if recording.load(Ordering::SeqCst) && datagram[0] & 0x80 != 0 {
                    recorded.lock().unwrap().push(datagram.to_vec());
                }
                let every = drop_one_in.load(Ordering::SeqCst);
                if every > 0 && datagram[0] & 0x80 == 0 {
                    short += 1;
                    if short.is_multiple_of(every) {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                }
                let _ = back.send(datagram).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *device.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    Relay {
        addr,
        recording,
        recorded,
        drop_one_in,
        dropped,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_live_datagrams_are_resent_when_the_next_ack_shows_the_gap() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-l", 8));
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(1)));
    let server = start(test_config(), tokens, sink.clone());
    let relay = relay_to(server.addr).await;
    let client = DeviceClient::spawn(ClientConfig {
        server: relay.addr,
        // No timeout-driven resend within the test: only the engine's duplicate acks can bring
        // the lost datagrams back before the flush gives up.
        resend_after: Duration::from_secs(120),
        min_resend_after: Duration::from_secs(120),
        ..client_config(&server, &token)
    })
    .unwrap();
    wait_connected(&client).await;
    relay.drop_one_in.store(3, Ordering::SeqCst);
    for s in 1..=30 {
        client.push(rec(s)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.drop_one_in.store(0, Ordering::SeqCst);
    // A last fix after the lossy stretch: its arrival shows any gap still open.
    client.push(rec(31)).unwrap();
    client.flush(Duration::from_secs(60)).await.unwrap();
    assert!(
        relay.dropped.load(Ordering::SeqCst) > 0,
        "the relay dropped nothing"
    );
    assert!(client.fast_resends() > 0, "no record was resent early");
    assert_eq!(sink.seqs("dev-l"), (1..=31).collect::<Vec<_>>());
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_zero_rtt_flight_is_refused_and_changes_nothing() {
    let tokens = Arc::new(TokenStore::new());
    let token = tokens.issue(grant("dev-x", 6));
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(2)));
    let (server, stats, control) = start_observed(test_config(), tokens, sink.clone()).await;
    let relay = relay_to(server.addr).await;
    let client = DeviceClient::spawn(ClientConfig {
        server: relay.addr,
        ..client_config(&server, &token)
    })
    .unwrap();
    let mut connected = client.subscribe_connected();
    for s in 1..=5 {
        client.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();

    // Record the reconnect's first flight: Initial (ClientHello with the ticket) and the 0-RTT
    // packets carrying Hello and fixes 6..=10.
    relay.recording.store(true, Ordering::SeqCst);
    control.disconnect_all();
    wait_connected_is(&mut connected, false).await;
    for s in 6..=10 {
        client.push(rec(s)).unwrap();
    }
    wait_connected_is(&mut connected, true).await;
    client.flush(Duration::from_secs(10)).await.unwrap();
    relay.recording.store(false, Ordering::SeqCst);
    assert_eq!(client.last_zero_rtt(), ZeroRtt::Accepted);
    assert_eq!(stats.zero_rtt_accepted.load(Ordering::Relaxed), 1);
    let flight = relay.recorded.lock().unwrap().clone();
    assert!(!flight.is_empty(), "nothing recorded");
    client.close().await;

    // An attacker replays the flight from another address until the engine processes it (the
    // original connection's IDs stop routing it once that connection has drained).
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while stats.zero_rtt_rejected.load(Ordering::Relaxed) == 0 {
            for datagram in &flight {
                attacker.send_to(datagram, server.addr).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
    .expect("the replayed ClientHello reached the TLS layer");
    // Its ticket was used up by the original: no 0-RTT, so its Hello and fixes were discarded
    // and the handshake (which it cannot finish) welcomes nobody.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats.zero_rtt_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(stats.welcomed.load(Ordering::Relaxed), 2);
    assert_eq!(sink.seqs("dev-x"), (1..=10).collect::<Vec<_>>());
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_connection_resumes_its_session_and_acks_every_fix_once() {
    let tokens = Arc::new(TokenStore::new());
    let cut_token = tokens.issue(grant("dev-cut", 7));
    let other_token = tokens.issue(grant("dev-other", 8));
    let sink = Arc::new(FakeSink::with_delay(Duration::from_millis(2)));
    let (server, stats, _) = start_observed(test_config(), tokens, sink.clone()).await;
    // Two devices on one shared endpoint (one UDP socket), as a load generator runs them.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let endpoint = DeviceClient::endpoint_on(socket).unwrap();
    let client =
        DeviceClient::spawn_on(client_config(&server, &cut_token), endpoint.clone()).unwrap();
    let other =
        DeviceClient::spawn_on(client_config(&server, &other_token), endpoint.clone()).unwrap();
    let mut connected = client.subscribe_connected();
    for s in 1..=5 {
        client.push(rec(s)).unwrap();
        other.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    other.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(client.last_zero_rtt(), ZeroRtt::NotAttempted);
    wait_connected_is(&mut connected, true).await;

    // The network drops under the running app: the connection goes, the buffer and the TLS
    // session store stay; fixes pushed meanwhile wait in the buffer.
    assert!(client.cut_connection());
    assert_ne!(client.status(), ClientStatus::Connected);
    assert!(!*connected.borrow_and_update());
    for s in 6..=15 {
        client.push(rec(s)).unwrap();
    }
    wait_connected_is(&mut connected, true).await;
    for s in 16..=20 {
        client.push(rec(s)).unwrap();
    }
    for s in 6..=10 {
        other.push(rec(s)).unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    other.flush(Duration::from_secs(10)).await.unwrap();

    // The reconnect resumed the TLS session and sent its Hello and backlog as 0-RTT data.
    assert_eq!(client.last_zero_rtt(), ZeroRtt::Accepted);
    assert_eq!(client.zero_rtt_counts().accepted, 1);
    assert_eq!(client.zero_rtt_counts().rejected, 0);
    assert_eq!(stats.tls_resumed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.zero_rtt_accepted.load(Ordering::Relaxed), 1);
    // Every fix acknowledged, and submitted exactly once.
    assert_eq!(client.acked_seq(), 20);
    assert_eq!(client.pending(), 0);
    assert_eq!(sink.seqs("dev-cut"), (1..=20).collect::<Vec<_>>());
    assert_eq!(sink.duplicates.load(Ordering::SeqCst), 0);
    // The other device on the shared endpoint kept its one connection.
    assert_eq!(other.status(), ClientStatus::Connected);
    assert_eq!(other.zero_rtt_counts().accepted, 0);
    assert_eq!(sink.seqs("dev-other"), (1..=10).collect::<Vec<_>>());
    assert_eq!(stats.welcomed.load(Ordering::Relaxed), 3);
    client.close().await;
    other.close().await;
    endpoint.close(0u32.into(), b"done");
    server.stop().await;
}
