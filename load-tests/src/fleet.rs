//! A fleet of simulated devices: one `DeviceClient` (own QUIC connection) per rider, sharing a
//! few QUIC endpoints (UDP sockets) or each with its own, fixes generated along a course at a
//! shared, adjustable interval, with optional ramp, blip (every connection cut at once, devices
//! reconnect with their unacknowledged fixes), dropouts (offline for a while, then backfill) and
//! a drain phase that waits for every ack.
//!
//! Measures send→ack (the durable acceptance seen by the device), handshake time and loss; it
//! does not talk HTTP (see `setup`) or print reports (the scenarios do).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use flevum_protocol::PositionRecord;
use flevum_protocol::client::{
    CertPin, ClientConfig, ClientError, DeviceClient, Endpoint, ZeroRtt,
};
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

/// Devices per shared QUIC endpoint unless told otherwise (see `EndpointArgs`). Measured with
/// 2,000 devices at `--ramp 0` (2 shared vCPUs, 2–4 runs each): this process spent 1.24–1.38 s of
/// CPU until every device was welcomed with one endpoint per device, 0.84–0.91 s with 64 and
/// 0.94 s with 500 (whole 21 s runs: 4.3–5.1 s, 4.0–4.4 s, 4.0–4.3 s). 64 takes nearly all of
/// the saving while a 10,000-device storm still spreads over ~160 sockets and endpoint drivers,
/// so no single driver task serialises many handshakes.
pub const DEFAULT_DEVICES_PER_ENDPOINT: u32 = 64;
/// Send and receive buffer asked for each shared endpoint's UDP socket (as the engine's
/// `ingest_storm` does): a storm of handshakes from many devices must not overflow it. Linux
/// caps it at `net.core.rmem_max`/`wmem_max` and reports twice the granted size.
pub const SHARED_SOCKET_BUFFER: usize = 4 << 20;

/// How the simulated devices map onto this process's QUIC endpoints (UDP sockets).
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// Simulated devices sharing one QUIC endpoint (one UDP socket with 4 MiB buffers and one
    /// endpoint driver task); each device keeps its own connection, TLS session store and
    /// buffer. 1 = every device its own endpoint and socket, as real phones, which costs this
    /// process far more CPU (stolen from a server on the same machine).
    #[arg(long, default_value_t = DEFAULT_DEVICES_PER_ENDPOINT, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub devices_per_endpoint: u32,
}

/// What the blip does to every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlipMode {
    /// A network cut while the app keeps running: the connection is closed
    /// (`DeviceClient::cut_connection`), the client keeps its buffer and TLS session store and
    /// reconnects by itself (resuming the session, 0-RTT).
    #[default]
    Cut,
    /// An app restart: the client is closed and a new one (empty session store, so a full
    /// handshake) is started with the unacknowledged fixes pushed again.
    Restart,
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
    /// How the blip cuts the connections.
    pub blip_mode: BlipMode,
    /// Devices per shared QUIC endpoint (1 = each device its own endpoint).
    pub devices_per_endpoint: u32,
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
    /// Devices back after the blip on a connection whose 0-RTT data the engine accepted (the
    /// TLS session was resumed).
    pub blip_back_zero_rtt: AtomicU64,
    /// Connections (of all clients over the run) whose 0-RTT data the engine accepted.
    pub zero_rtt_accepted: AtomicU64,
    /// Connections whose 0-RTT data the engine refused (fell back to a full round trip).
    pub zero_rtt_rejected: AtomicU64,
    /// QUIC endpoints (UDP sockets) the fleet opened for sharing (0 = one per device, owned by
    /// its client).
    pub shared_endpoints: AtomicU64,
    /// Receive buffer of a shared endpoint's socket as the kernel reports it, bytes.
    pub socket_recv_buffer: AtomicU64,
    /// Send buffer of a shared endpoint's socket as the kernel reports it, bytes.
    pub socket_send_buffer: AtomicU64,
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
    /// Client spawn → welcomed (`subscribe_connected` turns true).
    pub handshake: Latency,
    /// Blip → the device is welcomed again (`subscribe_connected` turns true).
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

