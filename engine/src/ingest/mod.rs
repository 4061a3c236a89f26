//! The QUIC ingest: devices connect, authenticate with a token, stream fixes, get durable acks.
//!
//! Owns the endpoint (quinn + rustls/ring, ALPN `flevum/1`), the per-connection tasks, record
//! validation, per-device rate limits and contiguous acks. Does not journal or apply records: it
//! hands them to an [`IngestSink`] and acknowledges what the sink made durable.

pub mod admission;
pub mod metrics;
pub mod rate;
pub mod resumption;
pub mod seq_tracker;
pub mod shard_sink;
pub mod sink;
pub mod tls;
pub mod tokens;

mod connection;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flevum_protocol::RecordLimits;
use quinn::crypto::rustls::QuicServerConfig;
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

pub use seq_tracker::{SeqStatus, SeqTracker};
pub use shard_sink::ShardSink;
pub use sink::{IngestSink, SubmitError, SubmitFuture};
pub use tls::{TlsConfig, fingerprint, write_self_signed};
pub use tokens::{DeviceGrant, TokenInfo, TokenLease, TokenStore};

/// Configuration of the QUIC ingest endpoint.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// UDP address to listen on (port 0 picks a free port, see [`IngestServer::local_addr`]).
    pub listen: SocketAddr,
    /// Certificate source.
    pub tls: TlsConfig,
    /// Open device connections above which new handshakes are refused with `Overloaded`.
    pub max_connections: usize,
    /// Sustained records per second a device may submit (token bucket refill).
    pub device_rate_per_s: f64,
    /// Records a device may submit at once (token bucket size), sized for a backlog upload.
    pub device_burst: f64,
    /// QUIC keep-alive interval, so NAT bindings of phones stay open.
    pub keep_alive: Duration,
    /// QUIC idle timeout; long enough for phones on mobile networks that lose coverage briefly.
    pub idle_timeout: Duration,
    /// Time a device has to complete the QUIC handshake, and then to open its handshake stream
    /// and send `Hello` (each); bounds how long an abandoned attempt holds an admission slot.
    pub handshake_timeout: Duration,
    /// Validation limits applied to every record.
    pub record_limits: RecordLimits,
    /// Requested kernel receive buffer of the UDP socket (capped by the OS, e.g. `rmem_max`).
    pub socket_receive_buffer: usize,
    /// Bytes of received datagrams buffered per connection before quinn drops new ones.
    pub datagram_receive_buffer: usize,
    /// Concurrent unidirectional (backlog) streams a device may open.
    pub max_uni_streams: u32,
    /// Batches queued per device between the readers and the sink (bounded memory per device;
    /// full → datagrams are dropped unacked and streams get back-pressure).
    pub device_queue: usize,
    /// How far above its ack a device's sequence numbers are tracked; bounds tracker memory.
    pub seq_window: u32,
    /// `retry_after_ms` sent in an `Overloaded` refusal.
    pub overload_retry_after_ms: u32,
    /// How long `run` waits for connection tasks after shutdown before aborting them.
    pub shutdown_grace: Duration,
    /// Requested kernel send buffer of the UDP socket (a storm's handshake answers leave in a
    /// burst); capped by the OS (`wmem_max`), the effective size is logged and exported; 0 leaves
    /// the kernel default.
    pub socket_send_buffer: usize,
    /// Admission control: new QUIC handshakes started per second (token bucket refill); 0 turns
    /// admission control off (every connection attempt is handshaken at once).
    pub handshake_rate_per_s: f64,
    /// Admission control: handshakes that may start at once (token bucket size).
    pub handshake_burst: f64,
    /// Admission control: connection attempts that wait for a handshake token; quinn keeps
    /// buffering their retransmitted Initials meanwhile, so waiting costs the device a short delay,
    /// not a lost handshake. Beyond this the attempt is refused at the QUIC level
    /// (`CONNECTION_REFUSED`, no TLS work) and the device retries after a jittered back-off.
    pub handshake_queue: usize,
    /// Admission control: most handshakes in progress at once (QUIC + TLS + `Hello`/`Welcome`);
    /// adapts the start rate to what the CPU finishes, so started handshakes stay short and
    /// devices do not give up on them. 0 = no cap. Too many at once overflow the UDP receive
    /// buffer while quinn runs each accept under its endpoint lock: with 10,000 devices at once
    /// (`bench/STORM_LIVE.md`) 256 dropped 1,600–4,600 datagrams and took 6.3–11.2 s, 128 dropped
    /// none and took 5.3–5.4 s, with live fixes' p99 at 46 ms instead of 125–317 ms.
    pub handshake_max_inflight: usize,
    /// Admission control: longest wait in the queue; older attempts are refused (cheaply) and
    /// the device retries after its jittered back-off, instead of being handshaken after it gave up.
    pub handshake_queue_wait: Duration,
    /// TLS 1.3 sessions remembered for resumption (single use; [`tls::TICKETS_PER_CONNECTION`]
    /// tickets are issued per connection and orphans wait for FIFO eviction, so size it at about 4
    /// per device: 65,536 ≈ 16,000 devices, a few hundred bytes each); a reconnecting device then skips the certificate
    /// signature and its verification, and may send 0-RTT data. 0 turns resumption off. Sessions
    /// live in memory: a restarted engine starts with none (devices then do a full handshake).
    pub tls_session_cache: usize,
    /// Accept 0-RTT data from devices resuming a session (needs `tls_session_cache` > 0): their
    /// `Hello` and buffered fixes arrive with the first flight. Until the handshake is confirmed
    /// such a connection may be a replay, so it may only authenticate and submit position
    /// records (deduplicated by sequence); acks and replacing the device's older connection
    /// wait for the confirmed handshake.
    pub zero_rtt: bool,
    /// quinn `ServerConfig::max_incoming`: connection attempts quinn holds before refusing by
    /// itself; above `handshake_queue` + `handshake_burst` so our admission decides first.
    pub max_incoming: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            tls: TlsConfig::default(),
            max_connections: 20_000,
            device_rate_per_s: 20.0,
            device_burst: 4_000.0,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(5),
            record_limits: RecordLimits::default(),
            socket_receive_buffer: 4 * 1024 * 1024,
            datagram_receive_buffer: 256 * 1024,
            max_uni_streams: 4,
            device_queue: 64,
            seq_window: 1 << 20,
            overload_retry_after_ms: 5_000,
            shutdown_grace: Duration::from_secs(3),
            socket_send_buffer: 4 * 1024 * 1024,
            handshake_rate_per_s: 2_000.0,
            handshake_burst: 500.0,
            handshake_queue: 16_000,
            max_incoming: 20_000,
            tls_session_cache: 65_536,
            zero_rtt: true,
            handshake_max_inflight: 128,
            handshake_queue_wait: Duration::from_secs(8),
        }
    }
}

