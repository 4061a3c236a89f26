//! Dense per-rider state the race tick reads: the rider id → slot table, each rider's facts
//! cached from their fix log (refreshed only when the log changes), and the road-order sort.
//!
//! Owns no race logic of its own: what a status, gap or view means stays in the race module;
//! this keeps the tick to flat arrays indexed by slot instead of map lookups per rider.

use flevum_protocol::RiderStatus;

use super::rider::{RiderTrack, interpolate, partition_point_near};
use super::{PrivacyZone, in_zones};
use crate::core::{Course, Millis};

/// Marks "no slot" in the direct table.
const NO_SLOT: u32 = u32::MAX;

/// Rider id → slot (the rider's index in id order).
#[derive(Debug, Clone)]
pub(super) struct RiderSlots {
    /// Rider ids in ascending order: slot `i` is `ids[i]`.
    ids: Vec<u32>,
    /// Slot by id when ids are small enough for a direct table (the usual bib-like numbering).
    direct: Vec<u32>,
}

impl RiderSlots {
    /// A table for unique `ids` in ascending order.
    pub(super) fn new(ids: Vec<u32>) -> RiderSlots {
        let max = ids.last().map_or(0, |&m| m as usize);
        let direct = if max <= ids.len() * 4 + 4096 {
            let mut direct = vec![NO_SLOT; max + 1];
            for (slot, &id) in ids.iter().enumerate() {
                direct[id as usize] = slot as u32;
            }
            direct
        } else {
            Vec::new()
        };
        RiderSlots { ids, direct }
    }

    /// The slot of a rider id.
    pub(super) fn get(&self, id: u32) -> Option<usize> {
        if self.direct.is_empty() {
            self.ids.binary_search(&id).ok()
        } else {
            match self.direct.get(id as usize) {
                Some(&s) if s != NO_SLOT => Some(s as usize),
                _ => None,
            }
        }
    }

    /// The rider id in a slot.
    pub(super) fn id(&self, slot: usize) -> u32 {
        self.ids[slot]
    }

    /// Number of riders.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// What the tick needs to know about one rider, derived from the fix and passage logs; valid
/// until the rider's applied fixes, the start time or the course change.
///
/// `repr(C)` keeps the declaration order, set by when the fields are read: every tick reads the
/// first 128 bytes of every rider (status, road order, view), and only a recomputed time gap
/// reads the passage tail behind them.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub(super) struct RiderFacts {
    /// Event time of the last applied fix.
    pub last_time: Option<Millis>,
    /// Finish time, once the rider has crossed the line after the start.
    pub finish_time: Option<Millis>,
    /// Silence after which the device counts as lost, ms.
    pub lost_after_ms: Millis,
    /// Latest passage: (distance along course, time).
    pub last_passage: Option<(f64, Millis)>,
    /// Smoothed speed along the course, m/s.
    pub speed_mps: f64,
    /// The last fix was judged off course.
    pub off_course: bool,
    /// Moved less than the stopped speed over the stopped window before the last fix.
    pub stopped: bool,
    /// Battery of the last fix, when it is a valid percentage.
    pub battery_pct: Option<u8>,
    /// Published speed, km/h with one decimal.
    pub view_speed_kmh: f32,
    /// Published latitude (rounded to 1e-6°).
    pub view_lat: f64,
    /// Published longitude (rounded to 1e-6°).
    pub view_lon: f64,
    /// Published distance along course (rounded), metres.
    pub view_distance_m: f64,
    /// Published time of the last fix, ms (0 without fixes).
    pub last_fix_ms: Millis,
    /// Finish ETA (whole seconds) for when the rider is racing.
    pub eta_if_racing: Option<Millis>,
    /// The latest passages (oldest first; `tail_len` valid), so that the time gaps of the rider
    /// behind, computed in road order, read them from here rather than from the rider's track.
    pub tail: [(f64, Millis); 8],
    /// How many of `tail` are valid.
    pub tail_len: usize,
    /// Distance of the last fix from the course, metres (for the off-course alert).
    pub lateral_m: f64,
    /// The device's own reporting interval (the race's until it is known), ms: read only while
    /// finishes are held (see `Race::finish_settle_ms`).
    pub report_interval_ms: Millis,
    /// The last fix was not placed on the course (judged off it, or matched nowhere) and lies
    /// inside a privacy zone: its raw position is replaced by the course point, and nothing
    /// measured from it (the off-course alert's offset) is published.
    pub in_privacy_zone: bool,
}

