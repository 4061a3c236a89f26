//! One rider's track in event time: the time-ordered fix log, matcher checkpoints for re-matching
//! after late fixes, and the passage log that time gaps are read from.
//!
//! Owns duplicate and impossible-speed checks against neighbouring fixes and the recomputation
//! from an insertion point. Does not rank, group or alert; the race does.

use std::collections::BTreeSet;

use flevum_protocol::PositionRecord;

use super::chunked_log::{ChunkedLog, PHASE_GROUPS, first_false};
use super::config::RiderConfig;
use super::live::round;
use crate::core::geodesy::geodesic_distance_m;
use crate::core::{CourseIndex, Fix, MatchState, MatchedFix, MatcherConfig, Millis};

/// Fixes between two saved matcher states.
const CHECKPOINT_EVERY: usize = 32;
/// Latest passages mirrored inline (see [`RiderTrack::tail`]).
const TAIL: usize = 8;
/// Latest fix times mirrored inline: the reporting interval is the median of their gaps.
const RECENT_FIXES: usize = 9;
/// Fixes in one chunk of the fix log (72 bytes each: 18 KiB).
const FIX_CHUNK: usize = 256;
/// Passages in one chunk of the passage log (16 bytes each: 16 KiB).
const PASSAGE_CHUNK: usize = 1024;
/// Matcher states in one chunk of the checkpoint log (one state per `CHECKPOINT_EVERY` fixes).
const CHECKPOINT_CHUNK: usize = 32;
/// The passage logs open their chunks half a run's step after the checkpoint logs, whose
/// openings would otherwise fall in the same ticks (both every 1,024 fixes). Measured at 1 Hz
/// after 4,000 s (bench/TICK.md): p99 tick 1.8–3.1 ms (median of 12 runs 2.1) against 2.0–7.3
/// ms (2.65).
const PASSAGE_SHIFT: usize = PASSAGE_CHUNK / PHASE_GROUPS / 2;

/// An applied fix with its match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredFix {
    /// What the device sent.
    pub record: PositionRecord,
    /// Where it lies on the course.
    pub matched: MatchedFix,
}

/// A set of sequence numbers that stores the usual case, one run of consecutive numbers (a
/// device counts up from 1), as its two ends, and only the numbers outside the run in a tree.
#[derive(Debug, Clone, Default)]
struct SeenSeqs {
    /// The run: every number in `start..end` is in the set.
    run: Option<(u32, u64)>,
    /// The other numbers in the set (none of them inside the run, nor at its end).
    others: BTreeSet<u32>,
}

impl SeenSeqs {
    /// Adds a number; false if it was in the set already (as `BTreeSet::insert`).
    fn insert(&mut self, seq: u32) -> bool {
        let Some((start, end)) = &mut self.run else {
            self.run = Some((seq, u64::from(seq) + 1));
            return true;
        };
        let s = u64::from(seq);
        if (u64::from(*start)..*end).contains(&s) {
            return false;
        }
        if s != *end {
            return self.others.insert(seq);
        }
        *end += 1;
        // Numbers that arrived early now continue the run.
        while !self.others.is_empty()
            && let Ok(next) = u32::try_from(*end)
            && self.others.remove(&next)
        {
            *end += 1;
        }
        true
    }
}

/// Why applying a fix failed (after it was accepted into the pending buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyError {
    /// The implied speed from a neighbouring fix is impossible for the sport.
    ImpossibleSpeed,
}

