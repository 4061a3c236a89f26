//! Flevum bus: how a race's frames (snapshots, per-tick deltas) and alerts travel from the engine
//! that owns the race to the gateways that serve its fans, in-process or over NATS.
//!
//! Owns the engine-side [`Bus`] and gateway-side [`FrameSink`] traits, the in-process bus (the
//! `flevum serve` default), the NATS bus (subjects `race.<id>.frames|alerts|snapshot`) and the
//! control request/reply the split gateway uses to ask an engine. Holds no race logic.

#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod jetstream;
pub mod metrics;
pub mod subjects;
pub mod testnats;

#[cfg(test)]
mod nats_tests;

use std::sync::Arc;

use flevum_protocol::{Alert, Delta, Snapshot};

/// The NATS client this bus is built on, for the binary's JetStream adapter (one copy).
pub use async_nats;
/// The byte buffers of NATS payloads.
pub use bytes;
pub use config::BusConfig;
pub use control::{
    ControlHandler, RaceControlServer, call_race, serve_control, serve_race_control,
};
pub use engine::NatsEngineBus;
pub use error::BusError;
pub use gateway::NatsGatewayBus;

/// The engine side of the bus: where a race shard's frames go. Calls never wait for the network
/// or a client; a bus that cannot keep up drops frames and counts them (receivers resync).
pub trait Bus: Send + Sync + 'static {
    /// The full state of a race, at open and after recovery (a new epoch).
    fn publish_snapshot(&self, snapshot: Snapshot);
    /// One tick's changes of a race.
    fn publish_delta(&self, delta: Delta);
    /// One alert of a race, for the commentators' feed.
    fn publish_alert(&self, race_id: &str, alert: Alert);
    /// Reads the race's state as published so far (behind its publish delay: what its fans
    /// see) in place, if this bus keeps it: `read` runs once with it and true is returned.
    fn read_published(&self, _race_id: &str, _read: &mut dyn FnMut(&Snapshot)) -> bool {
        false
    }
    /// Whether this bus keeps the published state, so that false from
    /// [`Bus::read_published`] means "nothing published yet".
    fn keeps_published(&self) -> bool {
        false
    }
}

/// The gateway side of the bus: what received frames are fed into (the gateway's live hub).
pub trait FrameSink: Send + Sync + 'static {
    /// Replaces the race's state.
    fn snapshot(&self, snapshot: Snapshot);
    /// Applies one tick's changes.
    fn delta(&self, delta: Delta);
    /// Adds an alert to the race's feed.
    fn alert(&self, race_id: &str, alert: Alert);
    /// Clients currently watching the race (live frames or alerts); a bus that follows races
    /// on demand stops following one that stayed at zero for its linger time.
    fn watchers(&self, race_id: &str) -> usize;
    /// The bus stopped following the race: drop its state so a later watch starts afresh.
    fn forget(&self, race_id: &str);
}

/// The in-process bus (the embedded default): the engine's frames go straight into the sink.
#[derive(Clone)]
pub struct InProcessBus {
    /// The gateway's hub (through an adapter of the binary).
    sink: Arc<dyn FrameSink>,
}

impl InProcessBus {
    /// A bus that hands every frame to `sink` on the caller's task.
    pub fn new(sink: Arc<dyn FrameSink>) -> InProcessBus {
        InProcessBus { sink }
    }
}

