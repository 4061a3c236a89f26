//! Storm harness for the QUIC ingest (issue 10): thousands of devices connecting at once, a blip.
//!
//! `--role storm` (default) starts the ingest in a child process (`--role server`, in-memory sink
//! that acks after `--sink-delay-ms`) and runs the devices here on a few shared quinn endpoints;
//! it prints time until all connected, handshake p50/p99, live-fix send→ack latency and datagram
//! loss during the storm, and (`--blip`) the same after a server restart. `--baseline` = no tuning.
//! `--live-process` runs the live cohort in a third process (`--role live`), so its send→ack
//! latency is not the storm devices' own CPU contention.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flevum_engine::ingest::{
    DeviceGrant, IngestConfig, IngestControl, IngestServer, IngestSink, IngestStats, SubmitFuture,
    TlsConfig, TokenStore, write_self_signed,
};
use flevum_protocol::client::{CertPin, ClientConfig, DeviceClient};
use flevum_protocol::{PositionRecord, RecordFlags};
use tokio::sync::oneshot;

/// Command-line options (`--key value` pairs, `--baseline`, `--blip`).
#[derive(Debug, Clone)]
struct Opts {
    /// `storm`, `server` or `clients`.
    role: String,
    /// Devices that connect at once.
    devices: usize,
    /// Devices connected before the storm that keep sending live fixes.
    live: usize,
    /// Live fix interval of the live cohort, ms.
    live_interval_ms: u64,
    /// Fix interval of storm devices once connected, ms.
    storm_interval_ms: u64,
    /// quinn client endpoints (UDP sockets) the devices share.
    endpoints: usize,
    /// Sink delay until "durable", ms.
    sink_delay_ms: u64,
    /// No issue-10 tuning on the server (admission off, quinn defaults).
    baseline: bool,
    /// After the storm, drop every connection (`drop`) and measure the reconnect.
    blip: bool,
    /// Make the blip a server restart on the same port instead.
    blip_restart: bool,
    /// Admission rate override.
    rate: Option<f64>,
    /// Admission burst override.
    burst: Option<f64>,
    /// Admission queue override.
    queue: Option<usize>,
    /// Admission in-flight cap override.
    inflight: Option<usize>,
    /// Admission queue wait override, ms.
    queue_wait_ms: Option<u64>,
    /// `--role clients`: server address.
    server: Option<SocketAddr>,
    /// `--role clients`: certificate pin.
    pin: Option<String>,
    /// TLS session mode: `0rtt` (resumption + 0-RTT, the default), `resume` (resumption
    /// without early data) or `full` (no session tickets: every handshake is a full one).
    tls: String,
    /// Run the live cohort in its own child process (`--role live`).
    live_process: bool,
    /// Command (split on spaces) the server child is started under, e.g.
    /// `"valgrind --tool=callgrind"` to count its instructions.
    server_wrap: Option<String>,
    /// Tokio worker threads of this process (`None` = one per CPU); 0 = a current-thread
    /// runtime. The server child keeps the default.
    device_threads: Option<usize>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        role: "storm".into(),
        devices: 1000,
        live: 200,
        live_interval_ms: 200,
        storm_interval_ms: 5000,
        endpoints: 4,
        sink_delay_ms: 2,
        baseline: false,
        blip: false,
        blip_restart: false,
        rate: None,
        burst: None,
        queue: None,
        inflight: None,
        queue_wait_ms: None,
        server: None,
        pin: None,
        tls: "0rtt".into(),
        live_process: false,
        server_wrap: None,
        device_threads: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--role" => o.role = val()?,
            "--devices" => o.devices = num(val()?)? as usize,
            "--live" => o.live = num(val()?)? as usize,
            "--live-interval-ms" => o.live_interval_ms = num(val()?)?,
            "--storm-interval-ms" => o.storm_interval_ms = num(val()?)?,
            "--endpoints" => o.endpoints = (num(val()?)? as usize).max(1),
            "--sink-delay-ms" => o.sink_delay_ms = num(val()?)?,
            "--rate" => o.rate = Some(num(val()?)? as f64),
            "--burst" => o.burst = Some(num(val()?)? as f64),
            "--queue" => o.queue = Some(num(val()?)? as usize),
            "--inflight" => o.inflight = Some(num(val()?)? as usize),
            "--queue-wait-ms" => o.queue_wait_ms = Some(num(val()?)?),
            "--server" => o.server = Some(val()?.parse().map_err(|e| format!("--server: {e}"))?),
            "--pin" => o.pin = Some(val()?),
            "--server-wrap" => o.server_wrap = Some(val()?),
            "--device-threads" => o.device_threads = Some(num(val()?)? as usize),
            "--tls" => {
                o.tls = val()?;
                if !matches!(o.tls.as_str(), "0rtt" | "resume" | "full") {
                    return Err(format!("--tls {}: expected 0rtt, resume or full", o.tls));
                }
            }
            "--baseline" => o.baseline = true,
            "--live-process" => o.live_process = true,
            "--blip" => o.blip = true,
            "--blip-restart" => {
                o.blip = true;
                o.blip_restart = true;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ingest_storm: {e}");
            std::process::exit(2);
        }
    };
    let mut builder = match opts.device_threads {
        Some(0) if opts.role != "server" => tokio::runtime::Builder::new_current_thread(),
        Some(n) if opts.role != "server" => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match opts.role.as_str() {
        "server" => rt.block_on(server_role(opts)),
        "storm" | "clients" => rt.block_on(storm_role(opts)),
        "live" => rt.block_on(live_role(opts)),
        other => Err(format!("unknown role {other}")),
    };
    if let Err(e) = result {
        eprintln!("ingest_storm: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// In-memory sink: per-device set of stored sequences, counters for the report.
#[derive(Default)]
struct MemSink {
    /// Delay until "durable".
    delay: Duration,
    /// device id → stored sequences.
    stored: Mutex<HashMap<String, BTreeSet<u32>>>,
    /// Records stored.
    records: AtomicU64,
    /// Records submitted that were already stored.
    duplicates: AtomicU64,
    /// Records of the live cohort that arrived as backfill (resent: their datagram was lost).
    live_backfill: AtomicU64,
    /// Records of the live cohort that arrived live (datagram).
    live_datagram: AtomicU64,
}

impl IngestSink for MemSink {
    fn submit(&self, grant: &DeviceGrant, records: Vec<PositionRecord>) -> SubmitFuture {
        let live = grant.device_id.starts_with("live-");
        {
            let mut map = self.stored.lock().unwrap_or_else(|p| p.into_inner());
            let set = map.entry(grant.device_id.clone()).or_default();
            for r in &records {
                if set.insert(r.seq) {
                    self.records.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                if live {
                    if r.flags & RecordFlags::BACKFILL != 0 {
                        self.live_backfill.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.live_datagram.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(())
        })
    }

    fn durable_seq(&self, grant: &DeviceGrant) -> u32 {
        let map = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        if let Some(set) = map.get(&grant.device_id) {
            for &s in set {
                if s == n + 1 {
                    n = s;
                } else {
                    break;
                }
            }
        }
        n
    }
}

fn device_id(i: usize, live: usize) -> String {
    if i < live {
        format!("live-{i}")
    } else {
        format!("storm-{i}")
    }
}

fn token(i: usize) -> String {
    format!("storm-token-{i:06}")
}

fn server_config(opts: &Opts, listen: SocketAddr, tls: TlsConfig) -> IngestConfig {
    let mut cfg = IngestConfig {
        listen,
        tls,
        max_connections: 50_000,
        ..IngestConfig::default()
    };
    if opts.baseline {
        // What the ingest had before issue 10: every attempt handshaken at once.
        cfg.handshake_rate_per_s = 0.0;
        cfg.handshake_max_inflight = 0;
        cfg.socket_send_buffer = 0;
        cfg.tls_session_cache = 256;
    }
    match opts.tls.as_str() {
        "full" => cfg.tls_session_cache = 0,
        "resume" => cfg.zero_rtt = false,
        _ => {}
    }
    if let Some(r) = opts.rate {
        cfg.handshake_rate_per_s = r;
    }
    if let Some(b) = opts.burst {
        cfg.handshake_burst = b;
    }
    if let Some(q) = opts.queue {
        cfg.handshake_queue = q;
    }
    if let Some(n) = opts.inflight {
        cfg.handshake_max_inflight = n;
    }
    if let Some(ms) = opts.queue_wait_ms {
        cfg.handshake_queue_wait = Duration::from_millis(ms);
    }
    cfg
}

/// A running server instance and its stop switch.
struct Instance {
    /// Resolves `run`'s shutdown future.
    stop: oneshot::Sender<()>,
    /// The `run` task.
    task: tokio::task::JoinHandle<()>,
    /// Its counters.
    stats: Arc<IngestStats>,
    /// Its connection control (for the `drop` blip).
    control: IngestControl,
}

fn start_instance(
    cfg: IngestConfig,
    tokens: Arc<TokenStore>,
    sink: Arc<MemSink>,
) -> Result<(Instance, SocketAddr, String), String> {
    let server = IngestServer::bind(cfg, tokens, sink).map_err(|e| e.to_string())?;
    let addr = server.local_addr();
    let pin = server.cert_fingerprint();
    let b = server.socket_buffers();
    eprintln!(
        "server: socket buffers recv {} (asked {}) send {} (asked {})",
        b.recv_effective, b.recv_requested, b.send_effective, b.send_requested
    );
    let stats = server.stats();
    let control = server.control();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if let Err(e) = server
            .run(async {
                let _ = rx.await;
            })
            .await
        {
            eprintln!("server: {e}");
        }
    });
    Ok((
        Instance {
            stop,
            task,
            stats,
            control,
        },
        addr,
        pin,
    ))
}

async fn server_role(opts: Opts) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("ingest-storm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    write_self_signed(&["localhost".to_string()], &cert, &key).map_err(|e| e.to_string())?;
    let tls = TlsConfig::Files { cert, key };
    let tokens = Arc::new(TokenStore::new());
    for i in 0..opts.devices + opts.live {
        tokens.insert(
            &token(i),
            DeviceGrant {
                race_id: "storm".into(),
                rider_id: i as u32,
                device_id: device_id(i, opts.live),
                report_interval_ms: 1000,
            },
        );
    }
    let sink = Arc::new(MemSink {
        delay: Duration::from_millis(opts.sink_delay_ms),
        ..MemSink::default()
    });
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let (mut inst, addr, pin) = start_instance(
        server_config(&opts, listen, tls.clone()),
        tokens.clone(),
        sink.clone(),
    )?;
    println!("READY {addr} {pin}");
    let _ = std::io::stdout().flush();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut cpu_mark = cpu_seconds();
    while let Some(line) = line_rx.recv().await {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("stats") => {
                let cpu = cpu_seconds();
                let s = &inst.stats;
                println!(
                    "STATS {}",
                    serde_json::json!({
                        "records": sink.records.load(Ordering::Relaxed),
                        "duplicates": sink.duplicates.load(Ordering::Relaxed),
                        "live_datagram": sink.live_datagram.load(Ordering::Relaxed),
                        "live_backfill": sink.live_backfill.load(Ordering::Relaxed),
                        "admitted": s.admitted.load(Ordering::Relaxed),
                        "queued": s.queued.load(Ordering::Relaxed),
                        "refused": s.refused.load(Ordering::Relaxed),
                        "queue_max": s.queue_max.load(Ordering::Relaxed),
                        "welcomed": s.welcomed.load(Ordering::Relaxed),
                        "tls_resumed": s.tls_resumed.load(Ordering::Relaxed),
                        "zero_rtt_accepted": s.zero_rtt_accepted.load(Ordering::Relaxed),
                        "zero_rtt_rejected": s.zero_rtt_rejected.load(Ordering::Relaxed),
                        "cpu_s": cpu - cpu_mark,
                    })
                );
                cpu_mark = cpu;
            }
            Some("drop") => {
                let t0 = Instant::now();
                let n = inst.control.disconnect_all();
                println!(
                    "BLIPPED {} ({n} connections closed)",
                    t0.elapsed().as_millis()
                );
            }
            Some("blip") => {
                // Restart: every connection drops, device state in the server is gone; the sink
                // (the journal) survives.
                let t0 = Instant::now();
                let _ = inst.stop.send(());
                let _ = inst.task.await;
                eprintln!(
                    "server: old instance stopped after {} ms",
                    t0.elapsed().as_millis()
                );
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut attempts = 0u32;
                inst = loop {
                    match start_instance(
                        server_config(&opts, addr, tls.clone()),
                        tokens.clone(),
                        sink.clone(),
                    ) {
                        Ok((i, _, _)) => break i,
                        Err(e) if Instant::now() < deadline => {
                            attempts += 1;
                            if attempts % 50 == 1 {
                                eprintln!("server: rebinding: {e}");
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                println!("BLIPPED {}", t0.elapsed().as_millis());
            }
            Some("quit") | None => break,
            Some(other) => eprintln!("server: unknown command {other}"),
        }
        let _ = std::io::stdout().flush();
    }
    let _ = inst.stop.send(());
    let _ = inst.task.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`), 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------------------------------------
// Device side
// ---------------------------------------------------------------------------------------------

/// Talks to a server child process (or nothing, for `--role clients`).
struct Control {
    /// The child, when we started it.
    child: Option<Child>,
    /// Its stdin (commands).
    stdin: Option<ChildStdin>,
    /// Its stdout (answers).
    stdout: Option<BufReader<ChildStdout>>,
}

impl Control {
    fn command(&mut self, cmd: &str, answer: &str) -> Result<String, String> {
        let (Some(stdin), Some(stdout)) = (self.stdin.as_mut(), self.stdout.as_mut()) else {
            return Ok(String::new());
        };
        writeln!(stdin, "{cmd}").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("server child ended".into());
            }
            if let Some(rest) = line.trim().strip_prefix(answer) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    fn stats(&mut self) -> serde_json::Value {
        self.command("stats", "STATS")
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

fn spawn_server(opts: &Opts) -> Result<(Control, SocketAddr, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.extend(["--role".into(), "server".into()]);
    let wrap: Vec<String> = opts
        .server_wrap
        .as_deref()
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut command = match wrap.split_first() {
        Some((program, wrap_args)) => {
            let mut c = Command::new(program);
            c.args(wrap_args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting server child: {e}"))?;
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take().map(BufReader::new);
    let mut line = String::new();
    if let Some(out) = stdout.as_mut() {
        out.read_line(&mut line).map_err(|e| e.to_string())?;
    }
    let mut w = line.split_whitespace();
    let (Some("READY"), Some(addr), Some(pin)) = (w.next(), w.next(), w.next()) else {
        return Err(format!("server child said {line:?}"));
    };
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok((
        Control {
            child: Some(child),
            stdin,
            stdout,
        },
        addr,
        pin.to_string(),
    ))
}

/// A client endpoint on its own UDP socket with storm-sized buffers.
fn client_endpoint() -> Result<quinn::Endpoint, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let socket =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into()).map_err(|e| e.to_string())?;
    DeviceClient::endpoint_on(socket.into()).map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rec(seq: u32) -> PositionRecord {
    PositionRecord::from_degrees(
        seq,
        now_ms(),
        52.0 + f64::from(seq) * 1e-6,
        5.0,
        Some(3.0),
        Some(8.0),
        Some(90.0),
        Some(4.0),
    )
}

/// Phases of a run, for attributing latency samples.
const PHASES: [&str; 4] = ["before", "storm", "settled", "blip"];

/// Measurements shared by the device tasks.
#[derive(Default)]
struct Meas {
    /// Current phase index into [`PHASES`].
    phase: AtomicUsize,
    /// Live-fix push→ack latency samples (ms) per phase.
    latency: Mutex<[Vec<f64>; 4]>,
    /// Per device: instants at which it became connected.
    connects: Mutex<HashMap<usize, Vec<Instant>>>,
    /// Connects recorded so far (all devices), so waiting for a blip's reconnects scans
    /// `connects` only once enough have happened (a scan of 10,000 devices every 20 ms cost this
    /// process ~0.5 CPU-s per blip and held the lock the device tasks record under).
    connect_events: AtomicUsize,
    /// Fixes pushed (all devices).
    pushed: AtomicU64,
    /// Pushes that failed (buffer full).
    push_failed: AtomicU64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "n={} p50={:.1} p99={:.1} max={:.1}",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

/// Runs one device: records connects, pushes a fix every `interval`, measures acks of live ones.
async fn device_task(
    i: usize,
    client: Arc<DeviceClient>,
    meas: Arc<Meas>,
    interval: Duration,
    live: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut connected = client.subscribe_connected();
    let mut acked = client.subscribe_acked();
    let mut stop = stop;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut in_flight: VecDeque<(u32, Instant, usize)> = VecDeque::new();
    if *connected.borrow_and_update() {
        record_connect(&meas, i);
    }
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = connected.changed() => {
                if r.is_err() { break; }
                if *connected.borrow_and_update() {
                    record_connect(&meas, i);
                }
            }
            // Only the live cohort measures acks; a storm device would only be woken for nothing.
            r = acked.changed(), if live => {
                if r.is_err() { break; }
                let a = *acked.borrow_and_update();
                let now = Instant::now();
                while let Some(&(seq, at, phase)) = in_flight.front() {
                    if seq > a { break; }
                    in_flight.pop_front();
                    if let Ok(mut l) = meas.latency.lock() {
                        l[phase].push(now.duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
            }
            _ = tick.tick() => {
                // Storm devices send only once connected (a phone starts tracking at the gun).
                if !live && !*connected.borrow() {
                    continue;
                }
                let seq = client.next_seq();
                match client.push(rec(seq)) {
                    Ok(()) => {
                        meas.pushed.fetch_add(1, Ordering::Relaxed);
                        // Only fixes sent live (connected) measure live latency.
                        if live && *connected.borrow() {
                            in_flight.push_back((seq, Instant::now(), meas.phase.load(Ordering::Relaxed)));
                        }
                    }
                    Err(_) => {
                        meas.push_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn record_connect(meas: &Meas, i: usize) {
    if let Ok(mut c) = meas.connects.lock() {
        c.entry(i).or_default().push(Instant::now());
    }
    meas.connect_events.fetch_add(1, Ordering::Relaxed);
}

/// Seconds from `since` to each device's first connect at or after `since` (devices in `range`).
fn connect_times(meas: &Meas, range: std::ops::Range<usize>, since: Instant) -> Vec<f64> {
    let c = meas.connects.lock().unwrap_or_else(|p| p.into_inner());
    range
        .filter_map(|i| {
            c.get(&i)
                .and_then(|v| v.iter().find(|t| **t >= since))
                .map(|t| t.duration_since(since).as_secs_f64())
        })
        .collect()
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Devices `range` of one kind on the shared `endpoints`, each with its pushing task.
struct Cohort<'a> {
    /// Engine address.
    addr: SocketAddr,
    /// Certificate pin.
    pin: &'a str,
    /// Run options (TLS mode, intervals).
    opts: &'a Opts,
    /// Client endpoints the devices share, round robin.
    endpoints: &'a [quinn::Endpoint],
    /// Where the device tasks record.
    meas: &'a Arc<Meas>,
    /// Stops the device tasks.
    stop: &'a tokio::sync::watch::Receiver<bool>,
}

impl Cohort<'_> {
    /// Starts devices `range` (`live`: connected before the storm, measured), appending their
    /// clients and tasks.
    fn start(
        &self,
        range: std::ops::Range<usize>,
        live: bool,
        clients: &mut Vec<Arc<DeviceClient>>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), String> {
        let interval = Duration::from_millis(if live {
            self.opts.live_interval_ms
        } else {
            self.opts.storm_interval_ms
        });
        for i in range {
            let config = ClientConfig {
                server: self.addr,
                server_name: "localhost".into(),
                pin: CertPin::Sha256(self.pin.to_string()),
                token: token(i),
                connect_timeout: Duration::from_secs(10),
                zero_rtt: self.opts.tls == "0rtt",
                ..ClientConfig::default()
            };
            let endpoint = self.endpoints[i % self.endpoints.len()].clone();
            let c = Arc::new(DeviceClient::spawn_on(config, endpoint).map_err(|e| e.to_string())?);
            tasks.push(tokio::spawn(device_task(
                i,
                c.clone(),
                self.meas.clone(),
                interval,
                live,
                self.stop.clone(),
            )));
            clients.push(c);
        }
        Ok(())
    }
}

/// `--role live`: the live cohort alone, in its own process. Prints `LIVE CONNECTED` once all
/// are up, then obeys stdin: `phase N` (attribute new samples to phase N; phase 3 starts the blip
/// clock), `stop` (stop pushing, flush, print `LIVE_REPORT {json}` and exit).
async fn live_role(opts: Opts) -> Result<(), String> {
    let addr = opts.server.ok_or("--role live needs --server")?;
    let pin = opts.pin.clone().ok_or("--role live needs --pin")?;
    let endpoints = [client_endpoint()?];
    let meas = Arc::new(Meas::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    let cohort = Cohort {
        addr,
        pin: &pin,
        opts: &opts,
        endpoints: &endpoints,
        meas: &meas,
        stop: &stop_rx,
    };
    cohort.start(0..opts.live, true, &mut clients, &mut tasks)?;
    if !wait_until(Duration::from_secs(60), || {
        meas.connects.lock().map(|c| c.len()).unwrap_or(0) >= opts.live
    })
    .await
    {
        return Err("live cohort did not connect".into());
    }
    println!("LIVE CONNECTED");
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut blip_at = None;
    while let Some(line) = lines.recv().await {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["phase", n] => {
                let n: usize = n.parse().map_err(|e| format!("phase {n}: {e}"))?;
                if n == 3 {
                    blip_at = Some(Instant::now());
                }
                meas.phase.store(n.min(PHASES.len() - 1), Ordering::Relaxed);
            }
            ["stop"] => break,
            _ => {}
        }
    }
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    let mut unacked = 0usize;
    for c in &clients {
        if let Err(e) = c.flush(Duration::from_secs(60)).await {
            unacked += match e {
                flevum_protocol::client::ClientError::Timeout { pending } => pending,
                _ => 1,
            };
        }
    }
    let back_s = blip_at.map(|tb| {
        let t = connect_times(&meas, 0..opts.live, tb);
        (t.len(), t.into_iter().fold(0.0, f64::max))
    });
    let lat = meas.latency.lock().map(|l| l.clone()).unwrap_or_default();
    let report = serde_json::json!({
        "latency_ms": PHASES.iter().zip(lat).map(|(n, v)| (n.to_string(), v)).collect::<HashMap<_, _>>(),
        "pushed": meas.pushed.load(Ordering::Relaxed),
        "unacked": unacked,
        "fast_resends": clients.iter().map(|c| c.fast_resends()).sum::<u64>(),
        "blip_back": back_s.map(|(n, s)| serde_json::json!({"devices": n, "last_s": s})),
        "cpu_s": cpu_seconds(),
    });
    println!("LIVE_REPORT {report}");
    for ep in endpoints {
        ep.close(0u32.into(), b"done");
    }
    Ok(())
}

/// The live cohort's child process (`--live-process`).
struct LiveChild {
    /// The process.
    child: Child,
    /// Its stdin (phase changes, stop).
    stdin: ChildStdin,
    /// Its stdout (`LIVE CONNECTED`, `LIVE_REPORT`).
    stdout: BufReader<ChildStdout>,
}

impl LiveChild {
    fn spawn(opts: &Opts, addr: SocketAddr, pin: &str) -> Result<LiveChild, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args([
                "--role",
                "live",
                "--server",
                &addr.to_string(),
                "--pin",
                pin,
            ])
            .args(["--live", &opts.live.to_string()])
            .args(["--live-interval-ms", &opts.live_interval_ms.to_string()])
            .args(["--tls", &opts.tls])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the live child: {e}"))?;
        let stdin = child.stdin.take().ok_or("live child has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("live child has no stdout")?);
        let mut live = LiveChild {
            child,
            stdin,
            stdout,
        };
        live.read_until("LIVE CONNECTED")?;
        Ok(live)
    }

    fn read_until(&mut self, prefix: &str) -> Result<String, String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self
                .stdout
                .read_line(&mut line)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("live child ended".into());
            }
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    fn phase(&mut self, n: usize) {
        let _ = writeln!(self.stdin, "phase {n}");
        let _ = self.stdin.flush();
    }

    fn finish(mut self) -> Result<serde_json::Value, String> {
        writeln!(self.stdin, "stop").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let report = self.read_until("LIVE_REPORT")?;
        let _ = self.child.wait();
        serde_json::from_str(&report).map_err(|e| format!("live report: {e}"))
    }
}

async fn storm_role(opts: Opts) -> Result<(), String> {
    let (mut control, addr, pin) = if opts.role == "clients" {
        let addr = opts.server.ok_or("--role clients needs --server")?;
        let pin = opts.pin.clone().ok_or("--role clients needs --pin")?;
        (
            Control {
                child: None,
                stdin: None,
                stdout: None,
            },
            addr,
            pin,
        )
    } else {
        spawn_server(&opts)?
    };
    println!(
        "# ingest_storm: {} storm devices, {} live devices (fix every {} ms), {} client endpoints, sink delay {} ms, TLS sessions {}, {}",
        opts.devices,
        opts.live,
        opts.live_interval_ms,
        opts.endpoints,
        opts.sink_delay_ms,
        opts.tls,
        if opts.baseline {
            "BASELINE (no admission control)"
        } else {
            "tuned"
        }
    );
    let endpoints: Vec<quinn::Endpoint> = (0..opts.endpoints)
        .map(|_| client_endpoint())
        .collect::<Result<_, _>>()?;
    let meas = Arc::new(Meas::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients: Vec<Arc<DeviceClient>> = Vec::new();
    let mut tasks = Vec::new();
    let mut live_child = if opts.live_process && opts.live > 0 {
        Some(LiveChild::spawn(&opts, addr, &pin)?)
    } else {
        None
    };
    // The devices this process runs (the live cohort lives in the child with `--live-process`).
    let first_here = if live_child.is_some() { opts.live } else { 0 };
    let cohort = Cohort {
        addr,
        pin: &pin,
        opts: &opts,
        endpoints: &endpoints,
        meas: &meas,
        stop: &stop_rx,
    };
    // Live cohort, connected before the storm.
    cohort.start(first_here..opts.live, true, &mut clients, &mut tasks)?;
    let live_ok = wait_until(Duration::from_secs(60), || {
        meas.connects.lock().map(|c| c.len()).unwrap_or(0) >= opts.live - first_here
    })
    .await;
    if !live_ok {
        return Err("live cohort did not connect".into());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pre_stats = control.stats();

    // The storm: every device at once.
    meas.phase.store(1, Ordering::Relaxed);
    if let Some(l) = live_child.as_mut() {
        l.phase(1);
    }
    let t0 = Instant::now();
    cohort.start(
        opts.live..opts.live + opts.devices,
        false,
        &mut clients,
        &mut tasks,
    )?;
    let spawned = t0.elapsed().as_secs_f64();
    let total = opts.live + opts.devices;
    let all = wait_until(Duration::from_secs(90), || {
        meas.connects.lock().map(|c| c.len()).unwrap_or(0) >= total - first_here
    })
    .await;
    let storm_s = t0.elapsed().as_secs_f64();
    meas.phase.store(2, Ordering::Relaxed);
    if let Some(l) = live_child.as_mut() {
        l.phase(2);
    }
    let mut hs = connect_times(&meas, opts.live..total, t0);
    hs.sort_by(|a, b| a.total_cmp(b));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let storm_stats = control.stats();
    println!(
        "storm: {}/{} connected in {:.2} s{} (spawning took {:.2} s); handshake s p50={:.2} p99={:.2} max={:.2}",
        hs.len(),
        opts.devices,
        storm_s,
        if all { "" } else { " (TIMED OUT)" },
        spawned,
        pct(&hs, 0.5),
        pct(&hs, 0.99),
        hs.last().copied().unwrap_or(f64::NAN)
    );
    println!("server after storm: {storm_stats}");

    if opts.blip {
        meas.phase.store(3, Ordering::Relaxed);
        if let Some(l) = live_child.as_mut() {
            l.phase(3);
        }
        let events_before = meas.connect_events.load(Ordering::Relaxed);
        let tb = Instant::now();
        let cmd = if opts.blip_restart { "blip" } else { "drop" };
        let down = control.command(cmd, "BLIPPED")?;
        let back = wait_until(Duration::from_secs(90), || {
            // Every device back means at least that many connects since the blip.
            meas.connect_events.load(Ordering::Relaxed) - events_before >= total - first_here
                && connect_times(&meas, first_here..total, tb).len() >= total - first_here
        })
        .await;
        let back_s = tb.elapsed().as_secs_f64();
        let mut rt = connect_times(&meas, first_here..total, tb);
        rt.sort_by(|a, b| a.total_cmp(b));
        println!(
            "blip ({cmd}): {down} ms; {}/{} back in {:.2} s{}; reconnect s p50={:.2} p99={:.2} max={:.2}",
            rt.len(),
            total - first_here,
            back_s,
            if back { "" } else { " (TIMED OUT)" },
            pct(&rt, 0.5),
            pct(&rt, 0.99),
            rt.last().copied().unwrap_or(f64::NAN)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("server after blip: {}", control.stats());
    }

    // Stop pushing, then everything pushed must be acknowledged.
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    let mut unacked = 0usize;
    let flushes: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move { c.flush(Duration::from_secs(60)).await })
        })
        .collect();
    for f in flushes {
        if let Ok(Err(e)) = f.await {
            unacked += match e {
                flevum_protocol::client::ClientError::Timeout { pending } => pending,
                _ => 1,
            };
        }
    }
    let final_stats = control.stats();
    println!("client process CPU {:.1} s", cpu_seconds());
    let (accepted, rejected) = clients.iter().fold((0, 0), |(a, r), c| {
        let n = c.zero_rtt_counts();
        (a + n.accepted, r + n.rejected)
    });
    println!("client 0-RTT: accepted on {accepted} connections, refused on {rejected}");
    let lat = meas.latency.lock().map(|l| l.clone()).unwrap_or_default();
    let mut live_pushed = 0;
    if let Some(l) = live_child.take() {
        let report = l.finish()?;
        live_pushed = report["pushed"].as_u64().unwrap_or(0);
        unacked += report["unacked"].as_u64().unwrap_or(0) as usize;
        for name in PHASES {
            let v: Vec<f64> = report["latency_ms"][name]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default();
            println!("live send→ack ms [{name}] (own process): {}", summary(v));
        }
        println!(
            "live process: pushed {}, unacknowledged after flush {}, fast resends {}, blip back {}, CPU {:.1} s",
            report["pushed"],
            report["unacked"],
            report["fast_resends"],
            report["blip_back"],
            report["cpu_s"].as_f64().unwrap_or(f64::NAN)
        );
    } else {
        for (name, v) in PHASES.iter().zip(lat) {
            println!("live send→ack ms [{name}]: {}", summary(v));
        }
    }
    let pushed = meas.pushed.load(Ordering::Relaxed) + live_pushed;
    println!(
        "fixes: pushed {pushed}, push failures {}, unacknowledged after flush {unacked}, server stored {} duplicates {}",
        meas.push_failed.load(Ordering::Relaxed),
        final_stats["records"],
        final_stats["duplicates"]
    );
    let get = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let lost = get(&storm_stats, "live_backfill").saturating_sub(get(&pre_stats, "live_backfill"));
    let live_total =
        lost + get(&storm_stats, "live_datagram").saturating_sub(get(&pre_stats, "live_datagram"));
    println!(
        "live datagram loss storm→settled: {lost} of {live_total} live fixes arrived only as backfill ({:.2} %)",
        100.0 * lost as f64 / live_total.max(1) as f64
    );
    let _ = control.command("quit", "NEVER");
    if let Some(mut child) = control.child.take() {
        let _ = child.wait();
    }
    for ep in endpoints {
        ep.close(0u32.into(), b"done");
    }
    Ok(())
}
