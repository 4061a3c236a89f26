//! The race state machine: riders in event time, ranking, cycling time gaps, groups, splits, ETA
//! and the alerts feed, as a deterministic sans-IO core.
//!
//! Inputs are `handle_fix`, `handle_tick` and `handle_admin`, each with an explicit `now`; outputs
//! are polled with `poll_output` (one delta per tick, and every alert) and `poll_timeout`. Fixes
//! wait in a reorder window and are applied in event-time order once the clock has passed them,
//! so the output does not depend on arrival order within the window. Does no IO and reads no clock.

pub mod config;
pub mod groups;
mod live;
mod parallel;
pub mod rider;

#[cfg(test)]
mod apply_threads_tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroUsize;

use flevum_protocol::{
    Alert, AlertKind, CourseSummary, Delta, GroupKind, GroupView, PositionRecord, RecordFlags,
    RiderInfo, RiderStatus, RiderView, Severity, Snapshot,
};
use serde::{Deserialize, Serialize};

pub use config::{
    AlertThresholds, CheckpointConfig, PrivacyZone, RaceConfig, RaceConfigError, RiderConfig,
    Sport, Visibility,
};
use groups::{GroupTracker, RoadPosition};
use live::{FactInputs, RiderFacts, RiderSlots, RoadEntry, sort_road};
use rider::{ApplyError, RiderTrack};

use super::{CourseError, CourseIndex, MatcherConfig, Millis};

/// Alerts kept for new fans and the alerts feed's resume.
const RECENT_ALERTS: usize = 200;
/// A rider within this distance of the end has finished, metres.
const FINISH_TOLERANCE_M: f64 = 15.0;
/// Runs a tick's due fixes are cut into per apply thread (see `Race::apply_due`).
const RUNS_PER_APPLY_THREAD: usize = 4;
/// Due fixes whose riders' state is loaded together before they are applied.
const WARM_BATCH: usize = 16;
/// Longest time a tick may be late before outputs say so, ms; also the default timer.
const DEFAULT_TICK_MS: Millis = 1000;

/// Something the race produced.
#[derive(Debug, Clone, PartialEq)]
pub enum RaceOutput {
    /// What changed in one tick (alerts of the tick included).
    Delta(Delta),
    /// One alert, for the alerts feed.
    Alert(Alert),
}

/// An organiser command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminCommand {
    /// Start the race now (if it has not started by its start time yet).
    Start,
    /// Close the race: later fixes are refused.
    Finish,
    /// Mark a rider as abandoned.
    Abandon {
        /// Rider.
        rider_id: u32,
    },
    /// Undo an abandon.
    Reinstate {
        /// Rider.
        rider_id: u32,
    },
    /// Move (or add) a checkpoint; splits are recomputed from the passage logs.
    MoveCheckpoint {
        /// Checkpoint name.
        name: String,
        /// New distance along the course, metres.
        distance_m: f64,
    },
}

/// Why an admin command failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdminError {
    /// No such rider.
    #[error("unknown rider {0}")]
    UnknownRider(u32),
    /// The race has already started.
    #[error("the race has already started")]
    AlreadyStarted,
    /// The race is closed.
    #[error("the race is finished")]
    Closed,
    /// The checkpoint cannot be placed there.
    #[error("{0}")]
    Checkpoint(String),
}

/// Why a race could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RaceError {
    /// The config is invalid.
    #[error("invalid race config: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<RaceConfigError>),
    /// A checkpoint does not fit the course.
    #[error(transparent)]
    Course(#[from] CourseError),
}

/// Why a fix was not used (counted per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum FixRejection {
    /// The rider is not registered in this race.
    #[error("unknown rider")]
    UnknownRider,
    /// The (rider, sequence) pair was seen before.
    #[error("duplicate sequence number")]
    Duplicate,
    /// The fix is timestamped after `now` plus the allowed clock skew.
    #[error("timestamp in the future")]
    FromTheFuture,
    /// The fix implies an impossible speed from a neighbouring fix.
    #[error("impossible speed")]
    ImpossibleSpeed,
    /// The race is closed.
    #[error("race finished")]
    RaceClosed,
}

impl FixRejection {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FixRejection::UnknownRider => "unknown_rider",
            FixRejection::Duplicate => "duplicate",
            FixRejection::FromTheFuture => "future",
            FixRejection::ImpossibleSpeed => "impossible_speed",
            FixRejection::RaceClosed => "race_closed",
        }
    }
}

