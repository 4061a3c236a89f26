//! `flevum-load e2e`: riders over QUIC and fans over WebSocket at once; device-send →
//! fan-receive latency per fix, matched in probe fans' deltas by rider id and
//! `RiderView.lastFixMs` = the fix's `time_ms`.
//!
//! Probe fans watch the whole race and parse every delta; the other fans use the cheap path of
//! `fans`. Everything runs in this one process (≤ ~19,900 sockets).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::fans::{self, Probe, Swarm, ViewArgs};
use crate::fleet::{EndpointArgs, SendLog};
use crate::report::{Report, progress};
use crate::setup::{RaceArgs, ServerArgs};

/// Options of `e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    /// Server to load.
    pub server: ServerArgs,
    #[command(flatten)]
    /// Race (created with `--riders`).
    pub race: RaceArgs,
    /// Riders, each a QUIC device.
    #[arg(long, default_value_t = 200)]
    pub riders: u32,
    /// Fix interval, ms.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// WebSocket fans.
    #[arg(long, default_value_t = 1000)]
    pub fans: u32,
    /// Fans that parse every delta and match fixes (whole-race view).
    #[arg(long, default_value_t = 20)]
    pub probes: u32,
    /// Connections per second.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    #[command(flatten)]
    /// What the non-probe fans look at.
    pub view: ViewArgs,
    /// Measuring time, s.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    #[command(flatten)]
    /// How the riders' devices share QUIC endpoints.
    pub endpoints: EndpointArgs,
    /// Engine tick interval, ms (for the target tick + 50 ms).
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
    /// JSON report file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit non-zero when a fix is lost, a device or fan failed, a fan resynced or was closed,
    /// or the probes saw no fix (the CI load smoke; timings never fail a run).
    #[arg(long)]
    pub assert: bool,
}

/// Runs the scenario.
pub async fn run(a: E2eArgs) -> anyhow::Result<()> {
    a.server.check_loopback()?;
    // One socket per fan, and one per endpoint the riders share (or per rider).
    let rider_sockets = a.riders.div_ceil(a.endpoints.devices_per_endpoint.max(1));
    anyhow::ensure!(
        rider_sockets + a.fans <= 19_000,
        "fans + rider endpoints must stay below 19,000 sockets in one process"
    );
    let log = Arc::new(SendLog::default());
    // The riders report until the fans are done (then drain), however long connecting takes.
    let secs = 1800;
    let (fleet, task) = fans::drive(
        &a.server,
        &a.race,
        a.riders,
        a.interval_ms,
        secs,
        Some(log.clone()),
        &a.endpoints,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let swarm = Arc::new(Swarm::default());
    let (sw, fl) = (swarm.clone(), fleet.clone());
    let prog = progress("e2e", move || {
        format!(
            "riders connected {} acked {} | fans {} frames {} resyncs {} matched {} send→fan p99 {:.1} ms",
            fl.stats.connected.load(Ordering::Relaxed),
            fl.stats.acked.load(Ordering::Relaxed),
            sw.stats.connected.load(Ordering::Relaxed),
            sw.stats.frames.load(Ordering::Relaxed),
            sw.stats.resyncs.load(Ordering::Relaxed),
            sw.matched.load(Ordering::Relaxed),
            sw.send_to_fan.percentiles().p99
        )
    });
    let pushed0 = fleet.stats.pushed.load(Ordering::Relaxed);
    let res = fans::swarm_run(
        fans::SwarmPlan {
            gateway: a.server.gateway,
            race: &a.race.race,
            fans: a.fans,
            rate: a.connect_rate,
            duration: Duration::from_secs(a.duration_s),
            view: &a.view,
            seed: 0,
        },
        swarm.clone(),
        Some((a.probes.min(a.fans), Arc::new(Probe { log: log.clone() }))),
        || {},
    )
    .await;
    prog.abort();
    let pushed = fleet.stats.pushed.load(Ordering::Relaxed) - pushed0;
    fleet.stats.draining.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .is_ok();
    if !drained {
        eprintln!("riders still draining after 30 s");
    }

    let mut r = Report::new(
        "e2e",
        json!({
            "riders": a.riders, "interval_ms": a.interval_ms, "fans": a.fans,
            "probes": a.probes, "view": a.view, "duration_s": a.duration_s, "race": a.race.race,
            "reorder_window_ms": a.race.reorder_window_ms,
            "devices_per_endpoint": a.endpoints.devices_per_endpoint,
        }),
    );
    r.set("fans_connected", res.connected);
    r.set(
        "frames_per_s",
        (res.frames as f64 / res.window_s.max(1e-9)).round(),
    );
    r.set(
        "bytes_per_s",
        (res.bytes as f64 / res.window_s.max(1e-9)).round(),
    );
    r.set("resyncs", res.resyncs);
    r.set("byte_budget_closes", res.budget_closes);
    r.set("server_closes", res.closes);
    r.set("connect_errors", res.connect_errors);
    r.set("fixes_pushed_during_fans", pushed);
    let matched = swarm.matched.load(Ordering::Relaxed);
    r.set("fix_sightings_matched_by_probes", matched);
    r.set(
        "fixes_seen_per_probe_share",
        ((matched as f64 / f64::from(a.probes.max(1)) / pushed.max(1) as f64) * 1000.0).round()
            / 1000.0,
    );
    r.set("fixes_acked", fleet.stats.acked.load(Ordering::Relaxed));
    r.set("fixes_pushed", fleet.stats.pushed.load(Ordering::Relaxed));
    r.set("fixes_lost", fleet.stats.lost.load(Ordering::Relaxed));
    let e2e = swarm.send_to_fan.percentiles();
    r.latency_ms
        .insert("device_send_to_fan_receive".into(), e2e.clone());
    r.latency_ms.insert(
        "tick_to_receive".into(),
        swarm.tick_to_receive.percentiles(),
    );
    r.latency_ms
        .insert("device_send_to_ack".into(), fleet.live.percentiles());
    let limit = a.tick_ms as f64 + 50.0;
    r.target(
        "device-send → fan-receive p99",
        &format!("≤ tick + 50 ms = {limit} ms"),
        format!("{:.1} ms", e2e.p99),
        e2e.count > 0 && e2e.p99 <= limit,
    );
    crate::checks::fleet(&mut r, &fleet, a.riders);
    crate::checks::swarm(&mut r, std::slice::from_ref(&res), a.fans);
    r.check(
        "probe fans saw the riders' fixes",
        format!("{matched} sightings matched, riders drained: {drained}"),
        matched > 0,
    );
    r.notes.push(
        "matched in probe fans' deltas by (riderId, lastFixMs = fix time_ms); a fix superseded \
         by the rider's next fix within one tick is never visible and so not matched"
            .into(),
    );
    r.finish_asserting(a.out.as_deref(), a.assert)
}
