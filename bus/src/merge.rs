//! [`SnapshotMerger`]: a race's current state rebuilt from its published snapshot and deltas,
//! so an engine can answer `race.<id>.snapshot` with exactly what fans have been shown (after
//! the organiser's publish delay, not the shard's live state).
//!
//! Mirrors the gateway hub's merge rules; does not encode or publish.

use std::collections::HashMap;

use flevum_protocol::{Delta, Snapshot};

/// Alerts kept in a merged snapshot's `recent_alerts`.
const RECENT_ALERTS: usize = 50;

/// A race's merged state.
#[derive(Debug, Clone)]
pub struct SnapshotMerger {
    /// The state as of the last applied frame.
    snapshot: Snapshot,
    /// Rider id → index in `snapshot.states`.
    index: HashMap<u32, usize>,
}

impl SnapshotMerger {
    /// Starts from a snapshot.
    pub fn new(snapshot: Snapshot) -> SnapshotMerger {
        let index = snapshot
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.rider_id, i))
            .collect();
        SnapshotMerger { snapshot, index }
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
        let excess = s.recent_alerts.len().saturating_sub(RECENT_ALERTS);
        s.recent_alerts.drain(..excess);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{delta, rider, snapshot};

    #[test]
    fn deltas_merge_and_stale_ones_are_refused() {
        let mut m = SnapshotMerger::new(snapshot("r", 1, 0, vec![rider(1, 0.0), rider(2, 0.0)]));
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