/// Race-wide inputs of [`RiderFacts::refresh`].
pub(super) struct FactInputs<'a> {
    /// The course (length, positions).
    pub course: &'a Course,
    /// Race start, ms.
    pub start_ms: Millis,
    /// Configured reporting interval, ms (when the device's own is not known yet).
    pub report_interval_ms: Millis,
    /// Reporting intervals without a fix before the signal counts as lost.
    pub signal_lost_intervals: f64,
    /// Stopped window, ms.
    pub stopped_window_ms: Millis,
    /// Stopped speed, m/s.
    pub stopped_speed_mps: f64,
    /// A rider within this distance of the end has finished, metres.
    pub finish_tolerance_m: f64,
    /// The organiser's privacy zones (positions inside are never published).
    pub privacy_zones: &'a [PrivacyZone],
}

impl RiderFacts {
    /// Sets the facts of a rider from their logs, field by field in place (building a new value
    /// and moving it in cost a 280-byte copy per rider and busy tick).
    pub(super) fn refresh(&mut self, rider: &RiderTrack, inputs: &FactInputs<'_>) {
        let course = inputs.course;
        let last = rider.last();
        let last_passage = rider.last_passage();
        let speed = rider.speed_mps();
        let length = course.length_m();
        // Most riders have not reached the line: skip the passage-log search for them.
        let finish_time = match last_passage {
            Some((d, _)) if d >= length - inputs.finish_tolerance_m || d.is_nan() => rider
                .time_at(length - inputs.finish_tolerance_m)
                .filter(|&t| t >= inputs.start_ms),
            _ => None,
        };
        let interval = rider
            .report_interval_ms()
            .unwrap_or(inputs.report_interval_ms);
        let lost_after_ms =
            ((interval as f64 * inputs.signal_lost_intervals) as Millis).max(20_000);
        let window = inputs.stopped_window_ms;
        let stopped = last.is_some_and(|f| {
            let t = f.record.time_ms;
            let Some((d_now, _)) = last_passage else {
                return false;
            };
            if t - inputs.start_ms < window {
                return false;
            }
            let threshold = inputs.stopped_speed_mps * window as f64 / 1000.0;
            // A recent passage inside the window that is already `threshold` behind proves the
            // rider moved: the distance at the window's start can only be smaller. Decides most
            // riders from the inline tail without reading the log.
            let moved = rider
                .tail()
                .iter()
                .find(|p| p.1 > t - window)
                .is_some_and(|p| d_now - p.0 >= threshold);
            !moved
                && rider
                    .distance_at(t - window)
                    .is_some_and(|d_then| d_now - d_then < threshold)
        });
        let last_fix_ms = last.map_or(0, |f| f.record.time_ms);
        let distance_m = last_passage.map_or(0.0, |(d, _)| d);
        // The last fix's matched segment is where the course lookups start.
        let near = last.map_or(0, |f| f.matched.segment);
        let ((lat, lon), in_privacy_zone) = match last {
            Some(f) if f.matched.matched && !f.matched.off_course => {
                (position_near(course, distance_m, near), false)
            }
            // Off the course the raw position is shown, unless it lies in a privacy zone: then
            // the last point on the course stands in for it.
            Some(f) if in_zones(inputs.privacy_zones, f.record.lat_deg(), f.record.lon_deg()) => {
                (position_near(course, distance_m, near), true)
            }
            Some(f) => ((f.record.lat_deg(), f.record.lon_deg()), false),
            None => (course.position_at(0.0), false),
        };
        let remaining = length - distance_m;
        let recent = rider.tail();
        let tail_len = recent.len().min(self.tail.len());
        if let Ok(full) = <&[(f64, Millis); 8]>::try_from(recent) {
            // The usual case, a full tail: a copy of fixed size (inlined, no `memcpy` call).
            self.tail = *full;
        } else {
            self.tail[..tail_len].copy_from_slice(&recent[recent.len() - tail_len..]);
            // Entries beyond `tail_len` are never read; zeroed as a new value would have them.
            self.tail[tail_len..].fill((0.0, 0));
        }
        self.last_time = last.map(|f| f.record.time_ms);
        self.last_passage = last_passage;
        self.tail_len = tail_len;
        self.speed_mps = speed;
        self.off_course = last.is_some_and(|f| f.matched.off_course);
        self.lateral_m = last.map_or(0.0, |f| f.matched.lateral_m);
        self.in_privacy_zone = in_privacy_zone;
        self.battery_pct = last.map(|f| f.record.battery_pct).filter(|&b| b <= 100);
        self.finish_time = finish_time;
        self.report_interval_ms = interval;
        self.lost_after_ms = lost_after_ms;
        self.stopped = stopped;
        self.view_lat = round(lat * 1e6) / 1e6;
        self.view_lon = round(lon * 1e6) / 1e6;
        self.view_distance_m = round(distance_m);
        self.view_speed_kmh = (round(speed * 3.6 * 10.0) / 10.0) as f32;
        self.last_fix_ms = last_fix_ms;
        self.eta_if_racing = (speed > 1.0)
            .then(|| last_fix_ms + (remaining / speed * 1000.0) as Millis)
            .map(|t| t / 1000 * 1000);
    }

