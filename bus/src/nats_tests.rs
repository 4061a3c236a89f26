//! Tests of the NATS bus against a real `nats-server` on loopback: fan-out to two gateways,
//! on-demand following, gap resync, alerts and control request/reply.
//!
//! Each test starts its own server (SKIP when the binary is missing, see `testnats`).

use std::sync::Arc;
use std::time::Duration;

use crate::testnats::NatsServer;
use crate::testutil::*;
use crate::{Bus, BusConfig, BusError, ControlHandler, NatsEngineBus, NatsGatewayBus};

fn config(server: &NatsServer) -> BusConfig {
    BusConfig {
        linger: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        snapshot_retry: Duration::from_millis(100),
        ..BusConfig::with_url(server.url())
    }
}

/// Waits (up to 10 s) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn has(rec: &Recorder, g: &Got) -> bool {
    rec.got().contains(g)
}

#[tokio::test]
async fn two_gateways_see_the_same_frames() {
    let Some(server) = NatsServer::start("two_gateways_see_the_same_frames", None) else {
        return;
    };
    let cfg = config(&server);
    let engine = NatsEngineBus::connect(&cfg).await.unwrap();
    engine.publish_snapshot(snapshot("r", 7, 0, vec![rider(1, 0.0)]));
    engine.flush().await.unwrap();
    let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let ga = NatsGatewayBus::connect(&cfg, a.clone()).await.unwrap();
    let gb = NatsGatewayBus::connect(&cfg, b.clone()).await.unwrap();
    for (g, r) in [(&ga, &a), (&gb, &b)] {
        r.watchers.lock().unwrap().insert("r".into(), 1);
        g.watch("r").unwrap();
    }
    until("both snapshots", || {
        has(&a, &Got::Snapshot("r".into(), 7, 0)) && has(&b, &Got::Snapshot("r".into(), 7, 0))
    })
    .await;
    for t in 1..=20 {
        engine.publish_delta(delta("r", 7, t, vec![rider(1, t as f64 * 10.0)]));
    }
    engine.flush().await.unwrap();
    let last = Got::Delta("r".into(), 7, 20);
    until("both at tick 20", || has(&a, &last) && has(&b, &last)).await;
    let expected: Vec<Got> = std::iter::once(Got::Snapshot("r".into(), 7, 0))
        .chain((1..=20).map(|t| Got::Delta("r".into(), 7, t)))
        .collect();
    assert_eq!(a.got(), expected);
    assert_eq!(b.got(), expected);
    // The engine keeps the state it published (the API of a delayed race answers from it).
    assert!(engine.keeps_published());
    let mut published = None;
    assert!(engine.read_published("r", &mut |s| published = Some(s.clone())));
    let published = published.expect("published");
    assert_eq!((published.epoch, published.tick), (7, 20));
    assert_eq!(published.states.len(), 1);
    assert_eq!(published.states[0].distance_m, 200.0);
    assert!(!engine.read_published("other", &mut |_| {}));
}