/// One rider's event-time state.
///
/// `repr(C)` keeps the declaration order, and the fields a tick touches for every rider come
/// first: applying a fix and deriving the rider's facts read the first 512 bytes (up to the
/// passage log's open chunk), and the seen sequence numbers (read when a fix is accepted), the
/// matcher checkpoints and the registration come after them.
/// (Aligning the struct to cache lines as well cost more misses than it saved: bench/TICK.md.)
#[derive(Debug, Clone)]
#[repr(C)]
pub struct RiderTrack {
    // The logs' tails, copied into the struct: a tick touches every rider once a second, and by
    // then the ends of thousands of heap logs have left the cache, so the hot path (applying the
    // next fix, the rider's facts, time gaps to the rider) reads these instead. Kept equal to
    // the logs after every change.
    /// The last applied fix (`fixes.last()`).
    last_fix: Option<StoredFix>,
    /// Matcher state after the last applied fix (the race holds the matcher's tuning).
    matcher: MatchState,
    /// The last `TAIL` passages (fewer at first), oldest first.
    tail: [(f64, Millis); TAIL],
    /// Event times of the last `RECENT_FIXES` applied fixes (fewer at first), oldest first.
    recent_times: [Millis; RECENT_FIXES],
    // The three counters below are `u32` (at most 9) so that the logs' open chunks still fall
    // within the first 512 bytes.
    /// How many of `tail` are valid.
    tail_len: u32,
    /// How many of `recent_times` are valid.
    recent_len: u32,
    /// How many of the last gaps between `recent_times` equal the very last one (0 with fewer
    /// than two times): when it is every gap, that gap is the reporting interval, with no sort.
    equal_gaps: u32,
    // The logs grow in chunks, not by doubling: riders who report at one pace would otherwise
    // all copy their logs in the same tick (see `chunked_log`).
    /// Applied fixes in time order.
    fixes: ChunkedLog<StoredFix, FIX_CHUNK>,
    /// Passage log: (distance along course, time), distance non-decreasing.
    passages: ChunkedLog<(f64, Millis), PASSAGE_CHUNK>,
    /// Sequence numbers seen (pending or applied): duplicates are dropped by them.
    seen: SeenSeqs,
    /// Matcher state before fix `i`, for every `i` that is a multiple of `CHECKPOINT_EVERY`
    /// (written once every `CHECKPOINT_EVERY` fixes and read only to re-match: kept out of the
    /// lines a tick reads).
    checkpoints: ChunkedLog<MatchState, CHECKPOINT_CHUNK>,
    /// Registration.
    pub info: RiderConfig,
}

impl RiderTrack {
    /// A rider with no fixes, the one in `slot` of a field of `riders`.
    pub fn new(info: RiderConfig, slot: usize, riders: usize) -> Self {
        // The field's logs open their chunks spread over the chunk length, neighbouring slots
        // together: a field reporting at one pace allocates, and faults in, a few neighbours'
        // fresh chunks a tick instead of every rider's at once (see `ChunkedLog::new`).
        RiderTrack {
            info,
            fixes: ChunkedLog::new(slot, riders, 0),
            checkpoints: ChunkedLog::new(slot, riders, 0),
            matcher: MatchState::default(),
            seen: SeenSeqs::default(),
            passages: ChunkedLog::new(slot, riders, PASSAGE_SHIFT),
            last_fix: None,
            recent_times: [0; RECENT_FIXES],
            recent_len: 0,
            equal_gaps: 0,
            tail: [(0.0, 0); TAIL],
            tail_len: 0,
        }
    }

    /// Records a sequence number; false if it was seen before.
    pub fn first_sighting(&mut self, seq: u32) -> bool {
        self.seen.insert(seq)
    }

