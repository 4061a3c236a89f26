//! The race state machine: riders in event time, ranking, cycling time gaps, groups, splits, ETA
//! and the alerts feed, as a deterministic sans-IO core (`handle_fix`, `handle_tick`,
//! `handle_admin` with an explicit `now`; `poll_output`, `poll_timeout`). Fixes wait in a reorder
//! window and apply in event-time order, so arrival order within it does not matter. This module
//! holds the state; a tick's stages are in `apply`, `standings` and `alerts`. No IO, no clock.

mod alerts;
mod apply;
mod chunked_log;
pub mod config;
pub mod groups;
mod live;
pub(crate) use live::round;
mod parallel;
pub mod rider;
mod standings;

#[cfg(test)]
mod apply_threads_tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroUsize;

use flevum_protocol::{
    Alert, AlertKind, CourseSummary, Delta, GroupView, PositionRecord, RiderInfo, RiderStatus,
    RiderView, Severity, Snapshot,
};
use serde::{Deserialize, Serialize};

use apply::ApplyOutcome;
pub use config::{
    AlertThresholds, CheckpointConfig, PrivacyZone, RaceConfig, RaceConfigError, RiderConfig,
    Sport, Visibility,
};
use groups::{GroupTracker, RoadPosition};
use live::{RiderFacts, RiderSlots, RoadEntry};
use rider::RiderTrack;

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
    /// The finish was seen and entered in the finish order (its alert may still be held).
    finish_seen: bool,
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
    /// Every rider who crossed the line, in order of finishing. A finisher the organiser
    /// abandons afterwards (a disqualification) stays here but holds no place in the standings
    /// and is not announced.
    finish_order: Vec<(u32, Millis)>,
    /// Finishes seen but not yet announced, by (finish time, rider): riders report at different
    /// moments, so a finish seen later may have happened earlier. A finish is announced once every
    /// rider who crossed the line before it has had time to report (`finish_settle_ms`), so the
    /// positions come in order and each position once.
    finishers_held: Vec<(Millis, u32)>,
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
    /// Slots whose view changed this tick, ascending (their views are copied into the delta).
    changed_slots: Vec<u32>,
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

/// Whether a position lies in one of the privacy zones.
fn in_zones(zones: &[PrivacyZone], lat: f64, lon: f64) -> bool {
    zones
        .iter()
        .any(|z| crate::core::geodesy::haversine_m(lat, lon, z.lat, z.lon) <= z.radius_m)
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
            .enumerate()
            .map(|(slot, r)| RiderTrack::new((*r).clone(), slot, registered.len()))
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
            finishers_held: Vec::new(),
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

    /// Whether the organiser marked rider `id` abandoned (unknown riders are not).
    fn is_abandoned(&self, id: u32) -> bool {
        self.slots.get(id).is_some_and(|s| self.abandoned[s])
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
                if let Some(slot) = self.slots.get(rider_id)
                    && !self.abandoned[slot]
                {
                    // The place an announced finish gave, counted before the rider leaves.
                    let finish_position = self.told_finish_position(slot, rider_id);
                    self.abandoned[slot] = true;
                    self.raise_standing_change(
                        now,
                        slot,
                        rider_id,
                        AlertKind::RiderAbandoned { finish_position },
                    );
                }
            }
            AdminCommand::Reinstate { rider_id } => {
                if let Some(slot) = self.slots.get(rider_id)
                    && self.abandoned[slot]
                {
                    self.abandoned[slot] = false;
                    // A finish passed over while the rider was out is announced here.
                    let finish_position = self.told_finish_position(slot, rider_id);
                    self.raise_standing_change(
                        now,
                        slot,
                        rider_id,
                        AlertKind::RiderReinstated { finish_position },
                    );
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
        self.update_finishers(now, watermark);
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

    /// Every rider who crossed the line, in order: (rider, finish time). Riders the organiser
    /// abandoned afterwards are listed too; their views say so (status, no rank).
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
