//! `flevum serve`: ingest, engine shards and gateway in one process (the embedded default), and
//! `--demo`, which adds a simulated race whose riders report over real QUIC on loopback.
//!
//! Only wiring: settings are mapped onto the libraries' `*Config` structs, listeners are bound,
//! tasks are started and stopped together on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use flevum_engine::core::{Course, CourseIndex, RaceConfig};
use flevum_engine::ingest::{DeviceGrant, IngestServer, TokenStore};
use flevum_engine::shard::wall_ms;
use flevum_engine::simulator::{SimConfig, Simulation};
use flevum_gateway::{GatewayState, LiveHub, StaticAssets};
use flevum_protocol::client::{CertPin, ClientConfig, DeviceClient};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::host::{Control, EngineHost, until_shutdown};

/// The demo's course: a fictional loop drawn for Flevum (see `configs/courses/`).
const DEMO_COURSE_GPX: &str = include_str!("../configs/courses/flevum_demo.gpx");

/// Options of the simulated demo race.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Simulated riders.
    pub riders: u32,
    /// Seconds from now until the start.
    pub start_in_s: i64,
}

/// Runs everything until Ctrl-C or SIGTERM.
pub async fn serve(cfg: ServerConfig, demo: Option<DemoOptions>) -> anyhow::Result<()> {
    let prometheus = flevum_gateway::install_prometheus()
        .context("installing the Prometheus metrics recorder")?;
    flevum_engine::shard::metrics::describe();
    flevum_engine::journal::metrics::describe();

    let (stop_tx, stop_rx) = watch::channel(false);
    // A demo journals into a fresh folder of its own: each run is a new race.
    let demo_dir = match &demo {
        Some(_) => Some(tempfile::Builder::new().prefix("flevum-demo-").tempdir()?),
        None => None,
    };
    let journal_dir = demo_dir
        .as_ref()
        .map_or_else(|| cfg.journal.dir.clone(), |d| d.path().join("journal"));
    let mut shard = crate::engine_role::shard_config(&cfg);
    shard.journal.dir = journal_dir.clone();
    // Uploaded races and issued tokens live beside the journal.
    let data_dir = journal_dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let uploads_dir = data_dir.join("uploads");
    let hub = LiveHub::new(Default::default());
    let tokens = Arc::new(TokenStore::new());
    let host = Arc::new(EngineHost::new(
        shard,
        data_dir,
        hub.clone(),
        tokens.clone(),
        stop_rx.clone(),
    ));

    let mut tasks = Vec::new();
    // The demo is self-contained: it opens only its own race (and earlier uploads of its run).
    let races_dir = if demo.is_some() {
        PathBuf::new()
    } else {
        cfg.engine.races_dir.clone()
    };
    for (config, course) in load_races(&races_dir, &uploads_dir)? {
        tasks.push(
            host.open(config, course)
                .context("opening a configured race")?,
        );
    }

    // QUIC ingest.
    let ingest_config = crate::engine_role::ingest_config(&cfg);
    let ingest = IngestServer::bind(ingest_config, tokens.clone(), host.ingest_sink())
        .context("starting the QUIC ingest")?;
    let ingest_addr = ingest.local_addr();
    let fingerprint = ingest.cert_fingerprint();
    info!(addr = %ingest_addr, "QUIC ingest listening (ALPN flevum/1)");
    eprintln!("flevum: devices connect to {ingest_addr}; certificate sha256 {fingerprint}");
    tasks.push(tokio::spawn({
        let stop = until_shutdown(stop_rx.clone());
        async move {
            if let Err(e) = ingest.run(stop).await {
                warn!("ingest stopped: {e}");
            }
        }
    }));

    // Gateway.
    let (http_addr, gateway) =
        start_gateway(&cfg, hub.clone(), host.clone(), prometheus, &stop_rx).await?;
    tasks.push(gateway);

    // The demo race and its simulated devices.
    let (demo_stop_tx, demo_stop_rx) = watch::channel(false);
    let mut demo_task = None;
    if let Some(opts) = demo {
        let course = Course::from_gpx_str(DEMO_COURSE_GPX).context("the demo course")?;
        let index = CourseIndex::new(course.clone());
        let start_ms = wall_ms() + opts.start_in_s * 1000;
        let sim = Simulation::new(
            index,
            SimConfig {
                riders: opts.riders.max(2),
                seed: (start_ms / 1000) as u64,
                start_ms,
                fix_interval_ms: 2_000,
                breakaway_riders: (opts.riders / 8).clamp(1, 5),
                attack_at: 0.06,
                crash_riders: 2.min(opts.riders / 10),
                crash_at: 0.35,
                off_course_at: Some(0.55),
                dropouts: 1,
                dropped_riders: 2.min(opts.riders / 10),
                ..SimConfig::default()
            },
        );
        let mut race = sim.race_config("demo", "Flevum Demo Polder Race");
        race.group_gap_s = 1.0;
        host.open(race.clone(), course)
            .context("opening the demo race")?;
        let server = SocketAddr::from(([127, 0, 0, 1], ingest_addr.port()));
        let devices = race
            .riders
            .iter()
            .map(|rider| {
                let token = tokens.issue(DeviceGrant {
                    race_id: race.id.clone(),
                    rider_id: rider.id,
                    device_id: rider.device_id.clone(),
                    report_interval_ms: race.report_interval_ms,
                });
                (rider.id, token)
            })
            .collect();
        demo_task = Some(tokio::spawn(drive_devices(
            sim,
            devices,
            server,
            fingerprint.clone(),
            demo_stop_rx,
        )));
        eprintln!(
            "flevum: demo race with {} riders starts in {} s: http://{http_addr}/races/demo",
            opts.riders, opts.start_in_s
        );
    }
    host.set_ready();

    wait_for_signal().await;
    eprintln!("flevum: shutting down");
    // Devices first (they would otherwise keep reconnecting to a closing ingest), then the rest.
    let _ = demo_stop_tx.send(true);
    if let Some(t) = demo_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(tasks),
    )
    .await;
    drop(host);
    drop(demo_dir);
    Ok(())
}

