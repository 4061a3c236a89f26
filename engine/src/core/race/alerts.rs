//! The alerts feed: every typed alert a tick raises (finishers, rider statuses, stops and
//! possible crashes, groups and breakaways, gap thresholds, leader changes, checkpoints), each
//! through `raise` and its cooldown. Reads the tick's statuses, road and groups; changes none.

use std::collections::BTreeSet;

use flevum_protocol::{Alert, AlertKind, GroupKind, RiderStatus, Severity};

use super::{Millis, RECENT_ALERTS, Race, RaceOutput, groups};

/// Longest a finisher alert waits for the finish order to settle, ms: a race whose devices report
/// every few minutes would otherwise hold its finishers for longer than commentators can wait.
const MAX_FINISH_SETTLE_MS: Millis = 60_000;

impl Race {
    /// Appends an alert to the log unless its (kind, subject) key is in cooldown.
    pub(super) fn raise(
        &mut self,
        now: Millis,
        kind: AlertKind,
        riders: Vec<u32>,
        course_km: f64,
        severity: Severity,
        key: Option<(&'static str, u64)>,
    ) -> bool {
        if let Some(key) = key {
            let cooldown = (self.config.alerts.cooldown_s * 1000.0) as Millis;
            if let Some(&last) = self.cooldowns.get(&key)
                && now - last < cooldown
            {
                return false;
            }
            self.cooldowns.insert(key, now);
        }
        self.alert_seq += 1;
        let alert = Alert {
            seq: self.alert_seq,
            epoch: self.epoch,
            time_ms: now,
            race_time_ms: now - self.config.start_ms,
            course_km,
            riders,
            severity,
            kind,
        };
        self.recent_alerts.push_back(alert.clone());
        if self.recent_alerts.len() > RECENT_ALERTS {
            self.recent_alerts.pop_front();
        }
        self.tick_alerts.push(alert.clone());
        self.outputs.push_back(RaceOutput::Alert(alert));
        true
    }

    /// Enters the finishes seen this tick in the finish order, and announces the held ones that
    /// have settled, in order of finish time.
    pub(super) fn update_finishers(&mut self, now: Millis, watermark: Millis) {
        let mut new: Vec<(Millis, u32, usize)> = Vec::new();
        for (slot, status) in self.work.statuses.iter().enumerate() {
            if *status == RiderStatus::Finished
                && !self.announced[slot].finish_seen
                && let Some(t) = self.facts[slot].finish_time
            {
                new.push((t, self.slots.id(slot), slot));
            }
        }
        // The standings take a finish at once, in order of finish time.
        for (t, id, slot) in new {
            let at = self
                .finish_order
                .partition_point(|(other, ft)| (*ft, *other) < (t, id));
            self.finish_order.insert(at, (id, t));
            self.announced[slot].finish_seen = true;
            let held = self.finishers_held.partition_point(|h| *h < (t, id));
            self.finishers_held.insert(held, (t, id));
        }
        // The alerts wait until every rider who finished earlier has reported since.
        if self.finishers_held.is_empty() {
            return;
        }
        let settle = self.finish_settle_ms();
        let ready = self
            .finishers_held
            .partition_point(|(t, _)| t.saturating_add(settle) <= watermark);
        if ready == 0 {
            return;
        }
        let length_km = self.index.course().length_m() / 1000.0;
        let announce: Vec<(Millis, u32)> = self.finishers_held.drain(..ready).collect();
        // Riders the organiser took out of the race are not announced and hold no position
        // (the standings skip them too). Abandons are rare: without one, no pass is needed.
        let any_abandoned = self.abandoned.contains(&true);
        let is_abandoned = |id: u32| any_abandoned && self.is_abandoned(id);
        let positions: Vec<(Millis, u32, u32)> = announce
            .into_iter()
            .filter(|&(_, id)| !is_abandoned(id))
            .map(|(t, id)| {
                let earlier = self
                    .finish_order
                    .partition_point(|(other, ft)| (*ft, *other) < (t, id));
                (t, id, self.finish_place(earlier, any_abandoned))
            })
            .collect();
        for (t, id, position) in positions {
            let severity = if position <= 3 {
                Severity::Notable
            } else {
                Severity::Info
            };
            self.raise(
                now,
                AlertKind::Finisher {
                    position,
                    race_time_ms: t - self.config.start_ms,
                },
                vec![id],
                length_km,
                severity,
                None,
            );
        }
    }

    /// The place of the rider in `slot` (id `id`) among the finishers, if their finish has been
    /// told to the feed or was passed over while they were out of the race (it is entered in
    /// the finish order and no longer held): 1 + the finishers before them still in the race.
    pub(super) fn told_finish_position(&self, slot: usize, id: u32) -> Option<u32> {
        if !self.announced[slot].finish_seen || self.finishers_held.iter().any(|h| h.1 == id) {
            return None;
        }
        let at = self
            .finish_order
            .iter()
            .position(|(other, _)| *other == id)?;
        Some(self.finish_place(at, self.abandoned.contains(&true)))
    }

    /// The place of the finisher at index `at` of the finish order: 1 + the finishers before it
    /// still in the race. `any_abandoned` is whether anyone is out of the race; without an
    /// abandon (the usual case) no pass over the earlier finishers is needed.
    fn finish_place(&self, at: usize, any_abandoned: bool) -> u32 {
        let abandoned_earlier = if any_abandoned {
            self.finish_order[..at]
                .iter()
                .filter(|(other, _)| self.is_abandoned(*other))
                .count()
        } else {
            0
        };
        (at - abandoned_earlier) as u32 + 1
    }

    /// Raises an organiser's change of a rider's standing (`RiderAbandoned`, `RiderReinstated`)
    /// at once, without a cooldown: at the rider's last position on the course (the finish for a
    /// finisher).
    pub(super) fn raise_standing_change(
        &mut self,
        now: Millis,
        slot: usize,
        id: u32,
        kind: AlertKind,
    ) {
        let facts = &self.facts[slot];
        let course_km = match (facts.finish_time, facts.last_passage) {
            (Some(_), _) => self.index.course().length_m() / 1000.0,
            (None, Some((distance_m, _))) => distance_m / 1000.0,
            (None, None) => 0.0,
        };
        self.raise(now, kind, vec![id], course_km, Severity::Notable, None);
    }

    /// How long after a finish time every rider who finished before it has reported a fix past
    /// the line: two reporting intervals (a device reports within one; the second covers a late
    /// or lost fix), of the race's configured interval or of the slowest device still on the
    /// road, whichever is longer (a phone app reports at its own setting), and at most
    /// [`MAX_FINISH_SETTLE_MS`]. Read only while finishes are held, near the end of a race.
    fn finish_settle_ms(&self) -> Millis {
        let configured = Millis::from(self.config.report_interval_ms.max(1_000));
        // The interval each rider's facts already hold: no pass over the riders' fix logs.
        let slowest = self
            .facts
            .iter()
            .zip(&self.work.statuses)
            .zip(&self.announced)
            .filter(|((_, status), announced)| {
                !announced.finish_seen
                    && matches!(
                        status,
                        RiderStatus::Racing | RiderStatus::Stopped | RiderStatus::OffCourse
                    )
            })
            .map(|((facts, _), _)| facts.report_interval_ms)
            .max()
            .unwrap_or(0);
        (2 * configured.max(slowest)).min(MAX_FINISH_SETTLE_MS)
    }

    /// Status and battery alerts. Only riders whose status changed or whose last fix changed can
    /// raise one: for an unchanged battery reading the bookkeeping below is already settled.
    pub(super) fn rider_alerts(&mut self, now: Millis, watermark: Millis) {
        let mut newly_stopped: Vec<(u32, f64, Millis)> = Vec::new();
        for slot in 0..self.riders.len() {
            let status = self.work.statuses[slot];
            let (previous, battery_low) = {
                let a = &self.announced[slot];
                (a.status, a.battery_low)
            };
            if !self.refresh_all && self.changed_tick[slot] != self.tick && previous == Some(status)
            {
                continue;
            }
            let id = self.slots.id(slot);
            let facts = &self.facts[slot];
            let km = facts.last_passage.map_or(0.0, |p| p.0 / 1000.0);
            let lateral = facts.lateral_m;
            let hidden = facts.in_privacy_zone;
            let battery = facts.battery_pct.filter(|_| self.config.publish_battery);
            let last_time = facts.last_time.unwrap_or(watermark);
            let subject = u64::from(id);
            // Off course inside a privacy zone, the alert waits until the rider is out of it.
            let mut off_course = false;
            if previous != Some(status) {
                let was = previous.unwrap_or(RiderStatus::NotStarted);
                match (was, status) {
                    (_, RiderStatus::OffCourse) if hidden => {
                        self.announced[slot].off_course_held = true;
                    }
                    (_, RiderStatus::OffCourse) => off_course = true,
                    // Back without having been announced off course.
                    (RiderStatus::OffCourse, RiderStatus::Racing)
                        if self.announced[slot].off_course_held => {}
                    (RiderStatus::OffCourse, RiderStatus::Racing) => {
                        self.raise(
                            now,
                            AlertKind::BackOnCourse,
                            vec![id],
                            km,
                            Severity::Info,
                            Some(("back_on_course", subject)),
                        );
                    }
                    (_, RiderStatus::SignalLost) => {
                        self.raise(
                            now,
                            AlertKind::SignalLost,
                            vec![id],
                            km,
                            Severity::Info,
                            Some(("signal_lost", subject)),
                        );
                    }
                    (RiderStatus::SignalLost, s) if s != RiderStatus::Finished => {
                        self.raise(
                            now,
                            AlertKind::SignalRegained,
                            vec![id],
                            km,
                            Severity::Info,
                            Some(("signal_regained", subject)),
                        );
                    }
                    _ => {}
                }
                if status == RiderStatus::Stopped {
                    newly_stopped.push((id, km * 1000.0, last_time));
                } else {
                    self.announced[slot].stop_announced = false;
                }
                if status != RiderStatus::OffCourse {
                    self.announced[slot].off_course_held = false;
                }
                self.announced[slot].status = Some(status);
            } else if status == RiderStatus::OffCourse
                && !hidden
                && lateral > self.matcher.off_course_exit_m
                && std::mem::take(&mut self.announced[slot].off_course_held)
            {
                // Left the privacy zone still off course: announced now, measured out here. A
                // rider who came back to the course inside the zone and rides out of it before
                // being judged back is near the course, not off it: still held.
                off_course = true;
            }
            if off_course {
                self.raise(
                    now,
                    AlertKind::OffCourse { offset_m: lateral },
                    vec![id],
                    km,
                    Severity::Notable,
                    Some(("off_course", subject)),
                );
            }
            if let Some(b) = battery {
                let low = b <= self.config.alerts.low_battery_pct;
                if low == battery_low || (!low && b <= self.config.alerts.low_battery_pct + 10) {
                    continue;
                }
                let a = &mut self.announced[slot];
                if low && !a.battery_low {
                    a.battery_low = true;
                    self.raise(
                        now,
                        AlertKind::LowBattery { battery_pct: b },
                        vec![id],
                        km,
                        Severity::Info,
                        None,
                    );
                } else if !low && b > self.config.alerts.low_battery_pct + 10 {
                    a.battery_low = false;
                }
            }
        }
        self.stop_alerts(now, newly_stopped);
    }

    /// A rider's status this tick, by id.
    pub(super) fn status_of_id(&self, id: u32) -> Option<RiderStatus> {
        Some(self.work.statuses[self.slots.get(id)?])
    }

    /// Announces stops, held for a few seconds so that several riders stopped at the same place
    /// within the crash window become one possible-crash alert instead of separate stops.
    pub(super) fn stop_alerts(&mut self, now: Millis, newly: Vec<(u32, f64, Millis)>) {
        for (id, _, _) in newly {
            self.pending_stops.entry(id).or_insert(now);
        }
        let mut pending = std::mem::take(&mut self.pending_stops);
        pending.retain(|id, _| self.status_of_id(*id) == Some(RiderStatus::Stopped));
        self.pending_stops = pending;
        let hold = 10_000;
        let due: Vec<u32> = self
            .pending_stops
            .iter()
            .filter(|(_, seen)| now - **seen >= hold)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return;
        }
        let radius = self.config.alerts.crash_radius_m;
        let window = (self.config.alerts.crash_window_s * 1000.0) as Millis;
        let stopped: Vec<(u32, f64, Millis)> = (0..self.riders.len())
            .filter(|&slot| self.work.statuses[slot] == RiderStatus::Stopped)
            .filter_map(|slot| {
                let id = self.slots.id(slot);
                let (d, _) = self.facts[slot].last_passage?;
                let seen = self
                    .pending_stops
                    .get(&id)
                    .copied()
                    .unwrap_or(now - window - 1);
                Some((id, d, seen))
            })
            .collect();
        for id in due {
            let Some(&(_, d, seen)) = stopped.iter().find(|s| s.0 == id) else {
                continue;
            };
            if !self.pending_stops.contains_key(&id) {
                continue;
            }
            let cluster: Vec<u32> = stopped
                .iter()
                .filter(|(_, d2, s2)| (d2 - d).abs() <= radius && (s2 - seen).abs() <= window)
                .map(|(i, _, _)| *i)
                .collect();
            for r in &cluster {
                self.pending_stops.remove(r);
                if let Some(slot) = self.slots.get(*r) {
                    self.announced[slot].stop_announced = true;
                }
            }
            self.pending_stops.remove(&id);
            let known_site = self
                .crash_sites
                .iter()
                .any(|(cd, ct)| (cd - d).abs() <= radius && now - ct < 10 * 60_000);
            if cluster.len() >= 2 && !known_site {
                self.crash_sites.push((d, now));
                self.raise(
                    now,
                    AlertKind::PossibleCrash,
                    cluster,
                    d / 1000.0,
                    Severity::Critical,
                    None,
                );
            } else if !known_site {
                self.raise(
                    now,
                    AlertKind::RiderStopped,
                    vec![id],
                    d / 1000.0,
                    Severity::Notable,
                    Some(("stopped", u64::from(id))),
                );
            }
        }
    }

