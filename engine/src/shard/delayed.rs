//! The publish-delay queue: a delayed race's outputs waiting until its fans may see them. A long
//! delay at 1 Hz holds millions of rider states, so each is kept packed in 44 bytes instead of
//! the 104 of a `RiderView`; a state that does not pack exactly is kept whole, so what comes out
//! is bit for bit what went in. Knows nothing of ticks or publishers: the shard pushes and pops.

use std::collections::VecDeque;

use flevum_protocol::{Alert, Delta, RiderStatus, RiderView};

use crate::core::race::round;
use crate::core::{Millis, RaceOutput};

/// Outputs in the order they were pushed, each with the time it is due.
#[derive(Default)]
pub struct DelayedQueue {
    /// The outputs and their due times, due time first (the shard pushes in tick order).
    entries: VecDeque<(Millis, Held)>,
    /// Rider states held in all deltas (the gauge's count).
    states: usize,
}

/// One output as the queue holds it.
enum Held {
    /// A tick's delta with its rider states packed.
    Delta(HeldDelta),
    /// An alert, kept as it is (alerts are few).
    Alert(Alert),
}

/// A delta whose `states` were moved out into `packed` and `whole`.
struct HeldDelta {
    /// The delta without its states (groups, alerts and the tick's identity).
    frame: Delta,
    /// The states that pack exactly, in their order in the delta, less the whole ones.
    packed: Vec<PackedState>,
    /// The states that do not, with their index in the delta (ascending).
    whole: Vec<(usize, RiderView)>,
}

impl DelayedQueue {
    /// An empty queue.
    pub fn new() -> DelayedQueue {
        DelayedQueue::default()
    }

    /// Queues `out`, due at `due`.
    pub fn push(&mut self, due: Millis, out: RaceOutput) {
        let held = match out {
            RaceOutput::Alert(alert) => Held::Alert(alert),
            RaceOutput::Delta(mut frame) => {
                let states = std::mem::take(&mut frame.states);
                self.states += states.len();
                let mut packed = Vec::with_capacity(states.len());
                let mut whole = Vec::new();
                for (i, view) in states.into_iter().enumerate() {
                    match PackedState::pack(&view, frame.time_ms) {
                        Some(p) => packed.push(p),
                        None => whole.push((i, view)),
                    }
                }
                Held::Delta(HeldDelta {
                    frame,
                    packed,
                    whole,
                })
            }
        };
        self.entries.push_back((due, held));
    }

    /// The first output if it is due at `now`, as it was pushed.
    pub fn pop_due(&mut self, now: Millis) -> Option<RaceOutput> {
        if self.entries.front().is_none_or(|(due, _)| *due > now) {
            return None;
        }
        let (_, held) = self.entries.pop_front()?;
        Some(match held {
            Held::Alert(alert) => RaceOutput::Alert(alert),
            Held::Delta(HeldDelta {
                mut frame,
                packed,
                whole,
            }) => {
                let n = packed.len() + whole.len();
                self.states -= n;
                let mut states = Vec::with_capacity(n);
                let mut packed = packed.iter();
                let mut whole = whole.into_iter().peekable();
                for i in 0..n {
                    if let Some((_, view)) = whole.next_if(|(at, _)| *at == i) {
                        states.push(view);
                    } else if let Some(p) = packed.next() {
                        states.push(p.unpack(frame.time_ms));
                    }
                }
                frame.states = states;
                RaceOutput::Delta(frame)
            }
        })
    }

    /// Rider states held (in all queued deltas).
    pub fn states(&self) -> usize {
        self.states
    }

    /// When the first output is due, if any is held.
    pub fn next_due(&self) -> Option<Millis> {
        self.entries.front().map(|(due, _)| *due)
    }
}

