//! Engine→fan frames: race snapshots, per-tick deltas and typed alerts.
//!
//! Owns what a fan's map and a commentator's console receive, in a JSON form (serde, camelCase) and
//! a compact binary form (rkyv). Does not decide what changed or who may see it: the engine builds
//! frames, the gateway filters and sends them.

use rkyv::{Archive, Deserialize, Serialize};

/// Rider status as shown to fans.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[rkyv(derive(Debug))]
pub enum RiderStatus {
    /// Registered, no fix after the start yet.
    NotStarted,
    /// Moving on course.
    Racing,
    /// Not moving for longer than the stop threshold.
    Stopped,
    /// Farther from the course than the off-course threshold for the minimum duration.
    OffCourse,
    /// No fix for several of the device's own reporting intervals.
    SignalLost,
    /// Crossed the finish.
    Finished,
    /// Marked abandoned by the organiser.
    Abandoned,
}

/// Static facts about a rider, as the organiser configured them to be published.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct RiderInfo {
    /// Engine-wide rider id (stable for the race).
    pub rider_id: u32,
    /// Race number shown on the map.
    pub bib: String,
    /// Display name.
    pub name: String,
    /// Team, empty if none.
    pub team: String,
}

/// Live state of one rider.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct RiderView {
    /// Which rider.
    pub rider_id: u32,
    /// Latitude in degrees of the last published position (course-snapped if on course).
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Distance along the course in metres.
    pub distance_m: f64,
    /// Smoothed speed in km/h.
    pub speed_kmh: f32,
    /// Current rank (1 = leader); 0 when not ranked yet.
    pub rank: u32,
    /// Time gap to the race leader in ms (cycling gap: when the leader passed this position).
    pub gap_to_leader_ms: Option<i64>,
    /// Time gap to the rider directly ahead in ms.
    pub gap_to_ahead_ms: Option<i64>,
    /// Group the rider is in, if any.
    pub group_id: Option<u32>,
    /// Status.
    pub status: RiderStatus,
    /// Event time of the last fix in ms since the Unix epoch.
    pub last_fix_ms: i64,
    /// Estimated time of arrival at the finish, ms since the Unix epoch.
    pub eta_finish_ms: Option<i64>,
    /// Battery percent from the last fix, if known.
    pub battery_pct: Option<u8>,
}

/// Role of a group in the race.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[rkyv(derive(Debug))]
pub enum GroupKind {
    /// A small group ahead of the largest group.
    Breakaway,
    /// The largest group.
    Peloton,
    /// A group between a breakaway and the peloton, or behind the peloton.
    Chasers,
    /// Riders alone or far behind.
    Stragglers,
}

/// One group of riders closer together than the race's gap threshold.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct GroupView {
    /// Stable identity of the group over time.
    pub group_id: u32,
    /// Role.
    pub kind: GroupKind,
    /// Riders in the group, front first.
    pub riders: Vec<u32>,
    /// Distance along course of the group's head, metres.
    pub head_distance_m: f64,
    /// Time gap to the group ahead in ms (None for the head of the race).
    pub gap_to_ahead_ms: Option<i64>,
    /// Time gap to the race leader in ms.
    pub gap_to_leader_ms: Option<i64>,
}

/// A checkpoint on the course.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct CheckpointInfo {
    /// Name ("KOM Col du …", "Feed zone", "Finish").
    pub name: String,
    /// Distance along course in metres.
    pub distance_m: f64,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// What a fan needs to draw the course without a second request.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct CourseSummary {
    /// Course name.
    pub name: String,
    /// Total length in metres.
    pub length_m: f64,
    /// Total ascent in metres.
    pub ascent_m: f64,
    /// Simplified course line as `[lon, lat]` pairs (GeoJSON order).
    pub line: Vec<[f64; 2]>,
    /// Checkpoints in course order.
    pub checkpoints: Vec<CheckpointInfo>,
}

/// Severity of an alert, for commentators' filters.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[rkyv(derive(Debug))]
pub enum Severity {
    /// Background information.
    Info,
    /// Worth mentioning on air.
    Notable,
    /// Needs attention now (possible crash, SOS).
    Critical,
}