#[tokio::test]
async fn gateway_follows_a_race_only_while_watched() {
    let Some(server) = NatsServer::start("gateway_follows_a_race_only_while_watched", None) else {
        return;
    };
    let cfg = config(&server);
    let engine = NatsEngineBus::connect(&cfg).await.unwrap();
    let rec = Arc::new(Recorder::default());
    let gw = NatsGatewayBus::connect(&cfg, rec.clone()).await.unwrap();
    engine.publish_snapshot(snapshot("r", 1, 0, vec![]));
    for t in 1..=5 {
        engine.publish_delta(delta("r", 1, t, vec![rider(1, t as f64)]));
    }
    engine.flush().await.unwrap();
    // A round trip through the server: anything the gateway were subscribed to has arrived.
    crate::config::round_trip(gw.client(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(rec.got().is_empty(), "nothing received without a client");
    assert!(gw.watching().is_empty());

    // A client connects: the gateway follows and starts from the merged state at tick 5.
    rec.watchers.lock().unwrap().insert("r".into(), 1);
    gw.watch("r").unwrap();
    until("snapshot at tick 5", || {
        has(&rec, &Got::Snapshot("r".into(), 1, 5))
    })
    .await;
    engine.publish_delta(delta("r", 1, 6, vec![]));
    engine.flush().await.unwrap();
    until("delta 6", || has(&rec, &Got::Delta("r".into(), 1, 6))).await;

    // The client leaves: after the linger time the race is dropped and forgotten.
    rec.watchers.lock().unwrap().insert("r".into(), 0);
    until("forgotten", || has(&rec, &Got::Forget("r".into()))).await;
    assert!(gw.watching().is_empty());
    let before = rec.got().len();
    engine.publish_delta(delta("r", 1, 7, vec![]));
    engine.flush().await.unwrap();
    crate::config::round_trip(gw.client(), Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rec.got().len(), before, "no frames after unfollowing");
}

#[tokio::test]
async fn a_tick_gap_makes_the_gateway_resync_from_a_snapshot() {
    let Some(server) = NatsServer::start("a_tick_gap_makes_the_gateway_resync", None) else {
        return;
    };
    let cfg = config(&server);
    let engine = NatsEngineBus::connect(&cfg).await.unwrap();
    engine.publish_snapshot(snapshot("r", 1, 0, vec![]));
    let rec = Arc::new(Recorder::default());
    let gw = NatsGatewayBus::connect(&cfg, rec.clone()).await.unwrap();
    rec.watchers.lock().unwrap().insert("r".into(), 1);
    gw.watch("r").unwrap();
    until("snapshot", || has(&rec, &Got::Snapshot("r".into(), 1, 0))).await;
    engine.publish_delta(delta("r", 1, 1, vec![]));
    // Ticks 2..=4 never reach the bus (as if dropped on a full queue).
    engine.publish_delta(delta("r", 1, 5, vec![rider(3, 1.0)]));
    engine.flush().await.unwrap();
    until("resync snapshot at 5", || {
        has(&rec, &Got::Snapshot("r".into(), 1, 5))
    })
    .await;
    assert!(
        !has(&rec, &Got::Delta("r".into(), 1, 5)),
        "gap delta not applied"
    );
    engine.publish_delta(delta("r", 1, 6, vec![]));
    engine.flush().await.unwrap();
    until("delta 6 after resync", || {
        has(&rec, &Got::Delta("r".into(), 1, 6))
    })
    .await;
}

#[tokio::test]
async fn alerts_and_a_new_epoch_reach_a_following_gateway() {
    let Some(server) = NatsServer::start("alerts_and_a_new_epoch", None) else {
        return;
    };
    let cfg = config(&server);
    let engine = NatsEngineBus::connect(&cfg).await.unwrap();
    engine.publish_snapshot(snapshot("r", 1, 3, vec![]));
    let rec = Arc::new(Recorder::default());
    let gw = NatsGatewayBus::connect(&cfg, rec.clone()).await.unwrap();
    rec.watchers.lock().unwrap().insert("r".into(), 1);
    gw.watch("r").unwrap();
    until("snapshot", || has(&rec, &Got::Snapshot("r".into(), 1, 3))).await;
    let alert = flevum_protocol::Alert {
        seq: 42,
        epoch: 1,
        time_ms: 0,
        race_time_ms: 0,
        course_km: 1.0,
        riders: vec![1],
        severity: flevum_protocol::Severity::Info,
        kind: flevum_protocol::AlertKind::RaceStarted,
    };
    engine.publish_alert("r", alert);
    // The engine restarted the race: a new epoch replaces the state.
    engine.publish_snapshot(snapshot("r", 2, 0, vec![]));
    engine.publish_delta(delta("r", 2, 1, vec![]));
    engine.flush().await.unwrap();
    until("alert, new epoch and its delta", || {
        has(&rec, &Got::Alert("r".into(), 42))
            && has(&rec, &Got::Snapshot("r".into(), 2, 0))
            && has(&rec, &Got::Delta("r".into(), 2, 1))
    })
    .await;
}

/// Echoes the method and body; fails on `fail`.
struct Echo;

impl ControlHandler for Echo {
    fn handle(&self, method: String, body: serde_json::Value) -> crate::control::ControlFuture {
        Box::pin(async move {
            if method == "fail" {
                return Err("refused".into());
            }
            Ok(serde_json::json!({ "method": method, "body": body }))
        })
    }
}

#[tokio::test]
async fn control_requests_are_answered_by_an_engine() {
    let Some(server) = NatsServer::start("control_requests_are_answered", None) else {
        return;
    };
    let cfg = config(&server);
    let gw = NatsGatewayBus::connect(&cfg, Arc::new(Recorder::default()))
        .await
        .unwrap();
    let none: Result<serde_json::Value, _> = gw.call("races", &()).await;
    assert!(matches!(none, Err(BusError::NoResponders(_))), "{none:?}");
    let engine = NatsEngineBus::connect(&cfg).await.unwrap();
    let task = crate::serve_control(engine.client(), Arc::new(Echo))
        .await
        .unwrap();
    let v: serde_json::Value = gw
        .call("standings", &serde_json::json!({ "race": "r" }))
        .await
        .unwrap();
    assert_eq!(v["method"], "standings");
    assert_eq!(v["body"]["race"], "r");
    let e: Result<serde_json::Value, _> = gw.call("fail", &()).await;
    assert!(matches!(e, Err(BusError::Remote(m)) if m == "refused"));
    task.abort();
}

#[tokio::test]
async fn a_second_engine_takes_over_a_race_and_replays_every_acknowledged_entry() {
    use crate::jetstream::{JetStreamConfig, JetStreamJournal, RaceLease, lease_bucket};
    let store = tempfile::tempdir().unwrap();
    let Some(mut server) =
        NatsServer::start("jetstream_takeover", Some(store.path().to_path_buf()))
    else {
        return;
    };
    let js = JetStreamConfig {
        replicas: 1,
        lease_ttl: Duration::from_secs(1),
    };
    let a = async_nats::connect(server.url()).await.unwrap();
    let b = async_nats::connect(server.url()).await.unwrap();
    let bucket_a = lease_bucket(a.clone(), &js).await.unwrap();
    let bucket_b = lease_bucket(b.clone(), &js).await.unwrap();
    let mut lease_a = RaceLease::try_acquire(&bucket_a, "r", "engine-a")
        .await
        .unwrap()
        .expect("a free race is taken");
    assert!(
        RaceLease::try_acquire(&bucket_b, "r", "engine-b")
            .await
            .unwrap()
            .is_none(),
        "a held race cannot be taken"
    );
    let journal_a = JetStreamJournal::open(a.clone(), "r", &js).await.unwrap();
    let mut acked = Vec::new();
    for batch in 0..10 {
        let entries: Vec<bytes::Bytes> = (0..10)
            .map(|i| bytes::Bytes::from(format!("fix-{}", batch * 10 + i)))
            .collect();
        let last = journal_a.append(entries.clone()).await.unwrap();
        assert_eq!(last, (batch + 1) * 10, "stream sequence of the last entry");
        acked.extend(entries);
        lease_a.renew().await.unwrap();
    }
    // Engine A dies: no more renewals, its connection goes away.
    drop((journal_a, lease_a, bucket_a, a));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let lease_b = loop {
        if let Some(l) = RaceLease::try_acquire(&bucket_b, "r", "engine-b")
            .await
            .unwrap()
        {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        RaceLease::owner(&bucket_b, "r").await.unwrap().as_deref(),
        Some("engine-b")
    );
    let mut journal_b = JetStreamJournal::open(b.clone(), "r", &js).await.unwrap();
    let mut replayed = Vec::new();
    assert_eq!(journal_b.replay(|e| replayed.push(e)).await.unwrap(), 100);
    assert_eq!(replayed, acked, "every acknowledged entry, in order");
    lease_b.release().await.unwrap();
    assert_eq!(RaceLease::owner(&bucket_b, "r").await.unwrap(), None);

    // The NATS server restarts: the acknowledged entries are still there.
    drop((journal_b, bucket_b, b));
    let port = server.port;
    server.kill();
    let server = NatsServer::start_on("jetstream_restart", port, Some(store.path().to_path_buf()))
        .expect("the server starts again");
    let c = async_nats::connect(server.url()).await.unwrap();
    let mut journal_c = JetStreamJournal::open(c, "r", &js).await.unwrap();
    let mut after = Vec::new();
    journal_c.replay(|e| after.push(e)).await.unwrap();
    assert_eq!(
        after, acked,
        "no acknowledged entry lost across a server restart"
    );
}

#[tokio::test]
async fn a_stale_writer_is_fenced_by_the_expected_last_sequence() {
    use crate::jetstream::{FencedAppendError, JetStreamConfig, JetStreamJournal};
    let store = tempfile::tempdir().unwrap();
    let Some(server) = NatsServer::start("jetstream_fencing", Some(store.path().to_path_buf()))
    else {
        return;
    };
    let js = JetStreamConfig::default();
    let old = JetStreamJournal::open(async_nats::connect(server.url()).await.unwrap(), "f", &js)
        .await
        .unwrap();
    let new = JetStreamJournal::open(async_nats::connect(server.url()).await.unwrap(), "f", &js)
        .await
        .unwrap();
    let ack = old.publish_after("a".into(), 0).await.unwrap();
    assert_eq!(old.acknowledged(ack).await.unwrap(), 1);
    // The new owner replays (last = 1) and appends; the old owner still expects 1.
    let last = new.replay_to_last(|_| {}).await.unwrap();
    assert_eq!(last, 1);
    let ack = new.publish_after("b".into(), last).await.unwrap();
    assert_eq!(new.acknowledged(ack).await.unwrap(), 2);
    let stale = match old.publish_after("stale".into(), 1).await {
        Ok(ack) => old.acknowledged(ack).await,
        Err(e) => Err(e),
    };
    assert!(
        matches!(stale, Err(FencedAppendError::WrongLastSequence(_))),
        "{stale:?}"
    );
    let mut all = Vec::new();
    assert_eq!(new.replay_to_last(|b| all.push(b)).await.unwrap(), 2);
    assert_eq!(all, ["a", "b"], "the stale write was not stored");
    assert_eq!(new.last_sequence().await.unwrap(), 2);
}
