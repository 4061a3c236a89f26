//! [`SnapshotMerger`]: a race's current state rebuilt from its published snapshot and deltas,
//! the one merge rule shared by the gateway hub (snapshots for new fans) and the NATS engine bus
//! (`race.<id>.snapshot` answers). Does not encode or publish.

use std::collections::HashMap;

use crate::frames::{Delta, Snapshot};

/// A race's merged state.
#[derive(Debug, Clone)]
pub struct SnapshotMerger {
    /// The state as of the last applied frame.
    snapshot: Snapshot,
    /// Rider id → index in `snapshot.states`.
    index: HashMap<u32, usize>,
    /// Alerts kept in the merged snapshot's `recent_alerts`.
    recent_alerts: usize,
}

impl SnapshotMerger {
    /// Starts from a snapshot, keeping the last `recent_alerts` alerts in it.
    pub fn new(snapshot: Snapshot, recent_alerts: usize) -> SnapshotMerger {
        let index = snapshot
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.rider_id, i))
            .collect();
        SnapshotMerger {
            snapshot,
            index,
            recent_alerts,
        }
    }

    /// The merged state.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// `(epoch, tick)` of the merged state.
    pub fn position(&self) -> (u64, u64) {
        (self.snapshot.epoch, self.snapshot.tick)
    }

    /// Applies a delta of the same epoch that is newer than the state; returns false (and
    /// changes nothing) for a stale or foreign-epoch delta.
    pub fn apply(&mut self, delta: &Delta) -> bool {
        let s = &mut self.snapshot;
        if delta.epoch != s.epoch || delta.tick <= s.tick {
            return false;
        }
        s.tick = delta.tick;
        s.time_ms = delta.time_ms;
        for state in &delta.states {
            match self.index.get(&state.rider_id) {
                Some(&i) if i < s.states.len() => s.states[i] = state.clone(),
                _ => {
                    s.states.push(state.clone());
                    self.index.insert(state.rider_id, s.states.len() - 1);
                }
            }
        }
        if let Some(groups) = &delta.groups {
            s.groups = groups.clone();
        }
        s.recent_alerts.extend(delta.alerts.iter().cloned());
        let excess = s.recent_alerts.len().saturating_sub(self.recent_alerts);
        s.recent_alerts.drain(..excess);
        true
    }
}
