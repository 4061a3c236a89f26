//! Applying a tick's due fixes: `take_due` moves them out of the reorder queue, the apply runs
//! (contiguous slot ranges, on the tick's thread and its helpers) match them and refresh each
//! rider's facts, status and road entry, and the runs' road lists are merged into the road order.
//! Owns nothing between ticks; time gaps, groups, alerts and views come after it.

use flevum_protocol::{AlertKind, RecordFlags, RiderStatus, Severity};

use super::live::{FactInputs, RiderFacts, RoadEntry, RoadSortScratch, sort_road};
use super::rider::{ApplyError, RiderTrack};
use super::{
    CourseIndex, FINISH_TOLERANCE_M, FixRejection, MatcherConfig, Millis, QueuedFix,
    RUNS_PER_APPLY_THREAD, Race, RaceConfig, WARM_BATCH, parallel,
};

/// The race-wide inputs of [`RiderFacts::refresh`].
fn fact_inputs<'a>(config: &'a RaceConfig, index: &'a CourseIndex) -> FactInputs<'a> {
    FactInputs {
        course: index.course(),
        start_ms: config.start_ms,
        report_interval_ms: Millis::from(config.report_interval_ms),
        signal_lost_intervals: config.alerts.signal_lost_intervals,
        stopped_window_ms: (config.alerts.stopped_after_s * 1000.0) as Millis,
        stopped_speed_mps: config.alerts.stopped_speed_mps,
        finish_tolerance_m: FINISH_TOLERANCE_M,
        privacy_zones: &config.privacy_zones,
    }
}

/// What applying one run of due fixes produced; runs are merged in slot order afterwards.
#[derive(Debug, Clone, Default)]
pub(super) struct ApplyOutcome {
    /// Slots whose applied fixes changed, ascending.
    dirty: Vec<usize>,
    /// Fixes refused for an impossible speed.
    impossible: u64,
    /// SOS fixes applied, in application order: (rider id, km of the rider's last passage).
    sos: Vec<(u32, f64)>,
    /// The run's riders on the road this tick, in road order (the runs' lists are merged).
    road: Vec<RoadEntry>,
    /// Buffers of the run's road sort.
    road_sort: RoadSortScratch,
}

impl ApplyOutcome {
    /// Empties it for the next tick, keeping its buffers.
    pub(super) fn clear(&mut self) {
        self.dirty.clear();
        self.impossible = 0;
        self.sos.clear();
        self.road.clear();
    }
}

/// One run of due fixes waiting for a thread, with the riders it changes and its outcome.
struct ApplyJob<'a> {
    /// The run's due fixes, by slot, time and sequence.
    due: &'a [QueuedFix],
    /// The riders of the run's slot range.
    slice: RiderSlice<'a>,
    /// Where the run notes what the race merges afterwards.
    out: &'a mut ApplyOutcome,
}

/// The per-rider state one run of due fixes may change: a contiguous range of slots.
struct RiderSlice<'a> {
    /// Slot of `riders[0]`.
    first_slot: usize,
    /// The riders of the range.
    riders: &'a mut [RiderTrack],
    /// Their cached facts.
    facts: &'a mut [RiderFacts],
    /// Their change stamps (tick of the last change to their applied fixes).
    changed_tick: &'a mut [u64],
    /// Whether the organiser marked them abandoned (read for their status).
    abandoned: &'a [bool],
    /// Their status this tick, written once their fixes are applied.
    statuses: &'a mut [RiderStatus],
    /// Their (tick, index) in the road; the run stamps the riders it took from last tick's
    /// order with this tick.
    road_index: &'a mut [(u64, u32)],
}

/// What a tick's runs need besides their riders, the same for every run.
struct RunInputs<'a> {
    /// The course with its R-tree.
    index: &'a CourseIndex,
    /// The race's matcher tuning.
    matcher: &'a MatcherConfig,
    /// Race-wide inputs of the riders' facts.
    facts: FactInputs<'a>,
    /// The tick's number (change stamps).
    tick: u64,
    /// Every rider's facts must be recomputed (a new race or an organiser command).
    refresh_all: bool,
    /// The race has started (statuses).
    started: bool,
    /// The watermark the statuses and the road order are taken at.
    watermark: Millis,
    /// Last tick's road order, the starting order of every run's road entries.
    last_road: &'a [RoadEntry],
}