/// What happened, with the data specific to that kind of event.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "type", rename_all = "snake_case")]
#[rkyv(derive(Debug))]
pub enum AlertKind {
    /// The race started.
    RaceStarted,
    /// A group went clear of the peloton.
    BreakawayFormed {
        /// Group id of the breakaway.
        group_id: u32,
        /// Gap to the peloton in ms.
        gap_ms: i64,
    },
    /// A breakaway was caught by the group behind.
    BreakawayCaught {
        /// Group id of the caught breakaway.
        group_id: u32,
    },
    /// A group split in two.
    GroupSplit {
        /// The group that split.
        group_id: u32,
        /// The new group formed by the split.
        new_group_id: u32,
    },
    /// A gap crossed a threshold.
    GapChanged {
        /// Group whose gap to the group behind crossed the threshold.
        group_id: u32,
        /// Threshold crossed, ms.
        threshold_ms: i64,
        /// Current gap, ms.
        gap_ms: i64,
        /// True if the gap is growing.
        growing: bool,
    },
    /// A new rider leads the race.
    LeaderChanged {
        /// Previous leader, if any.
        previous: Option<u32>,
    },
    /// A rider stopped moving.
    RiderStopped,
    /// Several riders stopped at the same place within seconds.
    PossibleCrash,
    /// A rider fell out of their group.
    DroppedFromGroup {
        /// The group left behind.
        group_id: u32,
    },
    /// A rider left the course. Not raised while the rider is inside one of the organiser's
    /// privacy zones (the offset would locate the private place): it comes when they leave the
    /// zone still off course, and not at all if they return to the course inside it.
    OffCourse {
        /// Distance from the course in metres.
        offset_m: f64,
    },
    /// A rider returned to the course.
    BackOnCourse,
    /// A device stopped reporting.
    SignalLost,
    /// A device reports again.
    SignalRegained,
    /// A device battery is low.
    LowBattery {
        /// Battery percent.
        battery_pct: u8,
    },
    /// The race leader passed a checkpoint.
    CheckpointLeader {
        /// Checkpoint name.
        checkpoint: String,
    },
    /// A rider finished.
    Finisher {
        /// Finishing position.
        position: u32,
        /// Finish time since the start in ms.
        race_time_ms: i64,
    },
    /// A rider pressed SOS.
    Sos,
    /// The organiser took a rider out of the race (abandon, disqualification). A finisher's
    /// place goes with them: every finisher behind moves up one place, and later finisher
    /// alerts count without them.
    RiderAbandoned {
        /// The rider's place among the finishers when taken out, if their finish had been
        /// announced.
        finish_position: Option<u32>,
    },
    /// The organiser put an abandoned rider back in the race.
    RiderReinstated {
        /// The rider's place, if they had finished and their finish will not be announced
        /// otherwise (it was passed over while they were out): the finishers behind move down.
        finish_position: Option<u32>,
    },
}

/// One entry of the alerts feed.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct Alert {
    /// Sequence number in the race's alert log, gap-free from 1 within an epoch.
    pub seq: u64,
    /// Epoch of the alert log (changes when the engine rebuilt the log and old seqs are void).
    pub epoch: u64,
    /// Event time in ms since the Unix epoch.
    pub time_ms: i64,
    /// Time since the race start in ms.
    pub race_time_ms: i64,
    /// Where on the course, km.
    pub course_km: f64,
    /// Riders involved.
    pub riders: Vec<u32>,
    /// How urgent.
    pub severity: Severity,
    /// What happened.
    pub kind: AlertKind,
}

/// Full state of a race, sent on connect and on resync.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct Snapshot {
    /// Race id.
    pub race_id: String,
    /// Race name.
    pub race_name: String,
    /// Engine epoch: changes when the engine restarts without its state.
    pub epoch: u64,
    /// Tick sequence number this snapshot corresponds to.
    pub tick: u64,
    /// Event time of the tick in ms since the Unix epoch.
    pub time_ms: i64,
    /// Race start time in ms since the Unix epoch.
    pub start_ms: i64,
    /// Course to draw.
    pub course: CourseSummary,
    /// Published rider facts.
    pub riders: Vec<RiderInfo>,
    /// Live state of every rider.
    pub states: Vec<RiderView>,
    /// Groups, front first.
    pub groups: Vec<GroupView>,
    /// The most recent alerts, oldest first.
    pub recent_alerts: Vec<Alert>,
}

/// What changed in one tick.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[rkyv(derive(Debug))]
pub struct Delta {
    /// Race id.
    pub race_id: String,
    /// Engine epoch.
    pub epoch: u64,
    /// Tick sequence number; a fan that sees a gap asks for a snapshot.
    pub tick: u64,
    /// Event time of the tick in ms since the Unix epoch.
    pub time_ms: i64,
    /// Riders whose state changed since the previous tick.
    pub states: Vec<RiderView>,
    /// The full group list if it changed, else None.
    pub groups: Option<Vec<GroupView>>,
    /// Alerts raised in this tick.
    pub alerts: Vec<Alert>,
}

/// Any frame a fan can receive.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "frame", rename_all = "snake_case")]
#[rkyv(derive(Debug))]
pub enum FanFrame {
    /// Full state.
    Snapshot(Snapshot),
    /// Changes of one tick.
    Delta(Delta),
    /// One alert (alerts feed).
    Alert(Alert),
}