    /// Applies one fix in time order (late fixes re-match everything after them), matched with
    /// the race's matcher tuning; `matcher.max_speed_mps` also bounds the speed between fixes.
    pub fn apply(
        &mut self,
        index: &CourseIndex,
        matcher: &MatcherConfig,
        record: PositionRecord,
    ) -> Result<(), ApplyError> {
        // Live fixes go at the end of a long, mostly cold log: compare with the inline copy of the
        // last fix first, and search (from the end) only for a late fix.
        let key = (record.time_ms, record.seq);
        let at = match &self.last_fix {
            None => 0,
            Some(last) if (last.record.time_ms, last.record.seq) <= key => self.fixes.len(),
            Some(_) => {
                let fixes = &self.fixes;
                partition_point_from_end(fixes.len(), |i| {
                    (fixes[i].record.time_ms, fixes[i].record.seq) <= key
                })
            }
        };
        let plausible = |other: &StoredFix| {
            let dt = (record.time_ms - other.record.time_ms).abs() as f64 / 1000.0;
            // GPS noise allowance of 50 m on top of the speed limit.
            let limit = matcher.max_speed_mps * dt + 50.0;
            let (lat, lon) = (record.lat_deg(), record.lon_deg());
            let (other_lat, other_lon) = (other.record.lat_deg(), other.record.lon_deg());
            match surely_within(lat, lon, other_lat, other_lon, limit) {
                Some(answer) => answer,
                None => geodesic_distance_m(lat, lon, other_lat, other_lon) <= limit,
            }
        };
        let before = if at == self.fixes.len() {
            self.last_fix.as_ref()
        } else {
            at.checked_sub(1).map(|i| &self.fixes[i])
        };
        if before.is_some_and(|f| !plausible(f))
            || (at < self.fixes.len() && !plausible(&self.fixes[at]))
        {
            return Err(ApplyError::ImpossibleSpeed);
        }
        let placeholder = StoredFix {
            record,
            matched: MatchedFix {
                time_ms: record.time_ms,
                distance_m: 0.0,
                lateral_m: 0.0,
                segment: 0,
                confidence: 0.0,
                off_course: false,
                matched: false,
            },
        };
        if at == self.fixes.len() {
            if at % CHECKPOINT_EVERY == 0 {
                self.checkpoints.push(self.matcher.clone());
            }
            let matched = self.matcher.match_fix(matcher, index, &Fix::from(&record));
            let stored = StoredFix {
                matched,
                ..placeholder
            };
            self.fixes.push(stored);
            self.last_fix = Some(stored);
            self.push_recent_time(record.time_ms);
            self.push_passage(matched);
        } else {
            self.fixes.insert(at, placeholder);
            self.rematch_from(index, matcher, at);
            self.last_fix = self.fixes.last().copied();
            let from = self.fixes.len().saturating_sub(RECENT_FIXES);
            self.recent_len = (self.fixes.len() - from) as u32;
            for (slot, i) in self.recent_times.iter_mut().zip(from..self.fixes.len()) {
                *slot = self.fixes[i].record.time_ms;
            }
            self.equal_gaps = equal_gaps_at_end(self.recent_times()) as u32;
        }
        Ok(())
    }

    /// Appends the time of a fix applied at the end to `recent_times` (dropping the oldest when
    /// full) and keeps `equal_gaps` up to date.
    fn push_recent_time(&mut self, time_ms: Millis) {
        let n = self.recent_len as usize;
        if n > 0 {
            let gap = time_ms - self.recent_times[n - 1];
            // `equal_gaps > 0` implies at least two times.
            self.equal_gaps = if self.equal_gaps > 0
                && gap == self.recent_times[n - 1] - self.recent_times[n - 2]
            {
                self.equal_gaps + 1
            } else {
                1
            };
        }
        if self.recent_len as usize == RECENT_FIXES {
            self.recent_times.copy_within(1.., 0);
            self.recent_len -= 1;
        }
        self.recent_times[self.recent_len as usize] = time_ms;
        self.recent_len += 1;
        self.equal_gaps = self.equal_gaps.min(self.recent_len - 1);
    }

    /// Re-runs the matcher from the last checkpoint at or before `from`.
    fn rematch_from(&mut self, index: &CourseIndex, config: &MatcherConfig, from: usize) {
        let c = from / CHECKPOINT_EVERY;
        self.checkpoints.truncate(c + 1);
        self.matcher = self.checkpoints[c].clone();
        let start = c * CHECKPOINT_EVERY;
        for i in start..self.fixes.len() {
            if i % CHECKPOINT_EVERY == 0 && i / CHECKPOINT_EVERY >= self.checkpoints.len() {
                self.checkpoints.push(self.matcher.clone());
            }
            let fix = Fix::from(&self.fixes[i].record);
            self.fixes[i].matched = self.matcher.match_fix(config, index, &fix);
        }
        // Rebuild the passage log from the first fix that changed.
        let first_time = self.fixes[start].record.time_ms;
        let passages = &self.passages;
        let keep = first_false(0, passages.len(), |i| passages[i].1 < first_time);
        self.passages.truncate(keep);
        let from = keep.saturating_sub(TAIL);
        self.tail_len = (keep - from) as u32;
        for (slot, i) in self.tail.iter_mut().zip(from..keep) {
            *slot = self.passages[i];
        }
        for i in start..self.fixes.len() {
            let m = self.fixes[i].matched;
            self.push_passage(m);
        }
    }

