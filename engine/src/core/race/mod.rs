//! The race state machine: riders in event time, ranking, cycling time gaps, groups, splits, ETA
//! and the alerts feed, as a deterministic sans-IO core.
//!
//! Inputs are `handle_fix`, `handle_tick` and `handle_admin`, each with an explicit `now`; outputs
//! are polled with `poll_output` (one delta per tick, and every alert) and `poll_timeout`. Fixes
//! wait in a reorder window and are applied in event-time order once the clock has passed them,
//! so the output does not depend on arrival order within the window. Does no IO and reads no clock.

pub mod config;
pub mod groups;
pub mod rider;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

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
use rider::{ApplyError, RiderTrack};

use super::{CourseError, CourseIndex, MatcherConfig, Millis};

/// Alerts kept for new fans and the alerts feed's resume.
const RECENT_ALERTS: usize = 200;
/// A rider within this distance of the end has finished, metres.
const FINISH_TOLERANCE_M: f64 = 15.0;
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
}

/// The live state of one race.
#[derive(Debug)]
pub struct Race {
    /// Static facts.
    config: RaceConfig,
    /// Course with its R-tree.
    index: CourseIndex,
    /// Changes when the race is rebuilt without its alert log; fans resync on a new epoch.
    epoch: u64,
    /// Riders by id.
    riders: BTreeMap<u32, RiderTrack>,
    /// Device id → rider id.
    devices: BTreeMap<String, u32>,
    /// Riders marked abandoned.
    abandoned: BTreeSet<u32>,
    /// The race start has been announced.
    started: bool,
    /// The race is closed to new fixes.
    closed: bool,
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
    /// Rider views as last published.
    views: BTreeMap<u32, RiderView>,
    /// Groups as last published.
    group_views: Vec<GroupView>,
    /// Announcement state per rider.
    announced: BTreeMap<u32, RiderAnnouncements>,
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
}

/// Rounds a time to the nearest 100 ms (fans see tenths of a second).
fn round_100(ms: i64) -> i64 {
    (ms + 50).div_euclid(100) * 100
}

