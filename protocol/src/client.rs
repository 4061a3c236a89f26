//! The device client: connects to the engine over QUIC, authenticates, streams fixes, backfills.
//!
//! Owns the device side of the wire: the offline buffer (a fix is dropped only once acknowledged),
//! live datagrams while connected, backlog batches on unidirectional streams, reconnects with
//! jittered exponential back-off, and certificate pinning. Does not produce fixes (the app pushes
//! them) and does not judge them beyond sequence order.

mod buffer;
mod pin;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use buffer::OfflineBuffer;
pub use pin::{CertPin, crypto_provider, quic_client_config, rustls_config};
/// The QUIC endpoint type [`DeviceClient::spawn_on`] takes, re-exported so callers need not
/// depend on the same quinn version themselves.
pub use quinn::Endpoint;

use crate::codec::encode_datagram;
use crate::handshake::Refusal;
use crate::record::PositionRecord;

/// Application close code of a connection the device cut on purpose ([`DeviceClient::cut_connection`]);
/// beside the connection task's own codes 0 (client closed, refused) and 1 (protocol error).
pub const CLOSE_CODE_CUT: u32 = 2;

/// Configuration of a [`DeviceClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Engine ingest address.
    pub server: SocketAddr,
    /// TLS server name sent in SNI (the pin, not the name, decides trust).
    pub server_name: String,
    /// The engine's certificate pin.
    pub pin: CertPin,
    /// The device token issued by the organiser.
    pub token: String,
    /// File that keeps unacknowledged fixes across app restarts; `None` = memory only.
    pub buffer_path: Option<PathBuf>,
    /// Most unacknowledged fixes kept; `push` fails beyond (nothing is dropped silently).
    pub buffer_capacity: usize,
    /// Longest wait before an unacknowledged record is resent on a backlog stream. The wait
    /// itself follows the measured ack round trip (smoothed round trip + 4 deviations, one
    /// second before the first ack) and doubles with each resend of the same record, up to
    /// this.
    pub resend_after: Duration,
    /// Shortest wait before a resend, whatever the round trip. A record the engine's acks show
    /// missing (an ack that does not move while later records arrived) is resent at once.
    pub min_resend_after: Duration,
    /// Records per backlog `Batch` message (32 B each; the message limit is 64 KiB).
    pub backfill_batch: usize,
    /// Only the oldest this many unacknowledged records are (re)sent as backlog until acks move
    /// on, so a rate-limited engine is not sent the whole backlog again at every resend.
    pub max_in_flight: usize,
    /// How often the connection task looks for records to backfill while any fix is
    /// unacknowledged (a push, an ack showing a gap or a resend deadline wakes it at once; with
    /// nothing unacknowledged it sleeps until one of those).
    pub backfill_tick: Duration,
    /// Send live fixes as datagrams when connected (otherwise only through backfill).
    pub live_datagrams: bool,
    /// Time allowed for QUIC + TLS + `Hello`/`Welcome`.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`, with ±50 % jitter.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// QUIC keep-alive, keeps mobile NAT bindings alive.
    pub keep_alive: Duration,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Least delay before retrying after the engine refused the connection at the QUIC level
    /// (`CONNECTION_REFUSED`: its admission control is full and sends no `retry_after_ms`);
    /// jittered ±50 % and raised to the current exponential back-off when that is longer.
    pub refused_retry_after: Duration,
    /// On a reconnect with a TLS session ticket from the engine, send `Hello` and the buffered
    /// fixes as 0-RTT data with the first flight (one round trip less; the engine accepts only
    /// idempotent position records that way and acknowledges them after the handshake). Off =
    /// resumption without early data.
    pub zero_rtt: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: SocketAddr::from(([127, 0, 0, 1], 4433)),
            server_name: "localhost".into(),
            pin: CertPin::default(),
            token: String::new(),
            buffer_path: None,
            buffer_capacity: 100_000,
            resend_after: Duration::from_secs(5),
            min_resend_after: Duration::from_millis(50),
            backfill_batch: 1_000,
            max_in_flight: 4_000,
            backfill_tick: Duration::from_millis(250),
            live_datagrams: true,
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            refused_retry_after: Duration::from_millis(500),
            zero_rtt: true,
        }
    }
}

impl ClientConfig {
    /// The resend timeout's bounds.
    pub(crate) fn resend_policy(&self) -> buffer::ResendPolicy {
        buffer::ResendPolicy {
            floor: self.min_resend_after,
            ceiling: self.resend_after.max(self.min_resend_after),
        }
    }
}