/// A fix was accepted and waits for the reorder window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixAccepted {
    /// The engine time after which it is applied.
    pub applies_at_ms: Millis,
}

/// One rider's checkpoint passages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiderSplits {
    /// Rider.
    pub rider_id: u32,
    /// Passage time per checkpoint (course order), ms since the Unix epoch.
    pub passages: Vec<Option<Millis>>,
}

/// One point of a rider's published track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackSample {
    /// Device time, ms since the Unix epoch.
    pub time_ms: Millis,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Elevation, metres, if the device reported it.
    pub ele: Option<f64>,
    /// Distance along the course, metres, when the fix matched the course.
    pub distance_m: Option<f64>,
}

/// Estimated arrival at a point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Eta {
    /// Checkpoint name (or "Finish").
    pub name: String,
    /// Estimated time, ms since the Unix epoch.
    pub at_ms: Millis,
    /// One-sigma uncertainty, ms.
    pub uncertainty_ms: Millis,
}

/// What has been announced about one rider (so alerts fire on changes only).
#[derive(Debug, Clone, Default)]
struct RiderAnnouncements {
    /// Last status announced.
    status: Option<RiderStatus>,
    /// A low-battery alert was raised.
    battery_low: bool,
    /// A stop (or crash) alert covers the current stop.
    stop_announced: bool,
    /// Finish position, once announced.
    finished: Option<u32>,
    /// The big group the rider belonged to and since when the rider has been out of it.
    dropped_from: Option<(u32, Millis)>,
    /// The group the rider was in last tick, with its size.
    group: Option<(u32, usize)>,
    /// The rider went off course inside a privacy zone: the off-course alert waits until they
    /// leave the zone still off course (its offset would tell how far the zone's private place
    /// lies from the course), and a return to the course inside the zone announces nothing.
    off_course_held: bool,
}

