//! `flevum engine --bus nats://…`: race shards, the QUIC ingest and the engine side of the NATS
//! bus (frames on `race.<id>.frames`, alerts, snapshot and control request/reply), no HTTP.
//!
//! Only wiring, as `serve`: the engine host answers the gateways' control requests through
//! [`ControlBridge`]; the wire shapes of those answers live here ([`SubmitReply`], [`AdminReply`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flevum_bus::control::ControlFuture;
use flevum_bus::jetstream::JetStreamConfig;
use flevum_bus::{Bus, BusConfig, ControlHandler, NatsEngineBus};
use flevum_engine::ingest::{IngestConfig, IngestServer, IngestSink, TlsConfig, TokenStore};
use flevum_engine::journal::JournalConfig;
use flevum_engine::shard::{FramePublisher, ShardConfig, wall_ms};
use flevum_gateway::engine_control::{AdminError, AdminRequest, EngineControl, SubmitError};
use flevum_protocol::{Alert, Delta, PositionRecord, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{JournalBackendKind, ServerConfig};
use crate::host::{Control, EngineHost, until_shutdown, validated};
use crate::race_owner::{LeaseOpener, Owners, RoutingControl, RoutingSink, keep_race};

/// A shard publisher that hands frames to a bus.
pub struct BusPublisher(pub Arc<dyn Bus>);

impl FramePublisher for BusPublisher {
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
        self.0.read_published(race_id, read)
    }
    fn keeps_published(&self) -> bool {
        self.0.keeps_published()
    }
}

/// `submit_positions` over the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", content = "message", rename_all = "snake_case")]
pub enum SubmitReply {
    /// Durable.
    Ok,
    /// Unknown or revoked token.
    Unauthorized,
    /// Refused positions.
    Invalid(String),
    /// Engine cannot take them now.
    Unavailable(String),
}

/// `admin` over the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", content = "value", rename_all = "snake_case")]
pub enum AdminReply {
    /// The command's answer.
    Ok(Value),
    /// Not found.
    NotFound(String),
    /// Invalid.
    Invalid(String),
    /// Conflict.
    Conflict(String),
    /// Engine failure.
    Internal(String),
}

impl From<Result<(), SubmitError>> for SubmitReply {
    fn from(r: Result<(), SubmitError>) -> Self {
        match r {
            Ok(()) => SubmitReply::Ok,
            Err(SubmitError::Unauthorized) => SubmitReply::Unauthorized,
            Err(SubmitError::Invalid(m)) => SubmitReply::Invalid(m),
            Err(SubmitError::Unavailable(m)) => SubmitReply::Unavailable(m),
        }
    }
}

impl From<SubmitReply> for Result<(), SubmitError> {
    fn from(r: SubmitReply) -> Self {
        match r {
            SubmitReply::Ok => Ok(()),
            SubmitReply::Unauthorized => Err(SubmitError::Unauthorized),
            SubmitReply::Invalid(m) => Err(SubmitError::Invalid(m)),
            SubmitReply::Unavailable(m) => Err(SubmitError::Unavailable(m)),
        }
    }
}

impl From<Result<Value, AdminError>> for AdminReply {
    fn from(r: Result<Value, AdminError>) -> Self {
        match r {
            Ok(v) => AdminReply::Ok(v),
            Err(AdminError::NotFound(m)) => AdminReply::NotFound(m),
            Err(AdminError::Invalid(m)) => AdminReply::Invalid(m),
            Err(AdminError::Conflict(m)) => AdminReply::Conflict(m),
            Err(AdminError::Internal(m)) => AdminReply::Internal(m),
        }
    }
}

impl From<AdminReply> for Result<Value, AdminError> {
    fn from(r: AdminReply) -> Self {
        match r {
            AdminReply::Ok(v) => Ok(v),
            AdminReply::NotFound(m) => Err(AdminError::NotFound(m)),
            AdminReply::Invalid(m) => Err(AdminError::Invalid(m)),
            AdminReply::Conflict(m) => Err(AdminError::Conflict(m)),
            AdminReply::Internal(m) => Err(AdminError::Internal(m)),
        }
    }
}

/// Request bodies of the control methods (fields absent where a method takes none).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlRequest {
    /// Race id.
    pub race: Option<String>,
    /// Rider id (`rider_track`).
    pub rider: Option<u32>,
    /// Device token (`submit_positions`) or viewer token (`viewer_allowed`).
    pub token: Option<String>,
    /// Positions (`submit_positions`).
    pub records: Vec<PositionRecord>,
    /// Organiser command (`admin`).
    pub request: Option<AdminRequest>,
}