/// Errors of the device client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A configuration value is unusable (bad pin, TLS setup).
    #[error("invalid client config: {0}")]
    Config(String),
    /// The offline buffer file could not be read or written.
    #[error("offline buffer: {0}")]
    Buffer(String),
    /// The buffer holds `capacity` unacknowledged fixes already.
    #[error("offline buffer full ({capacity} unacknowledged fixes)")]
    BufferFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// A pushed fix's sequence number is not above the previous one.
    #[error("sequence {seq} is not above the last pushed or acknowledged sequence {last}")]
    SeqNotIncreasing {
        /// The pushed sequence.
        seq: u32,
        /// The last one.
        last: u32,
    },
    /// The UDP socket could not be opened.
    #[error("socket: {0}")]
    Socket(String),
    /// The engine refused the handshake for good (bad token, unsupported version).
    #[error("refused by the engine: {0:?}")]
    Refused(Refusal),
    /// `flush` ran out of time.
    #[error("timed out with {pending} fixes still unacknowledged")]
    Timeout {
        /// Unacknowledged fixes left.
        pending: usize,
    },
    /// The client was closed.
    #[error("client closed")]
    Closed,
}

/// Where the connection task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStatus {
    /// Connecting or waiting to reconnect.
    Connecting,
    /// Handshake done; sending.
    Connected,
    /// The engine refused with a reason that will not change by retrying soon; the client still
    /// retries at the longest back-off.
    Refused(Refusal),
    /// `close` was called.
    Closed,
}

/// Whether a connection started with 0-RTT data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroRtt {
    /// No 0-RTT attempt: no session ticket yet (first connection), or `zero_rtt` is off.
    #[default]
    NotAttempted,
    /// The engine accepted the 0-RTT data (`Hello` and backlog arrived with the first flight).
    Accepted,
    /// The engine refused the 0-RTT data (e.g. it restarted and forgot the ticket); the client
    /// repeated its `Hello` and backlog after the full handshake.
    Rejected,
}

/// Counts of the client's 0-RTT attempts over its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZeroRttCounts {
    /// Connections whose 0-RTT data the engine accepted.
    pub accepted: u64,
    /// Connections whose 0-RTT data the engine refused (fell back to 1-RTT).
    pub rejected: u64,
}

/// State shared between the handle and the connection task.
struct Shared {
    /// The configuration.
    config: ClientConfig,
    /// Buffer, live connection, status.
    state: Mutex<State>,
    /// Wakes the connection task (new fix pushed, shutdown).
    wake: Notify,
    /// Highest acknowledged sequence, for waiters.
    acked_tx: watch::Sender<u32>,
    /// Set on `close`.
    shutdown_tx: watch::Sender<bool>,
    /// `true` while a welcomed connection is up, for waiters (`subscribe_connected`).
    connected_tx: watch::Sender<bool>,
    /// The QUIC client config (TLS with its session cache, transport), reused by every
    /// reconnect so TLS 1.3 session resumption works.
    quic: quinn::ClientConfig,
    /// Whether the endpoint belongs to this client (closed with it) or is shared (left open).
    owns_endpoint: bool,
}

/// The mutable part of [`Shared`].
struct State {
    /// Unacknowledged fixes.
    buffer: OfflineBuffer,
    /// The live connection after `Welcome`, for datagrams.
    conn: Option<quinn::Connection>,
    /// Current status.
    status: ClientStatus,
    /// Last buffer write error, reported by the next `push`.
    buffer_error: Option<ClientError>,
    /// Whether the last welcomed connection used 0-RTT.
    last_zero_rtt: ZeroRtt,
    /// 0-RTT outcomes so far.
    zero_rtt_counts: ZeroRttCounts,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the buffer half-updated in a way that
        // matters more than losing the client, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies an ack (from `Welcome` or `Ack`).
    fn apply_ack(&self, seq: u32) {
        let mut st = self.lock();
        let lost_found = st.buffer.observe_ack(seq, Instant::now());
        if let Err(e) = st.buffer.ack(seq) {
            tracing::warn!("offline buffer: {e}");
            st.buffer_error = Some(e);
        }
        let acked = st.buffer.acked();
        // Published under the lock, so whoever sees the buffer emptied (`flush`) also sees the
        // new `acked_seq`.
        self.acked_tx.send_if_modified(|v| {
            let changed = *v != acked;
            *v = acked;
            changed
        });
        drop(st);
        if lost_found {
            self.wake.notify_one();
        }
    }
}