    fn push_passage(&mut self, m: MatchedFix) {
        if !m.matched {
            return;
        }
        let d = self
            .last_passage()
            .map_or(m.distance_m, |p| p.0.max(m.distance_m));
        self.passages.push((d, m.time_ms));
        if self.tail_len as usize == TAIL {
            self.tail.copy_within(1.., 0);
            self.tail_len -= 1;
        }
        self.tail[self.tail_len as usize] = (d, m.time_ms);
        self.tail_len += 1;
    }

    /// When the rider passed `distance_m` (interpolated), if they have.
    pub fn time_at(&self, distance_m: f64) -> Option<Millis> {
        let tail = self.tail();
        if tail.first().is_some_and(|p| p.0 < distance_m) {
            // Every earlier passage lies before `distance_m` too (distances never decrease), so
            // the answer is in the inline tail: the same search and interpolation, no cold log.
            let k = tail.partition_point(|p| p.0 < distance_m);
            return tail
                .get(k)
                .map(|&b| interpolate(tail[k - 1], b, distance_m));
        }
        let passages = &self.passages;
        let i = partition_point_from_end(passages.len(), |i| passages[i].0 < distance_m);
        self.time_at_index(distance_m, i)
    }

    /// The latest passages (up to eight), oldest first: the end of the passage log.
    pub fn tail(&self) -> &[(f64, Millis)] {
        &self.tail[..self.tail_len as usize]
    }

    /// Event times of the latest applied fixes (up to `RECENT_FIXES`), oldest first.
    fn recent_times(&self) -> &[Millis] {
        &self.recent_times[..self.recent_len as usize]
    }

    /// [`RiderTrack::time_at`] with the search starting at `hint`, the passage index an earlier
    /// query at a nearby distance ended at (updated): many queries at neighbouring distances,
    /// such as every rider's gap to the leader in road order, then cost a few probes each.
    pub fn time_at_near(&self, distance_m: f64, hint: &mut usize) -> Option<Millis> {
        let passages = &self.passages;
        let i = partition_point_near(passages.len(), *hint, |i| passages[i].0 < distance_m);
        *hint = i;
        self.time_at_index(distance_m, i)
    }

    /// The passage time at `distance_m`, given the index of the first passage at or beyond it.
    fn time_at_index(&self, distance_m: f64, i: usize) -> Option<Millis> {
        if i >= self.passages.len() {
            return None;
        }
        if i == 0 {
            return Some(self.passages[0].1);
        }
        Some(interpolate(
            self.passages[i - 1],
            self.passages[i],
            distance_m,
        ))
    }

    /// When the rider passed (or, at their current speed, will pass) `distance_m`; projects at
    /// most 30 s beyond the last fix.
    pub fn time_at_or_projected(&self, distance_m: f64) -> Option<Millis> {
        let t = self.time_at(distance_m);
        self.or_projected(distance_m, t)
    }

    /// [`RiderTrack::time_at_or_projected`] searching from a hint, as in
    /// [`RiderTrack::time_at_near`].
    pub fn time_at_or_projected_near(&self, distance_m: f64, hint: &mut usize) -> Option<Millis> {
        let t = self.time_at_near(distance_m, hint);
        self.or_projected(distance_m, t)
    }

    /// A passage time, or else the projection of the rider to `distance_m`.
    fn or_projected(&self, distance_m: f64, passed: Option<Millis>) -> Option<Millis> {
        if let Some(t) = passed {
            return Some(t);
        }
        let (d, t) = self.last_passage()?;
        let v = self.speed_mps();
        let ahead_s = (distance_m - d) / v;
        (v > 0.5 && ahead_s <= 30.0).then(|| t + (ahead_s * 1000.0) as Millis)
    }

    /// Distance at `t`, projected from the last fix at the current speed (at most 30 s ahead).
    pub fn distance_projected(&self, t: Millis) -> Option<f64> {
        let (d, last) = self.last_passage()?;
        let dt = ((t - last) as f64 / 1000.0).clamp(0.0, 30.0);
        Some(d + self.speed_mps() * dt)
    }

