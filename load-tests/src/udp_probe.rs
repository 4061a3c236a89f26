//! `flevum-load udp-probe`: the raw UDP rate of this machine on loopback — one thread sends
//! fixed-size datagrams as fast as it can, another receives them with plain `recv` calls.
//!
//! The reference ingest is quoted against (same packet size, same run). Uses `std::net` only:
//! one syscall per datagram (no `recvmmsg`), which is noted in the report.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::report::Report;

/// Options of `udp-probe`.
#[derive(Debug, Clone, Args)]
pub struct UdpProbeArgs {
    /// Seconds to run (≤ 120).
    #[arg(long, default_value_t = 5.0)]
    pub duration_s: f64,
    /// Datagram payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// JSON report file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Result of a probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeResult {
    /// Datagrams sent per second.
    pub sent_per_s: f64,
    /// Datagrams received per second.
    pub received_per_s: f64,
    /// Received / sent.
    pub delivered: f64,
}

/// Runs the probe for `duration` with `size`-byte datagrams.
pub fn measure(duration: Duration, size: usize) -> anyhow::Result<ProbeResult> {
    anyhow::ensure!(duration <= Duration::from_secs(120), "at most 120 s");
    let rx = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = rx.set_recv_buffer_size(8 * 1024 * 1024);
    rx.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let rx: UdpSocket = rx.into();
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let addr = rx.local_addr()?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(addr)?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let recv_thread = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            loop {
                match rx.recv(&mut buf) {
                    Ok(_) => n += 1,
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
                if n.is_multiple_of(4096) {
                    received.store(n, Ordering::Relaxed);
                }
            }
            received.store(n, Ordering::Relaxed);
        })
    };
    let payload = vec![0x5au8; size];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        for _ in 0..256 {
            if tx.send(&payload).is_ok() {
                sent += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The receiver stops after 100 ms without datagrams.
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let _ = recv_thread.join();
    let got = received.load(Ordering::Relaxed);
    Ok(ProbeResult {
        sent_per_s: sent as f64 / secs,
        received_per_s: got as f64 / secs,
        delivered: got as f64 / sent.max(1) as f64,
    })
}

/// Runs the subcommand.
pub fn run(a: UdpProbeArgs) -> anyhow::Result<()> {
    let p = measure(Duration::from_secs_f64(a.duration_s.max(0.1)), a.size)?;
    let mut r = Report::new(
        "udp-probe",
        json!({"duration_s": a.duration_s, "size": a.size}),
    );
    r.set("sent_per_s", p.sent_per_s.round());
    r.set("received_per_s", p.received_per_s.round());
    r.set("delivered_share", (p.delivered * 1000.0).round() / 1000.0);
    r.notes.push(
        "one sender thread, one receiver thread, std::net recv (one syscall per datagram, no \
         recvmmsg); 2 shared vCPUs"
            .into(),
    );
    r.finish(a.out.as_deref())
}