/// A rider state in 44 bytes. The engine publishes positions rounded to 1e-6°, distances to
/// the metre, speeds to 0.1 km/h and times in whole ms, so these fit in 32 bits (times relative
/// to the delta's); [`PackedState::pack`] checks that the state comes back bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PackedState {
    /// `rider_id`.
    rider_id: u32,
    /// `lat` × 1e6.
    lat_e6: i32,
    /// `lon` × 1e6.
    lon_e6: i32,
    /// `distance_m`, whole metres.
    distance_m: i32,
    /// `rank`.
    rank: u32,
    /// `gap_to_leader_ms`, [`NO_I32`] for None.
    gap_to_leader_ms: i32,
    /// `gap_to_ahead_ms`, [`NO_I32`] for None.
    gap_to_ahead_ms: i32,
    /// `group_id`, [`NO_U32`] for None.
    group_id: u32,
    /// `last_fix_ms` minus the delta's time.
    last_fix_rel_ms: i32,
    /// `eta_finish_ms` minus the delta's time, [`NO_I32`] for None.
    eta_rel_ms: i32,
    /// `speed_kmh` × 10.
    speed_dkmh: u16,
    /// `status`, by [`status_code`].
    status: u8,
    /// `battery_pct`, [`NO_U8`] for None.
    battery_pct: u8,
}

/// None in an `i32` field (a value equal to it does not pack).
const NO_I32: i32 = i32::MIN;
/// None in a `u32` field.
const NO_U32: u32 = u32::MAX;
/// None in a `u8` field.
const NO_U8: u8 = u8::MAX;

impl PackedState {
    /// Packs `view` (of a delta at `base_ms`), or None if it would not come back bit for bit.
    fn pack(view: &RiderView, base_ms: Millis) -> Option<PackedState> {
        // Destructured so that a new field of `RiderView` cannot be forgotten here.
        let RiderView {
            rider_id,
            lat,
            lon,
            distance_m,
            speed_kmh,
            rank,
            gap_to_leader_ms,
            gap_to_ahead_ms,
            group_id,
            status,
            last_fix_ms,
            eta_finish_ms,
            battery_pct,
        } = *view;
        let some_i32 = |v: Option<i64>| match v {
            None => Some(NO_I32),
            Some(v) => i32::try_from(v).ok().filter(|&v| v != NO_I32),
        };
        let packed = PackedState {
            rider_id,
            lat_e6: whole_i32(lat * 1e6)?,
            lon_e6: whole_i32(lon * 1e6)?,
            distance_m: whole_i32(distance_m)?,
            rank,
            gap_to_leader_ms: some_i32(gap_to_leader_ms)?,
            gap_to_ahead_ms: some_i32(gap_to_ahead_ms)?,
            group_id: match group_id {
                None => NO_U32,
                Some(g) if g != NO_U32 => g,
                Some(_) => return None,
            },
            last_fix_rel_ms: i32::try_from(last_fix_ms.checked_sub(base_ms)?).ok()?,
            eta_rel_ms: some_i32(match eta_finish_ms {
                None => None,
                Some(t) => Some(t.checked_sub(base_ms)?),
            })?,
            speed_dkmh: u16::try_from(whole_i32(f64::from(speed_kmh) * 10.0)?).ok()?,
            status: status_code(status),
            battery_pct: match battery_pct {
                None => NO_U8,
                Some(b) if b != NO_U8 => b,
                Some(_) => return None,
            },
        };
        same_bits(&packed.unpack(base_ms), view).then_some(packed)
    }

    /// The state as it was packed.
    fn unpack(&self, base_ms: Millis) -> RiderView {
        let opt_i64 = |v: i32| (v != NO_I32).then_some(i64::from(v));
        RiderView {
            rider_id: self.rider_id,
            lat: f64::from(self.lat_e6) / 1e6,
            lon: f64::from(self.lon_e6) / 1e6,
            distance_m: f64::from(self.distance_m),
            speed_kmh: (f64::from(self.speed_dkmh) / 10.0) as f32,
            rank: self.rank,
            gap_to_leader_ms: opt_i64(self.gap_to_leader_ms),
            gap_to_ahead_ms: opt_i64(self.gap_to_ahead_ms),
            group_id: (self.group_id != NO_U32).then_some(self.group_id),
            status: status_of(self.status),
            last_fix_ms: base_ms + i64::from(self.last_fix_rel_ms),
            eta_finish_ms: opt_i64(self.eta_rel_ms).map(|t| base_ms + t),
            battery_pct: (self.battery_pct != NO_U8).then_some(self.battery_pct),
        }
    }
}

