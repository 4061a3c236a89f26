//! The engine host: the table of open races and the adapters that join the libraries — the
//! gateway's `EngineControl`, the ingest's `IngestSink` and the shard's `FramePublisher`.
//!
//! Holds no race logic: every answer is read from a race shard or the token store and mapped
//! onto the gateway's JSON types. Does not bind sockets; `serve` does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use flevum_engine::core::{AdminCommand, Course, CourseIndex, RaceConfig};
use flevum_engine::ingest::{DeviceGrant, ShardSink, TokenStore};
use flevum_engine::journal::JournalBackend;
use flevum_engine::shard::{
    FramePublisher, RaceHandle, RaceRecovery, ShardConfig, ShardError, open_race, wall_ms,
};
use flevum_gateway::LiveHub;
use flevum_gateway::engine_control::{
    AdminError, AdminRequest, BoxFuture, EngineControl, RaceDetail, RaceStatus, RaceSummary,
    SplitRow, Standing, SubmitError, TrackPoint, Visibility,
};
use flevum_protocol::{
    Alert, Delta, GroupView, PositionRecord, RecordLimits, RiderInfo, RiderStatus, RiderView,
    Snapshot,
};
use serde_json::json;
use tokio::sync::watch;
use tracing::info;

/// One line of a race's token log, in the order the organiser acted.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum TokenEvent {
    /// A device token was issued.
    Issued(StoredToken),
    /// Every token of a device (config-granted ones too) was revoked.
    Revoked(RevokedDevice),
}

/// A revocation as persisted: replaying it after the tokens issued before it removes them, and
/// the race config's token for the device, again.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokedDevice {
    /// The device whose tokens were revoked.
    revoked_device: String,
}

/// An issued device token as persisted: its hash and whom it belongs to, never the secret.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    /// SHA-256 of the token, hex.
    sha256: String,
    /// The rider it reports for.
    rider_id: u32,
    /// The rider's device.
    device_id: String,
}

/// Publishes a shard's frames into the gateway's in-process hub (the embedded bus).
pub struct HubPublisher(pub LiveHub);

impl FramePublisher for HubPublisher {
    fn snapshot(&self, snapshot: Snapshot) {
        self.0.publish_snapshot(snapshot);
    }
    fn delta(&self, delta: Delta) {
        self.0.publish_delta(delta);
    }
    fn alert(&self, race_id: &str, alert: Alert) {
        self.0.publish_alert(race_id, alert);
    }
    fn read_published(&self, race_id: &str, read: &mut dyn FnMut(&Snapshot)) -> bool {
        self.0.read_snapshot(race_id, read).is_some()
    }
    fn keeps_published(&self) -> bool {
        true
    }
}

/// An open race and what the API serves about it without asking the shard.
struct OpenRace {
    /// The shard's handle (submit, admin, queries).
    handle: RaceHandle,
    /// Course as GeoJSON, elevation profile and totals, computed once at open.
    detail: RaceDetail,
}

/// Every open race, the device tokens and the way to open more.
pub struct EngineHost {
    /// Open races by id.
    races: DashMap<String, OpenRace>,
    /// Device tokens (hashed); shared with the QUIC ingest.
    tokens: Arc<TokenStore>,
    /// The QUIC ingest's routing table to race shards; every opened race is added.
    sink: Arc<ShardSink>,
    /// Journal and tick settings for races opened later (organiser uploads).
    shard: ShardConfig,
    /// Where uploaded races (config + GPX) are kept so a restart reopens them.
    uploads_dir: PathBuf,
    /// Where issued device tokens are kept (hashes only) so a restart still accepts them.
    tokens_dir: PathBuf,
    /// Serialises appends to the token logs, so two requests' lines never interleave.
    token_file_lock: std::sync::Mutex<()>,
    /// Where the shards' frames go (the in-process hub, or the NATS bus in `flevum engine`).
    publisher: Arc<dyn FramePublisher>,
    /// Validation limits for positions arriving over HTTP.
    limits: RecordLimits,
    /// Set once every configured race is open and ingest listens.
    ready: AtomicBool,
    /// Tells shards to stop.
    shutdown: watch::Receiver<bool>,
    /// How races created through the API are opened when not on the local file journal.
    race_opener: std::sync::OnceLock<Arc<dyn RaceOpener>>,
}

