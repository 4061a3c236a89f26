//! Groups of riders and their identity over time.
//!
//! Owns turning an ordered list of riders and the time gaps between neighbours into groups (a gap
//! above the threshold starts a new group; inside a group only one that lasts, see
//! [`SPLIT_CONFIRM_MS`]), keeping each group's id stable from tick to tick by rider overlap, and
//! naming roles (breakaway, peloton, chasers, stragglers). Does not compute gaps or raise alerts.

use std::collections::BTreeMap;

use flevum_protocol::GroupKind;

use crate::core::Millis;

/// A group as tracked over time.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedGroup {
    /// Stable id.
    pub id: u32,
    /// Riders, front first.
    pub riders: Vec<u32>,
    /// Role.
    pub kind: GroupKind,
    /// Distance of the front rider, metres.
    pub head_distance_m: f64,
    /// Time gap of the group's head to the tail of the group ahead, ms.
    pub gap_to_ahead_ms: Option<i64>,
    /// Time gap of the group's head to the race leader, ms.
    pub gap_to_leader_ms: Option<i64>,
    /// When this id first appeared.
    pub since_ms: Millis,
}

/// How long the gap from a rider to the rider ahead, in their group of the last update, must
/// stay above the group threshold before the group is shown split (the gap must then also exceed
/// the split margin), ms. Inside a big bunch, GPS noise and the order's reshuffles
/// open gaps of a few seconds for a tick or two; shown at once, they made a 70-rider "breakaway"
/// for four ticks and handed the peloton's id to another group when the halves merged again.
pub const SPLIT_CONFIRM_MS: Millis = 5_000;

/// Keeps group ids stable across ticks.
#[derive(Debug, Clone, Default)]
pub struct GroupTracker {
    /// Next id to hand out.
    next_id: u32,
    /// Groups of the last tick, front first.
    current: Vec<TrackedGroup>,
    /// Per rider slot: (update number, index in `current` of the rider's group at that update);
    /// an entry from an older update means "in no group", so the table never needs clearing.
    previous_of: Vec<(u64, u32)>,
    /// Updates so far (the stamp of `previous_of`).
    updates: u64,
    /// Scratch: groups formed this update as ranges of the road order.
    formed: Vec<(usize, usize)>,
    /// Scratch: (overlap, new group, old group) pairs.
    pairs: Vec<(usize, usize, usize)>,
    /// Scratch: old group indices of one new group's riders.
    olds: Vec<usize>,
    /// Rider lists of dropped groups, reused for new ones.
    spare_riders: Vec<Vec<u32>>,
    /// Riders whose gap to the rider ahead in their group is above the threshold: rider →
    /// (since when, update that last saw it), for [`SPLIT_CONFIRM_MS`]. Few riders at a time.
    splitting: BTreeMap<u32, (Millis, u64)>,
}

/// One rider in road order with the gap to the rider ahead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoadPosition {
    /// Rider.
    pub rider_id: u32,
    /// Distance along course, metres.
    pub distance_m: f64,
    /// Time gap to the rider directly ahead, ms (None for the first).
    pub gap_to_ahead_ms: Option<i64>,
    /// Time gap to the road leader, ms.
    pub gap_to_leader_ms: Option<i64>,
}

impl GroupTracker {
    /// Groups of the last update, front first.
    pub fn groups(&self) -> &[TrackedGroup] {
        &self.current
    }

    /// Takes the groups out (to read them while the caller mutates itself); give them back with
    /// [`GroupTracker::put_back`] before the next update.
    pub(crate) fn take_groups(&mut self) -> Vec<TrackedGroup> {
        std::mem::take(&mut self.current)
    }

    /// Returns the groups taken with [`GroupTracker::take_groups`].
    pub(crate) fn put_back(&mut self, groups: Vec<TrackedGroup>) {
        self.current = groups;
    }

    /// Forms groups from riders in road order (front first) and matches them to the previous ones.
    ///
    /// GPS noise makes gaps inside a bunch flicker around the threshold, so splitting has
    /// hysteresis: two riders who were together last tick part only once the gap has stayed
    /// above the threshold for [`SPLIT_CONFIRM_MS`] and exceeds it by a further threshold (at
    /// least 1 s); riders apart join again at the threshold.
    pub fn update(&mut self, now: Millis, road: &[RoadPosition], threshold_ms: i64) {
        let mut slots: BTreeMap<u32, usize> = BTreeMap::new();
        let ids = road
            .iter()
            .map(|p| p.rider_id)
            .chain(self.current.iter().flat_map(|g| g.riders.iter().copied()));
        for id in ids {
            let next = slots.len();
            slots.entry(id).or_insert(next);
        }
        let count = slots.len();
        self.update_with(now, road, threshold_ms, |id| slots[&id], count);
    }