impl Bus for InProcessBus {
    fn publish_snapshot(&self, snapshot: Snapshot) {
        self.sink.snapshot(snapshot);
    }
    fn publish_delta(&self, delta: Delta) {
        self.sink.delta(delta);
    }
    fn publish_alert(&self, race_id: &str, alert: Alert) {
        self.sink.alert(race_id, alert);
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Frames and a recording sink shared by the unit tests.
    use super::*;
    use flevum_protocol::{CourseSummary, RiderStatus, RiderView};
    use std::sync::Mutex;

    /// A rider view at `distance_m`.
    pub fn rider(id: u32, distance_m: f64) -> RiderView {
        RiderView {
            rider_id: id,
            lat: 52.0,
            lon: 5.0,
            distance_m,
            speed_kmh: 30.0,
            rank: id,
            gap_to_leader_ms: None,
            gap_to_ahead_ms: None,
            group_id: None,
            status: RiderStatus::Racing,
            last_fix_ms: 1_700_000_000_000,
            eta_finish_ms: None,
            battery_pct: None,
        }
    }

    /// A snapshot of race `race`.
    pub fn snapshot(race: &str, epoch: u64, tick: u64, states: Vec<RiderView>) -> Snapshot {
        Snapshot {
            race_id: race.into(),
            race_name: "Test".into(),
            epoch,
            tick,
            time_ms: 1_700_000_000_000,
            start_ms: 1_700_000_000_000,
            course: CourseSummary {
                name: "c".into(),
                length_m: 1000.0,
                ascent_m: 0.0,
                line: vec![[5.0, 52.0], [5.1, 52.1]],
                checkpoints: vec![],
            },
            riders: vec![],
            states,
            groups: vec![],
            recent_alerts: vec![],
        }
    }

    /// A delta of race `race`.
    pub fn delta(race: &str, epoch: u64, tick: u64, states: Vec<RiderView>) -> Delta {
        Delta {
            race_id: race.into(),
            epoch,
            tick,
            time_ms: 1_700_000_000_000 + tick as i64 * 1000,
            states,
            groups: None,
            alerts: vec![],
        }
    }

    /// What a sink received, in order.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Got {
        /// A snapshot `(race, epoch, tick)`.
        Snapshot(String, u64, u64),
        /// A delta `(race, epoch, tick)`.
        Delta(String, u64, u64),
        /// An alert `(race, seq)`.
        Alert(String, u64),
        /// A forget.
        Forget(String),
    }

    /// Records everything; `watchers` answers from a settable count.
    #[derive(Default)]
    pub struct Recorder {
        /// Received, in order.
        pub got: Mutex<Vec<Got>>,
        /// Watchers per race.
        pub watchers: Mutex<std::collections::HashMap<String, usize>>,
    }

    impl Recorder {
        /// A copy of what was received.
        pub fn got(&self) -> Vec<Got> {
            self.got.lock().map(|g| g.clone()).unwrap_or_default()
        }
    }

    impl FrameSink for Recorder {
        fn snapshot(&self, s: Snapshot) {
            if let Ok(mut g) = self.got.lock() {
                g.push(Got::Snapshot(s.race_id, s.epoch, s.tick));
            }
        }
        fn delta(&self, d: Delta) {
            if let Ok(mut g) = self.got.lock() {
                g.push(Got::Delta(d.race_id, d.epoch, d.tick));
            }
        }
        fn alert(&self, race_id: &str, a: Alert) {
            if let Ok(mut g) = self.got.lock() {
                g.push(Got::Alert(race_id.into(), a.seq));
            }
        }
        fn watchers(&self, race_id: &str) -> usize {
            self.watchers
                .lock()
                .ok()
                .and_then(|w| w.get(race_id).copied())
                .unwrap_or(0)
        }
        fn forget(&self, race_id: &str) {
            if let Ok(mut g) = self.got.lock() {
                g.push(Got::Forget(race_id.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn in_process_bus_forwards_in_order() {
        let rec = Arc::new(Recorder::default());
        let bus = InProcessBus::new(rec.clone());
        bus.publish_snapshot(snapshot("r", 1, 0, vec![]));
        bus.publish_delta(delta("r", 1, 1, vec![rider(1, 10.0)]));
        assert_eq!(
            rec.got(),
            [
                Got::Snapshot("r".into(), 1, 0),
                Got::Delta("r".into(), 1, 1)
            ]
        );
    }
}

#[cfg(test)]
mod merge_tests {
    //! The shared merge rule, exercised with the bus's frames.
    use crate::testutil::{delta, rider, snapshot};
    use flevum_protocol::SnapshotMerger;

    #[test]
    fn deltas_merge_and_stale_ones_are_refused() {
        let mut m =
            SnapshotMerger::new(snapshot("r", 1, 0, vec![rider(1, 0.0), rider(2, 0.0)]), 50);
        assert!(m.apply(&delta("r", 1, 1, vec![rider(2, 50.0), rider(3, 5.0)])));
        assert_eq!(m.position(), (1, 1));
        let s = m.snapshot();
        assert_eq!(s.states.len(), 3);
        assert_eq!(s.states[1].distance_m, 50.0);
        assert!(!m.apply(&delta("r", 1, 1, vec![rider(9, 0.0)])), "stale");
        assert!(
            !m.apply(&delta("r", 2, 5, vec![rider(9, 0.0)])),
            "other epoch"
        );
        assert_eq!(m.snapshot().states.len(), 3);
    }
}