    pub(super) fn group_alerts(&mut self, now: Millis) {
        // The groups are read while alerts are raised: borrow them out of the tracker.
        let groups = self.groups.take_groups();
        self.group_alerts_in(now, &groups);
        self.groups.put_back(groups);
    }

    pub(super) fn group_alerts_in(&mut self, now: Millis, groups: &[groups::TrackedGroup]) {
        let confirm = (self.config.alerts.breakaway_confirm_s * 1000.0) as Millis;
        let min_gap = (self.config.alerts.breakaway_min_gap_s * 1000.0) as i64;
        let peloton = groups.iter().find(|g| g.kind == GroupKind::Peloton);
        // Time since each group's head passed the peloton head's position (the gap on TV), and
        // the daylight: since the group's last rider passed it. By group index.
        let mut gaps: Vec<Option<i64>> = vec![None; groups.len()];
        let mut daylight: Vec<Option<i64>> = vec![None; groups.len()];
        if let Some(p) = peloton
            && let Some((pd, pt)) = p
                .riders
                .first()
                .and_then(|&r| self.facts[self.slots.get(r)?].last_passage)
        {
            for (gi, g) in groups.iter().enumerate() {
                let passed = |r: Option<&u32>| self.rider(*r?)?.time_at(pd);
                if let Some(head) = passed(g.riders.first()) {
                    gaps[gi] = Some(pt - head);
                }
                if let Some(tail) = passed(g.riders.last()) {
                    daylight[gi] = Some(pt - tail);
                }
            }
        }
        let on_road = self.work.road.len().max(1);
        // Near the line the race is a sprint, not a breakaway story.
        let length = self.index.course().length_m();
        let racing_finale = !self.finish_order.is_empty();
        // Breakaways: a small group with daylight to the peloton for the confirmation time.
        for (gi, g) in groups.iter().enumerate() {
            if g.kind != GroupKind::Breakaway
                || self.ever_breakaways.contains(&g.id)
                || racing_finale
                || g.head_distance_m > length - 3000.0
                || g.riders.len() * 4 > on_road
            {
                continue;
            }
            if daylight[gi].is_some_and(|d| d >= min_gap) && now - g.since_ms >= confirm {
                let gap = gaps[gi].unwrap_or_default();
                self.ever_breakaways.insert(g.id);
                self.breakaways.insert(g.id, g.riders.clone());
                self.raise(
                    now,
                    AlertKind::BreakawayFormed {
                        group_id: g.id,
                        gap_ms: gap,
                    },
                    g.riders.clone(),
                    g.head_distance_m / 1000.0,
                    Severity::Notable,
                    None,
                );
            }
        }
        // An announced breakaway whose id is gone passes its story to the group holding most of its
        // riders; it is caught when that group is the peloton or its daylight is gone.
        let announced: Vec<(u32, Vec<u32>)> = self
            .breakaways
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (id, riders) in announced {
            // Riders of the breakaway per group this tick (the most, then the lowest id).
            let mut counts: Vec<(usize, usize)> = Vec::new();
            for r in &riders {
                let Some(gi) = self.slots.get(*r).and_then(|s| self.group_index_of_slot(s)) else {
                    continue;
                };
                match counts.iter_mut().find(|(g, _)| *g == gi) {
                    Some((_, c)) => *c += 1,
                    None => counts.push((gi, 1)),
                }
            }
            let successor = counts
                .iter()
                .max_by_key(|&&(gi, c)| (c, std::cmp::Reverse(groups[gi].id)))
                .map(|&(gi, _)| gi);
            let Some(si) = successor else {
                self.breakaways.remove(&id);
                continue;
            };
            let succ = &groups[si];
            let caught =
                succ.kind == GroupKind::Peloton || daylight[si].is_none_or(|d| d < min_gap / 2);
            if caught && !racing_finale {
                self.breakaways.remove(&id);
                self.gap_sides.retain(|(g, _), _| *g != id);
                let riders = peloton
                    .map(|p| p.riders.iter().take(3).copied().collect())
                    .unwrap_or_default();
                self.raise(
                    now,
                    AlertKind::BreakawayCaught { group_id: id },
                    riders,
                    succ.head_distance_m / 1000.0,
                    Severity::Notable,
                    Some(("caught", u64::from(id))),
                );
            } else if succ.id != id {
                self.breakaways.remove(&id);
                self.ever_breakaways.insert(succ.id);
                let sides: Vec<((u32, usize), bool)> = self
                    .gap_sides
                    .iter()
                    .filter(|((g, _), _)| *g == id)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                for ((_, i), v) in sides {
                    self.gap_sides.insert((succ.id, i), v);
                }
                self.gap_sides.retain(|(g, _), _| *g != id);
                self.breakaways.insert(succ.id, succ.riders.clone());
            } else {
                self.breakaways.insert(id, succ.riders.clone());
            }
        }
        // Gap thresholds: announced growing when the gap reaches the threshold, shrinking when it
        // falls a tenth (at least 5 s) below it, so a gap hovering at a threshold is not news
        // twice.
        let thresholds = self.config.alerts.gap_thresholds_s.clone();
        for (gi, g) in groups.iter().enumerate() {
            if !self.breakaways.contains_key(&g.id) || racing_finale {
                continue;
            }
            let Some(gap) = gaps[gi] else {
                continue;
            };
            for (i, th) in thresholds.iter().enumerate() {
                let th_ms = (th * 1000.0) as i64;
                let hysteresis = (th_ms / 10).max(5_000);
                let key = (g.id, i);
                let above = match self.gap_sides.get(&key) {
                    None => gap >= th_ms,
                    Some(true) => gap > th_ms - hysteresis,
                    Some(false) => gap >= th_ms,
                };
                let before = self.gap_sides.insert(key, above);
                if before.is_some_and(|b| b != above) {
                    self.raise(
                        now,
                        AlertKind::GapChanged {
                            group_id: g.id,
                            threshold_ms: th_ms,
                            gap_ms: gap,
                            growing: above,
                        },
                        g.riders.clone(),
                        g.head_distance_m / 1000.0,
                        Severity::Notable,
                        None,
                    );
                }
            }
        }
        // Splits: a new group of two or more riders of a big group, confirmed.
        for g in groups {
            if now - g.since_ms == 0 && g.riders.len() >= 2 {
                let parents: BTreeSet<u32> = g
                    .riders
                    .iter()
                    .filter_map(|&r| self.announced[self.slots.get(r)?].group)
                    .filter(|(_, size)| *size >= 6)
                    .map(|(gid, _)| gid)
                    .collect();
                if parents.len() == 1
                    && let Some(&parent) = parents.first()
                    && groups.iter().any(|o| o.id == parent)
                {
                    self.pending_splits.insert(g.id, parent);
                }
            }
        }
        let due: Vec<(u32, u32)> = self
            .pending_splits
            .iter()
            .map(|(&n, &p)| (n, p))
            .filter(|(n, _)| {
                groups
                    .iter()
                    .find(|g| g.id == *n)
                    .is_none_or(|g| now - g.since_ms >= confirm)
            })
            .collect();
        for (new_id, parent) in due {
            self.pending_splits.remove(&new_id);
            if let (Some(g), true) = (
                groups.iter().find(|g| g.id == new_id),
                groups.iter().any(|g| g.id == parent),
            ) {
                self.raise(
                    now,
                    AlertKind::GroupSplit {
                        group_id: parent,
                        new_group_id: new_id,
                    },
                    g.riders.clone(),
                    g.head_distance_m / 1000.0,
                    Severity::Info,
                    Some(("split", u64::from(parent))),
                );
            }
        }
        // Riders dropped from a big group into a small one, confirmed.
        for i in 0..self.work.road.len() {
            let id = self.work.road[i].rider_id;
            let Some(slot) = self.slots.get(id) else {
                continue;
            };
            let now_group = self
                .group_index_of_slot(slot)
                .map(|gi| (groups[gi].id, groups[gi].riders.len()));
            let a = &mut self.announced[slot];
            match (a.group, now_group) {
                (Some((old, old_size)), Some((new, new_size)))
                    if old != new && old_size >= 5 && new_size <= 2 =>
                {
                    a.dropped_from = Some((old, now));
                }
                (_, Some((new, _))) if a.dropped_from.is_some_and(|(g, _)| g == new) => {
                    a.dropped_from = None
                }
                _ => {}
            }
            a.group = now_group;
            let due = a.dropped_from.filter(|(_, since)| now - since >= confirm);
            if let Some((from, _)) = due {
                a.dropped_from = None;
                let still_small = now_group.is_some_and(|(_, size)| size <= 2);
                if still_small && groups.iter().any(|g| g.id == from) {
                    let km = self.facts[slot].last_passage.map_or(0.0, |p| p.0 / 1000.0);
                    self.raise(
                        now,
                        AlertKind::DroppedFromGroup { group_id: from },
                        vec![id],
                        km,
                        Severity::Info,
                        Some(("dropped", u64::from(id))),
                    );
                }
            }
        }
    }

