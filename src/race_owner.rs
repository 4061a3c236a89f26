//! Race ownership among several `flevum engine`s sharing a JetStream journal: each engine runs
//! [`keep_race`] per configured race (take the race's lease or stand by; the holder replays the
//! race from JetStream, serves it and renews; a standby takes over once the lease expired), and
//! routes what concerns a race it does not own to the owner over NATS: device fixes from its
//! QUIC ingest ([`RoutingSink`]) and the gateways' control requests ([`RoutingControl`]).
//!
//! Only wiring: the journal adapter is `jetstream_journal`, the shard and leases are libraries'.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::{DashMap, DashSet};
use flevum_bus::async_nats::jetstream::kv;
use flevum_bus::control::ControlFuture;
use flevum_bus::jetstream::{JetStreamConfig, RaceLease};
use flevum_bus::{BusError, ControlHandler, NatsEngineBus};
use flevum_engine::core::{Course, RaceConfig};
use flevum_engine::ingest::{DeviceGrant, IngestSink, SubmitError, SubmitFuture};
use flevum_engine::shard::ShardError;
use flevum_gateway::engine_control::AdminError;
use flevum_protocol::PositionRecord;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::engine_role::ControlRequest;
use crate::host::{EngineHost, until_shutdown};
use crate::jetstream_journal::{JetStreamBackend, Ownership};

/// What every race keeper of one engine shares.
pub struct Owners {
    /// The NATS connection (JetStream, per-race control subjects).
    pub client: flevum_bus::async_nats::Client,
    /// The engine side of the bus (a race handed over is forgotten there).
    pub bus: NatsEngineBus,
    /// The lease bucket.
    pub leases: kv::Store,
    /// Stream replicas and lease time.
    pub jetstream: JetStreamConfig,
    /// This engine's unique lease owner name.
    pub owner: String,
    /// The races and shards.
    pub host: Arc<EngineHost>,
    /// Answers the per-race control requests of the races this engine owns.
    pub local: Arc<dyn ControlHandler>,
}

/// Sleeps `d` unless the engine shuts down first (true: shutting down).
async fn sleep_or_stop(d: Duration, stop: &watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = until_shutdown(stop.clone()) => true,
    }
}