    /// Reads a word from every part of the facts (see [`RiderTrack::warm`]).
    pub(super) fn warm(&self) -> u64 {
        self.last_time.map_or(0, |t| t as u64)
            ^ self.tail[0].1 as u64
            ^ self.tail[7].1 as u64
            ^ self.view_lat.to_bits()
            ^ self.eta_if_racing.map_or(0, |t| t as u64)
    }

    /// The rider's status at `watermark` (`abandoned` and `started` are race facts).
    pub(super) fn status(
        &self,
        abandoned: bool,
        started: bool,
        start_ms: Millis,
        watermark: Millis,
    ) -> RiderStatus {
        if abandoned {
            return RiderStatus::Abandoned;
        }
        if self.finish_time.is_some() {
            return RiderStatus::Finished;
        }
        let Some(last_time) = self.last_time else {
            return RiderStatus::NotStarted;
        };
        if !started || last_time < start_ms {
            return RiderStatus::NotStarted;
        }
        if watermark - last_time > self.lost_after_ms {
            return RiderStatus::SignalLost;
        }
        if self.off_course {
            return RiderStatus::OffCourse;
        }
        if self.stopped {
            return RiderStatus::Stopped;
        }
        RiderStatus::Racing
    }

    /// When the rider passed `distance_m`, answered from the tail when the tail decides it
    /// (`Some(answer)`, the same as [`RiderTrack::time_at`]); `None` when the log must be read.
    pub(super) fn time_at_from_tail(&self, distance_m: f64) -> Option<Option<Millis>> {
        let tail = &self.tail[..self.tail_len];
        // Every earlier passage lies before `distance_m` too (distances never decrease).
        if !tail.first().is_some_and(|p| p.0 < distance_m) {
            return None;
        }
        // The partition point, found from the end: the rider behind is usually only a few
        // passages back in the tail (`tail[0]` is before `distance_m`, so `k` stays >= 1).
        let mut k = tail.len();
        while tail[k - 1].0 >= distance_m {
            k -= 1;
        }
        Some(
            tail.get(k)
                .map(|&b| interpolate(tail[k - 1], b, distance_m)),
        )
    }

    /// [`RiderTrack::time_at_or_projected`] from the facts; `passed` is [`RiderTrack::time_at`].
    pub(super) fn or_projected(&self, distance_m: f64, passed: Option<Millis>) -> Option<Millis> {
        if let Some(t) = passed {
            return Some(t);
        }
        let (d, t) = self.last_passage?;
        let v = self.speed_mps;
        let ahead_s = (distance_m - d) / v;
        (v > 0.5 && ahead_s <= 30.0).then(|| t + (ahead_s * 1000.0) as Millis)
    }