/// `x` rounded, if it is finite and fits an `i32` other than [`NO_I32`].
fn whole_i32(x: f64) -> Option<i32> {
    let r = round(x);
    (r.is_finite() && r > f64::from(i32::MIN) && r <= f64::from(i32::MAX)).then_some(r as i32)
}

/// Whether two states are equal bit for bit (`-0.0` is not `0.0` on the wire).
fn same_bits(a: &RiderView, b: &RiderView) -> bool {
    a.rider_id == b.rider_id
        && a.lat.to_bits() == b.lat.to_bits()
        && a.lon.to_bits() == b.lon.to_bits()
        && a.distance_m.to_bits() == b.distance_m.to_bits()
        && a.speed_kmh.to_bits() == b.speed_kmh.to_bits()
        && a.rank == b.rank
        && a.gap_to_leader_ms == b.gap_to_leader_ms
        && a.gap_to_ahead_ms == b.gap_to_ahead_ms
        && a.group_id == b.group_id
        && a.status == b.status
        && a.last_fix_ms == b.last_fix_ms
        && a.eta_finish_ms == b.eta_finish_ms
        && a.battery_pct == b.battery_pct
}

/// A status as one byte.
fn status_code(status: RiderStatus) -> u8 {
    match status {
        RiderStatus::NotStarted => 0,
        RiderStatus::Racing => 1,
        RiderStatus::Stopped => 2,
        RiderStatus::OffCourse => 3,
        RiderStatus::SignalLost => 4,
        RiderStatus::Finished => 5,
        RiderStatus::Abandoned => 6,
    }
}