    /// Distance reached at time `t` (the passage log read the other way).
    pub fn distance_at(&self, t: Millis) -> Option<f64> {
        let passages = &self.passages;
        let i = partition_point_from_end(passages.len(), |i| passages[i].1 <= t);
        (i > 0).then(|| self.passages[i - 1].0)
    }

    /// Every applied fix, in event-time order.
    pub fn fixes(&self) -> impl Iterator<Item = &StoredFix> + '_ {
        self.fixes.iter()
    }

    /// The last applied fix.
    pub fn last(&self) -> Option<&StoredFix> {
        self.last_fix.as_ref()
    }

    /// The last passage: (distance, time).
    pub fn last_passage(&self) -> Option<(f64, Millis)> {
        self.tail().last().copied()
    }

    /// Smoothed speed along the course, m/s.
    pub fn speed_mps(&self) -> f64 {
        self.matcher.speed_mps()
    }

    /// Number of applied fixes.
    pub fn fix_count(&self) -> usize {
        self.fixes.len()
    }

    /// Reads a word from every part of the rider's state and from the ends of its logs (a
    /// meaningless checksum): the tick calls it for a batch of riders before updating them, so
    /// that their cold cache lines load in parallel instead of one rider after another.
    pub fn warm(&self) -> u64 {
        let ends = self.fixes.last().map_or(0, |f| f.record.time_ms as u64)
            ^ self.passages.last().map_or(0, |p| p.1 as u64);
        let inline = self.recent_times[0] as u64
            ^ self.recent_times[RECENT_FIXES - 1] as u64
            ^ self.tail[0].1 as u64
            ^ self.tail[TAIL - 1].1 as u64
            ^ self.last_fix.map_or(0, |f| f.matched.distance_m.to_bits())
            ^ u64::from(self.info.id);
        ends ^ inline ^ self.matcher.warm()
    }

    /// Median interval between the last few fixes, ms (the device's own reporting interval).
    pub fn report_interval_ms(&self) -> Option<Millis> {
        if self.fixes.len() < 3 {
            return None;
        }
        // A device reporting steadily (the usual case), known without looking at every gap:
        // every gap is the median.
        let n = self.recent_len as usize;
        if self.equal_gaps as usize + 1 == n {
            return Some(self.recent_times[n - 1] - self.recent_times[n - 2]);
        }
        let mut gaps = [0 as Millis; RECENT_FIXES - 1];
        let mut k = 0;
        for w in self.recent_times[..n].windows(2) {
            gaps[k] = w[1] - w[0];
            k += 1;
        }
        let gaps = &mut gaps[..k];
        gaps.sort_unstable();
        Some(gaps[k / 2])
    }
}

/// How many of the gaps between consecutive `times`, counted back from the last one, equal the
/// last one (0 with fewer than two times).
fn equal_gaps_at_end(times: &[Millis]) -> usize {
    let n = times.len();
    if n < 2 {
        return 0;
    }
    let last = times[n - 1] - times[n - 2];
    let mut m = 1;
    while m < n - 1 && times[n - 1 - m] - times[n - 2 - m] == last {
        m += 1;
    }
    m
}

/// [`first_false`] over `0..n` (`holds` is true for a prefix), searched by galloping out from
/// `hint` in whichever direction the answer lies: O(log distance) from the hint.
pub(super) fn partition_point_near(n: usize, hint: usize, holds: impl Fn(usize) -> bool) -> usize {
    let h = hint.min(n);
    if h > 0 && !holds(h - 1) {
        // The answer is at most h - 1: gallop down.
        let mut hi = h - 1;
        let mut step = 1usize;
        loop {
            let probe = hi.saturating_sub(step);
            if holds(probe) {
                return first_false(probe + 1, hi, &holds);
            }
            if probe == 0 {
                return 0;
            }
            hi = probe;
            step = step.saturating_mul(2);
        }
    }
    // Everything before h satisfies `holds`: gallop up.
    let mut lo = h;
    let mut step = 1usize;
    while lo < n {
        let probe = lo.saturating_add(step - 1).min(n - 1);
        if !holds(probe) {
            return first_false(lo, probe, &holds);
        }
        lo = probe + 1;
        step = step.saturating_mul(2);
    }
    n
}