    pub(super) fn leader_alerts(&mut self, now: Millis) {
        // Once somebody has won, the race has no new leaders.
        if !self.finish_order.is_empty() {
            return;
        }
        let front = self.work.road.first().copied();
        let current = front.map(|p| p.rider_id);
        match (self.leader, current) {
            (Some((id, _)), Some(c)) if id == c => {}
            (_, Some(c)) => self.leader = Some((c, now)),
            (_, None) => self.leader = None,
        }
        if let Some((id, since)) = self.leader
            && self.announced_leader != Some(id)
            && now - since >= 5_000
        {
            // Riders swapping turns at the front of one group is not news.
            let group_of = |r: u32| {
                let gi = self.group_index_of_slot(self.slots.get(r)?)?;
                Some(self.groups.groups()[gi].id)
            };
            let previous = self.announced_leader;
            if let Some(p) = previous
                && group_of(p).is_some()
                && group_of(p) == group_of(id)
            {
                self.announced_leader = Some(id);
                return;
            }
            self.announced_leader = Some(id);
            let km = front.map_or(0.0, |p| p.distance_m / 1000.0);
            self.raise(
                now,
                AlertKind::LeaderChanged { previous },
                vec![id],
                km,
                Severity::Notable,
                Some(("leader", 0)),
            );
        }
    }