/// The status of a byte from [`status_code`].
fn status_of(code: u8) -> RiderStatus {
    match code {
        0 => RiderStatus::NotStarted,
        1 => RiderStatus::Racing,
        2 => RiderStatus::Stopped,
        3 => RiderStatus::OffCourse,
        4 => RiderStatus::SignalLost,
        5 => RiderStatus::Finished,
        _ => RiderStatus::Abandoned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(id: u32) -> RiderView {
        RiderView {
            rider_id: id,
            lat: 52.123456,
            lon: 5.654321,
            distance_m: 12_345.0,
            speed_kmh: 41.3,
            rank: 3,
            gap_to_leader_ms: Some(12_300),
            gap_to_ahead_ms: None,
            group_id: Some(2),
            status: RiderStatus::Racing,
            last_fix_ms: 1_750_000_000_000,
            eta_finish_ms: Some(1_750_003_600_000),
            battery_pct: Some(80),
        }
    }

    #[test]
    fn a_packed_state_is_44_bytes() {
        assert_eq!(std::mem::size_of::<PackedState>(), 44);
    }

    #[test]
    fn every_status_round_trips() {
        for status in [
            RiderStatus::NotStarted,
            RiderStatus::Racing,
            RiderStatus::Stopped,
            RiderStatus::OffCourse,
            RiderStatus::SignalLost,
            RiderStatus::Finished,
            RiderStatus::Abandoned,
        ] {
            assert_eq!(status_of(status_code(status)), status);
        }
    }

    #[test]
    fn states_that_do_not_pack_are_kept_whole_and_in_place() {
        let base = 1_750_000_001_000;
        let mut odd = vec![view(1), view(2), view(3), view(4), view(5), view(6)];
        odd[1].lat = 52.123_456_7; // finer than the engine rounds
        odd[3].distance_m = -0.0; // a sign the wire shows
        odd[4].eta_finish_ms = Some(i64::MAX);
        odd[5].last_fix_ms = base - 30 * 86_400_000; // beyond 32 bits of ms from the delta
        let delta = Delta {
            race_id: "r".into(),
            epoch: 1,
            tick: 7,
            time_ms: base,
            states: odd,
            groups: None,
            alerts: Vec::new(),
        };
        let mut queue = DelayedQueue::new();
        queue.push(base + 60_000, RaceOutput::Delta(delta.clone()));
        let Some(Held::Delta(held)) = queue.entries.front().map(|(_, h)| h) else {
            panic!("a delta is held as one");
        };
        assert_eq!(held.packed.len(), 2);
        assert_eq!(
            held.whole.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 3, 4, 5]
        );
        assert_eq!(queue.states(), 6);
        assert!(queue.pop_due(base + 59_999).is_none(), "not due yet");
        let Some(RaceOutput::Delta(out)) = queue.pop_due(base + 60_000) else {
            panic!("the delta comes back");
        };
        assert_eq!(out, delta);
        assert!(out.states[3].distance_m.is_sign_negative());
        assert_eq!(queue.states(), 0);
    }

    #[test]
    fn outputs_come_back_in_order_when_due() {
        let mut queue = DelayedQueue::new();
        let alert = |seq: u64| Alert {
            seq,
            epoch: 1,
            time_ms: 0,
            race_time_ms: 0,
            course_km: 1.5,
            riders: vec![1],
            severity: flevum_protocol::Severity::Info,
            kind: flevum_protocol::AlertKind::RaceStarted,
        };
        let delta = |tick: u64| Delta {
            race_id: "r".into(),
            epoch: 1,
            tick,
            time_ms: 1_000 * tick as i64,
            states: vec![view(tick as u32)],
            groups: None,
            alerts: Vec::new(),
        };
        queue.push(10, RaceOutput::Delta(delta(1)));
        queue.push(10, RaceOutput::Alert(alert(1)));
        queue.push(20, RaceOutput::Delta(delta(2)));
        let mut out = Vec::new();
        while let Some(o) = queue.pop_due(15) {
            out.push(o);
        }
        assert_eq!(
            out,
            vec![RaceOutput::Delta(delta(1)), RaceOutput::Alert(alert(1))]
        );
        assert_eq!(queue.states(), 1);
        assert_eq!(queue.pop_due(20), Some(RaceOutput::Delta(delta(2))));
        assert!(queue.pop_due(i64::MAX).is_none());
    }

    /// Views as the engine makes them (rounded), and raw ones.
    fn any_view() -> impl Strategy<Value = RiderView> {
        (
            (
                any::<u32>(),
                -90_000_000i64..=90_000_000,
                -180_000_000i64..=180_000_000,
            ),
            (prop_oneof![(0.0..500_000.0f64).prop_map(f64::round), any::<f64>()]),
            (0u32..3000).prop_map(|s| (f64::from(s) / 10.0) as f32),
            (
                any::<u32>(),
                any::<Option<i64>>(),
                proptest::option::of(-3_600_000i64..3_600_000),
            ),
            (
                any::<Option<u32>>(),
                0u8..7,
                -100_000i64..1_000,
                any::<Option<i64>>(),
            ),
            (any::<Option<u8>>(), any::<bool>(), any::<f64>()),
        )
            .prop_map(
                |(
                    (id, lat, lon),
                    distance_m,
                    speed_kmh,
                    (rank, g1, g2),
                    (group, st, fix, eta),
                    (battery, raw, x),
                )| {
                    RiderView {
                        rider_id: id,
                        lat: if raw { x } else { lat as f64 / 1e6 },
                        lon: lon as f64 / 1e6,
                        distance_m,
                        speed_kmh,
                        rank,
                        gap_to_leader_ms: g1,
                        gap_to_ahead_ms: g2,
                        group_id: group,
                        status: status_of(st),
                        last_fix_ms: 1_750_000_000_000 + fix,
                        eta_finish_ms: eta,
                        battery_pct: battery,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn whatever_is_pushed_comes_back_bit_for_bit(views in proptest::collection::vec(any_view(), 0..20)) {
            let delta = Delta {
                race_id: "r".into(),
                epoch: 1,
                tick: 1,
                time_ms: 1_750_000_000_000,
                states: views,
                groups: None,
                alerts: Vec::new(),
            };
            let mut queue = DelayedQueue::new();
            queue.push(0, RaceOutput::Delta(delta.clone()));
            let Some(RaceOutput::Delta(out)) = queue.pop_due(0) else {
                panic!("the delta comes back");
            };
            prop_assert_eq!(out.states.len(), delta.states.len());
            for (a, b) in out.states.iter().zip(&delta.states) {
                prop_assert!(same_bits(a, b), "{a:?} != {b:?}");
            }
        }
    }
}
