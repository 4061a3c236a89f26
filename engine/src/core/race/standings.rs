//! The standings a tick publishes: time gaps along the road order (from stored passage times,
//! memoised per rider), ranks, each rider's view and the delta of the views that changed.
//! Does not apply fixes or raise alerts.

use flevum_protocol::{Delta, GroupView, RiderStatus, RiderView};

use super::live::RiderFacts;
use super::rider::RiderTrack;
use super::{Millis, Race, RaceOutput, TickWork, groups::RoadPosition};

/// Rounds a time to the nearest 100 ms (fans see tenths of a second).
fn round_100(ms: i64) -> i64 {
    match u64::try_from(ms + 50) {
        // Gaps are never negative: there the Euclidean division is the unsigned one, which
        // costs a few instructions less (two gaps a rider, every tick).
        Ok(m) => (m / 100 * 100) as i64,
        Err(_) => (ms + 50).div_euclid(100) * 100,
    }
}

/// A rider's cycling time gap to `ahead` from the rider's last passage `(d, t)`: how long ago
/// `ahead` passed (or, projected, will pass) distance `d`. Read from `ahead`'s facts, and from
/// its passage log only when the tail in the facts does not decide.
fn gap_behind_facts(facts: &RiderFacts, ahead: &RiderTrack, d: f64, t: Millis) -> Option<i64> {
    let passed = facts
        .time_at_from_tail(d)
        .unwrap_or_else(|| ahead.time_at(d));
    facts
        .or_projected(d, passed)
        .map(|passed| (t - passed).max(0))
}

/// The same gap as [`gap_behind_facts`], searching `ahead`'s passage log from a hint (see
/// [`RiderTrack::time_at_near`]): for the gaps of every rider to the leader, in road order.
fn gap_behind_near(ahead: &RiderTrack, d: f64, t: Millis, hint: &mut usize) -> Option<i64> {
    ahead
        .time_at_or_projected_near(d, hint)
        .map(|passed| (t - passed).max(0))
}

impl Race {
    /// Riders on the road (racing, stopped, off course), front first, with cycling time gaps.
    /// Riders report at different moments, so the order compares everyone at one reference time
    /// (the watermark), projecting each rider from their last fix at their own speed: the runs
    /// of `apply_due` sorted their riders so, and merged them into `work.road_entries`.
    pub(super) fn update_road(&mut self) {
        let tick = self.tick;
        let work = &mut self.work;
        // The runs that applied the fixes sorted their riders on the road, and `apply_due`
        // merged them.
        let entries = &work.road_entries;
        let road = &mut work.road;
        road.clear();
        let leader = entries.first().map(|e| e.slot());
        // Riders come in road order, so each gap to the leader is read near the previous one.
        let mut leader_hint = usize::MAX;
        for (i, e) in entries.iter().enumerate() {
            let slot = e.slot() as usize;
            let Some((d, t)) = self.facts[slot].last_passage else {
                // Not reached: a rider is on the road only with a last passage.
                continue;
            };
            work.road_index[slot] = (tick, road.len() as u32);
            let memo = &mut work.gaps[slot];
            let changed = self.changed_tick[slot];
            let gap_to_ahead_ms = if i == 0 {
                None
            } else {
                let ahead = entries[i - 1].slot();
                let ahead_changed = self.changed_tick[ahead as usize];
                if memo.ahead != ahead
                    || memo.ahead_tick < changed
                    || memo.ahead_tick < ahead_changed
                {
                    memo.ahead = ahead;
                    memo.ahead_tick = tick;
                    let a = ahead as usize;
                    memo.ahead_gap = gap_behind_facts(&self.facts[a], &self.riders[a], d, t);
                }
                memo.ahead_gap
            };
            let gap_to_leader_ms = match leader {
                Some(l) => {
                    let leader_changed = self.changed_tick[l as usize];
                    if memo.leader != l
                        || memo.leader_tick < changed
                        || memo.leader_tick < leader_changed
                    {
                        memo.leader = l;
                        memo.leader_tick = tick;
                        memo.leader_gap =
                            gap_behind_near(&self.riders[l as usize], d, t, &mut leader_hint);
                    }
                    memo.leader_gap
                }
                None => None,
            };
            road.push(RoadPosition {
                rider_id: e.rider_id(),
                distance_m: d,
                gap_to_ahead_ms,
                gap_to_leader_ms,
            });
        }
    }

    /// Notes which group (by index) every rider on the road is in this tick.
    pub(super) fn index_groups(&mut self) {
        let tick = self.tick;
        for (gi, g) in self.groups.groups().iter().enumerate() {
            for &r in &g.riders {
                if let Some(slot) = self.slots.get(r) {
                    self.work.group_of[slot] = (tick, gi as u32);
                }
            }
        }
    }

    /// Index (in the tracker's groups) of a rider's group this tick.
    pub(super) fn group_index_of_slot(&self, slot: usize) -> Option<usize> {
        match self.work.group_of[slot] {
            (t, gi) if t == self.tick => Some(gi as usize),
            _ => None,
        }
    }

