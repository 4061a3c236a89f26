//! A fleet of simulated devices: one `DeviceClient` (own QUIC connection and UDP socket) per
//! rider, fixes generated along a course at a shared, adjustable interval, with optional ramp,
//! blip (every connection cut at once, devices reconnect with their unacknowledged fixes),
//! dropouts (offline for a while, then backfill) and a drain phase that waits for every ack.
//!
//! Measures send→ack (the durable acceptance seen by the device), handshake time and loss; it
//! does not talk HTTP (see `setup`) or print reports (the scenarios do).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flevum_protocol::PositionRecord;
use flevum_protocol::client::{CertPin, ClientConfig, ClientStatus, DeviceClient};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::report::{Latency, wall_us};
use crate::setup::CourseMotion;

/// Send times of fixes by (rider, fix time ms), for matching them in fan frames (e2e).
#[derive(Default)]
pub struct SendLog {
    /// (rider, time_ms) → wall clock µs of the push.
    pub sent: Mutex<HashMap<(u32, i64), i64>>,
}

/// What a fleet does.
pub struct FleetConfig {
    /// QUIC ingest address.
    pub ingest: SocketAddr,
    /// Certificate pin (sha256 hex).
    pub fingerprint: String,
    /// (rider id, device token) per device.
    pub devices: Vec<(u32, String)>,
    /// Interval between fixes of one device, µs; may be changed while running (saturate).
    pub interval_us: Arc<AtomicU64>,
    /// Sending time after the ramp.
    pub duration: Duration,
    /// Devices start spread over this time (0 = all at once).
    pub ramp: Duration,
    /// Cut every connection this long after the start.
    pub blip_at: Option<Duration>,
    /// Share of devices that go offline once for `dropout` and backfill afterwards.
    pub dropout_frac: f64,
    /// Length of a dropout.
    pub dropout: Duration,
    /// Time allowed after sending stops for the last acks.
    pub drain: Duration,
    /// Motion along the course.
    pub motion: Arc<CourseMotion>,
    /// Race start, ms (motion starts there).
    pub start_ms: i64,
    /// Send log for e2e matching.
    pub send_log: Option<Arc<SendLog>>,
}

/// Counters of a running fleet.
#[derive(Default)]
pub struct FleetStats {
    /// Fixes generated and handed to a client (or buffered while offline).
    pub pushed: AtomicU64,
    /// Fixes acknowledged by the engine.
    pub acked: AtomicU64,
    /// Devices whose client reports `Connected`.
    pub connected: AtomicI64,
    /// Devices that have started.
    pub started: AtomicU64,
    /// `push` calls that failed (buffer full, closed).
    pub push_errors: AtomicU64,
    /// Client spawn failures.
    pub spawn_errors: AtomicU64,
    /// Fixes still unacknowledged when a device gave up draining.
    pub lost: AtomicU64,
    /// Devices that went offline for a dropout.
    pub dropouts: AtomicU64,
    /// Devices back after the blip.
    pub blip_back: AtomicU64,
    /// Devices cut by the blip.
    pub blip_cut: AtomicU64,
    /// Set when sending has stopped (drain phase).
    pub draining: AtomicBool,
}

/// A fleet's measurements.
#[derive(Default)]
pub struct Fleet {
    /// Counters.
    pub stats: FleetStats,
    /// send→ack of fixes pushed while connected (sent live as datagrams).
    pub live: Latency,
    /// send→ack of fixes pushed while offline or reconnecting (backfilled on streams).
    pub buffered: Latency,
    /// Client spawn → `Connected` (25 ms status polling, or the first ack if that comes first).
    pub handshake: Latency,
    /// Blip → the device is `Connected` again (25 ms status polling, or the first ack).
    pub blip_back: Latency,
}

/// A fix waiting for its ack.
struct Pending {
    /// The record, resent after a reconnect.
    record: PositionRecord,
    /// When it was pushed.
    sent: Instant,
    /// Pushed while connected.
    live: bool,
}

fn client_config(cfg: &FleetConfig, token: &str) -> ClientConfig {
    ClientConfig {
        server: cfg.ingest,
        server_name: "localhost".into(),
        pin: CertPin::Sha256(cfg.fingerprint.clone()),
        token: token.to_string(),
        ..ClientConfig::default()
    }
}