/// Opens one client endpoint for devices to share: a UDP socket of the ingest's address family
/// with `SHARED_SOCKET_BUFFER` buffers (best effort), and the receive and send buffer sizes the
/// kernel reports for it.
fn shared_endpoint(ingest: SocketAddr) -> Result<(Endpoint, usize, usize), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, bind) = if ingest.is_ipv6() {
        (Domain::IPV6, SocketAddr::from(([0u16; 8], 0)))
    } else {
        (Domain::IPV4, SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    let socket =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    // A smaller buffer than asked still works; the report shows what was granted.
    let _ = socket.set_recv_buffer_size(SHARED_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SHARED_SOCKET_BUFFER);
    socket.bind(&bind.into()).map_err(|e| e.to_string())?;
    let recv = socket.recv_buffer_size().unwrap_or(0);
    let send = socket.send_buffer_size().unwrap_or(0);
    let endpoint = DeviceClient::endpoint_on(socket.into()).map_err(|e| e.to_string())?;
    Ok((endpoint, recv, send))
}

/// Opens the shared endpoints of a fleet (none when every device has its own), recording their
/// count and socket buffer sizes in `stats`.
fn open_endpoints(cfg: &FleetConfig, stats: &FleetStats) -> Result<Vec<Endpoint>, String> {
    let per = cfg.devices_per_endpoint.max(1) as usize;
    if per == 1 {
        return Ok(Vec::new());
    }
    let mut endpoints = Vec::new();
    for _ in 0..cfg.devices.len().div_ceil(per) {
        let (endpoint, recv, send) = shared_endpoint(cfg.ingest)?;
        stats
            .socket_recv_buffer
            .store(recv as u64, Ordering::Relaxed);
        stats
            .socket_send_buffer
            .store(send as u64, Ordering::Relaxed);
        endpoints.push(endpoint);
    }
    stats
        .shared_endpoints
        .store(endpoints.len() as u64, Ordering::Relaxed);
    eprintln!(
        "fleet: {} devices on {} shared QUIC endpoints, socket buffers {} KiB receive / {} KiB \
         send (as the kernel reports them; {} KiB asked)",
        cfg.devices.len(),
        endpoints.len(),
        stats.socket_recv_buffer.load(Ordering::Relaxed) / 1024,
        stats.socket_send_buffer.load(Ordering::Relaxed) / 1024,
        SHARED_SOCKET_BUFFER / 1024
    );
    Ok(endpoints)
}

/// Runs the fleet to the end of its drain; `blip` is fired by the caller's timer.
pub async fn run(cfg: Arc<FleetConfig>, fleet: Arc<Fleet>) {
    let endpoints = match open_endpoints(&cfg, &fleet.stats) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("fleet: cannot open a shared QUIC endpoint: {e}");
            fleet
                .stats
                .spawn_errors
                .fetch_add(cfg.devices.len() as u64, Ordering::Relaxed);
            return;
        }
    };
    let t0 = Instant::now();
    let (blip_tx, blip_rx) = watch::channel(None::<Instant>);
    if let Some(at) = cfg.blip_at {
        let mode = cfg.blip_mode;
        tokio::spawn(async move {
            tokio::time::sleep_until(t0 + at).await;
            eprintln!("blip ({mode:?}): cutting every connection");
            let _ = blip_tx.send(Some(Instant::now()));
            // Keep the sender alive until the fleet is done.
            std::future::pending::<()>().await;
        });
    }
    let n = cfg.devices.len().max(1);
    let per = cfg.devices_per_endpoint.max(1) as usize;
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..cfg.devices.len() {
        tasks.spawn(device(
            idx,
            n,
            cfg.clone(),
            fleet.clone(),
            t0,
            blip_rx.clone(),
            endpoints.get(idx / per).cloned(),
        ));
    }
    let stop_at = t0 + cfg.ramp + cfg.duration;
    let fl = fleet.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(stop_at).await;
        fl.stats.draining.store(true, Ordering::Relaxed);
    });
    while tasks.join_next().await.is_some() {}
    // Every client is closed: let the shared endpoints send their close frames.
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"fleet done");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for endpoint in &endpoints {
            endpoint.wait_idle().await;
        }
    })
    .await;
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