    /// Distance at `t`, projected from the last passage at the current speed (at most 30 s
    /// ahead); the same as [`RiderTrack::distance_projected`].
    pub(super) fn distance_projected(&self, t: Millis) -> Option<f64> {
        let (d, last) = self.last_passage?;
        let dt = ((t - last) as f64 / 1000.0).clamp(0.0, 30.0);
        Some(d + self.speed_mps * dt)
    }
}

/// `f64::round` (half away from zero, the sign of zero kept), without the libm call the
/// baseline x86-64 target makes for it, and without a float → integer conversion (Rust's
/// saturating `as` costs a dozen instructions): below 2^52, adding and subtracting 2^52 rounds
/// the magnitude to the nearest integer, ties to even, exactly; a tie that went down (to an even
/// integer, `rounded - a == -0.5`, exact by Sterbenz's lemma) is taken up instead.
pub(crate) fn round(x: f64) -> f64 {
    /// 2^52: from here on every double is an integer.
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let a = x.abs();
    if a < TWO_52 {
        let nearest = (a + TWO_52) - TWO_52;
        let rounded = if nearest - a == -0.5 {
            nearest + 1.0
        } else {
            nearest
        };
        rounded.copysign(x)
    } else {
        // NaN, infinities and doubles of 2^52 or more (all integers) round to themselves.
        x
    }
}

/// [`Course::position_at`] with the segment search starting at segment `near` (the same
/// arithmetic, so the same result; a rider's distance is nearly always in or next to the segment
/// their last fix matched, so this costs a probe or two instead of a search of the whole course).
pub(super) fn position_near(course: &Course, distance_m: f64, near: usize) -> (f64, f64) {
    let points = course.points();
    if points.len() < 2 {
        return course.position_at(distance_m);
    }
    // Usually the distance lies on segment `near` itself: two comparisons decide it (the
    // partition point is then `near + 1`).
    let on_near = near + 1 < points.len()
        && points[near].distance_m <= distance_m
        && points[near + 1].distance_m > distance_m;
    let i = if on_near {
        near
    } else {
        partition_point_near(points.len(), near + 1, |i| {
            points[i].distance_m <= distance_m
        })
        .saturating_sub(1)
        .min(points.len() - 2)
    };
    let (a, b) = (&points[i], &points[i + 1]);
    let t = ((distance_m - a.distance_m) / (b.distance_m - a.distance_m)).clamp(0.0, 1.0);
    (a.lat + (b.lat - a.lat) * t, a.lon + (b.lon - a.lon) * t)
}

/// One rider on the road while the road order is sorted: one integer that orders riders front
/// first (the projected distance as a [`descending_key`], then the rider id, then the slot, which
/// follows the id), so that the sort compares plain integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RoadEntry(u128);

impl RoadEntry {
    /// An entry for a rider projected to `projected_m` along the course.
    pub(super) fn new(projected_m: f64, rider_id: u32, slot: u32) -> RoadEntry {
        RoadEntry(
            (u128::from(descending_key(projected_m)) << 64)
                | (u128::from(rider_id) << 32)
                | u128::from(slot),
        )
    }