/// Opens a race created through the organiser API somewhere else than on the local file
/// journal (the JetStream journal with race leases).
pub trait RaceOpener: Send + Sync + 'static {
    /// Refuses an id that is taken (configured anywhere in the cluster).
    fn check(&self, race_id: &str) -> Result<(), AdminError>;
    /// Starts running the race; resolves once it is open (here or on another engine).
    fn open(&self, config: RaceConfig, course: Course) -> BoxFuture<Result<(), AdminError>>;
}

/// Completes when `rx` turns true (or its sender is gone).
pub async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl EngineHost {
    /// An empty host.
    pub fn new(
        shard: ShardConfig,
        data_dir: PathBuf,
        hub: LiveHub,
        tokens: Arc<TokenStore>,
        shutdown: watch::Receiver<bool>,
    ) -> EngineHost {
        Self::with_publisher(
            shard,
            data_dir,
            Arc::new(HubPublisher(hub)),
            tokens,
            shutdown,
        )
    }

    /// An empty host whose shards publish to `publisher`.
    pub fn with_publisher(
        shard: ShardConfig,
        data_dir: PathBuf,
        publisher: Arc<dyn FramePublisher>,
        tokens: Arc<TokenStore>,
        shutdown: watch::Receiver<bool>,
    ) -> EngineHost {
        EngineHost {
            races: DashMap::new(),
            tokens,
            sink: Arc::new(ShardSink::new()),
            shard,
            uploads_dir: data_dir.join("uploads"),
            tokens_dir: data_dir.join("tokens"),
            token_file_lock: std::sync::Mutex::new(()),
            publisher,
            limits: RecordLimits::default(),
            ready: AtomicBool::new(false),
            shutdown,
            race_opener: std::sync::OnceLock::new(),
        }
    }

    /// Marks the host ready (all races open, listeners bound).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether [`EngineHost::set_ready`] was called.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The sink the QUIC ingest submits to.
    pub fn ingest_sink(&self) -> Arc<ShardSink> {
        self.sink.clone()
    }

    /// Opens a race: replays its journal and starts its shard. Returns the shard task.
    pub fn open(
        &self,
        config: RaceConfig,
        course: Course,
    ) -> Result<tokio::task::JoinHandle<()>, ShardError> {
        let index = CourseIndex::new(course);
        let detail = race_detail(&config, &index);
        self.register_tokens(&config);
        let (handle, report, task) = open_race(
            &self.shard,
            config.clone(),
            index,
            self.publisher.clone(),
            until_shutdown(self.shutdown.clone()),
        )?;
        info!(
            race = %config.id,
            riders = config.riders.len(),
            recovered_fixes = report.fixes,
            "race open"
        );
        self.sink.insert(&config.id, handle.clone());
        self.races
            .insert(config.id.clone(), OpenRace { handle, detail });
        Ok(task)
    }

    /// Prepares a race whose journal lives elsewhere (JetStream): accepts its device tokens and
    /// builds a fresh core for the caller to replay the journal into.
    pub fn prepare(
        &self,
        config: RaceConfig,
        course: Course,
    ) -> Result<(RaceRecovery, RaceDetail), ShardError> {
        let index = CourseIndex::new(course);
        let detail = race_detail(&config, &index);
        self.register_tokens(&config);
        Ok((RaceRecovery::new(&self.shard, config, index)?, detail))
    }

    /// Starts a race replayed by the caller, journaling to `journal`; it stops when the host
    /// shuts down or `stop` completes (the race was handed to another engine).
    pub fn start_recovered(
        &self,
        recovery: RaceRecovery,
        detail: RaceDetail,
        journal: Arc<dyn JournalBackend>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let shutdown = until_shutdown(self.shutdown.clone());
        let race_id = recovery.race_id().to_string();
        let (handle, report, task) =
            recovery.start(&self.shard, journal, self.publisher.clone(), async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = stop => {}
                }
            });
        info!(
            race = %race_id,
            recovered_fixes = report.fixes,
            recovered_admin = report.admin,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "race open (owner)"
        );
        self.sink.insert(&race_id, handle.clone());
        self.races.insert(race_id, OpenRace { handle, detail });
        task
    }

    /// Stops serving a race here (handed to another engine); its shard is stopped by the caller.
    pub fn close(&self, race_id: &str) {
        self.sink.remove(race_id);
        self.races.remove(race_id);
    }

    /// Accepts the device tokens of a configured race, owned here or not (a device may connect
    /// to any engine of a cluster).
    pub fn accept_tokens(&self, config: &RaceConfig) {
        self.register_tokens(config);
    }

    /// The race a device token reports to, if the token is valid.
    pub fn device_race(&self, token: &str) -> Option<String> {
        self.tokens.authenticate(token).map(|g| g.race_id)
    }

    /// The handle of an open race.
    /// Validation limits for positions that arrive other than over this engine's QUIC ingest.
    pub fn record_limits(&self) -> RecordLimits {
        self.limits
    }

    pub fn race(&self, race_id: &str) -> Option<RaceHandle> {
        self.races.get(race_id).map(|r| r.handle.clone())
    }

    /// Accepts the device tokens of a race: hashes from its config and tokens issued earlier
    /// through the organiser API (persisted as hashes), less those revoked through it.
    fn register_tokens(&self, config: &RaceConfig) {
        let grant = |r: &flevum_engine::core::race::RiderConfig| DeviceGrant {
            race_id: config.id.clone(),
            rider_id: r.id,
            device_id: r.device_id.clone(),
            report_interval_ms: config.report_interval_ms,
        };
        let riders: HashMap<u32, &flevum_engine::core::race::RiderConfig> =
            config.riders.iter().map(|r| (r.id, r)).collect();
        let mut events = Vec::new();
        // The list written before the organiser's actions were appended one by one, if any.
        let legacy = self.tokens_dir.join(format!("{}.json", config.id));
        if let Ok(text) = std::fs::read_to_string(&legacy) {
            match serde_json::from_str::<Vec<StoredToken>>(&text) {
                Ok(list) => events.extend(list.into_iter().map(TokenEvent::Issued)),
                Err(e) => {
                    tracing::warn!(file = %legacy.display(), "ignoring unreadable token list: {e}")
                }
            }
        }
        let log = self.token_log(&config.id);
        if let Ok(text) = std::fs::read_to_string(&log) {
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                match serde_json::from_str::<TokenEvent>(line) {
                    Ok(event) => events.push(event),
                    // A line cut short by a crash mid-append: the action it held was never
                    // confirmed to the organiser, so nothing confirmed is lost by skipping it.
                    Err(e) => {
                        tracing::warn!(file = %log.display(), line = n + 1, "ignoring unreadable token line: {e}")
                    }
                }
            }
        }
        // The log is replayed into the final set before anything is inserted, so the live table
        // never drops a valid token for a moment (when a race is registered again, a device
        // logging in or re-checking its lease meanwhile is not turned away).
        let mut issued: Vec<(String, &flevum_engine::core::race::RiderConfig)> = Vec::new();
        let mut revoked: HashSet<String> = HashSet::new();
        for event in events {
            match event {
                TokenEvent::Issued(t) => {
                    if let Some(r) = riders.get(&t.rider_id) {
                        issued.push((t.sha256, r));
                    }
                }
                TokenEvent::Revoked(d) => {
                    issued.retain(|(_, r)| r.device_id != d.revoked_device);
                    revoked.insert(d.revoked_device);
                }
            }
        }
        for r in &config.riders {
            // A device revoked through the organiser API stays revoked, config-granted token too.
            if let Some(h) = &r.device_token_sha256
                && !revoked.contains(&r.device_id)
            {
                self.tokens.insert_hash(h, grant(r));
            }
        }
        for (sha256, r) in issued {
            self.tokens.insert_hash(&sha256, grant(r));
        }
    }

    /// The log of a race's token actions: one JSON line per issued token (its hash only) or
    /// revoked device, appended as the organiser acts and replayed in order at start.
    fn token_log(&self, race_id: &str) -> PathBuf {
        self.tokens_dir.join(format!("{race_id}.jsonl"))
    }

    /// Appends one action to its race's token log: O(1) per action, so issuing tokens for a
    /// 10,000-rider field one request at a time does not rewrite a list 10,000 times.
    fn append_token_event(&self, race_id: &str, event: &TokenEvent) -> std::io::Result<()> {
        use std::io::Write;
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self
            .token_file_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.tokens_dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.token_log(race_id))?;
        // One write of the whole line: appends from concurrent requests never interleave.
        file.write_all(&line)
    }

    fn summary(&self, r: &OpenRace, status: RaceStatus) -> RaceSummary {
        let c = r.handle.config();
        RaceSummary {
            id: c.id.clone(),
            name: c.name.clone(),
            sport: r.detail.sport.clone(),
            start_ms: c.start_ms,
            visibility: visibility(c),
            status,
            riders: c.riders.len() as u32,
        }
    }

    async fn admin_on(
        &self,
        handle: RaceHandle,
        request: AdminRequest,
    ) -> Result<serde_json::Value, AdminError> {
        let race_id = handle.race_id().to_string();
        let command = match request {
            AdminRequest::CreateRace { .. } => {
                return Err(AdminError::Invalid(
                    "create a race with POST /v1/admin/races".into(),
                ));
            }
            AdminRequest::RegisterRiders { .. } => {
                return Err(AdminError::Conflict(
                    "riders of an open race are fixed by its config; create the race with them"
                        .into(),
                ));
            }
            AdminRequest::IssueToken { rider_id } => {
                let rider = handle
                    .config()
                    .riders
                    .iter()
                    .find(|r| r.id == rider_id)
                    .ok_or_else(|| AdminError::NotFound(format!("rider {rider_id}")))?;
                let grant = DeviceGrant {
                    race_id: race_id.clone(),
                    rider_id,
                    device_id: rider.device_id.clone(),
                    report_interval_ms: handle.config().report_interval_ms,
                };
                let token = self.tokens.issue(grant);
                let stored = StoredToken {
                    sha256: TokenStore::sha256_hex(&token),
                    rider_id,
                    device_id: rider.device_id.clone(),
                };
                self.append_token_event(&race_id, &TokenEvent::Issued(stored))
                    .map_err(|e| AdminError::Internal(format!("saving tokens: {e}")))?;
                return Ok(json!({
                    "token": token,
                    "riderId": rider_id,
                    "deviceId": rider.device_id,
                }));
            }
            AdminRequest::ListTokens => {
                let list: Vec<_> = self
                    .tokens
                    .list(&race_id)
                    .into_iter()
                    .map(|t| {
                        json!({
                            "hashPrefix": t.hash_prefix,
                            "riderId": t.grant.rider_id,
                            "deviceId": t.grant.device_id,
                        })
                    })
                    .collect();
                return Ok(json!({ "tokens": list }));
            }
            AdminRequest::RevokeToken { device_id } => {
                let revoked = self.tokens.revoke_device(&race_id, &device_id);
                if revoked == 0 {
                    return Err(AdminError::NotFound(format!(
                        "tokens of device {device_id}"
                    )));
                }
                let event = TokenEvent::Revoked(RevokedDevice {
                    revoked_device: device_id,
                });
                self.append_token_event(&race_id, &event)
                    .map_err(|e| AdminError::Internal(format!("saving tokens: {e}")))?;
                return Ok(json!({ "revoked": revoked }));
            }
            AdminRequest::MoveCheckpoint { name, distance_m } => {
                AdminCommand::MoveCheckpoint { name, distance_m }
            }
            AdminRequest::Abandon { rider_id } => AdminCommand::Abandon { rider_id },
            AdminRequest::Reinstate { rider_id } => AdminCommand::Reinstate { rider_id },
            AdminRequest::Start => AdminCommand::Start,
            AdminRequest::Finish => AdminCommand::Finish,
        };
        match handle.admin(command).await {
            Ok(()) => Ok(json!({ "ok": true })),
            Err(ShardError::Admin(e)) => Err(AdminError::Conflict(e.to_string())),
            Err(e) => Err(AdminError::Internal(e.to_string())),
        }
    }

    async fn create_race(
        &self,
        config_toml: &str,
        gpx: &str,
    ) -> Result<serde_json::Value, AdminError> {
        let config =
            RaceConfig::from_toml(config_toml).map_err(|e| AdminError::Invalid(e.to_string()))?;
        if let Err(errors) = config.validate() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(AdminError::Invalid(list.join("; ")));
        }
        if self.races.contains_key(&config.id) {
            return Err(AdminError::Conflict(format!("race {} exists", config.id)));
        }
        let course = Course::from_gpx_str(gpx).map_err(|e| AdminError::Invalid(e.to_string()))?;
        // Kept beside the journal so that a restart reopens the race; taken back if the race
        // does not open, or every later start would fail on it.
        let gpx_path = self.uploads_dir.join(format!("{}.gpx", config.id));
        let toml_path = self.uploads_dir.join(format!("{}.toml", config.id));
        let save = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.uploads_dir)?;
            std::fs::write(&gpx_path, gpx)?;
            std::fs::write(&toml_path, config_toml)
        };
        let forget = || {
            for path in [&gpx_path, &toml_path] {
                if let Err(e) = std::fs::remove_file(path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a refused upload");
                }
            }
        };
        let id = config.id.clone();
        if let Some(opener) = self.race_opener.get() {
            // Another engine may run a race of this id (races are shared through JetStream).
            opener.check(&id)?;
            save().map_err(|e| AdminError::Internal(format!("saving the race: {e}")))?;
            if let Err(e) = opener.open(config, course).await {
                forget();
                return Err(e);
            }
            return Ok(json!({ "id": id }));
        }
        save().map_err(|e| AdminError::Internal(format!("saving the race: {e}")))?;
        match self.open(config, course) {
            Ok(_) => Ok(json!({ "id": id })),
            Err(e) => {
                forget();
                Err(match e {
                    // The config and the course disagree (a checkpoint beyond the finish).
                    ShardError::Race(e) => AdminError::Invalid(e.to_string()),
                    e => AdminError::Internal(e.to_string()),
                })
            }
        }
    }

    /// Opens races created through the organiser API with `opener` instead of the local file
    /// journal (`flevum engine` with the JetStream journal). Set once, before serving.
    pub fn set_race_opener(&self, opener: Arc<dyn RaceOpener>) {
        if self.race_opener.set(opener).is_err() {
            tracing::warn!("the race opener was already set");
        }
    }
}