/// The next value of `rx` once it changes; never resolves without a receiver, `None` once the
/// sender is gone (the client was closed).
async fn next_change<T: Clone>(rx: &mut Option<watch::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => Some(r.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// Adds a client's 0-RTT outcomes to the fleet's counts and closes it.
async fn retire(client: DeviceClient, stats: &FleetStats) {
    let z = client.zero_rtt_counts();
    stats
        .zero_rtt_accepted
        .fetch_add(z.accepted, Ordering::Relaxed);
    stats
        .zero_rtt_rejected
        .fetch_add(z.rejected, Ordering::Relaxed);
    client.close().await;
}

async fn device(
    idx: usize,
    n: usize,
    cfg: Arc<FleetConfig>,
    fleet: Arc<Fleet>,
    t0: Instant,
    mut blip: watch::Receiver<Option<Instant>>,
    endpoint: Option<Endpoint>,
) {
    let (rider, token) = (cfg.devices[idx].0, cfg.devices[idx].1.clone());
    let stats = &fleet.stats;
    let start_at = t0 + cfg.ramp.mul_f64(idx as f64 / n as f64);
    tokio::time::sleep_until(start_at).await;
    let stop_at = t0 + cfg.ramp + cfg.duration;
    stats.started.fetch_add(1, Ordering::Relaxed);
    let interval =
        |c: &FleetConfig| Duration::from_micros(c.interval_us.load(Ordering::Relaxed).max(100));

    let spawn = || -> Result<DeviceClient, ClientError> {
        let config = client_config(&cfg, &token);
        match &endpoint {
            Some(ep) => DeviceClient::spawn_on(config, ep.clone()),
            None => DeviceClient::spawn(config),
        }
    };
    // Acks and connection state of the current client.
    let mut acks: Option<watch::Receiver<u32>> = None;
    let mut up: Option<watch::Receiver<bool>> = None;
    // Hands the unacknowledged fixes to a new client and watches it.
    let attach = |c: DeviceClient,
                  pending: &VecDeque<Pending>,
                  acks: &mut Option<watch::Receiver<u32>>,
                  up: &mut Option<watch::Receiver<bool>>| {
        for p in pending {
            if c.push(p.record).is_err() {
                stats.push_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        *acks = Some(c.subscribe_acks());
        let mut rx = c.subscribe_connected();
        // Report the current state at once, even if it changed before subscribing.
        rx.mark_changed();
        *up = Some(rx);
        c
    };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut client = match spawn() {
        Ok(c) => Some(attach(c, &pending, &mut acks, &mut up)),
        Err(e) => {
            eprintln!("device {rider}: {e}");
            stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut connected = false;
    let mut connecting_since = Instant::now();
    let mut first_connect = true;
    let mut blip_started: Option<Instant> = None;
    let mut seq = 1u32;
    // Spread the devices' send times over the interval.
    let mut next_send = Instant::now() + interval(&cfg).mul_f64(unit(idx as u64));
    let dropout = (unit(idx as u64 ^ 0xD0) < cfg.dropout_frac).then(|| {
        let at = start_at + cfg.duration.mul_f64(0.2 + 0.4 * unit(idx as u64 ^ 0xA7));
        (at, at + cfg.dropout)
    });
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
            acked = next_change(&mut acks) => {
                let Some(acked) = acked else {
                    acks = None;
                    continue;
                };
                let now = Instant::now();
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
            is_up = next_change(&mut up) => {
                let Some(is_up) = is_up else {
                    up = None;
                    continue;
                };
                if is_up && !connected {
                    let now = Instant::now();
                    if first_connect {
                        first_connect = false;
                        fleet.handshake.record(now - connecting_since);
                    }
                    if let Some(b) = blip_started.take() {
                        fleet.blip_back.record(now - b);
                        stats.blip_back.fetch_add(1, Ordering::Relaxed);
                        if client.as_ref().is_some_and(|c| c.last_zero_rtt() == ZeroRtt::Accepted) {
                            stats.blip_back_zero_rtt.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                set_connected(is_up, &mut connected);
            }
            r = blip.changed(), if blip_live => {
                if r.is_err() { blip_live = false; continue; }
                let Some(at) = *blip.borrow_and_update() else { continue };
                match cfg.blip_mode {
                    BlipMode::Cut => {
                        // Offline (a dropout): no connection to cut.
                        let Some(c) = &client else { continue };
                        c.cut_connection();
                    }
                    BlipMode::Restart => {
                        if let Some(c) = client.take() {
                            retire(c, stats).await;
                        }
                        (acks, up) = (None, None);
                        match spawn() {
                            Ok(c) => client = Some(attach(c, &pending, &mut acks, &mut up)),
                            Err(_) => {
                                stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                stats.blip_cut.fetch_add(1, Ordering::Relaxed);
                set_connected(false, &mut connected);
                blip_started = Some(at);
                for p in pending.iter_mut() {
                    p.live = false;
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
                        match spawn() {
                            Ok(c) => client = Some(attach(c, &pending, &mut acks, &mut up)),
                            Err(_) => {
                                stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    continue;
                }
                // Dropout: go offline (close), later come back and backfill.
                if let Some((from, to)) = dropout {
                    if now >= from && now < to && client.is_some() {
                        if let Some(c) = client.take() {
                            retire(c, stats).await;
                        }
                        (acks, up) = (None, None);
                        set_connected(false, &mut connected);
                        stats.dropouts.fetch_add(1, Ordering::Relaxed);
                        for p in pending.iter_mut() { p.live = false; }
                    } else if now >= to && client.is_none() {
                        match spawn() {
                            Ok(c) => {
                                client = Some(attach(c, &pending, &mut acks, &mut up));
                                connecting_since = Instant::now();
                            }
                            Err(_) => {
                                stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
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
        retire(c, stats).await;
    }
}