/// The live state of one race.
#[derive(Debug, Clone)]
pub struct Race {
    /// Static facts.
    config: RaceConfig,
    /// Course with its R-tree.
    index: CourseIndex,
    /// The matcher's tuning, one for every rider (riders keep only their matching state).
    matcher: MatcherConfig,
    /// Changes when the race is rebuilt without its alert log; fans resync on a new epoch.
    epoch: u64,
    /// Riders in id order; a rider's index here is its slot in every per-rider array below.
    riders: Vec<RiderTrack>,
    /// Rider id → slot.
    slots: RiderSlots,
    /// Device id → rider id.
    devices: BTreeMap<String, u32>,
    /// Riders marked abandoned, by slot.
    abandoned: Vec<bool>,
    /// The race start has been announced.
    started: bool,
    /// When the organiser closed the race to new fixes (`Finish`), by its command's time: a
    /// delayed public feed must not call the race finished before its viewers see that moment.
    closed_at: Option<Millis>,
    /// Tick counter.
    tick: u64,
    /// Time of the last tick.
    last_tick_ms: Option<Millis>,
    /// How often ticks should come.
    tick_interval_ms: Millis,
    /// Rejected fixes per reason.
    rejections: BTreeMap<FixRejection, u64>,
    /// Outputs not yet polled.
    outputs: VecDeque<RaceOutput>,
    /// Last alert sequence number.
    alert_seq: u64,
    /// Recent alerts, oldest first.
    recent_alerts: VecDeque<Alert>,
    /// Alerts of the current tick (go into its delta).
    tick_alerts: Vec<Alert>,
    /// Group identity.
    groups: GroupTracker,
    /// Rider views as last published, by slot (so in id order); empty before the first tick.
    views: Vec<RiderView>,
    /// Groups as last published.
    group_views: Vec<GroupView>,
    /// Announcement state per rider, by slot.
    announced: Vec<RiderAnnouncements>,
    /// Last time an alert with a (kind, subject) key was raised, for cooldowns.
    cooldowns: BTreeMap<(&'static str, u64), Millis>,
    /// Road leader and since when.
    leader: Option<(u32, Millis)>,
    /// Leader last announced.
    announced_leader: Option<u32>,
    /// Breakaway group ids announced and not yet caught, with their riders.
    breakaways: BTreeMap<u32, Vec<u32>>,
    /// Every group id ever announced as a breakaway (a group is announced once).
    ever_breakaways: BTreeSet<u32>,
    /// Which side of each gap threshold a breakaway was on: (group, threshold index) → above.
    gap_sides: BTreeMap<(u32, usize), bool>,
    /// Checkpoints whose first passage was announced.
    checkpoints_announced: BTreeSet<String>,
    /// Finishers in order of finishing.
    finish_order: Vec<(u32, Millis)>,
    /// Crash sites announced: (distance, time).
    crash_sites: Vec<(f64, Millis)>,
    /// Riders seen stopping and not yet announced: rider → when first seen stopped.
    pending_stops: BTreeMap<u32, Millis>,
    /// Groups first seen splitting from a parent: new group → (parent, since).
    pending_splits: BTreeMap<u32, u32>,
    /// Per-rider facts derived from the fix logs, by slot; refreshed for riders whose applied
    /// fixes changed (everyone after an organiser command).
    facts: Vec<RiderFacts>,
    /// Accepted fixes waiting for the watermark, race-wide, in arrival order: a tick takes the
    /// due ones out of this one flat queue instead of reading every rider's own queue (a cache
    /// miss per rider).
    queue: Vec<QueuedFix>,
    /// Earliest event time in `queue` (`Millis::MAX` when it is empty).
    queue_min_ms: Millis,
    /// Tick at which each rider's applied fixes last changed, by slot (memoised gaps compare it).
    changed_tick: Vec<u64>,
    /// Every rider's facts must be recomputed and re-checked at the next tick (a new race, or an
    /// organiser command changed the start, a checkpoint or a rider's standing).
    refresh_all: bool,
    /// Fewest due fixes per apply thread: a tick with fewer than twice this many applies its
    /// fixes on one thread (starting one costs tens of microseconds).
    /// `Race::MIN_DUE_PER_APPLY_THREAD`, lowered by tests to exercise the parallel path.
    min_due_per_apply_thread: usize,
    /// Per-tick working state, kept to reuse its buffers.
    work: TickWork,
}

/// Per-tick working arrays (by slot unless said otherwise), kept between ticks so that a tick
/// allocates nothing for them; entries stamped with a tick number are valid in that tick only.
#[derive(Debug, Clone, Default)]
struct TickWork {
    /// This tick's due fixes, by slot, then time and sequence (the order they are applied in).
    due: Vec<QueuedFix>,
    /// Scratch for sorting `due`.
    due_scratch: Vec<QueuedFix>,
    /// Scratch for sorting `due`: where each slot's fixes start.
    slot_starts: Vec<u32>,
    /// Slots whose applied fixes changed this tick, ascending.
    dirty: Vec<usize>,
    /// Bounds of the runs `due` is applied in, indexes into `due`.
    cuts: Vec<usize>,
    /// What each run of `due` produced, kept for their buffers.
    outcomes: Vec<ApplyOutcome>,
    /// Status of every rider this tick.
    statuses: Vec<RiderStatus>,
    /// Riders on the road while being sorted; its order is also the next tick's starting order.
    road_entries: Vec<RoadEntry>,
    /// Riders on the road, front first, with gaps.
    road: Vec<RoadPosition>,
    /// (tick, index in `road`) of riders on the road.
    road_index: Vec<(u64, u32)>,
    /// Memoised time gaps.
    gaps: Vec<GapMemo>,
    /// (tick, index in the tracker's groups) of riders in a group.
    group_of: Vec<(u64, u32)>,
    /// Rank of every rider this tick (0 = unranked).
    rank: Vec<u32>,
    /// (tick) of riders already placed in the ranking by finish or road order.
    placed: Vec<u64>,
    /// Views that changed this tick, before they move into the delta.
    changed_views: Vec<RiderView>,
}

/// An accepted fix in the race's queue.
#[derive(Debug, Clone, Copy)]
struct QueuedFix {
    /// The rider's slot.
    slot: u32,
    /// The fix.
    record: PositionRecord,
}

impl QueuedFix {
    /// The order fixes are applied in: by rider slot, then event time, then sequence number
    /// (unique: a rider's sequence numbers are never queued twice).
    fn order_key(&self) -> (u32, Millis, u32) {
        (self.slot, self.record.time_ms, self.record.seq)
    }
}

/// A rider's last computed time gaps, reused while neither rider involved has new fixes.
#[derive(Debug, Clone, Copy)]
struct GapMemo {
    /// Slot of the rider ahead the gap was taken to (`u32::MAX`: none yet).
    ahead: u32,
    /// Tick the gap to the rider ahead was computed in.
    ahead_tick: u64,
    /// Gap to the rider ahead, ms.
    ahead_gap: Option<i64>,
    /// Slot of the road leader the gap was taken to (`u32::MAX`: none yet).
    leader: u32,
    /// Tick the gap to the leader was computed in.
    leader_tick: u64,
    /// Gap to the leader, ms.
    leader_gap: Option<i64>,
}

impl Default for GapMemo {
    fn default() -> Self {
        GapMemo {
            ahead: u32::MAX,
            ahead_tick: 0,
            ahead_gap: None,
            leader: u32::MAX,
            leader_tick: 0,
            leader_gap: None,
        }
    }
}

/// Rounds a time to the nearest 100 ms (fans see tenths of a second).
fn round_100(ms: i64) -> i64 {
    (ms + 50).div_euclid(100) * 100
}

/// Whether a position lies in one of the privacy zones.
fn in_zones(zones: &[PrivacyZone], lat: f64, lon: f64) -> bool {
    zones
        .iter()
        .any(|z| crate::core::geodesy::haversine_m(lat, lon, z.lat, z.lon) <= z.radius_m)
}

/// The race-wide inputs of [`RiderFacts::of`].
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

/// What applying one run of due fixes produced; runs are merged in slot order afterwards.
#[derive(Debug, Clone, Default)]
struct ApplyOutcome {
    /// Slots whose applied fixes changed, ascending.
    dirty: Vec<usize>,
    /// Fixes refused for an impossible speed.
    impossible: u64,
    /// SOS fixes applied, in application order: (rider id, km of the rider's last passage).
    sos: Vec<(u32, f64)>,
    /// The run's riders on the road this tick, in road order (the runs' lists are merged).
    road: Vec<RoadEntry>,
}

impl ApplyOutcome {
    /// Empties it for the next tick, keeping its buffers.
    fn clear(&mut self) {
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
fn cut_at_riders(due: &[QueuedFix], parts: usize, cuts: &mut Vec<usize>) {
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
            facts[local] = RiderFacts::of(rider, &inputs.facts);
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
            *facts = RiderFacts::of(rider, &inputs.facts);
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
    sort_road(&mut out.road);
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
    /// Fewest due fixes per thread for a tick to apply them on more than one thread
    /// (`RaceConfig::apply_threads`): below it, a thread's start costs more than it saves.
    pub const MIN_DUE_PER_APPLY_THREAD: usize = 256;

    /// Builds a race from a validated config and its course.
    pub fn new(config: RaceConfig, index: CourseIndex, epoch: u64) -> Result<Race, RaceError> {
        config.validate().map_err(RaceError::Config)?;
        let mut index = index;
        {
            // Checkpoints from the config join any the course file brought.
            let mut course = index.course().clone();
            for c in &config.checkpoints {
                match (c.km, c.lat, c.lon) {
                    (Some(km), _, _) => course.add_checkpoint_at(&c.name, km * 1000.0)?,
                    (None, Some(lat), Some(lon)) => {
                        course.add_checkpoint_near(&c.name, lat, lon, 300.0)?
                    }
                    _ => {}
                }
            }
            if !config.checkpoints.is_empty() {
                index = CourseIndex::new(course);
            }
        }
        let matcher = MatcherConfig {
            max_speed_mps: config.sport.max_speed_mps(),
            ..MatcherConfig::default()
        };
        let mut registered: Vec<&RiderConfig> = config.riders.iter().collect();
        registered.sort_by_key(|r| r.id);
        let riders: Vec<RiderTrack> = registered
            .iter()
            .map(|r| RiderTrack::new((*r).clone()))
            .collect();
        let slots = RiderSlots::new(registered.iter().map(|r| r.id).collect());
        let devices = config
            .riders
            .iter()
            .map(|r| (r.device_id.clone(), r.id))
            .collect();
        let n = riders.len();
        Ok(Race {
            config,
            index,
            matcher,
            epoch,
            riders,
            slots,
            devices,
            abandoned: vec![false; n],
            started: false,
            closed_at: None,
            tick: 0,
            last_tick_ms: None,
            tick_interval_ms: DEFAULT_TICK_MS,
            rejections: BTreeMap::new(),
            outputs: VecDeque::new(),
            alert_seq: 0,
            recent_alerts: VecDeque::new(),
            tick_alerts: Vec::new(),
            groups: GroupTracker::default(),
            views: Vec::new(),
            group_views: Vec::new(),
            announced: vec![RiderAnnouncements::default(); n],
            cooldowns: BTreeMap::new(),
            leader: None,
            announced_leader: None,
            breakaways: BTreeMap::new(),
            ever_breakaways: BTreeSet::new(),
            gap_sides: BTreeMap::new(),
            checkpoints_announced: BTreeSet::new(),
            finish_order: Vec::new(),
            crash_sites: Vec::new(),
            pending_splits: BTreeMap::new(),
            pending_stops: BTreeMap::new(),
            facts: vec![RiderFacts::default(); n],
            queue: Vec::new(),
            queue_min_ms: Millis::MAX,
            changed_tick: vec![0; n],
            refresh_all: true,
            min_due_per_apply_thread: Race::MIN_DUE_PER_APPLY_THREAD,
            work: TickWork {
                statuses: vec![RiderStatus::NotStarted; n],
                road_index: vec![(0, 0); n],
                gaps: vec![GapMemo::default(); n],
                group_of: vec![(0, 0); n],
                rank: vec![0; n],
                placed: vec![0; n],
                ..TickWork::default()
            },
        })
    }

    /// Sets how often the race wants `handle_tick` (default 1 s).
    pub fn set_tick_interval(&mut self, interval_ms: Millis) {
        self.tick_interval_ms = interval_ms.max(10);
    }

    /// Sets how many threads apply a tick's due fixes (`RaceConfig::apply_threads`; the output
    /// is the same for any count).
    pub fn set_apply_threads(&mut self, threads: NonZeroUsize) {
        self.config.apply_threads = threads;
    }

    /// Whether the race has started (its start time has passed the watermark, or `Start`).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Whether the organiser closed the race (`Finish`): later fixes are refused.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }

    /// When the organiser closed the race (`Finish`), if they did.
    pub fn closed_at(&self) -> Option<Millis> {
        self.closed_at
    }

    /// The race config.
    pub fn config(&self) -> &RaceConfig {
        &self.config
    }

    /// The course index.
    pub fn course(&self) -> &CourseIndex {
        &self.index
    }

    /// The epoch of this race's output.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The rider a device belongs to.
    pub fn rider_for_device(&self, device_id: &str) -> Option<u32> {
        self.devices.get(device_id).copied()
    }

    /// Rejected fixes per reason.
    pub fn rejections(&self) -> &BTreeMap<FixRejection, u64> {
        &self.rejections
    }

    fn reject(&mut self, why: FixRejection) -> FixRejection {
        *self.rejections.entry(why).or_default() += 1;
        why
    }

    /// The track of a rider id.
    fn rider(&self, rider_id: u32) -> Option<&RiderTrack> {
        self.riders.get(self.slots.get(rider_id)?)
    }

    /// Accepts a fix for a rider; it is applied once `now` passes its time plus the reorder window.
    pub fn handle_fix(
        &mut self,
        now: Millis,
        rider_id: u32,
        record: &PositionRecord,
    ) -> Result<FixAccepted, FixRejection> {
        if self.closed_at.is_some() {
            return Err(self.reject(FixRejection::RaceClosed));
        }
        let skew = 30_000;
        if record.time_ms > now + skew {
            return Err(self.reject(FixRejection::FromTheFuture));
        }
        let Some(slot) = self.slots.get(rider_id) else {
            return Err(self.reject(FixRejection::UnknownRider));
        };
        let rider = &mut self.riders[slot];
        if !rider.first_sighting(record.seq) {
            return Err(self.reject(FixRejection::Duplicate));
        }
        self.queue.push(QueuedFix {
            slot: slot as u32,
            record: *record,
        });
        self.queue_min_ms = self.queue_min_ms.min(record.time_ms);
        Ok(FixAccepted {
            applies_at_ms: record.time_ms + self.config.reorder_window_ms,
        })
    }

    /// Applies an organiser command.
    pub fn handle_admin(&mut self, now: Millis, cmd: AdminCommand) -> Result<(), AdminError> {
        match cmd {
            AdminCommand::Start => {
                if self.started {
                    return Err(AdminError::AlreadyStarted);
                }
                self.config.start_ms = now;
            }
            AdminCommand::Finish => {
                if self.closed_at.is_some() {
                    return Err(AdminError::Closed);
                }
                self.closed_at = Some(now);
            }
            AdminCommand::Abandon { rider_id } | AdminCommand::Reinstate { rider_id }
                if self.slots.get(rider_id).is_none() =>
            {
                return Err(AdminError::UnknownRider(rider_id));
            }
            AdminCommand::Abandon { rider_id } => {
                if let Some(slot) = self.slots.get(rider_id) {
                    self.abandoned[slot] = true;
                }
            }
            AdminCommand::Reinstate { rider_id } => {
                if let Some(slot) = self.slots.get(rider_id) {
                    self.abandoned[slot] = false;
                }
            }
            AdminCommand::MoveCheckpoint { name, distance_m } => {
                let mut course = self.index.course().clone();
                course
                    .add_checkpoint_at(&name, distance_m)
                    .map_err(|e| AdminError::Checkpoint(e.to_string()))?;
                self.index = CourseIndex::new(course);
            }
        }
        // The start, a checkpoint or a rider's standing changed: look at everyone again.
        self.refresh_all = true;
        Ok(())
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<RaceOutput> {
        self.outputs.pop_front()
    }

    /// When `handle_tick` should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        Some(
            self.last_tick_ms
                .map_or(self.config.start_ms.min(i64::MAX - 1), |t| {
                    t + self.tick_interval_ms
                }),
        )
    }

    /// Applies due fixes, recomputes the race and emits a delta and the tick's alerts.
    ///
    /// The work is proportional to the riders whose fixes changed plus flat passes over dense
    /// per-rider arrays: facts are refreshed for changed riders only, statuses compare cached
    /// facts with the watermark, the road order is re-sorted from last tick's, time gaps are
    /// reused while neither rider moved, and views are rebuilt from cached facts.
    pub fn handle_tick(&mut self, now: Millis) {
        self.tick += 1;
        self.last_tick_ms = Some(now);
        let watermark = now - self.config.reorder_window_ms;
        // Whether the race starts with this tick is known before the fixes are applied (the
        // statuses taken with them need it); it is announced after their SOS alerts.
        let starts = !self.started && watermark >= self.config.start_ms;
        self.apply_due(now, watermark, self.started || starts);
        if starts {
            self.started = true;
            self.raise(
                now,
                AlertKind::RaceStarted,
                vec![],
                0.0,
                Severity::Notable,
                None,
            );
        }
        self.update_finishers(now);
        self.update_road();
        let threshold_ms = (self.config.group_gap_s * 1000.0).round() as i64;
        let slots = &self.slots;
        self.groups.update_with(
            now,
            &self.work.road,
            threshold_ms,
            |id| slots.get(id).unwrap_or(0),
            slots.len(),
        );
        self.index_groups();
        self.rider_alerts(now, watermark);
        self.group_alerts(now);
        self.leader_alerts(now);
        self.checkpoint_alerts(now);
        self.publish(now);
        self.refresh_all = false;
    }

    /// Moves the queued fixes at or before the watermark into `work.due`, sorted by slot, then
    /// time and sequence.
    fn take_due(&mut self, watermark: Millis) {
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
            let sorted = &mut work.due_scratch;
            sorted.clear();
            sorted.extend_from_slice(&due);
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
    fn apply_due(&mut self, now: Millis, watermark: Millis, started: bool) {
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

    /// Appends an alert to the log unless its (kind, subject) key is in cooldown.
    fn raise(
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

    /// Riders on the road (racing, stopped, off course), front first, with cycling time gaps.
    /// Riders report at different moments, so the order compares everyone at one reference time
    /// (the watermark), projecting each rider from their last fix at their own speed: the runs
    /// of `apply_due` sorted their riders so, and merged them into `work.road_entries`.
    fn update_road(&mut self) {
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
    fn index_groups(&mut self) {
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
    fn group_index_of_slot(&self, slot: usize) -> Option<usize> {
        match self.work.group_of[slot] {
            (t, gi) if t == self.tick => Some(gi as usize),
            _ => None,
        }
    }

    fn update_finishers(&mut self, now: Millis) {
        let mut new: Vec<(Millis, u32, usize)> = Vec::new();
        for (slot, status) in self.work.statuses.iter().enumerate() {
            if *status == RiderStatus::Finished
                && self.announced[slot].finished.is_none()
                && let Some(t) = self.facts[slot].finish_time
            {
                new.push((t, self.slots.id(slot), slot));
            }
        }
        new.sort_unstable();
        let length_km = self.index.course().length_m() / 1000.0;
        for (t, id, slot) in new {
            // Riders report at different moments, so a finish seen later may have happened
            // earlier: the order is by finish time; the alert carries the position known now.
            let at = self
                .finish_order
                .partition_point(|(other, ft)| (*ft, *other) < (t, id));
            self.finish_order.insert(at, (id, t));
            let position = at as u32 + 1;
            self.announced[slot].finished = Some(position);
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

    /// Status and battery alerts. Only riders whose status changed or whose last fix changed can
    /// raise one: for an unchanged battery reading the bookkeeping below is already settled.
    fn rider_alerts(&mut self, now: Millis, watermark: Millis) {
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
            let battery = facts.battery_pct;
            let last_time = facts.last_time.unwrap_or(watermark);
            if previous != Some(status) {
                let was = previous.unwrap_or(RiderStatus::NotStarted);
                let subject = u64::from(id);
                match (was, status) {
                    (_, RiderStatus::OffCourse) if hidden => {
                        self.announced[slot].off_course_held = true;
                    }
                    (_, RiderStatus::OffCourse) => {
                        self.raise(
                            now,
                            AlertKind::OffCourse { offset_m: lateral },
                            vec![id],
                            km,
                            Severity::Notable,
                            Some(("off_course", subject)),
                        );
                    }
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
                && std::mem::take(&mut self.announced[slot].off_course_held)
            {
                // Left the privacy zone still off course: announced now, measured out here.
                self.raise(
                    now,
                    AlertKind::OffCourse { offset_m: lateral },
                    vec![id],
                    km,
                    Severity::Notable,
                    Some(("off_course", u64::from(id))),
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
    fn status_of_id(&self, id: u32) -> Option<RiderStatus> {
        Some(self.work.statuses[self.slots.get(id)?])
    }

    /// Announces stops, held for a few seconds so that several riders stopped at the same place
    /// within the crash window become one possible-crash alert instead of separate stops.
    fn stop_alerts(&mut self, now: Millis, newly: Vec<(u32, f64, Millis)>) {
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

    fn group_alerts(&mut self, now: Millis) {
        // The groups are read while alerts are raised: borrow them out of the tracker.
        let groups = self.groups.take_groups();
        self.group_alerts_in(now, &groups);
        self.groups.put_back(groups);
    }

    fn group_alerts_in(&mut self, now: Millis, groups: &[groups::TrackedGroup]) {
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
        // Gap thresholds, with 5 s of hysteresis.
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
                    Some(false) => gap >= th_ms + hysteresis,
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

    fn leader_alerts(&mut self, now: Millis) {
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
    fn checkpoint_alerts(&mut self, now: Millis) {
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

    /// Standings: finishers by finish time, then riders on the road by distance, then riders
    /// whose signal is lost by their last distance. Fills the dense rank array (0 = unranked;
    /// a rider listed twice keeps the later place).
    fn rank_riders(&mut self) {
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
            if let Some(slot) = self.slots.get(id) {
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
    fn view_of(&self, slot: usize, first_finish: Option<Millis>) -> RiderView {
        let facts = &self.facts[slot];
        let status = self.work.statuses[slot];
        let road = match self.work.road_index[slot] {
            (t, i) if t == self.tick => self.work.road.get(i as usize),
            _ => None,
        };
        let finish_gap = facts.finish_time.and_then(|t| first_finish.map(|w| t - w));
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
            battery_pct: facts.battery_pct,
        }
    }

    /// Whether the published groups still show the tracker's groups.
    fn group_views_current(&self) -> bool {
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

    fn publish(&mut self, now: Millis) {
        self.rank_riders();
        let first_finish = self.finish_order.first().map(|(_, w)| *w);
        let mut views = std::mem::take(&mut self.views);
        let mut states = std::mem::take(&mut self.work.changed_views);
        if views.len() == self.riders.len() {
            // Every rider has a view (after the first tick): compare in place, in id order.
            for (slot, old) in views.iter_mut().enumerate() {
                let view = self.view_of(slot, first_finish);
                if *old != view {
                    states.push(view.clone());
                    *old = view;
                }
            }
        } else {
            views.clear();
            for slot in 0..self.riders.len() {
                let view = self.view_of(slot, first_finish);
                states.push(view.clone());
                views.push(view);
            }
        }
        self.views = views;
        // The delta gets an exactly sized copy; the scratch keeps its capacity for next tick.
        let mut changed = Vec::with_capacity(states.len());
        changed.append(&mut states);
        self.work.changed_views = states;
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

    /// Whether a position lies in one of the organiser's privacy zones (never published).
    pub fn in_privacy_zone(&self, lat: f64, lon: f64) -> bool {
        in_zones(&self.config.privacy_zones, lat, lon)
    }

    /// A rider's track as it may be published: applied fixes in time order, without those inside
    /// privacy zones. `None` for an unknown rider.
    pub fn track(&self, rider_id: u32) -> Option<Vec<TrackSample>> {
        let rider = self.rider(rider_id)?;
        Some(
            rider
                .fixes()
                .iter()
                .filter(|f| !self.in_privacy_zone(f.record.lat_deg(), f.record.lon_deg()))
                .map(|f| TrackSample {
                    time_ms: f.record.time_ms,
                    lat: f.record.lat_deg(),
                    lon: f.record.lon_deg(),
                    ele: f.record.elevation_m(),
                    distance_m: f.matched.matched.then_some(f.matched.distance_m),
                })
                .collect(),
        )
    }

    /// Full state for a new fan.
    pub fn snapshot(&self) -> Snapshot {
        let course = self.index.course();
        Snapshot {
            race_id: self.config.id.clone(),
            race_name: self.config.name.clone(),
            epoch: self.epoch,
            tick: self.tick,
            time_ms: self.last_tick_ms.unwrap_or(self.config.start_ms),
            start_ms: self.config.start_ms,
            course: CourseSummary {
                name: course.name().to_string(),
                length_m: course.length_m(),
                ascent_m: course.ascent_m(),
                line: course.display_line(1000),
                checkpoints: course.checkpoint_infos(),
            },
            riders: self
                .config
                .riders
                .iter()
                .map(|r| RiderInfo {
                    rider_id: r.id,
                    bib: r.bib.clone(),
                    name: r.name.clone(),
                    team: r.team.clone(),
                })
                .collect(),
            states: self.views.clone(),
            groups: self.group_views.clone(),
            recent_alerts: self.recent_alerts.iter().cloned().collect(),
        }
    }

    /// Alerts with a sequence number above `after`, oldest first (from the recent ring).
    pub fn alerts_since(&self, after: u64) -> Vec<Alert> {
        self.recent_alerts
            .iter()
            .filter(|a| a.seq > after)
            .cloned()
            .collect()
    }

    /// Checkpoint passages of every rider, recomputed from the passage logs (so a moved checkpoint
    /// gives new splits at once).
    pub fn splits(&self) -> Vec<RiderSplits> {
        let checkpoints = self.index.course().checkpoints();
        self.riders
            .iter()
            .map(|r| RiderSplits {
                rider_id: r.info.id,
                passages: checkpoints
                    .iter()
                    .map(|c| {
                        r.time_at(c.distance_m)
                            .filter(|&t| t >= self.config.start_ms)
                    })
                    .collect(),
            })
            .collect()
    }

    /// ETA of a rider at every checkpoint ahead and the finish, with an uncertainty that grows
    /// with the distance left (10 % of the remaining time, at least 10 s).
    pub fn etas(&self, rider_id: u32) -> Vec<Eta> {
        let Some(r) = self.rider(rider_id) else {
            return Vec::new();
        };
        let Some((d, t)) = r.last_passage() else {
            return Vec::new();
        };
        let speed = r.speed_mps();
        if speed < 1.0 {
            return Vec::new();
        }
        let course = self.index.course();
        course
            .checkpoints()
            .iter()
            .map(|c| (c.name.clone(), c.distance_m))
            .chain(std::iter::once(("Finish".to_string(), course.length_m())))
            .filter(|(_, cd)| *cd > d)
            .map(|(name, cd)| {
                let secs = (cd - d) / speed;
                Eta {
                    name,
                    at_ms: t + (secs * 1000.0) as Millis,
                    uncertainty_ms: ((secs * 0.1).max(10.0) * 1000.0) as Millis,
                }
            })
            .collect()
    }

    /// Finishers in order: (rider, finish time).
    pub fn finish_order(&self) -> &[(u32, Millis)] {
        &self.finish_order
    }

    /// The current rider views (as last published), in rider id order; empty before the first
    /// tick.
    pub fn views(&self) -> &[RiderView] {
        &self.views
    }

    /// The current groups (as last published).
    pub fn group_views(&self) -> &[GroupView] {
        &self.group_views
    }

    /// When a rider passed a course distance, if they have.
    pub fn passage_time(&self, rider_id: u32, distance_m: f64) -> Option<Millis> {
        self.rider(rider_id)?.time_at(distance_m)
    }

    /// Distance and event time of a rider's latest passage.
    pub fn last_passage(&self, rider_id: u32) -> Option<(f64, Millis)> {
        self.rider(rider_id)?.last_passage()
    }
}