fn visibility(c: &RaceConfig) -> Visibility {
    match c.visibility {
        flevum_engine::core::race::Visibility::Public => Visibility::Public,
        flevum_engine::core::race::Visibility::Private => Visibility::Private,
    }
}

fn sport_name(c: &RaceConfig) -> String {
    serde_json::to_value(c.sport)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The static part of a race's detail: course GeoJSON, elevation profile, checkpoints, riders.
fn race_detail(config: &RaceConfig, index: &CourseIndex) -> RaceDetail {
    let course = index.course();
    let line = course.display_line(2000);
    let length = course.length_m();
    let samples = 400usize;
    let elevation: Vec<[f64; 2]> = (0..=samples)
        .filter_map(|i| {
            let d = length * i as f64 / samples as f64;
            course
                .elevation_at(d)
                .map(|e| [d.round(), (e * 10.0).round() / 10.0])
        })
        .collect();
    let checkpoints = course.checkpoint_infos();
    RaceDetail {
        id: config.id.clone(),
        name: config.name.clone(),
        sport: sport_name(config),
        start_ms: config.start_ms,
        status: RaceStatus::Scheduled,
        course: json!({
            "type": "Feature",
            "properties": { "name": course.name() },
            "geometry": { "type": "LineString", "coordinates": line },
        }),
        length_m: length,
        ascent_m: course.ascent_m(),
        elevation,
        checkpoints,
        riders: config
            .riders
            .iter()
            .map(|r| RiderInfo {
                rider_id: r.id,
                bib: r.bib.clone(),
                name: r.name.clone(),
                team: r.team.clone(),
            })
            .collect(),
    }
}

/// The organiser's publish delay of a race, ms: everything fans can read lags this much.
fn publish_delay_ms(handle: &RaceHandle) -> i64 {
    i64::from(handle.config().publish_delay_s) * 1000
}

/// What `read` takes from a race's published state (see `FramePublisher::read_published`), if
/// anything of it is published.
fn published<R>(
    publisher: &dyn FramePublisher,
    race_id: &str,
    read: impl FnOnce(&Snapshot) -> R,
) -> Option<R> {
    let (mut read, mut out) = (Some(read), None);
    publisher.read_published(race_id, &mut |s| out = read.take().map(|r| r(s)));
    out
}

/// What of each rider's record a race's public may see: everything up to now, or, behind a
/// publish delay, up to the last fix of each rider that the delayed feed has shown (its
/// published snapshot's `lastFixMs`). Judging by fix times alone would show at once the fixes of
/// a device whose clock runs behind by more than the delay; that is all that is left where the
/// publisher keeps no published state (`FramePublisher::keeps_published`).
struct Visible {
    /// Fixes and passages after this time are not shown (now - delay).
    until_ms: i64,
    /// Behind a delay: each rider's last fix time as published (riders missing: nothing yet).
    shown: Option<HashMap<u32, i64>>,
}

impl Visible {
    /// For every rider of the race (splits, finish times).
    fn of(handle: &RaceHandle, publisher: &dyn FramePublisher) -> Visible {
        Visible::with(handle, publisher, |p| {
            published(p, handle.race_id(), |s| Visible::shown_in(&s.states)).unwrap_or_default()
        })
    }

    /// For one rider (a track): reads that rider's published state only.
    fn for_rider(handle: &RaceHandle, publisher: &dyn FramePublisher, rider: u32) -> Visible {
        Visible::with(handle, publisher, |p| {
            published(p, handle.race_id(), |s| {
                s.states
                    .iter()
                    .filter(|v| v.rider_id == rider)
                    .map(|v| (v.rider_id, v.last_fix_ms))
                    .collect()
            })
            .unwrap_or_default()
        })
    }

    /// Behind a delay, with the published last fixes that `shown` reads from the publisher.
    fn with(
        handle: &RaceHandle,
        publisher: &dyn FramePublisher,
        shown: impl FnOnce(&dyn FramePublisher) -> HashMap<u32, i64>,
    ) -> Visible {
        let delay_ms = publish_delay_ms(handle);
        Visible {
            until_ms: handle.now_ms() - delay_ms,
            shown: (delay_ms > 0 && publisher.keeps_published()).then(|| shown(publisher)),
        }
    }

    /// Each rider's last fix time in published states.
    fn shown_in(states: &[RiderView]) -> HashMap<u32, i64> {
        states.iter().map(|v| (v.rider_id, v.last_fix_ms)).collect()
    }

    /// Whether rider `rider`'s fix or passage at `time_ms` may be shown.
    fn allows(&self, rider: u32, time_ms: i64) -> bool {
        time_ms <= self.until_ms
            && self
                .shown
                .as_ref()
                .is_none_or(|shown| shown.get(&rider).is_some_and(|&last| time_ms <= last))
    }
}

/// Whether every rider of a non-empty field has finished or abandoned.
fn all_done(views: &[RiderView]) -> bool {
    !views.is_empty()
        && views
            .iter()
            .all(|v| matches!(v.status, RiderStatus::Finished | RiderStatus::Abandoned))
}

/// Scheduled before the start, finished once closed or every rider is done, else live.
///
/// Behind a publish delay the status is the one the delayed feed shows: judged at `now - delay`,
/// with the riders' statuses of the published snapshot. Judged live, the race list would say
/// "finished" while the delayed map still shows the sprint.
async fn status_of(handle: &RaceHandle, publisher: &dyn FramePublisher) -> RaceStatus {
    let delay_ms = publish_delay_ms(handle);
    let visible_until = handle.now_ms() - delay_ms;
    let state = handle
        .query(|r| {
            (
                r.is_started(),
                r.config().start_ms,
                r.closed_at(),
                all_done(r.views()),
            )
        })
        .await;
    // Without an answer (the shard is stopping), the configured start decides.
    let (started, start_ms, closed_at, done_live) =
        state.unwrap_or((false, handle.config().start_ms, None, false));
    let done = if delay_ms > 0 {
        closed_at.is_some_and(|t| t <= visible_until)
            || published(publisher, handle.race_id(), |s| all_done(&s.states)).unwrap_or(false)
    } else {
        closed_at.is_some() || done_live
    };
    if done {
        RaceStatus::Finished
    } else if (started && delay_ms == 0) || start_ms <= visible_until {
        RaceStatus::Live
    } else {
        RaceStatus::Scheduled
    }
}

impl EngineControl for Control {
    fn races(&self) -> BoxFuture<Vec<RaceSummary>> {
        let handles: Vec<RaceHandle> = self.races.iter().map(|r| r.handle.clone()).collect();
        let me = self.0.clone();
        Box::pin(async move {
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                let status = status_of(&h, me.publisher.as_ref()).await;
                if let Some(r) = me.races.get(h.race_id()) {
                    out.push(me.summary(&r, status));
                }
            }
            out.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then(a.id.cmp(&b.id)));
            out
        })
    }

    fn race_detail(&self, race: String) -> BoxFuture<Option<RaceDetail>> {
        let found = self
            .races
            .get(&race)
            .map(|r| (r.handle.clone(), r.detail.clone()));
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let (handle, mut detail) = found?;
            detail.status = status_of(&handle, publisher.as_ref()).await;
            // Checkpoints may have been moved by the organiser since the race opened.
            if let Ok(cps) = handle
                .query(|r| r.course().course().checkpoint_infos())
                .await
            {
                detail.checkpoints = cps;
            }
            Some(detail)
        })
    }

    fn standings(&self, race: String) -> BoxFuture<Option<Vec<Standing>>> {
        let handle = self.race(&race);
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let handle = handle?;
            let riders: BTreeMap<u32, RiderInfo> = handle
                .config()
                .riders
                .iter()
                .map(|r| {
                    (
                        r.id,
                        RiderInfo {
                            rider_id: r.id,
                            bib: r.bib.clone(),
                            name: r.name.clone(),
                            team: r.team.clone(),
                        },
                    )
                })
                .collect();
            let start = handle.config().start_ms;
            let delay_ms = publish_delay_ms(&handle);
            let (mut views, finishes) = handle
                .query(|r| {
                    (
                        r.views().to_vec(),
                        r.finish_order().iter().copied().collect::<BTreeMap<_, _>>(),
                    )
                })
                .await
                .ok()?;
            if delay_ms > 0 {
                // A delayed race shows what its delayed live feed shows, not the live state.
                views = published(publisher.as_ref(), handle.race_id(), |s| s.states.clone())
                    .unwrap_or_default();
            }
            // Finish times as far as the feed has shown each rider (not by their time stamps).
            let visible = Visible::with(&handle, publisher.as_ref(), |_| Visible::shown_in(&views));
            let finishes: BTreeMap<u32, i64> = finishes
                .into_iter()
                .filter(|&(id, t)| visible.allows(id, t))
                .collect();
            let mut rows: Vec<Standing> = views
                .into_iter()
                .filter_map(|v| {
                    let info = riders.get(&v.rider_id)?;
                    Some(Standing {
                        rank: v.rank,
                        rider_id: v.rider_id,
                        bib: info.bib.clone(),
                        name: info.name.clone(),
                        team: info.team.clone(),
                        distance_m: v.distance_m,
                        gap_to_leader_ms: v.gap_to_leader_ms,
                        status: v.status,
                        finish_time_ms: finishes.get(&v.rider_id).map(|t| t - start),
                    })
                })
                .collect();
            rows.sort_by_key(|s| (s.rank == 0, s.rank, s.rider_id));
            Some(rows)
        })
    }

    fn groups(&self, race: String) -> BoxFuture<Option<Vec<GroupView>>> {
        let handle = self.race(&race);
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let handle = handle?;
            if publish_delay_ms(&handle) > 0 {
                return Some(
                    published(publisher.as_ref(), handle.race_id(), |s| s.groups.clone())
                        .unwrap_or_default(),
                );
            }
            handle.query(|r| r.group_views().to_vec()).await.ok()
        })
    }

    fn splits(&self, race: String) -> BoxFuture<Option<Vec<SplitRow>>> {
        let handle = self.race(&race);
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let handle = handle?;
            let start = handle.config().start_ms;
            let (checkpoints, splits) = handle
                .query(|r| {
                    let cps: Vec<(String, f64)> = r
                        .course()
                        .course()
                        .checkpoints()
                        .iter()
                        .map(|c| (c.name.clone(), c.distance_m))
                        .collect();
                    (cps, r.splits())
                })
                .await
                .ok()?;
            let visible = Visible::of(&handle, publisher.as_ref());
            let mut rows = Vec::new();
            for (i, (name, distance_m)) in checkpoints.iter().enumerate() {
                let mut passed: Vec<(i64, u32)> = splits
                    .iter()
                    .filter_map(|s| Some((s.passages.get(i).copied().flatten()?, s.rider_id)))
                    .collect();
                passed.retain(|&(t, rider)| visible.allows(rider, t));
                passed.sort_unstable();
                let first = passed.first().map(|p| p.0);
                for (pos, (t, rider_id)) in passed.iter().enumerate() {
                    rows.push(SplitRow {
                        checkpoint: name.clone(),
                        distance_m: *distance_m,
                        rider_id: *rider_id,
                        time_ms: *t,
                        race_time_ms: t - start,
                        position: pos as u32 + 1,
                        gap_ms: first.map_or(0, |f| t - f),
                    });
                }
            }
            Some(rows)
        })
    }

    fn rider_track(&self, race: String, rider: u32) -> BoxFuture<Option<Vec<TrackPoint>>> {
        let handle = self.race(&race);
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let handle = handle?;
            let samples = handle.query(move |r| r.track(rider)).await.ok()??;
            let visible = Visible::for_rider(&handle, publisher.as_ref(), rider);
            Some(
                samples
                    .into_iter()
                    .filter(|s| visible.allows(rider, s.time_ms))
                    .map(|s| TrackPoint {
                        time_ms: s.time_ms,
                        lat: s.lat,
                        lon: s.lon,
                        ele: s.ele,
                        distance_m: s.distance_m,
                    })
                    .collect(),
            )
        })
    }

    fn submit_positions(
        &self,
        device_token: String,
        records: Vec<PositionRecord>,
    ) -> BoxFuture<Result<(), SubmitError>> {
        let grant = self.tokens.authenticate(&device_token);
        let handle = grant.as_ref().and_then(|g| self.race(&g.race_id));
        let limits = self.limits;
        Box::pin(async move {
            let (Some(grant), Some(handle)) = (grant, handle) else {
                return Err(SubmitError::Unauthorized);
            };
            let (valid, first_error) = validated(records, wall_ms(), &limits);
            if valid.is_empty()
                && let Some(e) = first_error
            {
                return Err(SubmitError::Invalid(e));
            }
            handle
                .submit(grant.rider_id, valid)
                .await
                .map_err(|e| SubmitError::Unavailable(e.to_string()))
        })
    }

    fn admin(
        &self,
        race: Option<String>,
        request: AdminRequest,
    ) -> BoxFuture<Result<serde_json::Value, AdminError>> {
        let me = self.0.clone();
        Box::pin(async move {
            if let AdminRequest::CreateRace { config_toml, gpx } = &request {
                return me.create_race(config_toml, gpx).await;
            }
            let Some(race) = race else {
                return Err(AdminError::Invalid("this action needs a race".into()));
            };
            let handle = me
                .race(&race)
                .ok_or_else(|| AdminError::NotFound(format!("race {race}")))?;
            me.admin_on(handle, request).await
        })
    }

    fn viewer_allowed(&self, race: String, _token: Option<String>) -> BoxFuture<bool> {
        // Private races are opened with the gateway's signed share tokens; the engine itself
        // grants only public races.
        let public = self
            .races
            .get(&race)
            .is_some_and(|r| visibility(r.handle.config()) == Visibility::Public);
        Box::pin(async move { public })
    }

    fn ready(&self) -> BoxFuture<bool> {
        let ready = self.ready.load(Ordering::Acquire);
        Box::pin(async move { ready })
    }
}

/// The records of a batch that pass validation at `now` (kept in order), and the first
/// refused record's reason: positions from HTTP and from other engines go through it.
pub fn validated(
    records: Vec<PositionRecord>,
    now: i64,
    limits: &RecordLimits,
) -> (Vec<PositionRecord>, Option<String>) {
    let mut valid = Vec::with_capacity(records.len());
    let mut first_error = None;
    for r in records {
        match r.validate(now, limits) {
            Ok(()) => valid.push(r),
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    (valid, first_error)
}

/// The gateway's view of the host (`EngineControl` futures own a reference to it).
#[derive(Clone)]
pub struct Control(pub Arc<EngineHost>);

impl std::ops::Deref for Control {
    type Target = EngineHost;
    fn deref(&self) -> &EngineHost {
        &self.0
    }
}