/// Cuts the slot-sorted `due` into at most `parts` runs of about equal length that never split
/// one rider's fixes: `cuts` gets the runs' bounds, `0 = cuts[0] < ... < cuts[last] = due.len()`
/// (just `[0, 0]` when nothing is due).
pub(super) fn cut_at_riders(due: &[QueuedFix], parts: usize, cuts: &mut Vec<usize>) {
    cuts.clear();
    cuts.push(0);
    for k in 1..parts {
        let Some(q) = due.get(due.len() * k / parts) else {
            break;
        };
        // A rider's fixes stay in one run, applied in order: cut before that rider's first fix,
        // or after its last when the previous cut is there already.
        let last = cuts[cuts.len() - 1];
        let mut at = due.partition_point(|p| p.slot < q.slot);
        if at <= last {
            at = due.partition_point(|p| p.slot <= q.slot);
        }
        if at > last && at < due.len() {
            cuts.push(at);
        }
    }
    cuts.push(due.len());
}

/// Applies one run of due fixes (sorted by slot, time, sequence) to its riders, refreshes the
/// facts of the riders that changed while their data is in cache, notes what the race merges
/// afterwards in `out`, then takes the status and road distance of every rider of its range.
fn apply_run(
    due: &[QueuedFix],
    slice: RiderSlice<'_>,
    inputs: &RunInputs<'_>,
    out: &mut ApplyOutcome,
) {
    let RiderSlice {
        first_slot,
        riders,
        facts,
        changed_tick,
        abandoned,
        statuses,
        road_index,
    } = slice;
    let tick = inputs.tick;
    let mut k = 0;
    let mut warmed_to = 0;
    while k < due.len() {
        if k >= warmed_to {
            // Load the next riders' cold state together (independent loads overlap), rather
            // than one miss at a time while each rider is updated.
            warmed_to = (k + WARM_BATCH).min(due.len());
            let mut sum = 0u64;
            for q in &due[k..warmed_to] {
                let s = q.slot as usize - first_slot;
                sum ^= riders[s].warm() ^ facts[s].warm();
            }
            std::hint::black_box(sum);
        }
        let slot = due[k].slot as usize;
        let local = slot - first_slot;
        let rider = &mut riders[local];
        while let Some(q) = due.get(k).filter(|q| q.slot as usize == slot) {
            let record = q.record;
            k += 1;
            if let Err(ApplyError::ImpossibleSpeed) =
                rider.apply(inputs.index, inputs.matcher, record)
            {
                out.impossible += 1;
                continue;
            }
            if changed_tick[local] != tick {
                changed_tick[local] = tick;
                out.dirty.push(slot);
            }
            if record.flags & RecordFlags::SOS != 0 {
                let km = rider.last_passage().map_or(0.0, |p| p.0 / 1000.0);
                out.sos.push((rider.info.id, km));
            }
        }
        // The rider's facts, while the data they are read from is still in the cache.
        if changed_tick[local] == tick {
            facts[local].refresh(rider, &inputs.facts);
        }
    }
    if inputs.refresh_all {
        // After an organiser command every rider's facts are recomputed (riders whose fixes
        // changed got theirs above).
        for ((rider, facts), changed) in riders
            .iter()
            .zip(facts.iter_mut())
            .zip(changed_tick.iter_mut())
        {
            facts.refresh(rider, &inputs.facts);
            *changed = tick;
        }
    }
    let start_ms = inputs.facts.start_ms;
    for ((facts, &abandoned), status) in facts.iter().zip(abandoned).zip(statuses.iter_mut()) {
        *status = facts.status(abandoned, inputs.started, start_ms, inputs.watermark);
    }
    // A rider's place on the road: the distance projected to the watermark (the road order's
    // sort key), for riders racing, stopped or off course.
    let on_road = |local: usize| match statuses[local] {
        RiderStatus::Racing | RiderStatus::Stopped | RiderStatus::OffCourse => {
            facts[local].distance_projected(inputs.watermark)
        }
        _ => None,
    };
    // The range's riders on the road, in road order: those of last tick's order first, in that
    // order (the order changes little between ticks, which the sort exploits), then the riders
    // who joined the road.
    let range = first_slot..first_slot + riders.len();
    for e in inputs.last_road {
        let slot = e.slot() as usize;
        if range.contains(&slot)
            && let Some(projected_m) = on_road(slot - first_slot)
        {
            out.road
                .push(RoadEntry::new(projected_m, e.rider_id(), slot as u32));
            road_index[slot - first_slot] = (tick, 0);
        }
    }
    for local in 0..riders.len() {
        if road_index[local].0 != tick
            && let Some(projected_m) = on_road(local)
        {
            let slot = (first_slot + local) as u32;
            out.road
                .push(RoadEntry::new(projected_m, riders[local].info.id, slot));
        }
    }
    sort_road(&mut out.road, &mut out.road_sort);
}

