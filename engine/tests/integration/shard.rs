//! The race shard: journal before apply, live ticks publishing deltas, durable sequence numbers,
//! and recovery from the journal to the same race state after a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flevum_engine::core::{Course, CourseIndex};
use flevum_engine::journal::JournalConfig;
use flevum_engine::shard::{FramePublisher, ShardConfig, open_race, wall_ms};
use flevum_engine::simulator::{SimConfig, Simulation};
use flevum_protocol::{Alert, Delta, Snapshot};
use tokio::sync::oneshot;

/// Collects what the shard publishes.
#[derive(Default)]
struct Collector {
    snapshots: Mutex<Vec<Snapshot>>,
    deltas: Mutex<Vec<Delta>>,
    alerts: Mutex<Vec<Alert>>,
}

impl FramePublisher for Collector {
    fn snapshot(&self, snapshot: Snapshot) {
        self.snapshots.lock().unwrap().push(snapshot);
    }
    fn delta(&self, delta: Delta) {
        self.deltas.lock().unwrap().push(delta);
    }
    fn alert(&self, _race_id: &str, alert: Alert) {
        self.alerts.lock().unwrap().push(alert);
    }
}

/// A shard journaling into `dir`, ticking every 50 ms on the wall clock.
fn shard_config(dir: &std::path::Path) -> ShardConfig {
    ShardConfig {
        journal: JournalConfig {
            dir: dir.to_path_buf(),
            ..JournalConfig::default()
        },
        tick_interval: Duration::from_millis(50),
        command_queue: 64,
        clock: Default::default(),
    }
}