/// Runs the fleet to the end of its drain; `blip` is fired by the caller's timer.
pub async fn run(cfg: Arc<FleetConfig>, fleet: Arc<Fleet>) {
    let t0 = Instant::now();
    let (blip_tx, blip_rx) = watch::channel(None::<Instant>);
    if let Some(at) = cfg.blip_at {
        tokio::spawn(async move {
            tokio::time::sleep_until(t0 + at).await;
            eprintln!("blip: cutting every connection");
            let _ = blip_tx.send(Some(Instant::now()));
            // Keep the sender alive until the fleet is done.
            std::future::pending::<()>().await;
        });
    }
    let n = cfg.devices.len().max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..cfg.devices.len() {
        tasks.spawn(device(
            idx,
            n,
            cfg.clone(),
            fleet.clone(),
            t0,
            blip_rx.clone(),
        ));
    }
    let stop_at = t0 + cfg.ramp + cfg.duration;
    let fl = fleet.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(stop_at).await;
        fl.stats.draining.store(true, Ordering::Relaxed);
    });
    while tasks.join_next().await.is_some() {}
}

/// Small deterministic hash for per-device choices.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

async fn device(
    idx: usize,
    n: usize,
    cfg: Arc<FleetConfig>,
    fleet: Arc<Fleet>,
    t0: Instant,
    mut blip: watch::Receiver<Option<Instant>>,
) {
    let (rider, token) = (cfg.devices[idx].0, cfg.devices[idx].1.clone());
    let stats = &fleet.stats;
    let start_at = t0 + cfg.ramp.mul_f64(idx as f64 / n as f64);
    tokio::time::sleep_until(start_at).await;
    let stop_at = t0 + cfg.ramp + cfg.duration;
    stats.started.fetch_add(1, Ordering::Relaxed);
    let interval =
        |c: &FleetConfig| Duration::from_micros(c.interval_us.load(Ordering::Relaxed).max(100));

    let spawn = |token: &str| DeviceClient::spawn(client_config(&cfg, token));
    let mut client = match spawn(&token) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("device {rider}: {e}");
            stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut acks = client.as_ref().map(DeviceClient::subscribe_acks);
    let mut connected = false;
    let mut connecting_since = Instant::now();
    let mut first_connect = true;
    let mut blip_started: Option<Instant> = None;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut seq = 1u32;
    // Spread the devices' send times over the interval.
    let mut next_send = Instant::now() + interval(&cfg).mul_f64(unit(idx as u64));
    let dropout = (unit(idx as u64 ^ 0xD0) < cfg.dropout_frac).then(|| {
        let at = start_at + cfg.duration.mul_f64(0.2 + 0.4 * unit(idx as u64 ^ 0xA7));
        (at, at + cfg.dropout)
    });
    let mut check = tokio::time::interval(Duration::from_millis(25));
    let mut draining = false;
    let mut blip_live = true;
    let drain_until = stop_at + cfg.drain;

    let set_connected = |now_connected: bool, connected: &mut bool| {
        if now_connected != *connected {
            *connected = now_connected;
            stats
                .connected
                .fetch_add(if now_connected { 1 } else { -1 }, Ordering::Relaxed);
        }
    };

    loop {
        let wake = if draining {
            drain_until
        } else {
            next_send.min(stop_at)
        };
        tokio::select! {
            biased;
            r = async { acks.as_mut().expect("guarded by the select condition").changed().await },
                if acks.is_some() => {
                if r.is_err() {
                    acks = None;
                    continue;
                }
                let acked = *acks.as_mut().expect("checked above").borrow_and_update();
                let now = Instant::now();
                // An ack (or Welcome) proves the connection is up, even if no status poll saw it.
                if !connected && client.is_some() {
                    set_connected(true, &mut connected);
                    if first_connect {
                        first_connect = false;
                        fleet.handshake.record(now - connecting_since);
                    }
                    if let Some(b) = blip_started.take() {
                        fleet.blip_back.record(now - b);
                        stats.blip_back.fetch_add(1, Ordering::Relaxed);
                    }
                }
                while pending.front().is_some_and(|p| p.record.seq <= acked) {
                    let Some(p) = pending.pop_front() else { break };
                    if p.live {
                        fleet.live.record(now - p.sent);
                    } else {
                        fleet.buffered.record(now - p.sent);
                    }
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                if draining && pending.is_empty() {
                    break;
                }
            }
            r = blip.changed(), if blip_live => {
                if r.is_err() { blip_live = false; continue; }
                let Some(at) = *blip.borrow_and_update() else { continue };
                if let Some(c) = client.take() {
                    c.close().await;
                }
                stats.blip_cut.fetch_add(1, Ordering::Relaxed);
                set_connected(false, &mut connected);
                blip_started = Some(at);
                for p in pending.iter_mut() {
                    p.live = false;
                }
                match spawn(&token) {
                    Ok(c) => {
                        for p in &pending {
                            if c.push(p.record).is_err() {
                                stats.push_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        acks = Some(c.subscribe_acks());
                        client = Some(c);
                    }
                    Err(_) => {
                        stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ = check.tick(), if !connected && client.is_some() => {
                if client.as_ref().is_some_and(|c| c.status() == ClientStatus::Connected) {
                    set_connected(true, &mut connected);
                    let now = Instant::now();
                    if first_connect {
                        first_connect = false;
                        fleet.handshake.record(now - connecting_since);
                    }
                    if let Some(b) = blip_started.take() {
                        fleet.blip_back.record(now - b);
                        stats.blip_back.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if draining {
                    break;
                }
                if now >= stop_at || stats.draining.load(Ordering::Relaxed) {
                    draining = true;
                    if pending.is_empty() { break; }
                    if client.is_none() {
                        // Still offline at the end: come back to deliver the backlog.
                        if let Ok(c) = spawn(&token) {
                            for p in &pending {
                                if c.push(p.record).is_err() {
                                    stats.push_errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            acks = Some(c.subscribe_acks());
                            client = Some(c);
                        }
                    }
                    continue;
                }
                // Dropout: go offline (close), later come back and backfill.
                if let Some((from, to)) = dropout {
                    if now >= from && now < to && client.is_some() {
                        if let Some(c) = client.take() { c.close().await; }
                        acks = None;
                        set_connected(false, &mut connected);
                        stats.dropouts.fetch_add(1, Ordering::Relaxed);
                        for p in pending.iter_mut() { p.live = false; }
                    } else if now >= to && client.is_none() {
                        if let Ok(c) = spawn(&token) {
                            for p in &pending {
                                if c.push(p.record).is_err() {
                                    stats.push_errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            acks = Some(c.subscribe_acks());
                            client = Some(c);
                            connecting_since = Instant::now();
                        } else {
                            stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if let Some(c) = &client {
                    let st = c.status() == ClientStatus::Connected;
                    // A connection noticed here (not by the 25 ms poll) still counts as the
                    // device's handshake or return after the blip.
                    if st && !connected {
                        if first_connect {
                            first_connect = false;
                            fleet.handshake.record(now - connecting_since);
                        }
                        if let Some(b) = blip_started.take() {
                            fleet.blip_back.record(now - b);
                            stats.blip_back.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    set_connected(st, &mut connected);
                }
                while next_send <= now {
                    let time_ms = wall_us() / 1000;
                    let record = cfg.motion.fix(rider, seq, time_ms, cfg.start_ms);
                    let pushed_at = Instant::now();
                    let ok = match &client {
                        Some(c) => c.push(record).is_ok(),
                        None => true,
                    };
                    if ok {
                        if let Some(log) = &cfg.send_log {
                            log.sent
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert((rider, time_ms), wall_us());
                        }
                        pending.push_back(Pending {
                            record,
                            sent: pushed_at,
                            live: connected && client.is_some(),
                        });
                        stats.pushed.fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                    } else {
                        stats.push_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    next_send += interval(&cfg);
                }
            }
        }
    }
    stats
        .lost
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    set_connected(false, &mut connected);
    if let Some(c) = client.take() {
        c.close().await;
    }
}