impl Race {
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
        let riders = config
            .riders
            .iter()
            .map(|r| {
                (
                    r.id,
                    RiderTrack::new(r.clone(), matcher.clone(), config.sport.max_speed_mps()),
                )
            })
            .collect();
        let devices = config
            .riders
            .iter()
            .map(|r| (r.device_id.clone(), r.id))
            .collect();
        Ok(Race {
            config,
            index,
            epoch,
            riders,
            devices,
            abandoned: BTreeSet::new(),
            started: false,
            closed: false,
            tick: 0,
            last_tick_ms: None,
            tick_interval_ms: DEFAULT_TICK_MS,
            rejections: BTreeMap::new(),
            outputs: VecDeque::new(),
            alert_seq: 0,
            recent_alerts: VecDeque::new(),
            tick_alerts: Vec::new(),
            groups: GroupTracker::default(),
            views: BTreeMap::new(),
            group_views: Vec::new(),
            announced: BTreeMap::new(),
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
        })
    }

    /// Sets how often the race wants `handle_tick` (default 1 s).
    pub fn set_tick_interval(&mut self, interval_ms: Millis) {
        self.tick_interval_ms = interval_ms.max(10);
    }

    /// Whether the race has started (its start time has passed the watermark, or `Start`).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Whether the organiser closed the race (`Finish`): later fixes are refused.
    pub fn is_closed(&self) -> bool {
        self.closed
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

    /// Accepts a fix for a rider; it is applied once `now` passes its time plus the reorder window.
    pub fn handle_fix(
        &mut self,
        now: Millis,
        rider_id: u32,
        record: &PositionRecord,
    ) -> Result<FixAccepted, FixRejection> {
        if self.closed {
            return Err(self.reject(FixRejection::RaceClosed));
        }
        let skew = 30_000;
        if record.time_ms > now + skew {
            return Err(self.reject(FixRejection::FromTheFuture));
        }
        let Some(rider) = self.riders.get_mut(&rider_id) else {
            return Err(self.reject(FixRejection::UnknownRider));
        };
        if !rider.first_sighting(record.seq) {
            return Err(self.reject(FixRejection::Duplicate));
        }
        rider.queue(*record);
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
                if self.closed {
                    return Err(AdminError::Closed);
                }
                self.closed = true;
            }
            AdminCommand::Abandon { rider_id } | AdminCommand::Reinstate { rider_id }
                if !self.riders.contains_key(&rider_id) =>
            {
                return Err(AdminError::UnknownRider(rider_id));
            }
            AdminCommand::Abandon { rider_id } => {
                self.abandoned.insert(rider_id);
            }
            AdminCommand::Reinstate { rider_id } => {
                self.abandoned.remove(&rider_id);
            }
            AdminCommand::MoveCheckpoint { name, distance_m } => {
                let mut course = self.index.course().clone();
                course
                    .add_checkpoint_at(&name, distance_m)
                    .map_err(|e| AdminError::Checkpoint(e.to_string()))?;
                self.index = CourseIndex::new(course);
            }
        }
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
    pub fn handle_tick(&mut self, now: Millis) {
        self.tick += 1;
        self.last_tick_ms = Some(now);
        let watermark = now - self.config.reorder_window_ms;
        let mut sos = Vec::new();
        for rider in self.riders.values_mut() {
            for record in rider.take_due(watermark) {
                if let Err(ApplyError::ImpossibleSpeed) = rider.apply(&self.index, record) {
                    *self
                        .rejections
                        .entry(FixRejection::ImpossibleSpeed)
                        .or_default() += 1;
                } else if record.flags & RecordFlags::SOS != 0 {
                    let km = rider.last_passage().map_or(0.0, |p| p.0 / 1000.0);
                    sos.push((rider.info.id, km));
                }
            }
        }
        for (id, km) in sos {
            self.raise(
                now,
                AlertKind::Sos,
                vec![id],
                km,
                Severity::Critical,
                Some(("sos", u64::from(id))),
            );
        }
        if !self.started && watermark >= self.config.start_ms {
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
        let statuses: BTreeMap<u32, RiderStatus> = self
            .riders
            .iter()
            .map(|(&id, rider)| (id, self.status_of(id, rider, watermark)))
            .collect();
        self.update_finishers(now, &statuses);
        let road = self.road_order(&statuses, watermark);
        self.groups.update(
            now,
            &road,
            (self.config.group_gap_s * 1000.0).round() as i64,
        );
        self.rider_alerts(now, watermark, &statuses);
        self.group_alerts(now, &road);
        self.leader_alerts(now, &road);
        self.checkpoint_alerts(now);
        self.publish(now, &statuses, &road);
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

    /// The finish time of a rider, if they have crossed the line.
    fn finish_time(&self, id: u32) -> Option<Millis> {
        self.finish_time_of(self.riders.get(&id)?)
    }

    fn finish_time_of(&self, rider: &RiderTrack) -> Option<Millis> {
        let length = self.index.course().length_m();
        // Most riders have not reached the line: skip the passage-log search for them.
        if rider.last_passage()?.0 < length - FINISH_TOLERANCE_M {
            return None;
        }
        rider
            .time_at(length - FINISH_TOLERANCE_M)
            .filter(|&t| t >= self.config.start_ms)
    }

    fn status_of(&self, id: u32, rider: &RiderTrack, watermark: Millis) -> RiderStatus {
        if self.abandoned.contains(&id) {
            return RiderStatus::Abandoned;
        }
        if self.finish_time_of(rider).is_some() {
            return RiderStatus::Finished;
        }
        let Some(last) = rider.last() else {
            return RiderStatus::NotStarted;
        };
        if !self.started || last.record.time_ms < self.config.start_ms {
            return RiderStatus::NotStarted;
        }
        let interval = rider
            .report_interval_ms()
            .unwrap_or(Millis::from(self.config.report_interval_ms));
        let lost_after =
            ((interval as f64 * self.config.alerts.signal_lost_intervals) as Millis).max(20_000);
        if watermark - last.record.time_ms > lost_after {
            return RiderStatus::SignalLost;
        }
        if last.matched.off_course {
            return RiderStatus::OffCourse;
        }
        let window = (self.config.alerts.stopped_after_s * 1000.0) as Millis;
        let t = last.record.time_ms;
        if t - self.config.start_ms >= window
            && let (Some((d_now, _)), Some(d_then)) =
                (rider.last_passage(), rider.distance_at(t - window))
            && d_now - d_then < self.config.alerts.stopped_speed_mps * window as f64 / 1000.0
        {
            return RiderStatus::Stopped;
        }
        RiderStatus::Racing
    }

    /// Riders on the road (racing, stopped, off course), front first, with cycling time gaps.
    /// Riders report at different moments, so the order compares everyone at one reference time
    /// (the watermark), projecting each rider from their last fix at their own speed.
    fn road_order(
        &self,
        statuses: &BTreeMap<u32, RiderStatus>,
        watermark: Millis,
    ) -> Vec<RoadPosition> {
        let mut on_road: Vec<(u32, f64, f64, Millis)> = statuses
            .iter()
            .filter(|(_, s)| {
                matches!(
                    s,
                    RiderStatus::Racing | RiderStatus::Stopped | RiderStatus::OffCourse
                )
            })
            .filter_map(|(&id, _)| {
                let r = self.riders.get(&id)?;
                let (d, t) = r.last_passage()?;
                Some((id, r.distance_projected(watermark)?, d, t))
            })
            .collect();
        on_road.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let leader = on_road.first().and_then(|l| self.riders.get(&l.0));
        let mut out = Vec::with_capacity(on_road.len());
        for (i, &(id, _, d, t)) in on_road.iter().enumerate() {
            // Cycling gap: how long ago the rider ahead passed the place this rider was last seen.
            let gap_to = |ahead: Option<&RiderTrack>| {
                ahead
                    .and_then(|r| r.time_at_or_projected(d))
                    .map(|passed| (t - passed).max(0))
            };
            out.push(RoadPosition {
                rider_id: id,
                distance_m: d,
                gap_to_ahead_ms: if i == 0 {
                    None
                } else {
                    gap_to(self.riders.get(&on_road[i - 1].0))
                },
                gap_to_leader_ms: gap_to(leader),
            });
        }
        out
    }

    fn update_finishers(&mut self, now: Millis, statuses: &BTreeMap<u32, RiderStatus>) {
        let mut new: Vec<(Millis, u32)> = statuses
            .iter()
            .filter(|(id, s)| {
                **s == RiderStatus::Finished
                    && self.announced.get(id).and_then(|a| a.finished).is_none()
            })
            .filter_map(|(&id, _)| Some((self.finish_time(id)?, id)))
            .collect();
        new.sort_unstable();
        let length_km = self.index.course().length_m() / 1000.0;
        for (t, id) in new {
            // Riders report at different moments, so a finish seen later may have happened
            // earlier: the order is by finish time; the alert carries the position known now.
            let at = self
                .finish_order
                .partition_point(|(other, ft)| (*ft, *other) < (t, id));
            self.finish_order.insert(at, (id, t));
            let position = at as u32 + 1;
            self.announced.entry(id).or_default().finished = Some(position);
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

    fn rider_alerts(
        &mut self,
        now: Millis,
        watermark: Millis,
        statuses: &BTreeMap<u32, RiderStatus>,
    ) {
        let mut newly_stopped: Vec<(u32, f64, Millis)> = Vec::new();
        // One pass over the riders for the facts, then the bookkeeping (which needs `&mut self`).
        // `statuses` was built from `riders`: the same ids in the same order.
        let facts: Vec<_> = statuses
            .iter()
            .zip(self.riders.values())
            .map(|((&id, &status), rider)| {
                let last = rider.last();
                (
                    id,
                    status,
                    rider.last_passage().map_or(0.0, |p| p.0 / 1000.0),
                    last.map_or(0.0, |f| f.matched.lateral_m),
                    last.map(|f| f.record.battery_pct).filter(|&b| b <= 100),
                    last.map_or(watermark, |f| f.record.time_ms),
                )
            })
            .collect();
        for (id, status, km, lateral, battery, last_time) in facts {
            let (previous, battery_low) = {
                let a = self.announced.entry(id).or_default();
                (a.status, a.battery_low)
            };
            if previous != Some(status) {
                let was = previous.unwrap_or(RiderStatus::NotStarted);
                let subject = u64::from(id);
                match (was, status) {
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
                    self.announced.entry(id).or_default().stop_announced = false;
                }
                self.announced.entry(id).or_default().status = Some(status);
            }
            if let Some(b) = battery {
                let low = b <= self.config.alerts.low_battery_pct;
                if low == battery_low || (!low && b <= self.config.alerts.low_battery_pct + 10) {
                    continue;
                }
                let a = self.announced.entry(id).or_default();
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
        self.stop_alerts(now, newly_stopped, statuses);
    }

    /// Announces stops, held for a few seconds so that several riders stopped at the same place
    /// within the crash window become one possible-crash alert instead of separate stops.
    fn stop_alerts(
        &mut self,
        now: Millis,
        newly: Vec<(u32, f64, Millis)>,
        statuses: &BTreeMap<u32, RiderStatus>,
    ) {
        for (id, _, _) in newly {
            self.pending_stops.entry(id).or_insert(now);
        }
        self.pending_stops
            .retain(|id, _| statuses.get(id) == Some(&RiderStatus::Stopped));
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
        let stopped: Vec<(u32, f64, Millis)> = statuses
            .iter()
            .filter(|(_, s)| **s == RiderStatus::Stopped)
            .filter_map(|(&id, _)| {
                let (d, _) = self.riders.get(&id)?.last_passage()?;
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
                self.announced.entry(*r).or_default().stop_announced = true;
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

    fn group_alerts(&mut self, now: Millis, road: &[RoadPosition]) {
        let groups = self.groups.groups().to_vec();
        let confirm = (self.config.alerts.breakaway_confirm_s * 1000.0) as Millis;
        let min_gap = (self.config.alerts.breakaway_min_gap_s * 1000.0) as i64;
        let peloton = groups
            .iter()
            .find(|g| g.kind == GroupKind::Peloton)
            .cloned();
        // Time since each group's head passed the peloton head's position (the gap on TV), and
        // the daylight: since the group's last rider passed it.
        let mut gaps: BTreeMap<u32, i64> = BTreeMap::new();
        let mut daylight: BTreeMap<u32, i64> = BTreeMap::new();
        if let Some(p) = peloton.as_ref()
            && let Some((pd, pt)) = p
                .riders
                .first()
                .and_then(|r| self.riders.get(r)?.last_passage())
        {
            for g in &groups {
                let passed = |r: Option<&u32>| self.riders.get(r?)?.time_at(pd);
                if let Some(head) = passed(g.riders.first()) {
                    gaps.insert(g.id, pt - head);
                }
                if let Some(tail) = passed(g.riders.last()) {
                    daylight.insert(g.id, pt - tail);
                }
            }
        }
        let gap_to_peloton = |g: &groups::TrackedGroup| gaps.get(&g.id).copied();
        let on_road = road.len().max(1);
        // Near the line the race is a sprint, not a breakaway story.
        let length = self.index.course().length_m();
        let racing_finale = !self.finish_order.is_empty();
        // Breakaways: a small group with daylight to the peloton for the confirmation time.
        for g in &groups {
            if g.kind != GroupKind::Breakaway
                || self.ever_breakaways.contains(&g.id)
                || racing_finale
                || g.head_distance_m > length - 3000.0
                || g.riders.len() * 4 > on_road
            {
                continue;
            }
            if daylight.get(&g.id).is_some_and(|d| *d >= min_gap) && now - g.since_ms >= confirm {
                let gap = gap_to_peloton(g).unwrap_or_default();
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
            let successor = groups
                .iter()
                .max_by_key(|g| {
                    (
                        g.riders.iter().filter(|r| riders.contains(r)).count(),
                        std::cmp::Reverse(g.id),
                    )
                })
                .filter(|g| g.riders.iter().any(|r| riders.contains(r)));
            let Some(succ) = successor else {
                self.breakaways.remove(&id);
                continue;
            };
            let caught = succ.kind == GroupKind::Peloton
                || daylight.get(&succ.id).is_none_or(|d| *d < min_gap / 2);
            if caught && !racing_finale {
                self.breakaways.remove(&id);
                self.gap_sides.retain(|(g, _), _| *g != id);
                let riders = peloton
                    .as_ref()
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
        let announced: BTreeSet<u32> = self.breakaways.keys().copied().collect();
        for g in groups
            .iter()
            .filter(|g| announced.contains(&g.id) && !racing_finale)
        {
            let Some(gap) = gap_to_peloton(g) else {
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
        let previous_group: BTreeMap<u32, (u32, usize)> = self
            .announced
            .iter()
            .filter_map(|(&r, a)| a.group.map(|g| (r, g)))
            .collect();
        for g in &groups {
            if now - g.since_ms == 0 && g.riders.len() >= 2 {
                let parents: BTreeSet<u32> = g
                    .riders
                    .iter()
                    .filter_map(|r| previous_group.get(r))
                    .filter(|(_, size)| *size >= 6)
                    .map(|(gid, _)| *gid)
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
        let rider_group: BTreeMap<u32, (u32, usize)> = groups
            .iter()
            .flat_map(|g| g.riders.iter().map(move |&r| (r, (g.id, g.riders.len()))))
            .collect();
        let on_road: Vec<u32> = road.iter().map(|p| p.rider_id).collect();
        for id in on_road {
            let now_group = rider_group.get(&id).copied();
            let a = self.announced.entry(id).or_default();
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
                    let km = self
                        .riders
                        .get(&id)
                        .and_then(|r| r.last_passage())
                        .map_or(0.0, |p| p.0 / 1000.0);
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

    fn leader_alerts(&mut self, now: Millis, road: &[RoadPosition]) {
        // Once somebody has won, the race has no new leaders.
        if !self.finish_order.is_empty() {
            return;
        }
        let current = road.first().map(|p| p.rider_id);
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
                self.groups
                    .groups()
                    .iter()
                    .find(|g| g.riders.contains(&r))
                    .map(|g| g.id)
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
            let km = road.first().map_or(0.0, |p| p.distance_m / 1000.0);
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

    fn checkpoint_alerts(&mut self, now: Millis) {
        let checkpoints = self.index.course().checkpoints().to_vec();
        for c in checkpoints {
            if self.checkpoints_announced.contains(&c.name) {
                continue;
            }
            let first = self
                .riders
                .values()
                .filter_map(|r| Some((r.time_at(c.distance_m)?, r.info.id)))
                .filter(|(t, _)| *t >= self.config.start_ms)
                .min();
            if let Some((_, id)) = first {
                self.checkpoints_announced.insert(c.name.clone());
                self.raise(
                    now,
                    AlertKind::CheckpointLeader {
                        checkpoint: c.name.clone(),
                    },
                    vec![id],
                    c.distance_m / 1000.0,
                    Severity::Info,
                    None,
                );
            }
        }
    }

    /// Standings: finishers by finish time, then riders on the road by distance.
    fn ranking(
        &self,
        statuses: &BTreeMap<u32, RiderStatus>,
        road: &[RoadPosition],
    ) -> HashMap<u32, u32> {
        let mut order: Vec<u32> = self.finish_order.iter().map(|(id, _)| *id).collect();
        order.extend(road.iter().map(|p| p.rider_id));
        let placed: HashSet<u32> = order.iter().copied().collect();
        let mut rest: Vec<(f64, u32)> = statuses
            .iter()
            .filter(|(id, s)| matches!(s, RiderStatus::SignalLost) && !placed.contains(id))
            .filter_map(|(&id, _)| Some((self.riders.get(&id)?.last_passage()?.0, id)))
            .collect();
        rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        order.extend(rest.into_iter().map(|(_, id)| id));
        order
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i as u32 + 1))
            .collect()
    }

    fn view_of(
        &self,
        id: u32,
        status: RiderStatus,
        rank: u32,
        road: Option<&RoadPosition>,
        group: Option<u32>,
        rider: Option<&RiderTrack>,
    ) -> RiderView {
        let course = self.index.course();
        let last = rider.and_then(|r| r.last());
        let (distance_m, last_fix_ms) = rider
            .and_then(|r| r.last_passage())
            .map_or((0.0, last.map_or(0, |f| f.record.time_ms)), |(d, _)| {
                (d, last.map_or(0, |f| f.record.time_ms))
            });
        let (lat, lon) = match last {
            Some(f) if f.matched.matched && !f.matched.off_course => course.position_at(distance_m),
            // Off the course the raw position is shown, unless it lies in a privacy zone: then
            // the last point on the course stands in for it.
            Some(f) if self.in_privacy_zone(f.record.lat_deg(), f.record.lon_deg()) => {
                course.position_at(distance_m)
            }
            Some(f) => (f.record.lat_deg(), f.record.lon_deg()),
            None => course.position_at(0.0),
        };
        let speed = rider.map_or(0.0, |r| r.speed_mps());
        let finish_gap = rider
            .and_then(|r| self.finish_time_of(r))
            .and_then(|t| self.finish_order.first().map(|(_, w)| t - w));
        let remaining = course.length_m() - distance_m;
        let eta_finish_ms = (status == RiderStatus::Racing && speed > 1.0)
            .then(|| last_fix_ms + (remaining / speed * 1000.0) as Millis);
        RiderView {
            rider_id: id,
            lat: (lat * 1e6).round() / 1e6,
            lon: (lon * 1e6).round() / 1e6,
            distance_m: distance_m.round(),
            speed_kmh: ((speed * 3.6 * 10.0).round() / 10.0) as f32,
            rank,
            gap_to_leader_ms: finish_gap
                .or(road.and_then(|p| p.gap_to_leader_ms))
                .map(round_100),
            gap_to_ahead_ms: road.and_then(|p| p.gap_to_ahead_ms).map(round_100),
            group_id: group,
            status,
            last_fix_ms,
            eta_finish_ms: eta_finish_ms.map(|t| t / 1000 * 1000),
            battery_pct: last.map(|f| f.record.battery_pct).filter(|&b| b <= 100),
        }
    }

    fn current_views(
        &self,
        statuses: &BTreeMap<u32, RiderStatus>,
        road: &[RoadPosition],
    ) -> (BTreeMap<u32, RiderView>, Vec<GroupView>) {
        let ranks = self.ranking(statuses, road);
        let by_rider: HashMap<u32, &RoadPosition> = road.iter().map(|p| (p.rider_id, p)).collect();
        let group_of: HashMap<u32, u32> = self
            .groups
            .groups()
            .iter()
            .flat_map(|g| g.riders.iter().map(move |&r| (r, g.id)))
            .collect();
        // `statuses` was built from `riders`: the same ids in the same order.
        let views = statuses
            .iter()
            .zip(self.riders.values())
            .map(|((&id, &s), rider)| {
                (
                    id,
                    self.view_of(
                        id,
                        s,
                        ranks.get(&id).copied().unwrap_or(0),
                        by_rider.get(&id).copied(),
                        group_of.get(&id).copied(),
                        Some(rider),
                    ),
                )
            })
            .collect();
        let groups = self
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
        (views, groups)
    }

    fn publish(
        &mut self,
        now: Millis,
        statuses: &BTreeMap<u32, RiderStatus>,
        road: &[RoadPosition],
    ) {
        let (views, groups) = self.current_views(statuses, road);
        let states: Vec<RiderView> = views
            .iter()
            .filter(|(id, v)| self.views.get(id) != Some(v))
            .map(|(_, v)| v.clone())
            .collect();
        let groups_changed = groups != self.group_views;
        self.views = views;
        if groups_changed {
            self.group_views = groups.clone();
        }
        let delta = Delta {
            race_id: self.config.id.clone(),
            epoch: self.epoch,
            tick: self.tick,
            time_ms: now,
            states,
            groups: groups_changed.then_some(groups),
            alerts: std::mem::take(&mut self.tick_alerts),
        };
        self.outputs.push_back(RaceOutput::Delta(delta));
    }

    /// Whether a position lies in one of the organiser's privacy zones (never published).
    pub fn in_privacy_zone(&self, lat: f64, lon: f64) -> bool {
        self.config
            .privacy_zones
            .iter()
            .any(|z| crate::core::geodesy::haversine_m(lat, lon, z.lat, z.lon) <= z.radius_m)
    }

    /// A rider's track as it may be published: applied fixes in time order, without those inside
    /// privacy zones. `None` for an unknown rider.
    pub fn track(&self, rider_id: u32) -> Option<Vec<TrackSample>> {
        let rider = self.riders.get(&rider_id)?;
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
            states: self.views.values().cloned().collect(),
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
            .values()
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
        let Some(r) = self.riders.get(&rider_id) else {
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

    /// The current rider views (as last published).
    pub fn views(&self) -> &BTreeMap<u32, RiderView> {
        &self.views
    }

    /// The current groups (as last published).
    pub fn group_views(&self) -> &[GroupView] {
        &self.group_views
    }

    /// When a rider passed a course distance, if they have.
    pub fn passage_time(&self, rider_id: u32, distance_m: f64) -> Option<Millis> {
        self.riders.get(&rider_id)?.time_at(distance_m)
    }

    /// Distance and event time of a rider's latest passage.
    pub fn last_passage(&self, rider_id: u32) -> Option<(f64, Millis)> {
        self.riders.get(&rider_id)?.last_passage()
    }
}