/// Errors of the ingest endpoint itself (not of single devices, which are counted and logged).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Certificate generation or loading, or rustls configuration, failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A configuration value is unusable.
    #[error("invalid ingest config: {0}")]
    Config(String),
    /// Binding or file IO failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Effective kernel buffer sizes of the ingest's UDP socket, as read back after asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBuffers {
    /// Receive buffer asked for.
    pub recv_requested: usize,
    /// Receive buffer the kernel granted (Linux reports twice the usable size; capped by
    /// `net.core.rmem_max`).
    pub recv_effective: usize,
    /// Send buffer asked for.
    pub send_requested: usize,
    /// Send buffer the kernel granted (capped by `net.core.wmem_max`).
    pub send_effective: usize,
}

/// Binds the UDP socket with large buffers, so a burst of connection attempts (a start line of
/// phones) is queued rather than dropped by the kernel; reads back what the kernel granted.
fn bind_socket(
    addr: SocketAddr,
    recv_buffer: usize,
    send_buffer: usize,
) -> Result<(std::net::UdpSocket, SocketBuffers), IngestError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |what: &str, e| IngestError::Io {
        what: format!("{what} {addr}"),
        source: e,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| io("creating UDP socket for", e))?;
    if addr.is_ipv6() {
        // Dual-stack where the OS allows it; failure leaves IPv6 only, which is still usable.
        let _ = socket.set_only_v6(false);
    }
    if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
        warn!("could not set UDP receive buffer to {recv_buffer} bytes: {e}");
    }
    // 0 = leave the kernel default.
    if send_buffer > 0
        && let Err(e) = socket.set_send_buffer_size(send_buffer)
    {
        warn!("could not set UDP send buffer to {send_buffer} bytes: {e}");
    }
    let buffers = SocketBuffers {
        recv_requested: recv_buffer,
        recv_effective: socket.recv_buffer_size().unwrap_or(0),
        send_requested: send_buffer,
        send_effective: socket.send_buffer_size().unwrap_or(0),
    };
    // Linux doubles the value it grants (bookkeeping overhead), so below the request = capped.
    if buffers.recv_effective < recv_buffer {
        warn!(
            requested = recv_buffer,
            effective = buffers.recv_effective,
            "kernel capped the UDP receive buffer (raise net.core.rmem_max)"
        );
    }
    if buffers.send_effective < send_buffer {
        warn!(
            requested = send_buffer,
            effective = buffers.send_effective,
            "kernel capped the UDP send buffer (raise net.core.wmem_max)"
        );
    }
    ::metrics::gauge!(metrics::SOCKET_RECV_BUFFER_BYTES).set(buffers.recv_effective as f64);
    ::metrics::gauge!(metrics::SOCKET_SEND_BUFFER_BYTES).set(buffers.send_effective as f64);
    socket
        .bind(&addr.into())
        .map_err(|e| io("binding QUIC endpoint on", e))?;
    Ok((socket.into(), buffers))
}

