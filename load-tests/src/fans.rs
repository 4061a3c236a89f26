//! `flevum-load fans`: M WebSocket fans on one race's live feed, optionally spread over K worker
//! processes (`--procs`, each re-executing this binary, since one process holds at most ~19,900
//! sockets); reports frames and bytes per second, tick→receive latency (Delta.timeMs against this
//! machine's clock), resyncs and the server's resident memory per connection (`/proc`).
//!
//! Owns the fan swarm and its worker protocol (stdout lines `connected N` then `result {json}`);
//! the riders that make the race move come from an optional device fleet (`--drive-riders`).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::fleet::{self, BlipMode, EndpointArgs, Fleet, FleetConfig, SendLog};
use crate::report::{HistDump, Latency, Report, progress, vm_rss_kib, wall_us};
use crate::setup::{self, CourseMotion, RaceArgs, ServerArgs};

/// Most fans per run (two gateway-side caps: ~19,000 WebSockets per gateway process).
const MAX_FANS: u32 = 40_000;
/// Most fans per worker process (open files are capped at 20,000 per process).
const MAX_FANS_PER_PROC: u32 = 19_000;

/// Options of `fans`.
#[derive(Debug, Clone, Args)]
pub struct FansArgs {
    #[command(flatten)]
    /// Server to load.
    pub server: ServerArgs,
    #[command(flatten)]
    /// Race to watch.
    pub race: RaceArgs,
    /// WebSocket fans.
    #[arg(long, default_value_t = 100)]
    pub fans: u32,
    /// Worker processes the fans are spread over.
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Measuring time once every fan is connected, s.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// New connections per second per worker.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    #[command(flatten)]
    /// Viewport and follow options.
    pub view: ViewArgs,
    /// Riders to create and drive with simulated devices (0 = the race is driven elsewhere).
    #[arg(long, default_value_t = 0)]
    pub drive_riders: u32,
    /// Where the fans connect when it is not the gateway: a peer relay serving the same
    /// `/v1/races/{race}/live` path (bench/peers/run_ws_node.sh). The race is still created and
    /// driven through `--gateway`/`--ingest`.
    #[arg(long)]
    pub fans_gateway: Option<SocketAddr>,
    /// Fix interval of the driven riders, ms.
    #[arg(long, default_value_t = 1000)]
    pub drive_interval_ms: u64,
    #[command(flatten)]
    /// How the driven riders' devices share QUIC endpoints.
    pub endpoints: EndpointArgs,
    /// JSON report file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit non-zero when a fan failed to connect, was closed, resynced or got no delta.
    #[arg(long)]
    pub assert: bool,
}

/// What each fan looks at.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ViewArgs {
    /// Viewport `minLon,minLat,maxLon,maxLat` sent after connecting (`none` = whole race,
    /// `empty` = nothing but followed riders).
    #[arg(long, default_value = "none")]
    pub viewport: String,
    /// Riders each fan follows (picked per fan from 1..=riders).
    #[arg(long, default_value_t = 0)]
    pub follow: u32,
    /// Riders in the race (for picking followed riders).
    #[arg(long = "riders-view", default_value_t = 200)]
    pub view_riders: u32,
}

/// Options of one worker process.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Gateway address.
    #[arg(long)]
    pub gateway: SocketAddr,
    /// Race id.
    #[arg(long)]
    pub race: String,
    /// Fans of this worker.
    #[arg(long)]
    pub fans: u32,
    /// Measuring time once connected, s.
    #[arg(long)]
    pub duration_s: u64,
    /// Connections per second.
    #[arg(long)]
    pub connect_rate: u32,
    /// Worker number (seeds follow choices).
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    #[command(flatten)]
    /// Viewport and follow.
    pub view: ViewArgs,
}

/// Counters of a swarm.
#[derive(Default)]
pub struct SwarmStats {
    /// Fans with an open socket.
    pub connected: AtomicU64,
    /// Failed connection attempts.
    pub connect_errors: AtomicU64,
    /// Frames received (all kinds).
    pub frames: AtomicU64,
    /// Payload bytes received.
    pub bytes: AtomicU64,
    /// Delta frames received.
    pub deltas: AtomicU64,
    /// Snapshot frames received.
    pub snapshots: AtomicU64,
    /// Snapshots after a fan's first one (the server skipped the fan ahead).
    pub resyncs: AtomicU64,
    /// Closes by the server (any code).
    pub closes: AtomicU64,
    /// Closes with 4008 (byte budget exceeded).
    pub budget_closes: AtomicU64,
    /// Fans that received at least one delta in the window (a silent fan is a failure).
    pub fans_with_deltas: AtomicU64,
    /// Set while the measuring window is open.
    pub measuring: AtomicBool,
}