/// Keeps one configured race: takes its lease whenever it is free, serves the race while the
/// lease is held, stands by otherwise; returns when the engine shuts down.
pub async fn keep_race(
    owners: Arc<Owners>,
    config: RaceConfig,
    course: Course,
    stop: watch::Receiver<bool>,
) {
    let race_id = config.id.clone();
    let ttl = owners.jetstream.lease_ttl;
    let poll = (ttl / 4).max(Duration::from_millis(100));
    loop {
        if *stop.borrow() {
            return;
        }
        match RaceLease::try_acquire(&owners.leases, &race_id, &owners.owner).await {
            Ok(Some(lease)) => {
                let span = info_span!("race_owner", race = %race_id);
                let shutting_down = own_race(&owners, &config, &course, lease, &stop)
                    .instrument(span)
                    .await;
                if shutting_down {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => warn!(race = %race_id, "cannot read the race's lease: {e}"),
        }
        if sleep_or_stop(poll, &stop).await {
            return;
        }
    }
}

/// Renews `lease` every third of its time until told to halt (then hands the lease back for a
/// release) or until it is lost (None; `owned` is cleared at once).
async fn renew_lease(
    mut lease: RaceLease,
    owned: Arc<Ownership>,
    ttl: Duration,
    mut halt: tokio::sync::oneshot::Receiver<()>,
) -> Option<RaceLease> {
    // Appends stop once the last renewal is two thirds of the lease time old, before the
    // lease can expire and another engine take the race.
    let safe_for = ttl * 2 / 3;
    let renew_every = ttl / 3;
    let mut last_renewed = Instant::now();
    loop {
        tokio::select! {
            _ = &mut halt => return Some(lease),
            _ = tokio::time::sleep(renew_every) => {}
        }
        let renewal = match tokio::time::timeout(renew_every, lease.renew()).await {
            Ok(r) => r,
            Err(_) => Err(BusError::Timeout("lease renewal".into())),
        };
        match renewal {
            Ok(()) => {
                last_renewed = Instant::now();
                owned.renewed(safe_for);
            }
            // Renewal failed but the lease cannot have expired yet: try again (a NATS restart).
            Err(e) if last_renewed.elapsed() < safe_for => {
                warn!("lease renewal failed, retrying: {e}")
            }
            Err(e) => {
                warn!("lease lost ({e}): handing the race over");
                owned.lose();
                return None;
            }
        }
    }
}

/// Serves a race whose lease was just taken until the lease is lost (false) or the engine
/// shuts down (true; the lease is released so a standby takes over at once). The lease is
/// renewed from the start, also while the journal is replayed.
async fn own_race(
    owners: &Owners,
    config: &RaceConfig,
    course: &Course,
    lease: RaceLease,
    stop: &watch::Receiver<bool>,
) -> bool {
    let race_id = config.id.as_str();
    let ttl = owners.jetstream.lease_ttl;
    info!(owner = %owners.owner, "took the race's lease; replaying its JetStream journal");
    flevum_bus::metrics::record_lease("acquired");
    let owned = Arc::new(Ownership::new(ttl * 2 / 3));
    let (halt, halted) = tokio::sync::oneshot::channel();
    let mut renewer = tokio::spawn(renew_lease(lease, owned.clone(), ttl, halted));
    let release = async |halt: tokio::sync::oneshot::Sender<()>,
                         renewer: tokio::task::JoinHandle<Option<RaceLease>>| {
        let _ = halt.send(());
        if let Ok(Some(lease)) = renewer.await
            && let Err(e) = lease.release().await
        {
            warn!("releasing the lease failed: {e}");
        }
        flevum_bus::metrics::record_lease("released");
    };
    let opened = async {
        let (mut recovery, detail) = owners
            .host
            .prepare(config.clone(), course.clone())
            .map_err(|e| e.to_string())?;
        let backend = JetStreamBackend::open(
            owners.client.clone(),
            race_id,
            &owners.jetstream,
            owners.leases.clone(),
            owners.owner.clone(),
            owned.clone(),
            &mut recovery,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((recovery, detail, backend))
    };
    let (recovery, detail, backend) = match opened.await {
        Ok(v) => v,
        Err(e) => {
            warn!("cannot open the race from JetStream: {e}");
            release(halt, renewer).await;
            return false;
        }
    };
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let task = owners
        .host
        .start_recovered(recovery, detail, Arc::new(backend), async move {
            let _ = lost_rx.await;
        });
    let responder =
        match flevum_bus::serve_race_control(&owners.client, race_id, owners.local.clone()).await {
            Ok(r) => Some(r),
            Err(e) => {
                warn!("cannot answer the race's control subject: {e}");
                None
            }
        };
    let shutting_down = tokio::select! {
        _ = until_shutdown(stop.clone()) => true,
        _ = &mut renewer => false,
    };
    // Fence first: nothing more is journaled or acknowledged here.
    owned.lose();
    let _ = lost_tx.send(());
    owners.host.close(race_id);
    if let Some(r) = responder {
        r.stop().await;
    }
    owners.bus.forget_race(race_id);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    if shutting_down {
        release(halt, renewer).await;
    } else {
        flevum_bus::metrics::record_lease("lost");
    }
    info!("race given up");
    shutting_down
}

/// The QUIC ingest's sink on an engine of a JetStream cluster: races owned here go to their
/// shard; fixes for another configured race are forwarded to its owner (`race.<id>.ctl.ingest`)
/// and acknowledged once the owner answered (after its journal write was durable).
pub struct RoutingSink {
    /// Races owned here.
    pub host: Arc<EngineHost>,
    /// The NATS connection for forwarding.
    pub client: flevum_bus::async_nats::Client,
    /// The configured races (owned here or elsewhere).
    pub known: Arc<DashSet<String>>,
    /// Durable sequences the owners reported for forwarded riders, for `Welcome`.
    pub remote_durable: Arc<DashMap<(String, u32), u32>>,
}

impl IngestSink for RoutingSink {
    fn submit(&self, grant: &DeviceGrant, records: Vec<PositionRecord>) -> SubmitFuture {
        let race_id = grant.race_id.clone();
        let rider_id = grant.rider_id;
        if let Some(handle) = self.host.race(&race_id) {
            return Box::pin(async move {
                handle.submit(rider_id, records).await.map_err(|e| match e {
                    ShardError::Stopped => SubmitError::Unavailable(format!(
                        "race {race_id} is moving to another engine"
                    )),
                    other => SubmitError::Unavailable(other.to_string()),
                })
            });
        }
        if !self.known.contains(&race_id) {
            return Box::pin(async move { Err(SubmitError::RaceClosed(race_id)) });
        }
        let client = self.client.clone();
        let cache = self.remote_durable.clone();
        Box::pin(async move {
            let req = ControlRequest {
                race: Some(race_id.clone()),
                rider: Some(rider_id),
                records,
                ..ControlRequest::default()
            };
            let answer = flevum_bus::call_race(&client, &race_id, "ingest", &req).await;
            flevum_bus::metrics::record_forward("ingest", answer.is_ok());
            let durable: u32 = answer
                .map_err(|e| SubmitError::Unavailable(format!("forwarding to the owner: {e}")))?;
            cache.insert((race_id, rider_id), durable);
            Ok(())
        })
    }

    fn durable_seq(&self, grant: &DeviceGrant) -> u32 {
        match self.host.race(&grant.race_id) {
            Some(h) => h.durable_seq(grant.rider_id),
            None => self
                .remote_durable
                .get(&(grant.race_id.clone(), grant.rider_id))
                .map_or(0, |v| *v),
        }
    }
}

/// The engines' queue-group control handler in a JetStream cluster: a request about a race
/// owned by another engine is forwarded to it; the race list merges the owners' answers.
pub struct RoutingControl {
    /// Answers for races owned here (and requests not about one race).
    pub local: Arc<dyn ControlHandler>,
    /// Races owned here, and the device tokens.
    pub host: Arc<EngineHost>,
    /// The NATS connection for forwarding.
    pub client: flevum_bus::async_nats::Client,
    /// The configured races.
    pub known: Arc<DashSet<String>>,
}

impl RoutingControl {
    /// The race a request is about, if any.
    fn race_of(&self, method: &str, body: &Value) -> Option<String> {
        match method {
            "races" | "ready" => None,
            "submit_positions" => {
                let token = body.get("token")?.as_str()?;
                Some(self.host.device_race(token)?)
            }
            _ => body.get("race")?.as_str().map(str::to_string),
        }
    }

    /// Whether `race` is not run here (its owner, if any, is another engine).
    fn elsewhere(&self, race: &str) -> bool {
        self.host.race(race).is_none()
    }
}

impl ControlHandler for RoutingControl {
    fn handle(&self, method: String, body: Value) -> ControlFuture {
        let client = self.client.clone();
        if method == "races" {
            let remote: Vec<String> = self
                .known
                .iter()
                .map(|r| r.key().clone())
                .filter(|r| self.elsewhere(r))
                .collect();
            let local = self.local.handle(method.clone(), body.clone());
            return Box::pin(async move {
                let mut list = match local.await? {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                };
                for race in remote {
                    match flevum_bus::call_race::<_, Vec<Value>>(&client, &race, "races", &body)
                        .await
                    {
                        Ok(theirs) => list.extend(
                            theirs
                                .into_iter()
                                .filter(|r| r.get("id").and_then(Value::as_str) == Some(&race)),
                        ),
                        Err(e) => warn!(%race, "race list: owner not reachable: {e}"),
                    }
                }
                list.sort_by_key(|r| {
                    (
                        r.get("startMs").and_then(Value::as_i64).unwrap_or(0),
                        r.get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                });
                Ok(Value::Array(list))
            });
        }
        match self.race_of(&method, &body) {
            Some(race) if self.elsewhere(&race) => Box::pin(async move {
                let answer =
                    flevum_bus::call_race::<_, Value>(&client, &race, &method, &body).await;
                flevum_bus::metrics::record_forward("control", answer.is_ok());
                answer.map_err(|e: BusError| format!("race {race}: owner not reachable: {e}"))
            }),
            _ => self.local.handle(method, body),
        }
    }
}

/// Opens races created through the organiser API like configured ones: on the JetStream
/// journal, under a lease, so the engine that runs them may change.
pub struct LeaseOpener {
    /// What the race keepers share.
    pub owners: Arc<Owners>,
    /// The races this engine knows (configured or created here).
    pub known: Arc<DashSet<String>>,
    /// The engine's shutdown signal.
    pub stop: watch::Receiver<bool>,
    /// Keepers started after startup, awaited at shutdown (so leases are released).
    pub tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl crate::host::RaceOpener for LeaseOpener {
    fn check(&self, race_id: &str) -> Result<(), AdminError> {
        if self.known.contains(race_id) {
            return Err(AdminError::Conflict(format!("race {race_id} exists")));
        }
        Ok(())
    }

    fn open(
        &self,
        config: RaceConfig,
        course: Course,
    ) -> flevum_gateway::engine_control::BoxFuture<Result<(), AdminError>> {
        let race_id = config.id.clone();
        self.known.insert(race_id.clone());
        let task = tokio::spawn(keep_race(
            self.owners.clone(),
            config,
            course,
            self.stop.clone(),
        ));
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
        let owners = self.owners.clone();
        Box::pin(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if owners.host.race(&race_id).is_some() {
                    return Ok(());
                }
                if let Ok(Some(owner)) = RaceLease::owner(&owners.leases, &race_id).await
                    && owner != owners.owner
                {
                    // A race of this id is run by another engine.
                    return Err(AdminError::Conflict(format!("race {race_id} exists")));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(AdminError::Internal(format!(
                "race {race_id} did not open in time"
            )))
        })
    }
}