    /// [`GroupTracker::update`] for callers that number their riders densely: `slot_of` maps
    /// every rider id of `road` and of the previous groups to a slot below `slots`, the same slot
    /// for the same rider at every update.
    pub fn update_with(
        &mut self,
        now: Millis,
        road: &[RoadPosition],
        threshold_ms: i64,
        slot_of: impl Fn(u32) -> usize,
        slots: usize,
    ) {
        self.updates += 1;
        let stamp = self.updates;
        if self.previous_of.len() < slots {
            self.previous_of.resize(slots, (0, 0));
        }
        for (gi, g) in self.current.iter().enumerate() {
            for &r in &g.riders {
                self.previous_of[slot_of(r)] = (stamp, gi as u32);
            }
        }
        let previous_of = |id: u32| match self.previous_of[slot_of(id)] {
            (s, gi) if s == stamp => Some(gi as usize),
            _ => None,
        };
        let split_margin = threshold_ms.max(1000);
        let formed = &mut self.formed;
        let splitting = &mut self.splitting;
        formed.clear();
        for (i, p) in road.iter().enumerate() {
            let together_before = |last: &RoadPosition| {
                let before = previous_of(last.rider_id);
                before.is_some() && before == previous_of(p.rider_id)
            };
            let joins = match (formed.last(), p.gap_to_ahead_ms) {
                (Some(_), Some(gap)) if gap <= threshold_ms => true,
                (Some(g), Some(gap)) if together_before(&road[g.1 - 1]) => {
                    // The split's clock runs while the gap stays above the threshold, noise
                    // around the margin included; the group parts once it has run
                    // SPLIT_CONFIRM_MS and the gap is beyond the margin.
                    let since = splitting.entry(p.rider_id).or_insert((now, stamp));
                    since.1 = stamp;
                    gap <= threshold_ms + split_margin || now - since.0 < SPLIT_CONFIRM_MS
                }
                _ => false,
            };
            match formed.last_mut() {
                Some(g) if joins => g.1 = i + 1,
                _ => formed.push((i, i + 1)),
            }
        }
        // A split not seen this update (the gap closed to the threshold, or the rider parted)
        // starts over.
        if !splitting.is_empty() {
            splitting.retain(|_, (_, seen)| *seen == stamp);
        }
        // Overlap of every (new, old) pair; greedily give each old id to its best new group.
        let pairs = &mut self.pairs;
        pairs.clear();
        for (ni, &(from, to)) in formed.iter().enumerate() {
            let olds = &mut self.olds;
            olds.clear();
            olds.extend(
                road[from..to]
                    .iter()
                    .filter_map(|p| previous_of(p.rider_id)),
            );
            olds.sort_unstable();
            let mut k = 0;
            while k < olds.len() {
                let oi = olds[k];
                let run = olds[k..].iter().take_while(|&&o| o == oi).count();
                pairs.push((run, ni, oi));
                k += run;
            }
        }
        // Largest overlap first; ties by road order of the new group, then the old one.
        pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut new_id: Vec<Option<(u32, Millis)>> = vec![None; formed.len()];
        let mut old_taken = vec![false; self.current.len()];
        for &(_, ni, oi) in pairs.iter() {
            if new_id[ni].is_none() && !old_taken[oi] {
                new_id[ni] = Some((self.current[oi].id, self.current[oi].since_ms));
                old_taken[oi] = true;
            }
        }
        let old = std::mem::take(&mut self.current);
        self.spare_riders
            .extend(old.into_iter().map(|g| g.riders).map(|mut v| {
                v.clear();
                v
            }));
        let mut next: Vec<TrackedGroup> = Vec::with_capacity(formed.len());
        for (&(from, to), id) in formed.iter().zip(new_id) {
            let (id, since_ms) = id.unwrap_or_else(|| {
                self.next_id += 1;
                (self.next_id, now)
            });
            let mut riders = self.spare_riders.pop().unwrap_or_default();
            riders.extend(road[from..to].iter().map(|p| p.rider_id));
            let head = &road[from];
            next.push(TrackedGroup {
                id,
                riders,
                kind: GroupKind::Stragglers,
                head_distance_m: head.distance_m,
                gap_to_ahead_ms: head.gap_to_ahead_ms,
                gap_to_leader_ms: head.gap_to_leader_ms,
                since_ms,
            });
        }
        classify(&mut next);
        self.current = next;
    }
}