/// A swarm's measurements.
#[derive(Default)]
pub struct Swarm {
    /// Counters.
    pub stats: SwarmStats,
    /// Delta tick time → receive.
    pub tick_to_receive: Latency,
    /// e2e: device push → fan receive of a fix (probe fans only).
    pub send_to_fan: Latency,
    /// e2e: fixes matched by probe fans.
    pub matched: AtomicU64,
}

/// Result of one worker process.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WorkerResult {
    /// Fans connected at the end.
    pub connected: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// Frames received in the window.
    pub frames: u64,
    /// Bytes received in the window.
    pub bytes: u64,
    /// Deltas in the window.
    pub deltas: u64,
    /// Snapshots (all).
    pub snapshots: u64,
    /// Resyncs (all).
    pub resyncs: u64,
    /// Server closes.
    pub closes: u64,
    /// 4008 closes.
    pub budget_closes: u64,
    /// Fans that received a delta in the window.
    #[serde(default)]
    pub fans_with_deltas: u64,
    /// Length of the window, s.
    pub window_s: f64,
    /// Tick→receive histogram.
    pub hist: HistDump,
}

/// A probe fan's view of a delta (e2e).
#[derive(Deserialize)]
struct LiteFrame {
    /// `snapshot`, `delta` or `alert`.
    frame: String,
    /// Rider states.
    #[serde(default)]
    states: Vec<LiteState>,
}

/// The fields of a rider state a probe needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiteState {
    /// Rider.
    rider_id: u32,
    /// Time of the rider's last fix, ms.
    last_fix_ms: i64,
}

/// Matching for e2e: where probe fans look up send times.
pub struct Probe {
    /// Send times of the device fleet.
    pub log: Arc<SendLog>,
}