fn demo_course() -> CourseIndex {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/courses/flevum_demo.gpx");
    CourseIndex::new(Course::from_gpx_file(path).expect("the demo course loads"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_applies_durable_fixes_and_recovers_the_same_state_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = shard_config(dir.path());
    let now = wall_ms();
    let mut sim = Simulation::new(
        demo_course(),
        SimConfig {
            riders: 12,
            start_ms: now - 15 * 60_000,
            ..SimConfig::default()
        },
    );
    let race_config = sim.race_config("shard-test", "Shard test");
    let events = sim.step_until(now - 5_000);
    assert!(
        events.len() > 1000,
        "the simulation produced {} fixes",
        events.len()
    );

    let collector = Arc::new(Collector::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let (race, report, task) = open_race(
        &config,
        race_config.clone(),
        sim.course().clone(),
        collector.clone(),
        async move {
            let _ = stopped.await;
        },
    )
    .unwrap();
    assert_eq!(report.fixes, 0);
    assert_eq!(collector.snapshots.lock().unwrap().len(), 1);

    let mut by_rider: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for e in &events {
        by_rider.entry(e.rider_id).or_default().push(e.record);
    }
    for (rider, records) in &by_rider {
        for chunk in records.chunks(50) {
            race.submit(*rider, chunk.to_vec()).await.unwrap();
        }
    }
    // Every rider's device is acknowledged up to its last sequence number.
    for (rider, records) in &by_rider {
        let last = records.iter().map(|r| r.seq).max().unwrap();
        assert_eq!(race.durable_seq(*rider), last, "rider {rider}");
    }
    // The live shard ticks and publishes deltas with the riders on the road.
    let mut views = BTreeMap::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        views = race
            .query(|r| {
                r.views()
                    .iter()
                    .map(|v| (v.rider_id, v.distance_m))
                    .collect::<BTreeMap<u32, f64>>()
            })
            .await
            .unwrap();
        if views.len() == by_rider.len() && views.values().all(|d| *d > 1000.0) {
            break;
        }
    }
    assert_eq!(views.len(), by_rider.len());
    assert!(
        views.values().all(|d| *d > 1000.0),
        "riders progressed: {views:?}"
    );
    assert!(!collector.deltas.lock().unwrap().is_empty());
    assert!(
        collector
            .alerts
            .lock()
            .unwrap()
            .iter()
            .any(|a| matches!(a.kind, flevum_protocol::AlertKind::RaceStarted)),
        "the race-started alert was published"
    );

    let _ = stop.send(());
    task.await.unwrap();
    drop(race);

    // Restart: the journal replays into a fresh core with the same progress per rider.
    let collector2 = Arc::new(Collector::default());
    let (_stop2, stopped2) = oneshot::channel::<()>();
    let (race2, report2, _task2) = open_race(
        &config,
        race_config,
        sim.course().clone(),
        collector2.clone(),
        async move {
            let _ = stopped2.await;
        },
    )
    .unwrap();
    assert_eq!(report2.fixes, events.len() as u64);
    let recovered = race2
        .query(|r| {
            r.views()
                .iter()
                .map(|v| (v.rider_id, v.distance_m))
                .collect::<BTreeMap<u32, f64>>()
        })
        .await
        .unwrap();
    assert_eq!(
        recovered, views,
        "recovered progress equals the live progress"
    );
    for (rider, records) in &by_rider {
        let last = records.iter().map(|r| r.seq).max().unwrap();
        assert_eq!(
            race2.durable_seq(*rider),
            last,
            "rider {rider} after restart"
        );
    }
    let snap = &collector2.snapshots.lock().unwrap()[0];
    assert_eq!(
        snap.states.len(),
        by_rider.len(),
        "the recovered snapshot has every rider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_publish_delay_a_reopened_race_resumes_its_delayed_feed() {
    const DELAY_MS: i64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let config = shard_config(dir.path());
    let mut sim = Simulation::new(
        demo_course(),
        SimConfig {
            riders: 3,
            start_ms: wall_ms() - 60_000,
            ..SimConfig::default()
        },
    );
    let mut race_config = sim.race_config("delayed", "Delayed");
    race_config.publish_delay_s = (DELAY_MS / 1000) as u32;
    let course = sim.course().clone();
    let open = |collector: Arc<Collector>| {
        let (stop, stopped) = oneshot::channel::<()>();
        let (race, _report, task) = open_race(
            &config,
            race_config.clone(),
            course.clone(),
            collector,
            async move {
                let _ = stopped.await;
            },
        )
        .unwrap();
        (race, stop, task)
    };

    // Three seconds of live fixes, journaled as they come.
    let first = Arc::new(Collector::default());
    let (race, stop, task) = open(first.clone());
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        for e in sim.step_until(wall_ms()) {
            race.submit(e.rider_id, vec![e.record]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.unwrap();
    drop(race);

    // Reopened from the journal: fans see at once the race as it was the delay ago (published
    // as it is now, it would show them the live race), not nothing for the length of the delay.
    let second = Arc::new(Collector::default());
    let reopened_ms = wall_ms();
    let reopened = std::time::Instant::now();
    let (_race, stop, task) = open(second.clone());
    let opening = {
        let snapshots = second.snapshots.lock().unwrap();
        assert_eq!(snapshots.len(), 1, "one snapshot, published at open");
        snapshots[0].clone()
    };
    assert!(
        opening.time_ms <= reopened_ms - DELAY_MS + 100,
        "the opening snapshot is of {} ms before the reopening, not the delay ago",
        reopened_ms - opening.time_ms
    );
    assert!(
        opening.states.iter().any(|v| v.last_fix_ms > 0),
        "the replayed race had moved by then"
    );
    // Then the replayed ticks since, in order and without a gap, and the live ticks after them,
    // a live tick only once the delay has passed.
    let deadline = reopened + Duration::from_secs(10);
    loop {
        let live = second
            .deltas
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.time_ms >= reopened_ms);
        if live {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no live delta came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reopened.elapsed() >= Duration::from_millis(DELAY_MS as u64 - 50),
        "a live tick was published {:?} after the reopening, before the delay",
        reopened.elapsed()
    );
    let ticks: Vec<u64> = second
        .deltas
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.tick)
        .collect();
    let expected: Vec<u64> = (opening.tick + 1..).take(ticks.len()).collect();
    assert_eq!(
        ticks, expected,
        "every tick after the opening snapshot, in order"
    );
    let _ = stop.send(());
    task.await.unwrap();
}