/// The running QUIC ingest endpoint.
pub struct IngestServer {
    /// The quinn endpoint (owns the UDP socket).
    endpoint: quinn::Endpoint,
    /// Actual bound address.
    local_addr: SocketAddr,
    /// sha256 hex of the leaf certificate.
    fingerprint: String,
    /// State shared with the connection tasks.
    shared: Arc<connection::Shared>,
    /// What the kernel granted for the socket buffers.
    buffers: SocketBuffers,
    /// Admission and handshake counters, shared with whoever asked for [`IngestServer::stats`].
    stats: Arc<IngestStats>,
}

/// Acts on the connections of a running [`IngestServer`] (cloneable, for operators and tests).
#[derive(Clone)]
pub struct IngestControl {
    /// The server's connection state.
    shared: Arc<connection::Shared>,
}

impl std::fmt::Debug for IngestControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestControl").finish_non_exhaustive()
    }
}

impl IngestControl {
    /// Closes every device connection (a "blip"); devices reconnect with back-off and resend
    /// what is unacknowledged. Returns how many connections were closed.
    pub fn disconnect_all(&self) -> usize {
        self.shared.disconnect_all(b"disconnected by operator")
    }
}

/// Counters of the endpoint's admission control, readable while it runs (load tests, health).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Connection attempts handed to the TLS handshake.
    pub admitted: AtomicU64,
    /// Connection attempts that had to wait for a handshake token.
    pub queued: AtomicU64,
    /// Connection attempts refused at the QUIC level (admission queue full or far over the
    /// connection limit).
    pub refused: AtomicU64,
    /// Longest admission queue seen.
    pub queue_max: AtomicU64,
    /// Device handshakes answered with `Welcome`.
    pub welcomed: AtomicU64,
    /// TLS handshakes resumed from a session ticket (no certificate signature).
    pub tls_resumed: AtomicU64,
    /// Connections whose 0-RTT data was accepted.
    pub zero_rtt_accepted: AtomicU64,
    /// Connections that presented a session ticket and got no 0-RTT (ticket unknown, e.g. from
    /// before a restart, or already used; or early data not allowed): their 0-RTT data, if any,
    /// was discarded and the device resent it after the handshake.
    pub zero_rtt_rejected: AtomicU64,
}

