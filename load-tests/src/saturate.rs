//! `flevum-load saturate`: one device fleet whose fix rate is raised step by step until p99
//! send→ack, the accepted rate or the backlog breaks; reports the ceiling in accepted fixes/s
//! and, in the same run, the raw UDP receive rate of this machine for the ratio.
//!
//! Runs against a server whose per-device rate limit is raised (`rate_per_device`), otherwise the
//! limit, not the ingest, is what breaks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::devices::progress_line;
use crate::fleet::{self, BlipMode, EndpointArgs, Fleet, FleetConfig};
use crate::report::{Report, wall_us};
use crate::setup::{self, CourseMotion, RaceArgs, ServerArgs};
use crate::udp_probe;

/// Options of `saturate`.
#[derive(Debug, Clone, Args)]
pub struct SaturateArgs {
    #[command(flatten)]
    /// Server to load.
    pub server: ServerArgs,
    #[command(flatten)]
    /// Race (created with `--devices` riders).
    pub race: RaceArgs,
    /// Devices.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Fixes per second per device at the first step.
    #[arg(long, default_value_t = 1.0)]
    pub start_rate: f64,
    /// Rate multiplier per step.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    pub step_s: u64,
    /// Most steps.
    #[arg(long, default_value_t = 12)]
    pub max_steps: u32,
    /// p99 send→ack above this breaks, ms.
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// Seconds of the UDP probe run in the same invocation (0 = skip).
    #[arg(long, default_value_t = 5.0)]
    pub udp_probe_s: f64,
    #[command(flatten)]
    /// How the devices share QUIC endpoints.
    pub endpoints: EndpointArgs,
    /// JSON report file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs the scenario.
pub async fn run(a: SaturateArgs) -> anyhow::Result<()> {
    a.server.check_loopback()?;
    anyhow::ensure!(a.devices >= 1 && a.devices <= 19_000, "--devices 1..=19000");
    anyhow::ensure!(
        a.max_steps <= 40 && a.step_s <= 600,
        "bounded: ≤ 40 steps of ≤ 600 s"
    );
    let probe = if a.udp_probe_s > 0.0 {
        Some(udp_probe::measure(
            Duration::from_secs_f64(a.udp_probe_s),
            64,
        )?)
    } else {
        None
    };
    let motion = CourseMotion::load(&a.race.course)?;
    eprintln!("preparing race {} with {} riders…", a.race.race, a.devices);
    let tokens = setup::prepare_race(&a.server, &a.race, &motion, a.devices, 1000).await?;
    let interval_us = Arc::new(AtomicU64::new((1e6 / a.start_rate.max(0.01)) as u64));
    let ramp = Duration::from_secs(5);
    let cfg = Arc::new(FleetConfig {
        ingest: a.server.ingest,
        fingerprint: a.server.fingerprint()?,
        devices: tokens,
        interval_us: interval_us.clone(),
        duration: Duration::from_secs(a.step_s * u64::from(a.max_steps) + 5),
        ramp,
        blip_at: None,
        blip_mode: BlipMode::default(),
        devices_per_endpoint: a.endpoints.devices_per_endpoint,
        dropout_frac: 0.0,
        dropout: Duration::ZERO,
        drain: Duration::from_secs(30),
        motion,
        start_ms: wall_us() / 1000 - 60_000,
        send_log: None,
    });
    let fleet = Arc::new(Fleet::default());
    let prog = progress_line("saturate", fleet.clone(), a.devices);
    let f = fleet.clone();
    let c = cfg.clone();
    let task = tokio::spawn(async move { fleet::run(c, f).await });
    // Warm-up: every device connected, first acks in.
    tokio::time::sleep(ramp + Duration::from_secs(3)).await;
    fleet.live.take();
    let mut steps = Vec::new();
    let mut ceiling = 0.0f64;
    let mut rate = a.start_rate;
    let mut broke = String::from("max steps reached");
    for step in 0..a.max_steps {
        interval_us.store((1e6 / rate) as u64, Ordering::Relaxed);
        let s = &fleet.stats;
        let (p0, a0) = (
            s.pushed.load(Ordering::Relaxed),
            s.acked.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_secs(a.step_s)).await;
        let (p1, a1) = (
            s.pushed.load(Ordering::Relaxed),
            s.acked.load(Ordering::Relaxed),
        );
        let secs = a.step_s as f64;
        let offered = f64::from(a.devices) * rate;
        let sent = (p1 - p0) as f64 / secs;
        let accepted = (a1 - a0) as f64 / secs;
        let backlog = p1.saturating_sub(a1);
        let lat = fleet.live.take();
        eprintln!(
            "step {step}: offered {offered:.0}/s sent {sent:.0}/s accepted {accepted:.0}/s \
             backlog {backlog} p99 {:.1} ms",
            lat.p99
        );
        steps.push(json!({
            "step": step, "rate_per_device": rate, "offered_per_s": offered.round(),
            "sent_per_s": sent.round(), "accepted_per_s": accepted.round(), "backlog": backlog,
            "p50_ms": lat.p50, "p99_ms": lat.p99, "p999_ms": lat.p999, "max_ms": lat.max,
        }));
        let ok_lat = lat.p99 <= a.p99_limit_ms;
        let ok_rate = accepted >= 0.9 * sent && sent >= 0.9 * offered;
        let ok_backlog = (backlog as f64) <= offered.max(1.0);
        if ok_lat && ok_rate && ok_backlog {
            ceiling = ceiling.max(accepted);
        } else {
            broke = format!(
                "step {step}: {}{}{}",
                if ok_lat { "" } else { "p99 over the limit; " },
                if ok_rate {
                    ""
                } else {
                    "accepted or sent below 90 % of offered; "
                },
                if ok_backlog {
                    ""
                } else {
                    "backlog above one second of fixes"
                }
            );
            break;
        }
        rate *= a.factor.max(1.01);
    }
    // Stop sending; let the backlog drain to check loss.
    fleet.stats.draining.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    prog.abort();
    let s = &fleet.stats;
    let (pushed, acked, lost) = (
        s.pushed.load(Ordering::Relaxed),
        s.acked.load(Ordering::Relaxed),
        s.lost.load(Ordering::Relaxed),
    );
    let mut r = Report::new(
        "saturate",
        json!({
            "devices": a.devices, "start_rate": a.start_rate, "factor": a.factor,
            "step_s": a.step_s, "p99_limit_ms": a.p99_limit_ms, "race": a.race.race,
            "devices_per_endpoint": a.endpoints.devices_per_endpoint,
        }),
    );
    r.set("steps", serde_json::Value::Array(steps));
    r.set("ceiling_fixes_per_s", ceiling.round());
    r.set("stopped_because", broke);
    r.set("fixes_pushed", pushed);
    r.set("fixes_acked", acked);
    r.set("fixes_lost_after_drain", lost);
    r.target(
        "ingest ceiling",
        "≥ 150,000 fixes/s",
        format!("{ceiling:.0} fixes/s"),
        ceiling >= 150_000.0,
    );
    if let Some(p) = &probe {
        r.set("udp_probe_received_per_s", p.received_per_s.round());
        r.set("udp_probe_sent_per_s", p.sent_per_s.round());
        r.set(
            "ceiling_to_udp_probe_ratio",
            (ceiling / p.received_per_s.max(1.0) * 1000.0).round() / 1000.0,
        );
    }
    r.target(
        "no loss after drain",
        "= 0",
        format!("{lost} of {pushed}"),
        lost == 0,
    );
    r.notes.push(
        "a step passes when live send→ack p99 ≤ the limit, sent and accepted ≥ 90 % of offered \
         and the unacked backlog ≤ one second of fixes; the ceiling is the best passing step's \
         accepted rate. The load client (one QUIC connection per device) runs on the same 2 vCPUs"
            .into(),
    );
    r.finish(a.out.as_deref())
}