    /// The rider id.
    pub(super) fn rider_id(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The rider slot.
    pub(super) fn slot(self) -> u32 {
        self.0 as u32
    }

    /// The projected distance as its [`descending_key`] (the entry's high half).
    fn distance_key(self) -> u64 {
        (self.0 >> 64) as u64
    }
}

/// Maps a distance to an integer whose ascending order is the distance's descending
/// `f64::total_cmp` order (the same bit trick `total_cmp` uses).
pub(super) fn descending_key(x: f64) -> u64 {
    let bits = x.to_bits() as i64;
    let ordered = bits ^ ((((bits >> 63) as u64) >> 1) as i64);
    !((ordered as u64) ^ (1 << 63))
}

/// Buffers of the road sort, kept between ticks.
#[derive(Debug, Clone, Default)]
pub(super) struct RoadSortScratch {
    /// Packed sort keys: a distance key's high bits and the entry's index.
    keys: Vec<u64>,
    /// The entries in the packed keys' order (then swapped with the caller's list).
    entries: Vec<RoadEntry>,
}

/// Sorts the road order: front first, by projected distance, then by rider id (a total order,
/// so every correct sort gives the same result). The entries come in last tick's order, which
/// often changes only locally (between fixes, everyone is projected forward at their own speed),
/// so an insertion sort starts; as soon as it has moved riders more than a few places each on
/// average (new fixes reshuffled a dense bunch) it leaves the rest to [`sort_packed`].
pub(super) fn sort_road(entries: &mut Vec<RoadEntry>, scratch: &mut RoadSortScratch) {
    if !insertion_sort_bounded(entries) {
        sort_packed(entries, scratch);
    }
}

/// Insertion sort of `entries`; stops, leaving them partly sorted, and returns false as soon as
/// it has moved entries more than 16 places each on average (plus a start allowance).
fn insertion_sort_bounded(entries: &mut [RoadEntry]) -> bool {
    let mut moves = 0usize;
    for i in 1..entries.len() {
        let e = entries[i];
        let mut j = i;
        while j > 0 && e < entries[j - 1] {
            entries[j] = entries[j - 1];
            j -= 1;
        }
        entries[j] = e;
        moves += i - j;
        if moves > i * 16 + 256 {
            return false;
        }
    }
    true
}

/// Sorts road entries in any order by sorting 8-byte keys instead of the 16-byte entries (the
/// library sort costs about a third less): each key is the entry's distance key with its low
/// bits replaced by the entry's index. Clearing low bits keeps the distance order (a monotone
/// map), so only entries whose distance keys differ in those bits alone (sub-nanometre apart,
/// or equal) can come out of order; an insertion pass over the full entries puts them right.
fn sort_packed(entries: &mut Vec<RoadEntry>, scratch: &mut RoadSortScratch) {
    let n = entries.len();
    let index_bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    if index_bits > 32 {
        entries.sort_unstable();
        return;
    }
    let index_mask = (1u64 << index_bits) - 1;
    let keys = &mut scratch.keys;
    keys.clear();
    keys.extend(
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.distance_key() & !index_mask) | i as u64),
    );
    keys.sort_unstable();
    let sorted = &mut scratch.entries;
    sorted.clear();
    sorted.extend(keys.iter().map(|&k| entries[(k & index_mask) as usize]));
    std::mem::swap(entries, sorted);
    if !insertion_sort_bounded(entries) {
        // Not reached unless many riders share a distance: then the library sort.
        entries.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The order the road sort must give: distance descending by `total_cmp`, then id.
    fn road_before(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
    }

    #[test]
    fn round_is_f64_round_at_the_edges() {
        for x in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4_503_599_627_370_495.5,
            4_503_599_627_370_496.0,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(round(x).to_bits(), x.round().to_bits(), "{x:?}");
        }
        assert!(round(f64::NAN).is_nan());
    }

    proptest! {
        #[test]
        fn round_is_f64_round(bits in any::<u64>(), small in -1e7f64..1e7) {
            for x in [f64::from_bits(bits), small, small.trunc() + 0.5, small.trunc() - 0.5] {
                let (got, want) = (round(x), x.round());
                prop_assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "round({x:?}) = {got:?}, want {want:?}"
                );
            }
        }

        #[test]
        fn round_is_f64_round_near_halves(whole in 0u64..(1 << 53), below in any::<bool>()) {
            // Halves and the doubles next to them, up to 2^53.
            let half = whole as f64 + 0.5;
            let x = if below { f64::from_bits(half.to_bits() - 1) } else { half };
            for x in [x, -x, f64::from_bits(x.to_bits() + 1)] {
                prop_assert_eq!(round(x).to_bits(), x.round().to_bits(), "{:?}", x);
            }
        }

        #[test]
        fn tail_search_from_the_end_is_the_partition_point(
            steps in proptest::collection::vec((0u8..4, 1i64..3000), 1..=8),
            probe in -5.0f64..40.0,
        ) {
            // A passage tail: distances non-decreasing (repeats included), times increasing.
            let mut facts = RiderFacts::default();
            let (mut d, mut t) = (0.0, 1_000_000);
            for (i, &(step, dt)) in steps.iter().enumerate() {
                d += f64::from(step) * 2.5;
                t += dt;
                facts.tail[i] = (d, t);
            }
            facts.tail_len = steps.len();
            let tail = &facts.tail[..facts.tail_len];
            let want = (tail[0].0 < probe).then(|| {
                let k = tail.partition_point(|p| p.0 < probe);
                tail.get(k).map(|&b| interpolate(tail[k - 1], b, probe))
            });
            prop_assert_eq!(facts.time_at_from_tail(probe), want);
        }

        #[test]
        fn descending_key_orders_like_total_cmp(a in any::<f64>(), b in any::<f64>()) {
            prop_assert_eq!(descending_key(a).cmp(&descending_key(b)), b.total_cmp(&a));
        }

        #[test]
        fn road_sort_matches_the_library_sort(
            keys in proptest::collection::vec((0u8..40, 0u32..50), 0..400),
            shuffle in any::<bool>(),
        ) {
            let riders: Vec<(f64, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, &(d, jitter))| {
                    let jitter = if shuffle { f64::from(jitter) } else { 0.0 };
                    (f64::from(d) * 10.0 + jitter, (i as u32 * 7919) % 1000)
                })
                .collect();
            let mut entries: Vec<RoadEntry> = riders
                .iter()
                .enumerate()
                .map(|(i, &(d, id))| RoadEntry::new(d, id, i as u32))
                .collect();
            let mut expected = riders.clone();
            expected.sort_by(road_before);
            let want: Vec<u32> = expected.iter().map(|e| e.1).collect();
            // The packed sort on its own too (sort_road reaches it only after a reshuffle).
            let mut packed = entries.clone();
            sort_packed(&mut packed, &mut RoadSortScratch::default());
            let got: Vec<u32> = packed.iter().map(|e| e.rider_id()).collect();
            prop_assert_eq!(got, want.clone());
            sort_road(&mut entries, &mut RoadSortScratch::default());
            let got: Vec<u32> = entries.iter().map(|e| e.rider_id()).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn packed_sort_orders_distances_a_few_ulps_apart(
            offsets in proptest::collection::vec((0u64..20_000, 0u32..1000), 0..3000),
        ) {
            // Distances differing only in the low bits that the packed keys give to the index.
            let base = 2_500.0f64.to_bits();
            let mut entries: Vec<RoadEntry> = offsets
                .iter()
                .enumerate()
                .map(|(i, &(ulps, id))| RoadEntry::new(f64::from_bits(base + ulps), id, i as u32))
                .collect();
            let mut want = entries.clone();
            want.sort_unstable();
            sort_packed(&mut entries, &mut RoadSortScratch::default());
            prop_assert_eq!(entries, want);
        }

        #[test]
        fn position_near_is_position_at(
            distance_m in -100.0f64..3_300.0,
            near in 0usize..40,
        ) {
            let points: Vec<(f64, f64)> =
                (0..30).map(|i| (52.0 + f64::from(i) * 0.001, 5.0 + f64::from(i % 7) * 0.0005)).collect();
            let course = Course::from_points("test", &points.iter().map(|&(lat, lon)| (lat, lon, None)).collect::<Vec<_>>())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(position_near(&course, distance_m, near), course.position_at(distance_m));
        }

        #[test]
        fn slots_find_every_id_and_nothing_else(
            ids in proptest::collection::btree_set(0u32..100_000, 1..200),
            probe in 0u32..100_000,
        ) {
            let ids: Vec<u32> = ids.into_iter().collect();
            let slots = RiderSlots::new(ids.clone());
            for (i, &id) in ids.iter().enumerate() {
                prop_assert_eq!(slots.get(id), Some(i));
                prop_assert_eq!(slots.id(i), id);
            }
            prop_assert_eq!(slots.get(probe), ids.binary_search(&probe).ok());
        }
    }
}
