//! `flevum-load devices`: N simulated devices over QUIC against a running server, with ramp,
//! blip and dropouts; reports accepted fixes/s, acks, loss and send→ack latency.
//!
//! The latency is device push → durable ack as seen by the device (the engine acknowledges only
//! after the journal fsync); the engine-side submit latency is scraped from `/metrics` beside it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::fleet::{self, BlipMode, EndpointArgs, Fleet, FleetConfig};
use crate::report::{Report, process_cpu_s, progress};
use crate::setup::{self, CourseMotion, RaceArgs, ServerArgs};

/// Options of `devices`.
#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    /// Server to load.
    pub server: ServerArgs,
    #[command(flatten)]
    /// Race to report into.
    pub race: RaceArgs,
    /// Simulated devices (each its own QUIC connection, TLS session store and buffer).
    #[arg(long, default_value_t = 100)]
    pub devices: u32,
    /// Interval between fixes of one device, ms.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Sending time after the ramp, s.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// Devices start spread over this many seconds (0 = all at once).
    #[arg(long, default_value_t = 10.0)]
    pub ramp: f64,
    /// Cut every connection this many seconds after the start; devices reconnect and backfill.
    #[arg(long)]
    pub blip: Option<f64>,
    /// What the blip is: `cut` = a network cut while the app runs (the client closes its
    /// connection, keeps buffer and TLS session and reconnects by itself, resuming with 0-RTT);
    /// `restart` = the app restarts (a new client: full handshake, buffer pushed again).
    #[arg(long, value_enum, default_value_t = BlipMode::Cut)]
    pub blip_mode: BlipMode,
    #[command(flatten)]
    /// How the devices share QUIC endpoints.
    pub endpoints: EndpointArgs,
    /// Share of devices that drop out once (offline, then backfill).
    #[arg(long, default_value_t = 0.0)]
    pub dropout_frac: f64,
    /// Length of a dropout, s.
    #[arg(long, default_value_t = 10.0)]
    pub dropout_s: f64,
    /// Time allowed after sending stops for the last acks, s.
    #[arg(long, default_value_t = 30)]
    pub drain_s: u64,
    /// JSON report file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit non-zero when a fix is lost or a device failed (timings never fail a run).
    #[arg(long)]
    pub assert: bool,
}

/// Bounds that keep a run finite.
const MAX_DEVICES: u32 = 19_000;
/// Longest sending time.
const MAX_DURATION_S: u64 = 3_600;