/// A running device client. Create it inside a tokio runtime.
pub struct DeviceClient {
    /// Shared with the connection task.
    shared: Arc<Shared>,
    /// The connection task.
    task: JoinHandle<()>,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("server", &self.shared.config.server)
            .field("acked_seq", &self.acked_seq())
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl DeviceClient {
    /// Opens the buffer (reloading persisted fixes), binds a UDP socket and starts connecting.
    pub fn spawn(config: ClientConfig) -> Result<DeviceClient, ClientError> {
        let bind: SocketAddr = if config.server.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Socket(e.to_string()))?;
        Self::start(config, endpoint, true)
    }

    /// Like [`DeviceClient::spawn`], but connects through `endpoint` (one UDP socket shared by
    /// many clients, as a load generator or a gateway for many trackers needs) and leaves it open
    /// when closed. The endpoint's default client config is not used.
    pub fn spawn_on(
        config: ClientConfig,
        endpoint: quinn::Endpoint,
    ) -> Result<DeviceClient, ClientError> {
        Self::start(config, endpoint, false)
    }

    /// A client-only endpoint on an already bound UDP `socket` (e.g. one whose buffers the caller
    /// enlarged), for many clients to share through [`DeviceClient::spawn_on`]. Call it inside a
    /// tokio runtime.
    pub fn endpoint_on(socket: std::net::UdpSocket) -> Result<Endpoint, ClientError> {
        let runtime = quinn::default_runtime()
            .ok_or_else(|| ClientError::Socket("no async runtime for the endpoint".into()))?;
        Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .map_err(|e| ClientError::Socket(e.to_string()))
    }