/// `timeMs` of a delta's JSON text, without parsing the rest.
fn delta_time_ms(text: &str) -> Option<i64> {
    let head = &text[..text.len().min(400)];
    let i = head.find("\"timeMs\":")? + 9;
    let digits: String = head[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

fn view_commands(view: &ViewArgs, fan: u64) -> Vec<String> {
    let mut out = Vec::new();
    if view.follow > 0 && view.view_riders > 0 {
        let riders: Vec<u32> = (0..u64::from(view.follow))
            .map(|k| (crate::fleet::mix(fan * 7919 + k) % u64::from(view.view_riders)) as u32 + 1)
            .collect();
        out.push(json!({"type": "follow", "riders": riders}).to_string());
    }
    match view.viewport.as_str() {
        "none" | "" => {}
        "empty" => out.push(json!({"type":"viewport","bbox":[0.0,0.0,0.0,0.0]}).to_string()),
        bbox => {
            let v: Vec<f64> = bbox
                .split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            if v.len() == 4 {
                out.push(json!({"type":"viewport","bbox":v}).to_string());
            }
        }
    }
    out
}

/// One fan: connects, applies its view, counts frames until `end`; reconnects after a 4008.
async fn fan(
    url: String,
    cmds: Vec<String>,
    swarm: Arc<Swarm>,
    end: Arc<std::sync::OnceLock<Instant>>,
    probe: Option<Arc<Probe>>,
    permit: Arc<Semaphore>,
) {
    let s = &swarm.stats;
    let mut seen_snapshot = false;
    let mut seen_delta = false;
    let mut attempts = 0;
    'connect: loop {
        let ws = {
            let _p = permit.acquire().await;
            tokio_tungstenite::connect_async(url.as_str()).await
        };
        let mut ws = match ws {
            Ok((ws, _)) => ws,
            Err(e) => {
                s.connect_errors.fetch_add(1, Ordering::Relaxed);
                attempts += 1;
                if attempts >= 5 {
                    eprintln!("fan gave up: {e}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
                continue;
            }
        };
        s.connected.fetch_add(1, Ordering::Relaxed);
        for c in &cmds {
            let _ = ws.send(Message::text(c.clone())).await;
        }
        loop {
            let deadline = end.get().copied();
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, ws.next()).await {
                    Ok(m) => m,
                    Err(_) => break 'connect,
                },
                None => ws.next().await,
            };
            let Some(Ok(msg)) = next else { break };
            let recv_us = wall_us();
            let measuring = s.measuring.load(Ordering::Relaxed);
            match msg {
                Message::Text(t) => {
                    if measuring {
                        s.frames.fetch_add(1, Ordering::Relaxed);
                        s.bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
                    }
                    let text = t.as_str();
                    if text.starts_with("{\"frame\":\"snapshot\"") {
                        s.snapshots.fetch_add(1, Ordering::Relaxed);
                        if seen_snapshot {
                            s.resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                        seen_snapshot = true;
                    } else if text.starts_with("{\"frame\":\"delta\"") {
                        if measuring {
                            s.deltas.fetch_add(1, Ordering::Relaxed);
                            if !seen_delta {
                                seen_delta = true;
                                s.fans_with_deltas.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(t_ms) = delta_time_ms(text) {
                                swarm
                                    .tick_to_receive
                                    .record_us((recv_us - t_ms * 1000).max(0) as u64);
                            }
                        }
                        if measuring
                            && let Some(p) = &probe
                            && let Ok(f) = serde_json::from_str::<LiteFrame>(text)
                            && f.frame == "delta"
                        {
                            let log = p.log.sent.lock().unwrap_or_else(|e| e.into_inner());
                            for st in &f.states {
                                if let Some(sent) = log.get(&(st.rider_id, st.last_fix_ms)) {
                                    swarm.send_to_fan.record_us((recv_us - sent).max(0) as u64);
                                    swarm.matched.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
                Message::Binary(b) if measuring => {
                    s.frames.fetch_add(1, Ordering::Relaxed);
                    s.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                Message::Close(c) => {
                    s.closes.fetch_add(1, Ordering::Relaxed);
                    let code = c.map(|c| u16::from(c.code)).unwrap_or(0);
                    s.connected.fetch_sub(1, Ordering::Relaxed);
                    if code == 4008 {
                        s.budget_closes.fetch_add(1, Ordering::Relaxed);
                        continue 'connect;
                    }
                    return;
                }
                _ => {}
            }
        }
        s.connected.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    s.connected.fetch_sub(1, Ordering::Relaxed);
}

/// What a swarm connects to and how.
pub struct SwarmPlan<'a> {
    /// Gateway address.
    pub gateway: SocketAddr,
    /// Race id.
    pub race: &'a str,
    /// Fans to connect.
    pub fans: u32,
    /// New connections per second.
    pub rate: u32,
    /// Measuring window once every fan is connected.
    pub duration: Duration,
    /// Viewport and follow of the (non-probe) fans.
    pub view: &'a ViewArgs,
    /// Seeds the followed riders.
    pub seed: u64,
}

/// Connects the plan's fans, waits until all are connected, signals `on_connected`, measures
/// for the plan's duration and returns the worker's result.
pub async fn swarm_run(
    plan: SwarmPlan<'_>,
    swarm: Arc<Swarm>,
    probes: Option<(u32, Arc<Probe>)>,
    on_connected: impl FnOnce(),
) -> WorkerResult {
    let SwarmPlan {
        gateway,
        race,
        fans: n,
        rate,
        duration,
        view,
        seed,
    } = plan;
    let url = format!("ws://{gateway}/v1/races/{race}/live");
    let end = Arc::new(std::sync::OnceLock::new());
    let permit = Arc::new(Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut next = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(next).await;
        next += gap;
        let probe = match &probes {
            Some((k, p)) if i < *k => Some(p.clone()),
            _ => None,
        };
        // Probe fans watch the whole race so that every fix can be matched.
        let cmds = if probe.is_some() {
            Vec::new()
        } else {
            view_commands(view, seed * 1_000_003 + u64::from(i))
        };
        tasks.spawn(fan(
            url.clone(),
            cmds,
            swarm.clone(),
            end.clone(),
            probe,
            permit.clone(),
        ));
    }
    // Wait (bounded) until every fan is connected.
    let wait_until = Instant::now() + Duration::from_secs(120);
    while swarm.stats.connected.load(Ordering::Relaxed) < u64::from(n)
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tasks.is_empty() {
            break;
        }
    }
    on_connected();
    // Let the snapshots flush before the window opens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_shared_window().await;
    let s = &swarm.stats;
    let start = Instant::now();
    let resync0 = s.resyncs.load(Ordering::Relaxed);
    s.measuring.store(true, Ordering::Relaxed);
    // Fans keep their sockets a little past the window so the counts below see them open.
    let _ = end.set(start + duration + Duration::from_secs(2));
    tokio::time::sleep_until(start + duration).await;
    s.measuring.store(false, Ordering::Relaxed);
    let window_s = start.elapsed().as_secs_f64();
    let result = WorkerResult {
        connected: s.connected.load(Ordering::Relaxed),
        connect_errors: s.connect_errors.load(Ordering::Relaxed),
        frames: s.frames.load(Ordering::Relaxed),
        bytes: s.bytes.load(Ordering::Relaxed),
        deltas: s.deltas.load(Ordering::Relaxed),
        snapshots: s.snapshots.load(Ordering::Relaxed),
        resyncs: s.resyncs.load(Ordering::Relaxed).max(resync0),
        closes: s.closes.load(Ordering::Relaxed),
        budget_closes: s.budget_closes.load(Ordering::Relaxed),
        fans_with_deltas: s.fans_with_deltas.load(Ordering::Relaxed),
        window_s,
        hist: swarm.tick_to_receive.dump(),
    };
    // Fans stop at `end`; give them a moment to close.
    let drain = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    });
    let _ = drain.await;
    tasks.abort_all();
    result
}

/// Env var: Unix time (ms) at which every swarm opens its measuring window, so that separate
/// load processes (one per gateway of the split layout, `run-all.sh fans-split`) measure the
/// same seconds. Inherited by `--procs` workers; unset = open as soon as connected.
pub const WINDOW_AT_ENV: &str = "FLEVUM_LOAD_WINDOW_AT_MS";

/// Sleeps until [`WINDOW_AT_ENV`] if it is set and still ahead; says so when it has passed.
async fn wait_for_shared_window() {
    let Some(at_ms) = std::env::var(WINDOW_AT_ENV)
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return;
    };
    let ahead_ms = at_ms - wall_us() / 1000;
    if ahead_ms > 0 {
        tokio::time::sleep(Duration::from_millis(ahead_ms as u64)).await;
    } else {
        eprintln!(
            "{WINDOW_AT_ENV}: connected {:.1} s after the shared window opened; measuring from now",
            -ahead_ms as f64 / 1000.0
        );
    }
}

/// The hidden `fan-worker` subcommand: prints `connected N`, then `result {json}`.
pub async fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.gateway.ip().is_loopback(), "loopback only");
    anyhow::ensure!(
        a.fans <= MAX_FANS_PER_PROC,
        "at most {MAX_FANS_PER_PROC} fans per process"
    );
    let swarm = Arc::new(Swarm::default());
    let sw = swarm.clone();
    let prog = progress("fan-worker", move || {
        format!(
            "connected {} frames {} resyncs {}",
            sw.stats.connected.load(Ordering::Relaxed),
            sw.stats.frames.load(Ordering::Relaxed),
            sw.stats.resyncs.load(Ordering::Relaxed)
        )
    });
    let result = swarm_run(
        SwarmPlan {
            gateway: a.gateway,
            race: &a.race,
            fans: a.fans,
            rate: a.connect_rate,
            duration: Duration::from_secs(a.duration_s),
            view: &a.view,
            seed: u64::from(a.index),
        },
        swarm.clone(),
        None,
        || {
            println!(
                "connected {}",
                swarm.stats.connected.load(Ordering::Relaxed)
            )
        },
    )
    .await;
    prog.abort();
    println!("result {}", serde_json::to_string(&result)?);
    Ok(())
}

/// Starts a fleet that makes `riders` riders of the race move for `secs` seconds.
pub async fn drive(
    server: &ServerArgs,
    race: &RaceArgs,
    riders: u32,
    interval_ms: u64,
    secs: u64,
    send_log: Option<Arc<SendLog>>,
    endpoints: &EndpointArgs,
) -> anyhow::Result<(Arc<Fleet>, tokio::task::JoinHandle<()>)> {
    let motion = CourseMotion::load(&race.course)?;
    eprintln!("preparing race {} with {riders} riders…", race.race);
    let tokens = setup::prepare_race(server, race, &motion, riders, interval_ms as u32).await?;
    let cfg = Arc::new(FleetConfig {
        ingest: server.ingest,
        fingerprint: server.fingerprint()?,
        devices: tokens,
        interval_us: Arc::new(AtomicU64::new(interval_ms * 1000)),
        duration: Duration::from_secs(secs),
        ramp: Duration::from_secs(2),
        blip_at: None,
        blip_mode: BlipMode::default(),
        devices_per_endpoint: endpoints.devices_per_endpoint,
        dropout_frac: 0.0,
        dropout: Duration::ZERO,
        drain: Duration::from_secs(15),
        motion,
        start_ms: wall_us() / 1000 - 60_000,
        send_log,
    });
    let fleet = Arc::new(Fleet::default());
    let f = fleet.clone();
    let task = tokio::spawn(async move { fleet::run(cfg, f).await });
    Ok((fleet, task))
}

/// Runs the scenario.
pub async fn run(a: FansArgs) -> anyhow::Result<()> {
    a.server.check_loopback()?;
    let fans_gateway = a.fans_gateway.unwrap_or(a.server.gateway);
    anyhow::ensure!(
        fans_gateway.ip().is_loopback(),
        "--fans-gateway: loopback only"
    );
    anyhow::ensure!(a.fans >= 1 && a.fans <= MAX_FANS, "--fans 1..={MAX_FANS}");
    anyhow::ensure!(a.procs >= 1 && a.procs <= 8, "--procs 1..=8");
    let per_proc = a.fans.div_ceil(a.procs);
    anyhow::ensure!(
        per_proc <= MAX_FANS_PER_PROC,
        "{per_proc} fans per process is above {MAX_FANS_PER_PROC}: raise --procs"
    );
    let connect_s = u64::from(per_proc / a.connect_rate.max(1)) + 20;
    let driven = if a.drive_riders > 0 {
        // Stopped (drained) once the fans are done, however long connecting takes.
        let secs = (connect_s + a.duration_s) * 10;
        let d = drive(
            &a.server,
            &a.race,
            a.drive_riders,
            a.drive_interval_ms,
            secs,
            None,
            &a.endpoints,
        )
        .await?;
        // Let the riders connect and the ticks start.
        tokio::time::sleep(Duration::from_secs(4)).await;
        Some(d)
    } else {
        if !a.race.existing {
            // Idle fans: a race with one rider and no device, so ticks carry (almost) nothing.
            let motion = CourseMotion::load(&a.race.course)?;
            setup::prepare_race(&a.server, &a.race, &motion, 0, 1000).await?;
        }
        None
    };
    let rss_before = a.server.server_pid.and_then(vm_rss_kib);
    let rss_connected = Arc::new(std::sync::Mutex::new(None::<u64>));
    let started = Instant::now();
    let mut results: Vec<WorkerResult> = Vec::new();
    let merged = Arc::new(Swarm::default());
    if a.procs == 1 {
        let swarm = merged.clone();
        let sw = swarm.clone();
        let prog = progress("fans", move || {
            format!(
                "connected {} frames {} bytes {} resyncs {} p99 {:.1} ms",
                sw.stats.connected.load(Ordering::Relaxed),
                sw.stats.frames.load(Ordering::Relaxed),
                sw.stats.bytes.load(Ordering::Relaxed),
                sw.stats.resyncs.load(Ordering::Relaxed),
                sw.tick_to_receive.percentiles().p99
            )
        });
        let pid = a.server.server_pid;
        let rc = rss_connected.clone();
        let res = swarm_run(
            SwarmPlan {
                gateway: fans_gateway,
                race: &a.race.race,
                fans: a.fans,
                rate: a.connect_rate,
                duration: Duration::from_secs(a.duration_s),
                view: &a.view,
                seed: 0,
            },
            swarm,
            None,
            move || {
                std::thread::sleep(Duration::from_secs(2));
                *rc.lock().unwrap_or_else(|p| p.into_inner()) = pid.and_then(vm_rss_kib);
            },
        )
        .await;
        prog.abort();
        results.push(res);
    } else {
        results = run_workers(&a, fans_gateway, per_proc, rss_connected.clone()).await?;
        for r in &results {
            merged.tick_to_receive.merge(&r.hist);
        }
    }
    let mut r = Report::new(
        "fans",
        json!({
            "fans": a.fans, "procs": a.procs, "duration_s": a.duration_s,
            "connect_rate_per_proc": a.connect_rate, "view": a.view,
            "drive_riders": a.drive_riders, "drive_interval_ms": a.drive_interval_ms,
            "race": a.race.race, "devices_per_endpoint": a.endpoints.devices_per_endpoint,
        }),
    );
    let sum = |f: fn(&WorkerResult) -> u64| results.iter().map(f).sum::<u64>();
    let window = results
        .iter()
        .map(|w| w.window_s)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let connected = sum(|w| w.connected);
    let resyncs = sum(|w| w.resyncs);
    r.set("fans_connected", connected);
    r.set("connect_errors", sum(|w| w.connect_errors));
    r.set("window_s", (window * 10.0).round() / 10.0);
    r.set("frames_per_s", (sum(|w| w.frames) as f64 / window).round());
    r.set("bytes_per_s", (sum(|w| w.bytes) as f64 / window).round());
    r.set("deltas_per_s", (sum(|w| w.deltas) as f64 / window).round());
    r.set("snapshots", sum(|w| w.snapshots));
    r.set("resyncs", resyncs);
    r.set("server_closes", sum(|w| w.closes));
    r.set("byte_budget_closes", sum(|w| w.budget_closes));
    r.set(
        "connect_phase_s",
        (started.elapsed().as_secs_f64() - window).round(),
    );
    let rss_after = *rss_connected.lock().unwrap_or_else(|p| p.into_inner());
    let mut per_conn = None;
    if let (Some(b), Some(c)) = (rss_before, rss_after) {
        r.set("server_rss_before_kib", b);
        r.set("server_rss_connected_kib", c);
        let pc = (c as f64 - b as f64) / connected.max(1) as f64;
        r.set(
            "server_rss_per_connection_kib",
            (pc * 100.0).round() / 100.0,
        );
        per_conn = Some(pc);
    }
    if let Some((fleet, task)) = driven {
        fleet.stats.draining.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        r.set(
            "driven_fixes_acked",
            fleet.stats.acked.load(Ordering::Relaxed),
        );
    }
    let p = merged.tick_to_receive.percentiles();
    r.latency_ms.insert("tick_to_receive".into(), p.clone());
    r.target(
        "tick→receive p99",
        "≤ 100 ms",
        format!("{:.1} ms", p.p99),
        p.count > 0 && p.p99 <= 100.0,
    );
    r.target(
        "no resyncs for healthy clients",
        "= 0",
        resyncs.to_string(),
        resyncs == 0,
    );
    if let Some(pc) = per_conn {
        r.target(
            "server memory per connection (RSS delta / fans, after snapshots)",
            "≤ 32 KiB",
            format!("{pc:.1} KiB"),
            pc <= 32.0,
        );
    }
    crate::checks::swarm(&mut r, &results, a.fans);
    r.notes.push(
        "tick→receive = fan receive wall clock − Delta.timeMs (engine tick wall time), same machine clock"
            .into(),
    );
    r.notes.push(format!(
        "fans spread over {} process(es) of the load client; server is one `flevum serve` process",
        a.procs
    ));
    r.finish_asserting(a.out.as_deref(), a.assert)
}

async fn run_workers(
    a: &FansArgs,
    fans_gateway: SocketAddr,
    per_proc: u32,
    rss_connected: Arc<std::sync::Mutex<Option<u64>>>,
) -> anyhow::Result<Vec<WorkerResult>> {
    let exe = std::env::current_exe()?;
    let mut left = a.fans;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u32, String)>();
    let mut children = Vec::new();
    for i in 0..a.procs {
        let n = per_proc.min(left);
        left -= n;
        if n == 0 {
            break;
        }
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "fan-worker",
            "--gateway",
            &fans_gateway.to_string(),
            "--race",
            &a.race.race,
            "--fans",
            &n.to_string(),
            "--duration-s",
            &a.duration_s.to_string(),
            "--connect-rate",
            &a.connect_rate.to_string(),
            "--index",
            &i.to_string(),
            "--viewport",
            &a.view.viewport,
            "--follow",
            &a.view.follow.to_string(),
            "--riders-view",
            &a.view.view_riders.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let workers = children.len();
    let mut connected = 0;
    let mut results = Vec::new();
    while let Some((_, line)) = rx.recv().await {
        if line.starts_with("connected") {
            connected += 1;
            if connected == workers {
                tokio::time::sleep(Duration::from_secs(2)).await;
                *rss_connected.lock().unwrap_or_else(|p| p.into_inner()) =
                    a.server.server_pid.and_then(vm_rss_kib);
                eprintln!("all {workers} fan workers connected");
            }
        } else if let Some(json) = line.strip_prefix("result ") {
            results.push(serde_json::from_str(json)?);
        }
    }
    for mut c in children {
        let _ = c.wait();
    }
    anyhow::ensure!(
        results.len() == workers,
        "{} of {workers} workers reported",
        results.len()
    );
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_time_is_found_without_full_parse() {
        let t = r#"{"frame":"delta","raceId":"x","epoch":1,"tick":2,"timeMs":1764082245123,"states":[]}"#;
        assert_eq!(delta_time_ms(t), Some(1_764_082_245_123));
        assert_eq!(delta_time_ms(r#"{"frame":"delta"}"#), None);
    }
}