    /// First passages of checkpoints. A checkpoint still unannounced after a tick had no
    /// qualifying passage by then, so only riders with new fixes can give one (everyone after a
    /// command moved a checkpoint or the start).
    pub(super) fn checkpoint_alerts(&mut self, now: Millis) {
        let count = self.index.course().checkpoints().len();
        for ci in 0..count {
            let c = &self.index.course().checkpoints()[ci];
            if self.checkpoints_announced.contains(&c.name) {
                continue;
            }
            let (name, distance_m) = (c.name.clone(), c.distance_m);
            let start_ms = self.config.start_ms;
            let passage = |slot: usize| {
                let r = &self.riders[slot];
                Some((r.time_at(distance_m)?, r.info.id)).filter(|(t, _)| *t >= start_ms)
            };
            let first = if self.refresh_all {
                (0..self.riders.len()).filter_map(passage).min()
            } else {
                self.work.dirty.iter().filter_map(|&s| passage(s)).min()
            };
            if let Some((_, id)) = first {
                self.checkpoints_announced.insert(name.clone());
                self.raise(
                    now,
                    AlertKind::CheckpointLeader { checkpoint: name },
                    vec![id],
                    distance_m / 1000.0,
                    Severity::Info,
                    None,
                );
            }
        }
    }
}