impl std::fmt::Debug for IngestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestServer")
            .field("local_addr", &self.local_addr)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl IngestServer {
    /// Builds the TLS config and binds the UDP socket. Must be called inside a tokio runtime.
    pub fn bind(
        config: IngestConfig,
        tokens: Arc<TokenStore>,
        sink: Arc<dyn IngestSink>,
    ) -> Result<IngestServer, IngestError> {
        let material = tls::TlsMaterial::load(&config.tls)?;
        let fingerprint = material.fingerprint();
        let rustls_cfg = material.server_config(config.tls_session_cache, config.zero_rtt)?;
        let quic_crypto = resumption::ObservedServerConfig::new(
            QuicServerConfig::try_from(rustls_cfg)
                .map_err(|e| IngestError::Tls(format!("QUIC crypto: {e}")))?,
        );
        let mut transport = quinn::TransportConfig::default();
        // Devices send a few hundred bytes per second: small per-connection windows keep the
        // memory of 10,000 connections bounded without limiting a backlog upload (64 KiB
        // batches, a few in flight).
        transport
            .receive_window(quinn::VarInt::from_u32(1024 * 1024))
            .stream_receive_window(quinn::VarInt::from_u32(256 * 1024))
            .send_window(256 * 1024)
            // Fixes are 32-byte records: path-MTU probing buys nothing and costs a few packets
            // per connection, times 10,000 at a mass start.
            .mtu_discovery_config(None)
            .keep_alive_interval(Some(config.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(config.idle_timeout)
                    .map_err(|e| IngestError::Config(format!("idle_timeout: {e}")))?,
            ))
            .datagram_receive_buffer_size(Some(config.datagram_receive_buffer))
            .max_concurrent_bidi_streams(1u32.into())
            .max_concurrent_uni_streams(config.max_uni_streams.into());
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        server_config.transport_config(Arc::new(transport));
        server_config
            .migration(true)
            .max_incoming(config.max_incoming.max(1));
        let stats = Arc::new(IngestStats::default());
        let (socket, buffers) = bind_socket(
            config.listen,
            config.socket_receive_buffer,
            config.socket_send_buffer,
        )?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            IngestError::Config("no async runtime (call bind inside tokio)".into())
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(|e| IngestError::Io {
            what: format!("starting QUIC endpoint on {}", config.listen),
            source: e,
        })?;
        let local_addr = endpoint.local_addr().map_err(|e| IngestError::Io {
            what: "reading local address".into(),
            source: e,
        })?;
        info!(
            %local_addr,
            %fingerprint,
            recv_buffer = buffers.recv_effective,
            send_buffer = buffers.send_effective,
            "ingest endpoint bound"
        );
        Ok(IngestServer {
            endpoint,
            local_addr,
            fingerprint,
            shared: Arc::new(connection::Shared::new(config, tokens, sink, stats.clone())),
            buffers,
            stats,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// sha256 hex of the leaf certificate, for clients to pin.
    pub fn cert_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The socket buffer sizes asked for and granted by the kernel.
    pub fn socket_buffers(&self) -> SocketBuffers {
        self.buffers
    }

    /// A handle to act on the running endpoint's connections (usable after `run` took `self`).
    pub fn control(&self) -> IngestControl {
        IngestControl {
            shared: self.shared.clone(),
        }
    }

    /// Admission counters of this endpoint (live while `run` runs).
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// Accepts connections until `shutdown` resolves, then closes the endpoint, waits up to
    /// `shutdown_grace` for connection tasks (they finish the submit in flight) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), IngestError> {
        let mut tasks = JoinSet::new();
        let next_id = AtomicU64::new(1);
        let cfg = &self.shared.config;
        let mut admission = admission::Admission::new(
            cfg.handshake_rate_per_s,
            cfg.handshake_burst,
            cfg.handshake_queue,
            Instant::now(),
        );
        let spawn = |tasks: &mut JoinSet<()>, incoming: quinn::Incoming| {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!(
                "ingest_conn",
                conn = id,
                remote = %incoming.remote_address(),
                device = tracing::field::Empty,
            );
            self.stats.admitted.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(metrics::ADMISSION_TOTAL, metrics::LABEL_OUTCOME => "admitted")
                .increment(1);
            let shared = self.shared.clone();
            shared.begin_handshake();
            tasks.spawn(connection::handle(shared, incoming, id).instrument(span));
        };
        tokio::pin!(shutdown);
        let free_slots = || {
            let cap = cfg.handshake_max_inflight;
            if cap == 0 {
                usize::MAX
            } else {
                cap.saturating_sub(self.shared.handshakes_in_flight())
            }
        };
        loop {
            let now = Instant::now();
            for incoming in admission.expire(now, cfg.handshake_queue_wait) {
                self.refuse(incoming);
            }
            // Start the waiting handshakes the bucket and the in-flight cap allow.
            for incoming in admission.release(now, free_slots()) {
                spawn(&mut tasks, incoming);
            }
            ::metrics::gauge!(metrics::ADMISSION_QUEUE).set(admission.waiting() as f64);
            let wake = admission.next_release(now);
            let slot_freed = self.shared.handshake_done.notified();
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600))), if wake.is_some() => {}
                () = slot_freed, if admission.waiting() > 0 => {}
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    if self.shared.open_connections() >= cfg.max_connections.saturating_mul(2) {
                        // Far over the limit: do not even spend a TLS handshake.
                        self.refuse(incoming);
                        continue;
                    }
                    match admission.offer(incoming, Instant::now(), free_slots()) {
                        admission::Offer::Admit(incoming) => spawn(&mut tasks, incoming),
                        admission::Offer::Queued(len) => {
                            self.stats.queued.fetch_add(1, Ordering::Relaxed);
                            self.stats.queue_max.fetch_max(len as u64, Ordering::Relaxed);
                            ::metrics::counter!(metrics::ADMISSION_TOTAL, metrics::LABEL_OUTCOME => "queued")
                                .increment(1);
                            ::metrics::gauge!(metrics::ADMISSION_QUEUE).set(len as f64);
                        }
                        admission::Offer::Refuse(incoming) => self.refuse(incoming),
                    }
                }
                Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = res
                        && e.is_panic()
                    {
                        warn!("ingest connection task panicked: {e}");
                    }
                }
            }
        }
        for incoming in admission.drain() {
            incoming.refuse();
        }
        info!("ingest shutting down");
        self.endpoint.close(0u32.into(), b"server shutdown");
        let grace = self.shared.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        self.shared.forget_connections();
        let waited = Instant::now();
        let idle = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
        info!(
            idle = idle.is_ok(),
            waited_ms = waited.elapsed().as_millis() as u64,
            "ingest endpoint closed"
        );
        Ok(())
    }

    /// Refuses a connection attempt at the QUIC level: one small packet, no TLS work.
    fn refuse(&self, incoming: quinn::Incoming) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::ADMISSION_TOTAL, metrics::LABEL_OUTCOME => "refused")
            .increment(1);
        incoming.refuse();
    }
}