/// Binds and starts the gateway (API, live feeds, the embedded page) over a host.
pub async fn start_gateway(
    cfg: &ServerConfig,
    hub: LiveHub,
    host: Arc<EngineHost>,
    prometheus: flevum_gateway::PrometheusHandle,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let gateway_config = crate::gateway_role::gateway_config(cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.gateway.listen)
        .await
        .with_context(|| format!("binding the gateway on {}", cfg.gateway.listen))?;
    let http_addr = listener.local_addr()?;
    let state = GatewayState::new(gateway_config, hub, Arc::new(Control(host)), prometheus)
        .with_static_assets(StaticAssets {
            index_html: flevum_gateway::web_assets::index_html,
            asset: flevum_gateway::web_assets::asset,
        });
    let stop = until_shutdown(stop_rx.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = flevum_gateway::run(listener, state, stop).await {
            warn!("gateway stopped: {e}");
        }
    });
    eprintln!("flevum: live map and API on http://{http_addr}/");
    Ok((http_addr, task))
}

/// Simulated riders: one QUIC device client each (token per rider), fed with the simulation in
/// real time until it is finished or `stop` turns true.
pub async fn drive_devices(
    mut sim: Simulation,
    devices: std::collections::BTreeMap<u32, String>,
    server: SocketAddr,
    fingerprint: String,
    stop: watch::Receiver<bool>,
) {
    let mut clients = std::collections::BTreeMap::new();
    for (rider, token) in devices {
        let config = ClientConfig {
            server,
            server_name: "localhost".into(),
            pin: CertPin::Sha256(fingerprint.clone()),
            token,
            ..ClientConfig::default()
        };
        match DeviceClient::spawn(config) {
            Ok(c) => {
                clients.insert(rider, c);
            }
            Err(e) => warn!(rider, "simulated device failed to start: {e}"),
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut pushed = 0u64;
    let mut last_report = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = until_shutdown(stop.clone()) => break,
            _ = tick.tick() => {}
        }
        let mut events = sim.step_until(wall_ms());
        events.sort_by_key(|e| (e.rider_id, e.record.seq));
        for e in events {
            if let Some(c) = clients.get(&e.rider_id)
                && e.record.seq >= c.next_seq()
                && c.push(e.record).is_ok()
            {
                pushed += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = std::time::Instant::now();
            let pending: usize = clients.values().map(|c| c.pending()).sum();
            info!(
                fixes_sent = pushed,
                unacknowledged = pending,
                "demo devices"
            );
        }
        if sim.finished() {
            info!("simulated race finished; devices go quiet");
            break;
        }
    }
    // Close every device at once; a device still dialling must not hold the shutdown up.
    let closing = clients.into_values().map(|c| c.close());
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        futures_util::future::join_all(closing),
    )
    .await;
}

/// Race configs from `races_dir/*.toml` (course paths relative to the file) and organiser
/// uploads (`<id>.toml` beside `<id>.gpx`).
pub fn load_races(races_dir: &Path, uploads: &Path) -> anyhow::Result<Vec<(RaceConfig, Course)>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (dir, uploaded) in [(races_dir, false), (uploads, true)] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            match load_race(&file, uploaded) {
                Ok(r) => out.push(r),
                Err(e) => problems.push(format!("{}: {e:#}", file.display())),
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "race configs with problems:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(out)
}

fn load_race(file: &Path, uploaded: bool) -> anyhow::Result<(RaceConfig, Course)> {
    let text = std::fs::read_to_string(file)?;
    let config = RaceConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Err(errors) = config.validate() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!("{}", list.join("; "));
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let course_path = if uploaded {
        base.join(format!("{}.gpx", config.id))
    } else {
        base.join(&config.course)
    };
    let course = Course::from_gpx_file(&course_path)
        .with_context(|| format!("course {}", course_path.display()))?;
    Ok((config, course))
}

pub fn random_token() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 18];
    rand::rng().fill(&mut bytes[..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