/// Runs the scenario.
pub async fn run(a: DevicesArgs) -> anyhow::Result<()> {
    a.server.check_loopback()?;
    anyhow::ensure!(
        a.devices >= 1 && a.devices <= MAX_DEVICES,
        "--devices 1..={MAX_DEVICES}"
    );
    anyhow::ensure!(
        a.duration_s <= MAX_DURATION_S,
        "--duration-s ≤ {MAX_DURATION_S}"
    );
    let fingerprint = a.server.fingerprint()?;
    let motion = CourseMotion::load(&a.race.course)?;
    eprintln!("preparing race {} with {} riders…", a.race.race, a.devices);
    let tokens =
        setup::prepare_race(&a.server, &a.race, &motion, a.devices, a.interval_ms as u32).await?;
    let metrics_before = setup::scrape_metrics(a.server.gateway, "flevum_ingest_").await;
    let cfg = Arc::new(FleetConfig {
        ingest: a.server.ingest,
        fingerprint,
        devices: tokens,
        interval_us: Arc::new(AtomicU64::new(a.interval_ms * 1000)),
        duration: Duration::from_secs(a.duration_s),
        ramp: Duration::from_secs_f64(a.ramp.max(0.0)),
        blip_at: a.blip.map(|b| Duration::from_secs_f64(b.max(0.0))),
        blip_mode: a.blip_mode,
        devices_per_endpoint: a.endpoints.devices_per_endpoint,
        dropout_frac: a.dropout_frac.clamp(0.0, 1.0),
        dropout: Duration::from_secs_f64(a.dropout_s.max(0.0)),
        drain: Duration::from_secs(a.drain_s),
        motion: motion.clone(),
        start_ms: crate::report::wall_us() / 1000 - 60_000,
        send_log: None,
    });
    let fleet = Arc::new(Fleet::default());
    let prog = progress_line("devices", fleet.clone(), a.devices);
    let started = Instant::now();
    let (client_cpu0, server_cpu0) = (
        process_cpu_s(None),
        a.server.server_pid.and_then(|p| process_cpu_s(Some(p))),
    );
    let send_window = cfg.ramp + cfg.duration;
    // Accepted rate over the steady part: acks counted from the end of the ramp to the end of
    // sending.
    let (ramp, dur) = (cfg.ramp, cfg.duration);
    let fl = fleet.clone();
    let steady = tokio::spawn(async move {
        tokio::time::sleep(ramp).await;
        let a0 = fl.stats.acked.load(Ordering::Relaxed);
        tokio::time::sleep(dur).await;
        (fl.stats.acked.load(Ordering::Relaxed) - a0) as f64 / dur.as_secs_f64().max(1e-9)
    });
    // CPU time of this process and the server from the start until every device is welcomed
    // (the mass-start phase, where the client's own cost competes most with the server).
    let fl = fleet.clone();
    let server_pid = a.server.server_pid;
    let devices = u64::from(a.devices);
    let connect_phase = tokio::spawn(async move {
        while fl.handshake.percentiles().count < devices {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu = |pid, before: Option<f64>| {
            process_cpu_s(pid)
                .zip(before)
                .map(|(b, a)| ((b - a) * 100.0).round() / 100.0)
        };
        json!({
            "s": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            "client_cpu_s": cpu(None, client_cpu0),
            "server_cpu_s": server_pid.and_then(|p| cpu(Some(p), server_cpu0)),
        })
    });
    fleet::run(cfg.clone(), fleet.clone()).await;
    prog.abort();
    let connect_phase = if connect_phase.is_finished() {
        connect_phase.await.ok()
    } else {
        connect_phase.abort();
        None
    };
    let client_cpu = process_cpu_s(None).zip(client_cpu0).map(|(b, a)| b - a);
    let server_cpu = a
        .server
        .server_pid
        .and_then(|p| process_cpu_s(Some(p)))
        .zip(server_cpu0)
        .map(|(b, a)| b - a);
    let steady_rate = steady.await.unwrap_or(0.0);
    let total = started.elapsed();
    let metrics_after = setup::scrape_metrics(a.server.gateway, "flevum_ingest_").await;

    let s = &fleet.stats;
    let pushed = s.pushed.load(Ordering::Relaxed);
    let acked = s.acked.load(Ordering::Relaxed);
    let lost = s.lost.load(Ordering::Relaxed);
    let mut r = Report::new(
        "devices",
        json!({
            "devices": a.devices, "interval_ms": a.interval_ms, "duration_s": a.duration_s,
            "ramp_s": a.ramp, "blip_s": a.blip, "blip_mode": a.blip_mode,
            "devices_per_endpoint": a.endpoints.devices_per_endpoint, "dropout_frac": a.dropout_frac,
            "dropout_s": a.dropout_s, "course": a.race.course, "race": a.race.race,
        }),
    );
    r.set("fixes_pushed", pushed);
    r.set("fixes_acked", acked);
    r.set("fixes_lost", lost);
    r.set(
        "offered_fixes_per_s",
        f64::from(a.devices) * 1000.0 / a.interval_ms as f64,
    );
    r.set(
        "accepted_fixes_per_s_steady",
        (steady_rate * 10.0).round() / 10.0,
    );
    r.set("send_window_s", send_window.as_secs_f64());
    r.set("run_s", (total.as_secs_f64() * 10.0).round() / 10.0);
    // CPU time (user + system) over the fleet's run, connecting and draining included.
    if let Some(cpu) = client_cpu {
        r.set("client_cpu_s", (cpu * 100.0).round() / 100.0);
    }
    if let Some(cpu) = server_cpu {
        r.set("server_cpu_s", (cpu * 100.0).round() / 100.0);
    }
    if let Some(phase) = connect_phase {
        r.set("until_all_connected", phase);
    }
    r.set(
        "shared_endpoints",
        s.shared_endpoints.load(Ordering::Relaxed),
    );
    if s.shared_endpoints.load(Ordering::Relaxed) > 0 {
        r.set(
            "endpoint_socket_buffers_bytes",
            json!({
                "asked": fleet::SHARED_SOCKET_BUFFER,
                "recv_reported": s.socket_recv_buffer.load(Ordering::Relaxed),
                "send_reported": s.socket_send_buffer.load(Ordering::Relaxed),
            }),
        );
    }
    r.set(
        "zero_rtt_accepted",
        s.zero_rtt_accepted.load(Ordering::Relaxed),
    );
    r.set(
        "zero_rtt_rejected",
        s.zero_rtt_rejected.load(Ordering::Relaxed),
    );
    r.set("push_errors", s.push_errors.load(Ordering::Relaxed));
    r.set("spawn_errors", s.spawn_errors.load(Ordering::Relaxed));
    r.set("dropouts", s.dropouts.load(Ordering::Relaxed));
    if a.blip.is_some() {
        r.set("blip_devices_cut", s.blip_cut.load(Ordering::Relaxed));
        r.set("blip_devices_back", s.blip_back.load(Ordering::Relaxed));
        r.set(
            "blip_devices_back_with_0rtt",
            s.blip_back_zero_rtt.load(Ordering::Relaxed),
        );
    }
    r.set(
        "engine_submit_seconds_after",
        setup::prometheus_quantiles(&metrics_after, "flevum_ingest_submit_seconds"),
    );
    r.set(
        "engine_submit_seconds_before",
        setup::prometheus_quantiles(&metrics_before, "flevum_ingest_submit_seconds"),
    );
    let live = fleet.live.percentiles();
    let hs = fleet.handshake.percentiles();
    r.latency_ms.insert("send_to_ack_live".into(), live.clone());
    r.latency_ms
        .insert("send_to_ack_buffered".into(), fleet.buffered.percentiles());
    r.latency_ms.insert("handshake".into(), hs.clone());
    let back = fleet.blip_back.percentiles();
    if a.blip.is_some() {
        r.latency_ms
            .insert("blip_to_reconnected".into(), back.clone());
    }
    r.target(
        "loss (every pushed fix acknowledged)",
        "= 0",
        format!("{lost} lost of {pushed}"),
        lost == 0 && acked == pushed,
    );
    r.target(
        "device-send → durable ack p99 (live fixes)",
        "≤ 20 ms",
        format!("{:.2} ms", live.p99),
        live.count > 0 && live.p99 <= 20.0,
    );
    if a.ramp == 0.0 {
        r.target(
            "all devices connected (slowest handshake)",
            "≤ 5 s",
            format!("{:.2} s ({} of {})", hs.max / 1000.0, hs.count, a.devices),
            hs.count == u64::from(a.devices) && hs.max <= 5000.0,
        );
        r.target(
            "handshake p99",
            "≤ 3 s",
            format!("{:.2} s", hs.p99 / 1000.0),
            hs.p99 <= 3000.0,
        );
    }
    if a.blip.is_some() {
        let cut = s.blip_cut.load(Ordering::Relaxed);
        r.target(
            "all back after the blip",
            "≤ 5 s",
            format!("{:.2} s ({} of {cut} back)", back.max / 1000.0, back.count),
            back.count == cut && back.max <= 5000.0,
        );
    }
    r.notes.push(
        "latency = device push → durable ack seen by the device (QUIC datagram in, journal fsync, \
         Ack stream message out); engine_submit_seconds is the engine's own submit→durable \
         histogram from /metrics (cumulative over the server's life)"
            .into(),
    );
    crate::checks::fleet(&mut r, &fleet, a.devices);
    r.notes.push(
        "load client and server share the same 2 vCPUs (client_cpu_s/server_cpu_s: user + system \
         CPU time over the run); handshake and reconnect times end when the client is welcomed"
            .into(),
    );
    r.finish_asserting(a.out.as_deref(), a.assert)
}

/// Progress line of a fleet: connected, pushed, acked, pending, ack rate, live p99.
pub fn progress_line(
    label: &'static str,
    fleet: Arc<Fleet>,
    devices: u32,
) -> tokio::task::JoinHandle<()> {
    let mut last = 0u64;
    progress(label, move || {
        let s = &fleet.stats;
        let acked = s.acked.load(Ordering::Relaxed);
        let pushed = s.pushed.load(Ordering::Relaxed);
        let rate = acked - last;
        last = acked;
        format!(
            "connected {}/{devices} pushed {pushed} acked {acked} pending {} acks/s {rate} live p99 {:.1} ms",
            s.connected.load(Ordering::Relaxed),
            pushed.saturating_sub(acked),
            fleet.live.percentiles().p99
        )
    })
}