/// Decides `geodesic distance <= limit_m` from a flat-earth estimate when the estimate is clearly
/// on one side (the exact ellipsoidal distance is within 0.6 % of a spherical one, and the flat
/// approximation is far better than that below 20 km); None when it is too close to call and the
/// exact (iterative) distance must decide. Only short spans (under 0.05 rad of longitude and
/// 20 km) are estimated; between fixes a second apart it always decides.
fn surely_within(lat1: f64, lon1: f64, lat2: f64, lon2: f64, limit_m: f64) -> Option<bool> {
    /// Mean Earth radius, metres.
    const R: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = p2 - p1;
    let dlambda = (lon2 - lon1).to_radians();
    if !(dphi.is_finite() && dlambda.is_finite() && limit_m.is_finite()) || dlambda.abs() > 0.05 {
        return None;
    }
    // The estimate below is at most R (|dlambda| + |dphi|) (cos <= 1, and a hypotenuse is at
    // most the sum of its legs; the wider margins cover rounding): when even that bound is well
    // within the limit, the estimate is too, and the series and the square root are skipped
    // (between fixes a second apart, always).
    let bound = R * (dlambda.abs() + dphi.abs());
    if bound <= 19_000.0 && bound * 1.03 + 0.02 < limit_m {
        return Some(true);
    }
    // cos of the mean latitude, by a few terms of its series (|x| <= pi/2): no libm call.
    let m = (p1 + p2) * 0.5;
    let x2 = m * m;
    let cos_m =
        1.0 - x2 / 2.0 + x2 * x2 / 24.0 - x2 * x2 * x2 / 720.0 + x2 * x2 * x2 * x2 / 40_320.0;
    let (x, y) = (dlambda * cos_m.clamp(0.0, 1.0), dphi);
    let estimate = R * (x * x + y * y).sqrt();
    if estimate > 20_000.0 {
        None
    } else if estimate * 1.02 + 0.01 < limit_m {
        Some(true)
    } else if estimate * 0.98 - 0.01 > limit_m {
        Some(false)
    } else {
        None
    }
}

/// The time at `distance_m` between passages `a` and `b`, by linear interpolation.
pub(super) fn interpolate(a: (f64, Millis), b: (f64, Millis), distance_m: f64) -> Millis {
    let span = b.0 - a.0;
    let t = if span > 0.0 {
        (distance_m - a.0) / span
    } else {
        1.0
    };
    a.1 + round((b.1 - a.1) as f64 * t) as Millis
}