    /// Standings: finishers by finish time (less any the organiser abandoned), then riders on
    /// the road by distance, then riders whose signal is lost by their last distance. Fills the
    /// dense rank array (0 = unranked; a rider listed twice keeps the later place).
    pub(super) fn rank_riders(&mut self) {
        let tick = self.tick;
        let work = &mut self.work;
        work.rank.fill(0);
        let mut place = 0u32;
        let mut put = |slot: usize, work: &mut TickWork| {
            place += 1;
            work.rank[slot] = place;
            work.placed[slot] = tick;
        };
        for &(id, _) in &self.finish_order {
            // A finisher the organiser took out of the race (disqualified) holds no place.
            if let Some(slot) = self.slots.get(id)
                && !self.abandoned[slot]
            {
                put(slot, work);
            }
        }
        for i in 0..work.road.len() {
            if let Some(slot) = self.slots.get(work.road[i].rider_id) {
                put(slot, work);
            }
        }
        let mut rest: Vec<(f64, u32, usize)> = (0..self.riders.len())
            .filter(|&s| work.statuses[s] == RiderStatus::SignalLost && work.placed[s] != tick)
            .filter_map(|s| Some((self.facts[s].last_passage?.0, self.slots.id(s), s)))
            .collect();
        rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, slot) in rest {
            put(slot, work);
        }
    }

    /// A rider's view this tick, from the cached facts and this tick's standings.
    pub(super) fn view_of(&self, slot: usize, first_finish: Option<Millis>) -> RiderView {
        let facts = &self.facts[slot];
        let status = self.work.statuses[slot];
        let road = match self.work.road_index[slot] {
            (t, i) if t == self.tick => self.work.road.get(i as usize),
            _ => None,
        };
        // An abandoned finisher (disqualified) is not measured against the winner.
        let finish_gap = facts
            .finish_time
            .filter(|_| status != RiderStatus::Abandoned)
            .and_then(|t| first_finish.map(|w| t - w));
        RiderView {
            rider_id: self.slots.id(slot),
            lat: facts.view_lat,
            lon: facts.view_lon,
            distance_m: facts.view_distance_m,
            speed_kmh: facts.view_speed_kmh,
            rank: self.work.rank[slot],
            gap_to_leader_ms: finish_gap
                .or(road.and_then(|p| p.gap_to_leader_ms))
                .map(round_100),
            gap_to_ahead_ms: road.and_then(|p| p.gap_to_ahead_ms).map(round_100),
            group_id: self
                .group_index_of_slot(slot)
                .map(|gi| self.groups.groups()[gi].id),
            status,
            last_fix_ms: facts.last_fix_ms,
            eta_finish_ms: if status == RiderStatus::Racing {
                facts.eta_if_racing
            } else {
                None
            },
            battery_pct: facts.battery_pct.filter(|_| self.config.publish_battery),
        }
    }

    /// Whether the published groups still show the tracker's groups.
    pub(super) fn group_views_current(&self) -> bool {
        let groups = self.groups.groups();
        groups.len() == self.group_views.len()
            && groups.iter().zip(&self.group_views).all(|(g, v)| {
                v.group_id == g.id
                    && v.kind == g.kind
                    && v.riders == g.riders
                    && v.head_distance_m == g.head_distance_m.round()
                    && v.gap_to_ahead_ms == g.gap_to_ahead_ms.map(round_100)
                    && v.gap_to_leader_ms == g.gap_to_leader_ms.map(round_100)
            })
    }

    pub(super) fn publish(&mut self, now: Millis) {
        self.rank_riders();
        // The winner's time, the reference of the finishers' gaps: the first finisher still
        // in the race.
        let first_finish = self
            .finish_order
            .iter()
            .find(|(id, _)| !self.is_abandoned(*id))
            .map(|(_, w)| *w);
        let mut views = std::mem::take(&mut self.views);
        let changed = if views.len() == self.riders.len() {
            // Every rider has a view (after the first tick): compare in place, in id order, and
            // note the slots whose view changed (4 bytes each, where a copy of the view in a
            // scratch list wrote 104 bytes a rider of a busy tick, copied again into the delta).
            let mut slots = std::mem::take(&mut self.work.changed_slots);
            slots.clear();
            for (slot, old) in views.iter_mut().enumerate() {
                let view = self.view_of(slot, first_finish);
                if *old != view {
                    *old = view;
                    slots.push(slot as u32);
                }
            }
            // The delta gets an exactly sized list, copied from the views just written.
            let changed = slots.iter().map(|&s| views[s as usize].clone()).collect();
            self.work.changed_slots = slots;
            changed
        } else {
            views.clear();
            for slot in 0..self.riders.len() {
                let view = self.view_of(slot, first_finish);
                views.push(view);
            }
            views.clone()
        };
        self.views = views;
        let groups_changed = !self.group_views_current();
        if groups_changed {
            self.group_views = self
                .groups
                .groups()
                .iter()
                .map(|g| GroupView {
                    group_id: g.id,
                    kind: g.kind,
                    riders: g.riders.clone(),
                    head_distance_m: g.head_distance_m.round(),
                    gap_to_ahead_ms: g.gap_to_ahead_ms.map(round_100),
                    gap_to_leader_ms: g.gap_to_leader_ms.map(round_100),
                })
                .collect();
        }
        let delta = Delta {
            race_id: self.config.id.clone(),
            epoch: self.epoch,
            tick: self.tick,
            time_ms: now,
            states: changed,
            groups: groups_changed.then(|| self.group_views.clone()),
            alerts: std::mem::take(&mut self.tick_alerts),
        };
        self.outputs.push_back(RaceOutput::Delta(delta));
    }
}

#[cfg(test)]
mod tests {
    use super::round_100;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_100_is_the_euclidean_rounding(ms in -10_000_000i64..10_000_000) {
            prop_assert_eq!(round_100(ms), (ms + 50).div_euclid(100) * 100);
        }
    }
}