/// Names roles: the largest group is the peloton (the front-most on a tie), the first group ahead
/// of it the breakaway, other groups ahead or groups of three or more behind are chasers, the rest
/// stragglers.
fn classify(groups: &mut [TrackedGroup]) {
    let Some(peloton) = groups
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.riders.len().cmp(&b.1.riders.len()).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
    else {
        return;
    };
    for (i, g) in groups.iter_mut().enumerate() {
        g.kind = if i == peloton {
            GroupKind::Peloton
        } else if i == 0 {
            GroupKind::Breakaway
        } else if i < peloton || g.riders.len() >= 3 {
            GroupKind::Chasers
        } else {
            GroupKind::Stragglers
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn road(gaps: &[(u32, i64)]) -> Vec<RoadPosition> {
        let mut d = 10_000.0;
        gaps.iter()
            .enumerate()
            .map(|(i, &(rider_id, gap))| {
                d -= gap as f64 / 100.0;
                RoadPosition {
                    rider_id,
                    distance_m: d,
                    gap_to_ahead_ms: (i > 0).then_some(gap),
                    gap_to_leader_ms: Some(0),
                }
            })
            .collect()
    }

    #[test]
    fn ids_survive_and_splits_get_new_ids() {
        let mut t = GroupTracker::default();
        t.update(
            0,
            &road(&[
                (1, 0),
                (2, 500),
                (3, 400),
                (4, 30_000),
                (5, 300),
                (6, 300),
                (7, 200),
            ]),
            1000,
        );
        let g = t.groups();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].kind, GroupKind::Breakaway);
        assert_eq!(g[1].kind, GroupKind::Peloton);
        let (bid, pid) = (g[0].id, g[1].id);
        // Rider 3 is dropped from the breakaway: shown once the gap has lasted
        // SPLIT_CONFIRM_MS; the peloton keeps its id.
        let dropped = road(&[
            (1, 0),
            (2, 500),
            (3, 5000),
            (4, 30_000),
            (5, 300),
            (6, 300),
            (7, 200),
        ]);
        for t_ms in (1000..=SPLIT_CONFIRM_MS).step_by(1000) {
            t.update(t_ms, &dropped, 1000);
            assert_eq!(t.groups().len(), 2, "split shown at {t_ms} ms");
            assert_eq!(t.groups()[0].riders, vec![1, 2, 3]);
        }
        t.update(SPLIT_CONFIRM_MS + 1000, &dropped, 1000);
        let g = t.groups();
        assert_eq!(g.len(), 3);
        assert_eq!((g[0].id, g[2].id), (bid, pid));
        assert_ne!(g[1].id, bid);
        assert_eq!(g[1].since_ms, SPLIT_CONFIRM_MS + 1000);
        assert_eq!(g[1].kind, GroupKind::Chasers);
    }

    #[test]
    fn a_gap_wavering_in_the_margin_splits_after_the_confirmation() {
        let mut t = GroupTracker::default();
        t.update(0, &road(&[(1, 0), (2, 300), (3, 300)]), 1000);
        // The gap behind rider 2 stays above the 1 s threshold but wavers around threshold +
        // margin (2 s): the split shows at the first tick beyond the margin once 5 s have run.
        let gaps = [2500, 1500, 2500, 1500, 2500, 1500, 2500];
        for (i, gap) in gaps.into_iter().enumerate() {
            let t_ms = 1000 * (i as i64 + 1);
            t.update(t_ms, &road(&[(1, 0), (2, 300), (3, gap)]), 1000);
            let split = t_ms - 1000 >= SPLIT_CONFIRM_MS && gap > 2000;
            assert_eq!(t.groups().len(), if split { 2 } else { 1 }, "at {t_ms} ms");
        }
    }

    #[test]
    fn a_split_shows_only_after_lasting_the_confirmation() {
        let mut t = GroupTracker::default();
        let bunch = road(&[(1, 0), (2, 300), (3, 300), (4, 300)]);
        t.update(0, &bunch, 1000);
        let id = t.groups()[0].id;
        // A 3 s hole opens behind rider 2 for four ticks, closes, and opens again: each
        // opening counts from its own start.
        let holed = road(&[(1, 0), (2, 300), (3, 3000), (4, 300)]);
        for (t_ms, bunched) in [
            (1000, false),
            (2000, false),
            (3000, false),
            (4000, false),
            (5000, true),
            (6000, false),
            (7000, false),
            (8000, false),
            (9000, false),
            (10_000, false),
        ] {
            t.update(t_ms, if bunched { &bunch } else { &holed }, 1000);
            assert_eq!(t.groups().len(), 1, "split at {t_ms} ms");
            assert_eq!(t.groups()[0].id, id);
        }
        // The second opening has lasted SPLIT_CONFIRM_MS: now it splits, the front keeps the id.
        // (Its clock runs while the gap is above the threshold, even where it dips into the
        // margin; see `a_gap_wavering_in_the_margin_splits_after_the_confirmation`.)
        t.update(6000 + SPLIT_CONFIRM_MS, &holed, 1000);
        let g = t.groups();
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].id, g[0].riders.clone()), (id, vec![1, 2]));
    }
}