/// [`first_false`] over `0..n` (`holds` is true for a prefix), searched by galloping back from
/// the end: live queries land on recent passages, so this touches a few cache lines of a long
/// log instead of a full binary search over cold memory, and it is never worse than O(log n).
fn partition_point_from_end(n: usize, holds: impl Fn(usize) -> bool) -> usize {
    let mut hi = n;
    let mut step = 1usize;
    while hi > 0 {
        let probe = hi.saturating_sub(step);
        if holds(probe) {
            return first_false(probe + 1, hi, &holds);
        }
        hi = probe;
        step = step.saturating_mul(2);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::{
        RECENT_FIXES, SeenSeqs, equal_gaps_at_end, partition_point_from_end, partition_point_near,
        surely_within,
    };
    use crate::core::geodesy::geodesic_distance_m;
    use proptest::prelude::*;

    #[test]
    fn what_a_tick_reads_per_rider_comes_first() {
        use super::super::live::RiderFacts;
        use super::RiderTrack;
        // The track: everything before the seen sequence numbers, up to the passage log's open
        // chunk (a `ChunkedLog` starts with it; its sealed chunks are read only by searches
        // that the inline tail cannot answer).
        let open_chunk = std::mem::size_of::<Vec<(f64, crate::core::Millis)>>();
        assert!(std::mem::offset_of!(RiderTrack, passages) + open_chunk <= 512);
        assert!(
            std::mem::offset_of!(RiderTrack, checkpoints) >= std::mem::offset_of!(RiderTrack, seen)
        );
        assert!(std::mem::offset_of!(RiderTrack, info) >= std::mem::offset_of!(RiderTrack, seen));
        // The facts every tick reads (status, road order, view) before the passage tail.
        assert!(std::mem::offset_of!(RiderFacts, eta_if_racing) + 16 <= 128);
        assert_eq!(std::mem::offset_of!(RiderFacts, tail), 128);
    }

    proptest! {
        #[test]
        fn search_from_a_hint_agrees_with_binary_search(
            mut v in proptest::collection::vec(0i64..1000, 0..300),
            x in -5i64..1005,
            hint in 0usize..400,
        ) {
            v.sort_unstable();
            prop_assert_eq!(partition_point_near(v.len(), hint, |i| v[i] < x), v.partition_point(|&e| e < x));
            prop_assert_eq!(partition_point_near(v.len(), hint, |i| v[i] <= x), v.partition_point(|&e| e <= x));
        }

        #[test]
        fn quick_plausibility_verdicts_agree_with_the_geodesic(
            lat in -89.9f64..89.9,
            lon in -180.0f64..180.0,
            north_m in -30_000.0f64..30_000.0,
            east_m in -30_000.0f64..30_000.0,
            limit_m in 0.0f64..40_000.0,
        ) {
            let lat2 = (lat + north_m / 111_000.0).clamp(-89.99, 89.99);
            let lon2 = lon + east_m / (111_000.0 * lat.to_radians().cos().max(0.01));
            if let Some(verdict) = surely_within(lat, lon, lat2, lon2, limit_m) {
                prop_assert_eq!(verdict, geodesic_distance_m(lat, lon, lat2, lon2) <= limit_m);
            }
        }

        #[test]
        fn quick_plausibility_decides_between_neighbouring_fixes(
            lat in -70.0f64..70.0,
            lon in -180.0f64..180.0,
            north_m in -20.0f64..20.0,
            east_m in -20.0f64..20.0,
        ) {
            let lat2 = lat + north_m / 111_000.0;
            let lon2 = lon + east_m / (111_000.0 * lat.to_radians().cos());
            // One second at road-cycling speed plus the noise allowance.
            prop_assert_eq!(surely_within(lat, lon, lat2, lon2, 85.0), Some(true));
        }

        #[test]
        fn seen_sequence_numbers_behave_as_a_set(
            seqs in proptest::collection::vec(prop_oneof![0u32..60, Just(u32::MAX), Just(u32::MAX - 1), 1u32..5], 0..200),
            in_order in 0usize..100,
        ) {
            // A device counting up, with repeats and stragglers mixed in.
            let mut all: Vec<u32> = (1..=in_order as u32).collect();
            all.extend(seqs);
            let (mut seen, mut set) = (SeenSeqs::default(), std::collections::BTreeSet::new());
            for seq in all {
                prop_assert_eq!(seen.insert(seq), set.insert(seq), "{}", seq);
            }
        }

        #[test]
        fn equal_gaps_kept_while_pushing_is_the_count_of_the_times(
            gaps in proptest::collection::vec(prop_oneof![Just(1000i64), Just(5000), 0i64..3000], 0..40),
        ) {
            let mut track = super::RiderTrack::new(super::RiderConfig {
                id: 1,
                bib: "1".into(),
                name: "r".into(),
                team: String::new(),
                device_id: "d".into(),
                device_token_sha256: None,
            }, 0, 1);
            let mut t = 1_700_000_000_000i64;
            for g in gaps {
                t += g;
                track.push_recent_time(t);
                let times = track.recent_times();
                prop_assert!(times.len() <= RECENT_FIXES);
                prop_assert_eq!(track.equal_gaps as usize, equal_gaps_at_end(times));
            }
        }

        #[test]
        fn galloping_search_agrees_with_binary_search(
            mut v in proptest::collection::vec(0i64..1000, 0..300),
            x in -5i64..1005,
        ) {
            v.sort_unstable();
            prop_assert_eq!(partition_point_from_end(v.len(), |i| v[i] < x), v.partition_point(|&e| e < x));
            prop_assert_eq!(partition_point_from_end(v.len(), |i| v[i] <= x), v.partition_point(|&e| e <= x));
        }
    }
}