/// Answers the gateways' control requests from the engine host.
pub struct ControlBridge(pub Control);

fn to_json<T: Serialize>(v: T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

impl ControlHandler for ControlBridge {
    fn handle(&self, method: String, body: Value) -> ControlFuture {
        let c = self.0.clone();
        Box::pin(async move {
            let req: ControlRequest =
                serde_json::from_value(body).map_err(|e| format!("bad request: {e}"))?;
            let race = || req.race.clone().ok_or_else(|| "missing race".to_string());
            match method.as_str() {
                "races" => to_json(c.races().await),
                "race_detail" => to_json(c.race_detail(race()?).await),
                "standings" => to_json(c.standings(race()?).await),
                "groups" => to_json(c.groups(race()?).await),
                "splits" => to_json(c.splits(race()?).await),
                "rider_track" => {
                    let rider = req.rider.ok_or("missing rider")?;
                    to_json(c.rider_track(race()?, rider).await)
                }
                "submit_positions" => {
                    let token = req.token.clone().ok_or("missing token")?;
                    to_json(SubmitReply::from(
                        c.submit_positions(token, req.records).await,
                    ))
                }
                "admin" => {
                    let request = req.request.ok_or("missing request")?;
                    to_json(AdminReply::from(c.admin(req.race, request).await))
                }
                "ingest" => {
                    // Fixes a non-owner engine's QUIC ingest forwards; answered once durable.
                    let rider = req.rider.ok_or("missing rider")?;
                    let race = race()?;
                    let handle = c
                        .race(&race)
                        .ok_or_else(|| format!("race {race} is not owned by this engine"))?;
                    // The forwarding engine checked them, but the bus is another input:
                    // nothing unchecked reaches the journal.
                    let (valid, refused) = validated(req.records, wall_ms(), &c.record_limits());
                    if valid.is_empty()
                        && let Some(why) = refused
                    {
                        return Err(format!("invalid positions: {why}"));
                    }
                    handle
                        .submit(rider, valid)
                        .await
                        .map_err(|e| e.to_string())?;
                    to_json(handle.durable_seq(rider))
                }
                "viewer_allowed" => to_json(c.viewer_allowed(race()?, req.token).await),
                "ready" => to_json(c.ready().await),
                other => Err(format!("unknown control method {other:?}")),
            }
        })
    }
}

/// The shard settings of `cfg` (as `serve` maps them).
pub fn shard_config(cfg: &ServerConfig) -> ShardConfig {
    ShardConfig {
        journal: JournalConfig {
            dir: cfg.journal.dir.clone(),
            segment_bytes: cfg.journal.segment_mib.max(1) * 1024 * 1024,
            commit_interval: Duration::from_millis(cfg.journal.group_commit_ms),
            fsync: cfg.journal.fsync,
        },
        tick_interval: Duration::from_millis(cfg.engine.tick_ms.max(50)),
        command_queue: 4096,
        clock: flevum_engine::shard::ShardClock::Wall,
    }
}

/// The QUIC ingest settings of `cfg` (as `serve` maps them).
pub fn ingest_config(cfg: &ServerConfig) -> IngestConfig {
    IngestConfig {
        listen: cfg.ingest.listen,
        tls: match (&cfg.ingest.tls_cert, &cfg.ingest.tls_key) {
            (Some(cert), Some(key)) => TlsConfig::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsConfig::SelfSigned {
                names: vec!["localhost".into(), "flevum.local".into()],
            },
        },
        max_connections: cfg.ingest.max_connections,
        device_rate_per_s: cfg.ingest.rate_per_device,
        device_burst: f64::from(cfg.ingest.burst_per_device),
        keep_alive: Duration::from_secs(cfg.ingest.keep_alive_s),
        idle_timeout: Duration::from_secs(cfg.ingest.idle_timeout_s),
        tls_session_cache: cfg.ingest.tls_session_cache,
        zero_rtt: cfg.ingest.zero_rtt,
        ..IngestConfig::default()
    }
}

/// Runs the engine role until Ctrl-C or SIGTERM.
pub async fn engine(cfg: ServerConfig, bus: BusConfig) -> anyhow::Result<()> {
    // Recorded always (the engine's stages count whether or not anyone scrapes them).
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus metrics recorder")?;
    flevum_engine::shard::metrics::describe();
    flevum_engine::journal::metrics::describe();
    flevum_bus::metrics::describe();
    let (stop_tx, stop_rx) = watch::channel(false);
    let nats = NatsEngineBus::connect(&bus)
        .await
        .context("connecting the engine to the bus")?;
    let shard = shard_config(&cfg);
    let uploads_dir = shard
        .journal
        .dir
        .parent()
        .map_or_else(|| PathBuf::from("uploads"), |p| p.join("uploads"));
    let tokens = Arc::new(TokenStore::new());
    let host = Arc::new(EngineHost::with_publisher(
        shard,
        uploads_dir.clone(),
        Arc::new(BusPublisher(Arc::new(nats.clone()))),
        tokens.clone(),
        stop_rx.clone(),
    ));
    let races = crate::serve::load_races(&cfg.engine.races_dir, &uploads_dir)?;
    let mut tasks = Vec::new();
    // Race keepers of races created through the API after startup.
    let later_tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
    let local: Arc<dyn ControlHandler> = Arc::new(ControlBridge(Control(host.clone())));
    let (sink, control): (Arc<dyn IngestSink>, Arc<dyn ControlHandler>) = match cfg.bus.journal {
        JournalBackendKind::Local => {
            for (config, course) in races {
                tasks.push(
                    host.open(config, course)
                        .context("opening a configured race")?,
                );
            }
            (host.ingest_sink(), local)
        }
        JournalBackendKind::JetStream => {
            let jetstream = JetStreamConfig {
                replicas: cfg.bus.replicas,
                lease_ttl: Duration::from_millis(cfg.bus.lease_ttl_ms),
            };
            let leases = flevum_bus::jetstream::lease_bucket(nats.client().clone(), &jetstream)
                .await
                .context("opening the race lease bucket on JetStream")?;
            let owners = Arc::new(Owners {
                client: nats.client().clone(),
                bus: nats.clone(),
                leases,
                jetstream,
                owner: format!("{}-{}", bus.name, crate::serve::random_token()),
                host: host.clone(),
                local: local.clone(),
            });
            let known: Arc<dashmap::DashSet<String>> =
                Arc::new(races.iter().map(|(c, _)| c.id.clone()).collect());
            host.set_race_opener(Arc::new(LeaseOpener {
                owners: owners.clone(),
                known: known.clone(),
                stop: stop_rx.clone(),
                tasks: later_tasks.clone(),
            }));
            info!(owner = %owners.owner, races = known.len(), "JetStream journal: competing for race leases");
            for (config, course) in races {
                host.accept_tokens(&config);
                tasks.push(tokio::spawn(keep_race(
                    owners.clone(),
                    config,
                    course,
                    stop_rx.clone(),
                )));
            }
            let sink = Arc::new(RoutingSink {
                host: host.clone(),
                client: nats.client().clone(),
                known: known.clone(),
                remote_durable: Default::default(),
            });
            let control = Arc::new(RoutingControl {
                local,
                host: host.clone(),
                client: nats.client().clone(),
                known,
            });
            (sink, control)
        }
    };
    let ingest = IngestServer::bind(ingest_config(&cfg), tokens, sink)
        .context("starting the QUIC ingest")?;
    let ingest_addr = ingest.local_addr();
    eprintln!(
        "flevum engine: devices connect to {ingest_addr}; certificate sha256 {}",
        ingest.cert_fingerprint()
    );
    tasks.push(tokio::spawn({
        let stop = until_shutdown(stop_rx.clone());
        async move {
            if let Err(e) = ingest.run(stop).await {
                warn!("ingest stopped: {e}");
            }
        }
    }));
    let control = flevum_bus::serve_control(nats.client(), control)
        .await
        .context("answering control requests on the bus")?;
    nats.adopt(control.abort_handle());
    if let Some(addr) = cfg.telemetry.engine_metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding telemetry.engine_metrics_listen {addr}"))?;
        eprintln!(
            "flevum engine: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        tasks.push(tokio::spawn(crate::engine_metrics::run(
            listener,
            prometheus,
            host.clone(),
            until_shutdown(stop_rx.clone()),
        )));
    }
    host.set_ready();
    info!(bus = %bus.url, "engine ready");
    eprintln!("flevum engine: publishing on {}", bus.url);

    crate::serve::wait_for_signal().await;
    eprintln!("flevum engine: shutting down");
    let _ = stop_tx.send(true);
    tasks.extend(
        later_tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default(),
    );
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), nats.flush()).await;
    control.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flevum_engine::core::Course;
    use flevum_engine::core::RaceConfig;
    use flevum_engine::core::race::config::RiderConfig;
    use flevum_gateway::engine_control::EngineControl;
    use flevum_gateway::hub::LiveHub;

    /// An engine host with no race, keeping its journal and uploads in `dir`, and the sender
    /// whose drop stops its shards (keep it for the test's length).
    fn host_in(dir: &std::path::Path) -> (Arc<EngineHost>, watch::Sender<bool>) {
        let (stop, stop_rx) = watch::channel(false);
        let shard = ShardConfig {
            journal: JournalConfig {
                dir: dir.join("journal"),
                fsync: false,
                ..JournalConfig::default()
            },
            ..ShardConfig::default()
        };
        let host = Arc::new(EngineHost::new(
            shard,
            dir.to_path_buf(),
            LiveHub::new(Default::default()),
            Arc::new(TokenStore::new()),
            stop_rx,
        ));
        (host, stop)
    }

    /// Positions another engine forwards over the bus are checked like any others: an invalid
    /// batch is refused with its reason, a valid one is journaled and acknowledged.
    #[tokio::test]
    async fn forwarded_positions_are_validated_before_they_are_journaled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, _stop) = host_in(dir.path());
        let rider = RiderConfig {
            id: 7,
            bib: "7".into(),
            name: "Seven".into(),
            team: String::new(),
            device_id: "dev-7".into(),
            device_token_sha256: None,
        };
        let now = wall_ms();
        let config = RaceConfig::new("bus", "Bus", now - 60_000, vec![rider]);
        let course = Course::from_points(
            "line",
            &[(52.0, 5.0, None), (52.0, 5.1, None), (52.0, 5.2, None)],
        )
        .expect("course");
        host.open(config, course).expect("race opens");
        let bridge = ControlBridge(Control(host));
        let ingest = |records: Vec<PositionRecord>| serde_json::json!({ "race": "bus", "rider": 7, "records": records });
        let fix = |seq: u32, lat: f64| {
            PositionRecord::from_degrees(seq, now - 1_000, lat, 5.05, None, None, None, Some(5.0))
        };

        let refused = bridge
            .handle("ingest".into(), ingest(vec![fix(1, 95.0)]))
            .await
            .expect_err("a latitude of 95° is refused");
        assert!(refused.contains("invalid positions"), "{refused}");

        // The answer is the rider's contiguous durable sequence: 1 means seq 1 (valid) was
        // journaled and seq 2 (invalid) was not.
        let durable = bridge
            .handle("ingest".into(), ingest(vec![fix(2, 95.0), fix(1, 52.0)]))
            .await
            .expect("the valid record of a mixed batch is accepted");
        assert_eq!(durable, serde_json::json!(1));
    }

    /// A race the organiser uploads but that does not open (a checkpoint beyond the finish)
    /// is refused as invalid and leaves no files behind: a restart would stop on them.
    #[tokio::test]
    async fn a_refused_upload_leaves_nothing_for_the_next_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, _stop) = host_in(dir.path());
        let gpx = r#"<?xml version="1.0"?><gpx version="1.1" creator="test"><trk><trkseg>
            <trkpt lat="52.0" lon="5.0"/><trkpt lat="52.0" lon="5.01"/><trkpt lat="52.0" lon="5.02"/>
            </trkseg></trk></gpx>"#;
        let toml = |checkpoint_km: f64| {
            format!(
                "id = \"up\"\nname = \"Upload\"\nsport = \"road_cycling\"\n\
                 start_ms = 1800000000000\ncourse = \"up.gpx\"\n\
                 [[checkpoints]]\nname = \"Far\"\nkm = {checkpoint_km}\n\
                 [[riders]]\nid = 1\nbib = \"1\"\nname = \"A\"\ndevice_id = \"dev-1\"\n"
            )
        };
        let create = |config_toml: String| AdminRequest::CreateRace {
            config_toml,
            gpx: gpx.into(),
        };
        let uploads = dir.path().join("uploads");
        let files = || std::fs::read_dir(&uploads).map_or(0, |d| d.count());

        let refused = Control(host.clone())
            .admin(None, create(toml(500.0)))
            .await
            .expect_err("a checkpoint 500 km into a 1.4 km course");
        assert!(matches!(refused, AdminError::Invalid(_)), "{refused:?}");
        assert_eq!(
            files(),
            0,
            "the refused upload was left in {}",
            uploads.display()
        );

        Control(host)
            .admin(None, create(toml(1.0)))
            .await
            .expect("the corrected race opens");
        assert_eq!(files(), 2, "its config and course are kept for a restart");
    }
}