    fn start(
        config: ClientConfig,
        endpoint: quinn::Endpoint,
        owns_endpoint: bool,
    ) -> Result<DeviceClient, ClientError> {
        let buffer = match &config.buffer_path {
            Some(p) => OfflineBuffer::open(p, config.buffer_capacity)?,
            None => OfflineBuffer::in_memory(config.buffer_capacity),
        };
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(config.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(config.idle_timeout)
                    .map_err(|e| ClientError::Config(format!("idle_timeout: {e}")))?,
            ))
            // Fixes are tiny: no path-MTU probing (a few packets less per connection).
            .mtu_discovery_config(None)
            // The engine opens no streams towards the device (acks come on the device's own
            // handshake stream). quinn's defaults (100 + 100 streams) make every connection
            // pre-build 300 stream map entries, a visible share of a device's CPU in a storm of
            // thousands. (The datagram receive buffer stays: quinn refuses to send datagrams
            // when it is off.)
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into());
        let mut tls = rustls_config(&config.pin)?;
        // One engine: its few newest tickets are all this device needs. The store lives in this
        // client's config, reused by every reconnect, so the device resumes its own session.
        tls.resumption = rustls::client::Resumption::in_memory_sessions(8);
        tls.enable_early_data = config.zero_rtt;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Config(format!("QUIC crypto: {e}")))?;
        let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
        quic.transport_config(Arc::new(transport));
        let acked = buffer.acked();
        let (acked_tx, _) = watch::channel(acked);
        let (shutdown_tx, _) = watch::channel(false);
        let (connected_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                buffer,
                conn: None,
                status: ClientStatus::Connecting,
                buffer_error: None,
                last_zero_rtt: ZeroRtt::NotAttempted,
                zero_rtt_counts: ZeroRttCounts::default(),
            }),
            wake: Notify::new(),
            acked_tx,
            shutdown_tx,
            connected_tx,
            quic,
            owns_endpoint,
        });
        let task = tokio::spawn(session::run(shared.clone(), endpoint));
        Ok(DeviceClient { shared, task })
    }

    /// A receiver of the highest acknowledged sequence (changes on every ack that moves it).
    pub fn subscribe_acked(&self) -> watch::Receiver<u32> {
        self.shared.acked_tx.subscribe()
    }

    /// A receiver that is `true` while a welcomed connection is up.
    pub fn subscribe_connected(&self) -> watch::Receiver<bool> {
        self.shared.connected_tx.subscribe()
    }

    /// Buffers a fix (persisting it when configured) and, when connected, sends it at once as a
    /// datagram. Fails when the buffer is full or the sequence does not increase.
    pub fn push(&self, record: PositionRecord) -> Result<(), ClientError> {
        let mut st = self.shared.lock();
        if st.status == ClientStatus::Closed {
            return Err(ClientError::Closed);
        }
        if let Some(e) = st.buffer_error.take() {
            return Err(e);
        }
        st.buffer.push(record)?;
        if self.shared.config.live_datagrams
            && let Some(conn) = &st.conn
        {
            let bytes = encode_datagram(std::slice::from_ref(&record));
            if conn.send_datagram(bytes::Bytes::from(bytes)).is_ok() {
                st.buffer.mark_sent(record.seq, Instant::now());
            }
        }
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The next sequence number to use (above everything pushed or acknowledged).
    pub fn next_seq(&self) -> u32 {
        self.shared.lock().buffer.last_seq().saturating_add(1)
    }

    /// Highest sequence the engine has acknowledged as durable.
    pub fn acked_seq(&self) -> u32 {
        *self.shared.acked_tx.borrow()
    }

    /// A receiver that changes whenever the acknowledged sequence moves (for load tools and
    /// apps that wait on acks without polling).
    pub fn subscribe_acks(&self) -> watch::Receiver<u32> {
        self.shared.acked_tx.subscribe()
    }

    /// Fixes not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.shared.lock().buffer.len()
    }

    /// Whether the last welcomed connection used 0-RTT (accepted or refused by the engine).
    pub fn last_zero_rtt(&self) -> ZeroRtt {
        self.shared.lock().last_zero_rtt
    }

    /// How many connections' 0-RTT data was accepted and refused so far.
    pub fn zero_rtt_counts(&self) -> ZeroRttCounts {
        self.shared.lock().zero_rtt_counts
    }

    /// Records resent early because an ack came back without them (a lost live datagram).
    pub fn fast_resends(&self) -> u64 {
        self.shared.lock().buffer.fast_resends()
    }

    /// The current resend timeout (follows the measured ack round trip).
    pub fn resend_timeout(&self) -> Duration {
        self.shared
            .lock()
            .buffer
            .resend_timeout(self.shared.config.resend_policy())
    }

    /// Connection status.
    pub fn status(&self) -> ClientStatus {
        self.shared.lock().status.clone()
    }

    /// Waits until every pushed fix is acknowledged, or `timeout`; fails at once when the engine
    /// refused the device for good (bad token, unsupported version).
    pub async fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut rx = self.shared.acked_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let st = self.shared.lock();
                if st.buffer.is_empty() {
                    return Ok(());
                }
                match &st.status {
                    ClientStatus::Closed => return Err(ClientError::Closed),
                    ClientStatus::Refused(r) => return Err(ClientError::Refused(r.clone())),
                    ClientStatus::Connecting | ClientStatus::Connected => {}
                }
            }
            // Wake up on acks, and every 50 ms to notice status changes.
            let wait = tokio::time::timeout(Duration::from_millis(50), rx.changed());
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                let st = self.shared.lock();
                if let ClientStatus::Refused(r) = &st.status {
                    return Err(ClientError::Refused(r.clone()));
                }
                return Err(ClientError::Timeout {
                    pending: st.buffer.len(),
                });
            }
        }
    }

    /// Simulates a network cut (a cell dropping, a tunnel) and so forces a reconnect: closes the
    /// current QUIC connection with the application close code [`CLOSE_CODE_CUT`] and keeps
    /// everything else: the buffer (unacknowledged fixes are resent on the next connection), the
    /// TLS session store (the reconnect resumes the session, with 0-RTT when `zero_rtt` is on) and
    /// the endpoint. The connection task sees the closed connection and reconnects after its
    /// usual jittered back-off (from `backoff_min`, as after any lost welcomed connection).
    ///
    /// `status()` and `subscribe_connected()` report the cut at once. Returns whether a welcomed
    /// connection was up to cut: `false` while connecting or waiting to reconnect (nothing cut).
    pub fn cut_connection(&self) -> bool {
        let conn = {
            let mut st = self.shared.lock();
            let conn = st.conn.take();
            if conn.is_some() && st.status == ClientStatus::Connected {
                st.status = ClientStatus::Connecting;
            }
            conn
        };
        let Some(conn) = conn else {
            return false;
        };
        self.shared.connected_tx.send_replace(false);
        conn.close(quinn::VarInt::from_u32(CLOSE_CODE_CUT), b"connection cut");
        true
    }

    /// Closes the connection and stops reconnecting; the buffer file keeps unacknowledged fixes.
    pub async fn close(self) {
        self.shared.shutdown_tx.send_replace(true);
        self.shared.wake.notify_one();
        let _ = self.task.await;
        let mut st = self.shared.lock();
        st.status = ClientStatus::Closed;
        st.conn = None;
    }
}
