//! `flevum-load`: the load generator of Flevum (issue 8). Subcommands drive a running
//! `flevum serve` on loopback: `devices` (QUIC), `fans` (WebSocket), `e2e` (both), `saturate`
//! (ingest ceiling), plus `udp-probe` (raw UDP receive rate) and `recovery` (journal replay).
//!
//! Each run is bounded in count and time, prints a progress line every second on stderr and
//! ends with a table on stdout and an optional JSON report (`--out`). With `--assert`
//! (`devices`, `fans`, `e2e`) a lost fix, a failed device or fan, a server close or a resync
//! exits non-zero; timings never do (the CI load smoke, `load-tests/smoke.sh`).

mod checks;
mod devices;
mod e2e;
mod fans;
mod fleet;
mod recovery;
mod report;
mod saturate;
mod setup;
mod udp_probe;

use clap::{Parser, Subcommand};

/// Load tests for Flevum (loopback only).
#[derive(Debug, Parser)]
#[command(name = "flevum-load", version)]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
enum Command {
    /// Simulated devices over QUIC: accepted fixes/s, acks, loss, send→ack latency.
    Devices(devices::DevicesArgs),
    /// WebSocket fans on one race: frames, bytes, tick→receive latency, resyncs, server memory.
    Fans(fans::FansArgs),
    /// Internal: one worker process of `fans --procs K`.
    #[command(hide = true)]
    FanWorker(fans::WorkerArgs),
    /// Devices and fans at once: device-send → fan-receive latency per fix.
    E2e(e2e::E2eArgs),
    /// Raises the device rate step by step until latency or loss breaks.
    Saturate(saturate::SaturateArgs),
    /// Raw UDP send/receive rate on loopback with 64-byte datagrams.
    UdpProbe(udp_probe::UdpProbeArgs),
    /// Writes a journal of N fixes and measures its replay.
    Recovery(recovery::RecoveryArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Devices(a) => devices::run(a).await,
            Command::Fans(a) => fans::run(a).await,
            Command::FanWorker(a) => fans::worker(a).await,
            Command::E2e(a) => e2e::run(a).await,
            Command::Saturate(a) => saturate::run(a).await,
            Command::UdpProbe(a) => udp_probe::run(a),
            Command::Recovery(a) => recovery::run(a).await,
        }
    })
}