/// Merges the runs' road lists, each in road order, into one (`road`, emptied first): road
/// entries are unique, so the result does not depend on how the riders were cut into runs.
/// Lists are merged in pairs, round after round (each entry moves log2(runs) times): a two-way
/// merge's loop is short and predictable, where a heap of the runs' heads mispredicted about
/// every comparison (measured: the heap took about 150 µs of a 5,000-rider tick).
fn merge_road(outcomes: &mut [ApplyOutcome], road: &mut Vec<RoadEntry>) {
    road.clear();
    let mut step = 1;
    while step < outcomes.len() {
        for left in (0..outcomes.len() - step).step_by(2 * step) {
            let (head, tail) = outcomes.split_at_mut(left + step);
            let (a, b) = (&mut head[left].road, &mut tail[0].road);
            merge_two(a, b, road);
            // The merged list takes the left one's place; its old buffer is the next scratch.
            std::mem::swap(a, road);
            b.clear();
        }
        step *= 2;
    }
    if let Some(first) = outcomes.first_mut() {
        std::mem::swap(road, &mut first.road);
    }
}

/// Merges two lists of unique road entries, each in road order, into `out` (emptied first).
fn merge_two(a: &[RoadEntry], b: &[RoadEntry], out: &mut Vec<RoadEntry>) {
    out.clear();
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        let take_a = x < y;
        out.push(if take_a { x } else { y });
        i += usize::from(take_a);
        j += usize::from(!take_a);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

impl Race {
    /// Moves the queued fixes at or before the watermark into `work.due`, sorted by slot, then
    /// time and sequence.
    pub(super) fn take_due(&mut self, watermark: Millis) {
        let work = &mut self.work;
        let mut due = std::mem::take(&mut work.due);
        due.clear();
        if self.queue_min_ms > watermark {
            work.due = due;
            return;
        }
        let mut min = Millis::MAX;
        self.queue.retain(|q| {
            if q.record.time_ms <= watermark {
                due.push(*q);
                false
            } else {
                min = min.min(q.record.time_ms);
                true
            }
        });
        self.queue_min_ms = min;
        let slots = self.riders.len();
        if due.len() * 8 < slots {
            due.sort_unstable_by_key(QueuedFix::order_key);
        } else {
            // Most riders have a fix due: a counting sort by slot, then each rider's few fixes
            // (one, usually) in time order.
            let starts = &mut work.slot_starts;
            starts.clear();
            starts.resize(slots + 1, 0);
            for q in &due {
                starts[q.slot as usize + 1] += 1;
            }
            for i in 0..slots {
                starts[i + 1] += starts[i];
            }
            // Every place of `sorted` is written below (the counting sort is a permutation), so
            // it is only sized, not filled: last tick's fixes in it are overwritten, and a copy
            // of `due` as the filler would cost a pass over it.
            let sorted = &mut work.due_scratch;
            if sorted.len() < due.len() {
                sorted.resize(due.len(), due[0]);
            }
            sorted.truncate(due.len());
            for q in &due {
                let at = &mut starts[q.slot as usize];
                sorted[*at as usize] = *q;
                *at += 1;
            }
            // Riders with more than one fix due are rare: find them in one linear pass.
            let mut from = 0;
            while from < sorted.len() {
                let slot = sorted[from].slot;
                let mut to = from + 1;
                while sorted.get(to).is_some_and(|q| q.slot == slot) {
                    to += 1;
                }
                if to - from > 1 {
                    sorted[from..to].sort_unstable_by_key(QueuedFix::order_key);
                }
                from = to;
            }
            std::mem::swap(&mut due, sorted);
        }
        work.due = due;
    }

    /// Applies every rider's fixes at or before the watermark (riders in id order, fixes in time
    /// order) and raises the SOS alerts among them.
    ///
    /// Riders are independent here: a due fix changes only its own rider's track, facts and
    /// change stamp, and reads the course. With `apply_threads` > 1 and enough due fixes, the
    /// slot-sorted due list is cut at rider boundaries into runs of about equal length (a few
    /// per thread), each with its own slice of the per-rider arrays; the tick's thread and the
    /// threads it starts take the runs in turn, and the runs' outcomes are merged in slot order:
    /// the result is the single-threaded one.
    pub(super) fn apply_due(&mut self, now: Millis, watermark: Millis, started: bool) {
        self.take_due(watermark);
        let due = std::mem::take(&mut self.work.due);
        let mut outcomes = std::mem::take(&mut self.work.outcomes);
        let mut cuts = std::mem::take(&mut self.work.cuts);
        let threads = self
            .config
            .apply_threads
            .get()
            .min(due.len() / self.min_due_per_apply_thread.max(1))
            .max(1);
        // Several runs per thread, taken in turn by whichever thread is free: a thread that
        // starts late (the machine is busy) leaves its share to the others instead of holding
        // up the tick.
        let parts = if threads > 1 {
            threads * RUNS_PER_APPLY_THREAD
        } else {
            1
        };
        cut_at_riders(&due, parts, &mut cuts);
        outcomes.resize_with(cuts.len() - 1, ApplyOutcome::default);
        for o in &mut outcomes {
            o.clear();
        }
        let inputs = RunInputs {
            index: &self.index,
            matcher: &self.matcher,
            facts: fact_inputs(&self.config, &self.index),
            tick: self.tick,
            refresh_all: self.refresh_all,
            started,
            watermark,
            last_road: &self.work.road_entries,
        };
        let mut runs = Vec::with_capacity(outcomes.len());
        let slots = self.riders.len();
        let mut road_index = &mut self.work.road_index[..];
        let (mut riders, mut facts, mut changed, mut abandoned, mut statuses) = (
            &mut self.riders[..],
            &mut self.facts[..],
            &mut self.changed_tick[..],
            &self.abandoned[..],
            &mut self.work.statuses[..],
        );
        let mut first_slot = 0;
        for (w, out) in cuts.windows(2).zip(outcomes.iter_mut()) {
            // Slots before the next run's first rider belong to this run.
            let end_slot = due.get(w[1]).map_or(slots, |q| q.slot as usize);
            let len = end_slot - first_slot;
            let (r, rest_r) = std::mem::take(&mut riders).split_at_mut(len);
            let (f, rest_f) = std::mem::take(&mut facts).split_at_mut(len);
            let (c, rest_c) = std::mem::take(&mut changed).split_at_mut(len);
            let (a, rest_a) = abandoned.split_at(len);
            let (st, rest_st) = std::mem::take(&mut statuses).split_at_mut(len);
            let (ri, rest_ri) = std::mem::take(&mut road_index).split_at_mut(len);
            (riders, facts, changed, abandoned, statuses) =
                (rest_r, rest_f, rest_c, rest_a, rest_st);
            road_index = rest_ri;
            runs.push(ApplyJob {
                due: &due[w[0]..w[1]],
                slice: RiderSlice {
                    first_slot,
                    riders: r,
                    facts: f,
                    changed_tick: c,
                    abandoned: a,
                    statuses: st,
                    road_index: ri,
                },
                out,
            });
            first_slot = end_slot;
        }
        parallel::run_jobs(threads, runs, |ApplyJob { due, slice, out }| {
            apply_run(due, slice, &inputs, out)
        });
        self.work.due = due;
        self.work.cuts = cuts;
        // Merge in slot order: runs hold ascending, disjoint slot ranges.
        self.work.dirty.clear();
        let mut impossible = 0;
        for o in &outcomes {
            self.work.dirty.extend_from_slice(&o.dirty);
            impossible += o.impossible;
        }
        if impossible > 0 {
            *self
                .rejections
                .entry(FixRejection::ImpossibleSpeed)
                .or_default() += impossible;
        }
        for o in &outcomes {
            for &(id, km) in &o.sos {
                self.raise(
                    now,
                    AlertKind::Sos,
                    vec![id],
                    km,
                    Severity::Critical,
                    Some(("sos", u64::from(id))),
                );
            }
        }
        merge_road(&mut outcomes, &mut self.work.road_entries);
        self.work.outcomes = outcomes;
    }
}
