//! The gateway's view of the engine: the [`EngineControl`] trait and the JSON types it returns.
//!
//! Owns the request/response shapes of the HTTP API (race list, detail, standings, splits,
//! tracks, organiser commands) and the typed errors the engine may answer with. Does not
//! implement any of it: the root binary implements `EngineControl` over the engine, tests use a
//! fake.

use std::future::Future;
use std::pin::Pin;

use flevum_protocol::{CheckpointInfo, GroupView, PositionRecord, RiderInfo, RiderStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A boxed, sendable future, the return type of every [`EngineControl`] method.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Who may watch a race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone.
    Public,
    /// Only holders of a viewer token.
    Private,
}

/// Where a race is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RaceStatus {
    /// Not started yet.
    Scheduled,
    /// Running.
    Live,
    /// Over.
    Finished,
}

/// One line of `GET /v1/races`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaceSummary {
    /// Race id (URL segment).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Sport ("road", "gravel", "running", …).
    pub sport: String,
    /// Scheduled or actual start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Public or private (viewer token needed).
    pub visibility: Visibility,
    /// Scheduled, live or finished.
    pub status: RaceStatus,
    /// Number of registered riders.
    pub riders: u32,
}

/// `GET /v1/races/{race}`: everything the page needs to draw a race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaceDetail {
    /// Race id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Sport.
    pub sport: String,
    /// Start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Scheduled, live or finished.
    pub status: RaceStatus,
    /// Course as a GeoJSON Feature with a LineString geometry.
    #[schema(value_type = Object)]
    pub course: serde_json::Value,
    /// Course length, metres.
    pub length_m: f64,
    /// Total ascent, metres.
    pub ascent_m: f64,
    /// Elevation profile as `[distance_m, ele_m]` pairs.
    pub elevation: Vec<[f64; 2]>,
    /// Checkpoints in course order.
    #[schema(value_type = Vec<Object>)]
    pub checkpoints: Vec<CheckpointInfo>,
    /// Published rider facts.
    #[schema(value_type = Vec<Object>)]
    pub riders: Vec<RiderInfo>,
}

/// One line of `GET /v1/races/{race}/standings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// Rank, 1 = leader (0 = not ranked yet).
    pub rank: u32,
    /// Which rider.
    pub rider_id: u32,
    /// Race number.
    pub bib: String,
    /// Display name.
    pub name: String,
    /// Team, empty if none.
    pub team: String,
    /// Distance along the course, metres.
    pub distance_m: f64,
    /// Cycling time gap to the leader, ms.
    pub gap_to_leader_ms: Option<i64>,
    /// Rider status.
    #[schema(value_type = String)]
    pub status: RiderStatus,
    /// Race time at the finish, ms, once finished.
    pub finish_time_ms: Option<i64>,
}

/// One line of `GET /v1/races/{race}/splits`: a rider's passage at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitRow {
    /// Checkpoint name.
    pub checkpoint: String,
    /// Checkpoint distance along the course, metres.
    pub distance_m: f64,
    /// Which rider.
    pub rider_id: u32,
    /// Passage time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Passage time since the race start, ms.
    pub race_time_ms: i64,
    /// Order of passage at this checkpoint (1 = first).
    pub position: u32,
    /// Time behind the first rider at this checkpoint, ms.
    pub gap_ms: i64,
}

/// One point of a rider's track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackPoint {
    /// Event time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Elevation, metres, if known.
    pub ele: Option<f64>,
    /// Distance along the course, metres, if matched.
    pub distance_m: Option<f64>,
}

/// An organiser command (`POST /v1/admin/races[/{race}]`), tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Create a race from its config (TOML) and course (GPX text).
    CreateRace {
        /// Race config TOML (id, name, riders, checkpoints…).
        config_toml: String,
        /// Course as GPX XML text.
        gpx: String,
    },
    /// Register (or update) riders.
    RegisterRiders {
        /// Riders with their published facts.
        #[schema(value_type = Vec<Object>)]
        riders: Vec<RiderInfo>,
    },
    /// Issue a new device token for a rider (returned once).
    IssueToken {
        /// Rider the device belongs to.
        rider_id: u32,
    },
    /// List device tokens (no secrets).
    ListTokens,
    /// Revoke every token of a device.
    RevokeToken {
        /// Device id as listed.
        device_id: String,
    },
    /// Move a checkpoint along the course.
    MoveCheckpoint {
        /// Checkpoint name.
        name: String,
        /// New distance along the course, metres.
        distance_m: f64,
    },
    /// Mark a rider abandoned.
    Abandon {
        /// Which rider.
        rider_id: u32,
    },
    /// Undo an abandon.
    Reinstate {
        /// Which rider.
        rider_id: u32,
    },
    /// Start the race now.
    Start,
    /// Finish the race now.
    Finish,
}

/// Why the engine refused positions from the HTTP tracker ingest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Unknown or revoked device token (HTTP 401).
    #[error("unknown or revoked device token")]
    Unauthorized,
    /// The positions were refused as a whole (HTTP 400).
    #[error("invalid positions: {0}")]
    Invalid(String),
    /// The engine cannot take positions now, retry later (HTTP 503).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// Why an organiser command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Unknown race, rider, checkpoint or device (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// Malformed command or config (HTTP 400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The command conflicts with the race state, e.g. starting a finished race (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The engine failed (HTTP 500).
    #[error("engine error: {0}")]
    Internal(String),
}

/// What the gateway asks of the engine. Implemented by the root binary over the engine.
///
/// Every method returns a boxed `Send` future so the trait is object safe
/// (`Arc<dyn EngineControl>`); race ids are passed owned so the futures are `'static`.
/// Race-scoped queries answer `None` for an unknown race.
pub trait EngineControl: Send + Sync + 'static {
    /// All races, public and private.
    fn races(&self) -> BoxFuture<Vec<RaceSummary>>;
    /// Detail of one race.
    fn race_detail(&self, race: String) -> BoxFuture<Option<RaceDetail>>;
    /// Current standings.
    fn standings(&self, race: String) -> BoxFuture<Option<Vec<Standing>>>;
    /// Current groups, front first.
    fn groups(&self, race: String) -> BoxFuture<Option<Vec<GroupView>>>;
    /// Checkpoint passages so far.
    fn splits(&self, race: String) -> BoxFuture<Option<Vec<SplitRow>>>;
    /// A rider's track (None for an unknown race or rider).
    fn rider_track(&self, race: String, rider: u32) -> BoxFuture<Option<Vec<TrackPoint>>>;
    /// Positions from the HTTP tracker ingest for the device holding `device_token`; resolves
    /// once durable. An empty `records` only checks the token.
    fn submit_positions(
        &self,
        device_token: String,
        records: Vec<PositionRecord>,
    ) -> BoxFuture<Result<(), SubmitError>>;
    /// An organiser command; `race` is None only for `create_race` posted to `/v1/admin/races`.
    fn admin(
        &self,
        race: Option<String>,
        request: AdminRequest,
    ) -> BoxFuture<Result<serde_json::Value, AdminError>>;
    /// Whether a viewer with `token` (None = no token) may watch `race`: true for public races;
    /// for private races, true only for an engine-known viewer token. HMAC share tokens are
    /// checked by the gateway itself before asking.
    fn viewer_allowed(&self, race: String, token: Option<String>) -> BoxFuture<bool>;
    /// Whether the engine is ready to serve (journal recovered, races loaded).
    fn ready(&self) -> BoxFuture<bool>;
}
