//! One device connection: handshake, readers for datagrams and backlog streams, and the submitter.
//!
//! Owns the per-connection pipeline (readers → bounded queue → one submitter that validates,
//! rate-limits, submits in arrival order and acks) and the per-device state shared by successive
//! connections of a device. Does not decode bytes itself beyond framing (see `wire`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use flevum_protocol::{
    Ack, DecodeError, DeviceMessage, Hello, PROTOCOL_VERSION, PositionRecord, Refusal,
    RefusalReason, Welcome, encode_message,
};
use quinn::{Connection, SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant as TokioInstant;
use tracing::{Instrument, debug, info, warn};

use super::metrics as m;
use super::rate::TokenBucket;
use super::resumption::{SessionFacts, TicketOutcome};
use super::seq_tracker::{SeqStatus, SeqTracker};
use super::sink::{IngestSink, SubmitError};
use super::tokens::{DeviceGrant, TokenLease, TokenStore};
use super::wire;
use super::{IngestConfig, wire::now_ms};

/// Application close code: a newer connection of the same device replaced this one.
const CLOSE_REPLACED: u32 = 1;
/// Application close code: the handshake was refused.
const CLOSE_REFUSED: u32 = 2;
/// Application close code: the sink failed; reconnect and resend.
const CLOSE_SINK: u32 = 3;
/// Application close code: protocol violation (undecodable handshake stream message).
const CLOSE_PROTOCOL: u32 = 4;
/// Application close code: the operator disconnected all devices (they reconnect).
const CLOSE_DISCONNECTED: u32 = 5;
/// Close code: the device's token was revoked while it was connected.
const CLOSE_REVOKED: u32 = 6;

/// State shared by the endpoint and all connection tasks.
pub(crate) struct Shared {
    /// Endpoint configuration.
    pub config: IngestConfig,
    /// Token table.
    tokens: Arc<TokenStore>,
    /// Where records go.
    sink: Arc<dyn IngestSink>,
    /// Per-device state, kept across reconnects within this process.
    devices: DashMap<(String, String), Arc<DeviceState>>,
    /// Open (post-TLS) connections.
    open: AtomicUsize,
    /// Endpoint counters (welcomed handshakes are counted here).
    stats: Arc<super::IngestStats>,
    /// Handshakes admitted and not yet welcomed or failed (admission control's in-flight cap).
    in_flight: AtomicUsize,
    /// Signalled whenever a handshake leaves `in_flight`, to start a waiting one.
    pub handshake_done: tokio::sync::Notify,
}

/// What survives a device's reconnect: its rate limit, its ack tracker, its current connection.
struct DeviceState {
    /// Token bucket of the device.
    bucket: std::sync::Mutex<TokenBucket>,
    /// Ack tracker; the async lock also serialises submissions of successive connections.
    tracker: tokio::sync::Mutex<Option<SeqTracker>>,
    /// The newest connection (id, handle), closed when a newer one arrives.
    current: std::sync::Mutex<Option<(u64, Connection)>>,
}

impl Shared {
    pub(crate) fn new(
        config: IngestConfig,
        tokens: Arc<TokenStore>,
        sink: Arc<dyn IngestSink>,
        stats: Arc<super::IngestStats>,
    ) -> Self {
        Shared {
            config,
            tokens,
            sink,
            devices: DashMap::new(),
            open: AtomicUsize::new(0),
            stats,
            in_flight: AtomicUsize::new(0),
            handshake_done: tokio::sync::Notify::new(),
        }
    }

    /// Forgets every device's connection handle (at shutdown), so nothing keeps the endpoint's
    /// connections alive after `run` returns.
    pub(crate) fn forget_connections(&self) {
        for entry in self.devices.iter() {
            if let Ok(mut cur) = entry.value().current.lock() {
                *cur = None;
            }
        }
    }

    /// Takes an in-flight handshake slot for a connection about to be spawned.
    pub(crate) fn begin_handshake(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes admitted and not finished.
    pub(crate) fn handshakes_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes every device's current connection (the devices reconnect and resend what is not
    /// acknowledged); returns how many were closed.
    pub(crate) fn disconnect_all(&self, reason: &[u8]) -> usize {
        let mut n = 0;
        for entry in self.devices.iter() {
            if let Ok(cur) = entry.value().current.lock()
                && let Some((_, conn)) = cur.as_ref()
            {
                conn.close(VarInt::from_u32(CLOSE_DISCONNECTED), reason);
                n += 1;
            }
        }
        n
    }
}

/// Decrements the open-connection count when the connection task ends.
struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        ::metrics::gauge!(m::CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Holds one in-flight handshake slot until the handshake ends (either way).
struct HandshakeSlot<'a>(Option<&'a Shared>);

impl HandshakeSlot<'_> {
    /// Frees the slot now (idempotent).
    fn release(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            shared.handshake_done.notify_one();
        }
    }
}

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// One batch of records as read from the wire, before validation.
struct Item {
    /// `datagram` or `stream`, for metrics.
    path: &'static str,
    /// Records in arrival order.
    records: Vec<PositionRecord>,
}

/// Whether a connection's TLS handshake is confirmed. A connection that started with 0-RTT data
/// is unconfirmed until the device's `Finished` arrives: until then it may be a replay of a
/// recorded first flight, so it may authenticate and submit position records (idempotent:
/// deduplicated by sequence) but must not be acknowledged or replace the device's connection.
#[derive(Clone)]
struct Confirmation(watch::Receiver<Option<bool>>);

impl Confirmation {
    /// A connection that completed its handshake before any application data was read.
    fn confirmed() -> Self {
        let (_tx, rx) = watch::channel(Some(true));
        Confirmation(rx)
    }

    /// Watches a 0-RTT connection's handshake; closes it when it is not confirmed by `deadline`.
    fn watch(conn: Connection, accepted: quinn::ZeroRttAccepted, deadline: TokioInstant) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(
            async move {
                // On a server `ZeroRttAccepted` resolves when the handshake completes or the
                // connection fails (quinn 0.11 resolves it `false` in both cases on a server, so
                // the close reason tells them apart).
                let done = tokio::time::timeout_at(deadline, accepted).await.is_ok();
                let confirmed = done && conn.close_reason().is_none();
                if !confirmed {
                    ::metrics::counter!(m::ZERO_RTT_UNCONFIRMED_TOTAL).increment(1);
                    debug!("0-RTT connection never confirmed its handshake");
                    conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"handshake not confirmed");
                }
                tx.send_replace(Some(confirmed));
            }
            .in_current_span(),
        );
        Confirmation(rx)
    }

    /// Waits until the handshake is confirmed (`true`) or failed (`false`).
    async fn wait(&mut self) -> bool {
        loop {
            if let Some(done) = *self.0.borrow_and_update() {
                return done;
            }
            if self.0.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// Counts what the TLS layer did with the device's session ticket.
fn record_session(shared: &Shared, facts: SessionFacts) {
    let kind = if facts.ticket == TicketOutcome::Resumed {
        shared.stats.tls_resumed.fetch_add(1, Ordering::Relaxed);
        "resumed"
    } else {
        "full"
    };
    ::metrics::counter!(m::TLS_HANDSHAKES_TOTAL, m::LABEL_KIND => kind).increment(1);
    if facts.zero_rtt {
        shared
            .stats
            .zero_rtt_accepted
            .fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(m::ZERO_RTT_TOTAL, m::LABEL_OUTCOME => "accepted").increment(1);
    } else if facts.ticket != TicketOutcome::None {
        shared
            .stats
            .zero_rtt_rejected
            .fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(m::ZERO_RTT_TOTAL, m::LABEL_OUTCOME => "rejected").increment(1);
    }
    debug!(ticket = ?facts.ticket, zero_rtt = facts.zero_rtt, "TLS session");
}

/// Takes the connection through QUIC + TLS: returns at once (unconfirmed) when rustls accepted
/// the device's 0-RTT data, after the full handshake otherwise; `None` when it failed or
/// `deadline` passed.
async fn establish(
    shared: &Shared,
    incoming: quinn::Incoming,
    deadline: TokioInstant,
) -> Option<(Connection, Confirmation)> {
    let timed_out = || {
        ::metrics::counter!(m::HANDSHAKES_TOTAL, m::LABEL_OUTCOME => "timeout").increment(1);
        debug!("QUIC handshake timed out");
    };
    let mut connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            debug!("QUIC handshake failed: {e}");
            return None;
        }
    };
    // Ready once the device's first flight (ClientHello) is processed: the ticket lookup and
    // the early-data decision are made by then.
    let facts = match tokio::time::timeout_at(deadline, connecting.handshake_data()).await {
        Ok(Ok(data)) => data
            .downcast::<SessionFacts>()
            .map(|f| *f)
            .unwrap_or_default(),
        Ok(Err(e)) => {
            debug!("QUIC handshake failed: {e}");
            return None;
        }
        Err(_) => {
            timed_out();
            return None;
        }
    };
    record_session(shared, facts);
    if facts.zero_rtt {
        // Always `Ok` on a server.
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                let confirmation = Confirmation::watch(conn.clone(), accepted, deadline);
                return Some((conn, confirmation));
            }
            Err(c) => connecting = c,
        }
    }
    match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(conn)) => Some((conn, Confirmation::confirmed())),
        Ok(Err(e)) => {
            debug!("QUIC handshake failed: {e}");
            None
        }
        Err(_) => {
            timed_out();
            None
        }
    }
}

/// Runs one connection to its end. Errors are logged and counted, never returned.
pub(crate) async fn handle(shared: Arc<Shared>, incoming: quinn::Incoming, id: u64) {
    // The slot was taken by the accept loop (`begin_handshake`) before spawning this task.
    let mut slot = HandshakeSlot(Some(&shared));
    // Bounded like the `Hello`: a device that gave up must not hold a handshake slot until the
    // idle timeout.
    let deadline = TokioInstant::now() + shared.config.handshake_timeout;
    let Some((conn, confirmation)) = establish(&shared, incoming, deadline).await else {
        return;
    };
    let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = OpenGuard(&shared.open);
    ::metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    ::metrics::gauge!(m::CONNECTIONS_OPEN).increment(1.0);

    let Some((grant, lease, hello, send)) = handshake(&shared, &conn, open).await else {
        return;
    };
    tracing::Span::current().record("device", grant.device_id.as_str());
    let state = shared
        .devices
        .entry((grant.race_id.clone(), grant.device_id.clone()))
        .or_insert_with(|| {
            Arc::new(DeviceState {
                bucket: std::sync::Mutex::new(TokenBucket::new(
                    shared.config.device_rate_per_s,
                    shared.config.device_burst,
                    Instant::now(),
                )),
                tracker: tokio::sync::Mutex::new(None),
                current: std::sync::Mutex::new(None),
            })
        })
        .clone();
    // A replayed 0-RTT flight must not push the device's live connection out: replace it only
    // once this handshake is confirmed (at once for 1-RTT connections).
    let mut replace_confirmation = confirmation.clone();
    let (state_ref, conn_ref) = (&state, &conn);
    let replace = async move {
        let confirmed = replace_confirmation.wait().await;
        // Authenticated and confirmed: the expensive part is over, let the next device in. (A
        // 0-RTT `Hello` is authenticated before the handshake ends; releasing the slot then
        // would let admission start more handshakes than the devices can finish.)
        slot.release();
        if !confirmed {
            return;
        }
        if let Ok(mut cur) = state_ref.current.lock()
            && let Some((old_id, old)) = cur.replace((id, conn_ref.clone()))
        {
            debug!(
                old_conn = old_id,
                "replacing older connection of the device"
            );
            old.close(
                VarInt::from_u32(CLOSE_REPLACED),
                b"replaced by newer connection",
            );
        }
    };
    tokio::join!(
        serve(
            &shared,
            &state,
            &conn,
            (grant, lease),
            hello,
            send,
            confirmation
        ),
        replace
    );
    if let Ok(mut cur) = state.current.lock()
        && cur.as_ref().is_some_and(|(cid, _)| *cid == id)
    {
        *cur = None;
    }
    debug!("connection ended");
}

/// Sends `msg` on the handshake stream.
async fn send_msg(send: &mut SendStream, msg: &DeviceMessage) -> Result<(), quinn::WriteError> {
    send.write_all(&encode_message(msg)).await
}

/// Sends a refusal, waits briefly until the device has read it, closes the connection.
async fn refuse(
    conn: &Connection,
    mut send: SendStream,
    reason: RefusalReason,
    message: &str,
    retry_after_ms: u32,
    outcome: &'static str,
) {
    ::metrics::counter!(m::HANDSHAKES_TOTAL, m::LABEL_OUTCOME => outcome).increment(1);
    info!(?reason, "handshake refused: {message}");
    let msg = DeviceMessage::Refusal(Refusal {
        reason,
        message: message.to_string(),
        retry_after_ms,
    });
    if send_msg(&mut send, &msg).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
    conn.close(VarInt::from_u32(CLOSE_REFUSED), reason_bytes(reason));
}

fn reason_bytes(reason: RefusalReason) -> &'static [u8] {
    match reason {
        RefusalReason::BadToken => b"bad token",
        RefusalReason::UnsupportedVersion => b"unsupported version",
        RefusalReason::RaceClosed => b"race closed",
        RefusalReason::Overloaded => b"overloaded",
        RefusalReason::Malformed => b"malformed",
    }
}

/// Runs the `Hello` → `Welcome`/`Refusal` exchange. `None` when the connection is done.
async fn handshake(
    shared: &Shared,
    conn: &Connection,
    open: usize,
) -> Option<(DeviceGrant, TokenLease, Hello, SendStream)> {
    let cfg = &shared.config;
    let accepted = tokio::time::timeout(cfg.handshake_timeout, async {
        let (send, mut recv) = conn.accept_bi().await.ok()?;
        let body = wire::read_body(&mut recv).await;
        Some((send, recv, body))
    })
    .await;
    let Ok(Some((send, _recv, body))) = accepted else {
        ::metrics::counter!(m::HANDSHAKES_TOTAL, m::LABEL_OUTCOME => "timeout").increment(1);
        conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"no hello");
        return None;
    };
    let hello = match body {
        Ok(Some(body)) => match flevum_protocol::decode_message(&body, now_ms()) {
            Ok(DeviceMessage::Hello(h)) => h,
            Err(DecodeError::Version { got, supported }) => {
                let text =
                    format!("protocol version {got} unsupported, this engine speaks {supported}");
                refuse(
                    conn,
                    send,
                    RefusalReason::UnsupportedVersion,
                    &text,
                    0,
                    "unsupported_version",
                )
                .await;
                return None;
            }
            Ok(_) | Err(_) => {
                refuse(
                    conn,
                    send,
                    RefusalReason::Malformed,
                    "expected Hello",
                    0,
                    "malformed",
                )
                .await;
                return None;
            }
        },
        Ok(None) | Err(wire::ReadError::Decode(_)) => {
            refuse(
                conn,
                send,
                RefusalReason::Malformed,
                "expected Hello",
                0,
                "malformed",
            )
            .await;
            return None;
        }
        Err(wire::ReadError::Stream(e)) => {
            debug!("handshake stream failed: {e}");
            return None;
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        let text = format!(
            "protocol version {} unsupported, this engine speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        );
        refuse(
            conn,
            send,
            RefusalReason::UnsupportedVersion,
            &text,
            0,
            "unsupported_version",
        )
        .await;
        return None;
    }
    let Some((grant, lease)) = shared.tokens.authenticate_lease(&hello.device_token) else {
        refuse(
            conn,
            send,
            RefusalReason::BadToken,
            "unknown or revoked token",
            0,
            "bad_token",
        )
        .await;
        return None;
    };
    if open > cfg.max_connections {
        refuse(
            conn,
            send,
            RefusalReason::Overloaded,
            "too many connections",
            cfg.overload_retry_after_ms,
            "overloaded",
        )
        .await;
        return None;
    }
    Some((grant, lease, hello, send))
}

/// Serves an authenticated connection until it ends.
async fn serve(
    shared: &Arc<Shared>,
    state: &Arc<DeviceState>,
    conn: &Connection,
    (grant, lease): (DeviceGrant, TokenLease),
    hello: Hello,
    mut send: SendStream,
    confirmation: Confirmation,
) {
    let durable = shared.sink.durable_seq(&grant);
    let acked = {
        let mut tracker = state.tracker.lock().await;
        // The device's own last ack is trusted as a floor: it has already deleted those records,
        // so waiting for them would stall its acks forever.
        let base = durable.max(hello.last_acked_seq);
        let t = tracker.get_or_insert_with(|| SeqTracker::new(base, shared.config.seq_window));
        t.raise_base(base);
        t.acked()
    };
    let welcome = DeviceMessage::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        race_id: grant.race_id.clone(),
        rider_id: grant.rider_id,
        server_time_ms: now_ms(),
        report_interval_ms: grant.report_interval_ms,
        acked_seq: acked,
    });
    if let Err(e) = send_msg(&mut send, &welcome).await {
        debug!("sending Welcome failed: {e}");
        return;
    }
    ::metrics::counter!(m::HANDSHAKES_TOTAL, m::LABEL_OUTCOME => "ok").increment(1);
    shared.stats.welcomed.fetch_add(1, Ordering::Relaxed);
    info!(race = %grant.race_id, rider = grant.rider_id, acked, "device connected");

    let (tx, rx) = mpsc::channel::<Item>(shared.config.device_queue.max(1));
    let span = tracing::Span::current();
    let datagrams = tokio::spawn(read_datagrams(conn.clone(), tx.clone()).instrument(span.clone()));
    let streams = tokio::spawn(read_streams(conn.clone(), tx).instrument(span));
    let acks = AckPath {
        send,
        confirmation,
        last_ack_sent: acked,
    };
    submit_loop(shared, state, conn, (&grant, lease), rx, acks).await;
    datagrams.abort();
    streams.abort();
}

/// Reads datagrams into the queue; a full queue drops the datagram (the device resends it).
async fn read_datagrams(conn: Connection, tx: mpsc::Sender<Item>) {
    while let Ok(bytes) = conn.read_datagram().await {
        match wire::decode_datagram_tolerant(&bytes, now_ms()) {
            Ok(records) => {
                let n = records.len() as u64;
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Item {
                    path: "datagram",
                    records,
                }) {
                    ::metrics::counter!(m::RECORDS_REJECTED_TOTAL, m::LABEL_REASON => "queue_full")
                        .increment(n);
                }
            }
            Err(e) => {
                ::metrics::counter!(m::UNDECODABLE_TOTAL, m::LABEL_PATH => "datagram").increment(1);
                debug!("undecodable datagram: {e}");
            }
        }
    }
}

/// Reads backlog streams one after another (keeps arrival order); back-pressure when the queue
/// is full.
async fn read_streams(conn: Connection, tx: mpsc::Sender<Item>) {
    while let Ok(mut recv) = conn.accept_uni().await {
        loop {
            match wire::read_body(&mut recv).await {
                Ok(Some(body)) => match wire::decode_message_tolerant(&body, now_ms()) {
                    Ok(DeviceMessage::Batch(batch)) => {
                        if tx
                            .send(Item {
                                path: "stream",
                                records: batch.records,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(other) => {
                        debug!("unexpected message on a backlog stream: {other:?}");
                        ::metrics::counter!(m::UNDECODABLE_TOTAL, m::LABEL_PATH => "stream")
                            .increment(1);
                    }
                    Err(e) => {
                        debug!("undecodable backlog message: {e}");
                        ::metrics::counter!(m::UNDECODABLE_TOTAL, m::LABEL_PATH => "stream")
                            .increment(1);
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    debug!("backlog stream ended: {e}");
                    ::metrics::counter!(m::UNDECODABLE_TOTAL, m::LABEL_PATH => "stream")
                        .increment(1);
                    let _ = recv.stop(VarInt::from_u32(CLOSE_PROTOCOL));
                    break;
                }
            }
        }
    }
}

/// Where acks go: the handshake stream, once the handshake is confirmed.
struct AckPath {
    /// Send half of the handshake stream.
    send: SendStream,
    /// Acks wait for it (never to a possible 0-RTT replay).
    confirmation: Confirmation,
    /// Highest sequence acknowledged so far (`Welcome` or `Ack`).
    last_ack_sent: u32,
}

/// Validates, rate-limits, submits in order and acks, until the readers are gone.
async fn submit_loop(
    shared: &Shared,
    state: &DeviceState,
    conn: &Connection,
    (grant, mut lease): (&DeviceGrant, TokenLease),
    mut rx: mpsc::Receiver<Item>,
    acks: AckPath,
) {
    let AckPath {
        mut send,
        mut confirmation,
        mut last_ack_sent,
    } = acks;
    let limits = shared.config.record_limits;
    while let Some(item) = rx.recv().await {
        if !shared.tokens.still_valid(&mut lease) {
            // Revoked while connected: nothing more is accepted from this connection, and the
            // device's reconnect meets the same refusal as any unknown token.
            ::metrics::counter!(m::RECORDS_REJECTED_TOTAL, m::LABEL_REASON => "token_revoked")
                .increment(item.records.len() as u64);
            info!(race = %grant.race_id, device = %grant.device_id, "token revoked: closing");
            conn.close(VarInt::from_u32(CLOSE_REVOKED), b"token revoked");
            return;
        }
        let now = now_ms();
        let mut tracker_guard = state.tracker.lock().await;
        let Some(tracker) = tracker_guard.as_mut() else {
            return;
        };
        let mut accepted = Vec::with_capacity(item.records.len());
        let mut saw_duplicate = false;
        // Sequences already taken from this batch: a scan of `accepted` for the usual batch
        // of a few records, a set for a large one (a 64 KiB batch holds about 2,000).
        let many = item.records.len() > 32;
        let mut taken = std::collections::HashSet::new();
        for r in item.records {
            match tracker.status(r.seq) {
                SeqStatus::Duplicate => {
                    saw_duplicate = true;
                    ::metrics::counter!(m::RECORDS_REJECTED_TOTAL, m::LABEL_REASON => "duplicate")
                        .increment(1);
                    continue;
                }
                SeqStatus::OutOfWindow => {
                    let reason = if r.seq == 0 { "zero_seq" } else { "seq_window" };
                    ::metrics::counter!(m::RECORDS_REJECTED_TOTAL, m::LABEL_REASON => reason)
                        .increment(1);
                    continue;
                }
                SeqStatus::New => {}
            }
            let repeated = if many {
                !taken.insert(r.seq)
            } else {
                accepted.iter().any(|a: &PositionRecord| a.seq == r.seq)
            };
            if repeated {
                saw_duplicate = true;
                continue;
            }
            if let Err(e) = r.validate(now, &limits) {
                // Invalid records are handled (skipped for good) so the device stops resending.
                ::metrics::counter!(m::RECORDS_REJECTED_TOTAL, m::LABEL_REASON => wire::reason_label(&e))
                    .increment(1);
                debug!(seq = r.seq, "invalid record skipped: {e}");
                tracker.mark(r.seq);
                continue;
            }
            accepted.push(r);
        }
        let granted = match state.bucket.lock() {
            Ok(mut b) => b.take(accepted.len(), Instant::now()),
            Err(_) => accepted.len(),
        };
        if granted < accepted.len() {
            let dropped = (accepted.len() - granted) as u64;
            ::metrics::counter!(m::RECORDS_REJECTED_TOTAL, m::LABEL_REASON => "rate_limited")
                .increment(dropped);
            accepted.truncate(granted);
        }
        if !accepted.is_empty() {
            let seqs: Vec<u32> = accepted.iter().map(|r| r.seq).collect();
            let n = accepted.len() as u64;
            let started = Instant::now();
            let result = shared.sink.submit(grant, accepted).await;
            ::metrics::histogram!(m::SUBMIT_SECONDS).record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    ::metrics::counter!(m::RECORDS_ACCEPTED_TOTAL, m::LABEL_PATH => item.path)
                        .increment(n);
                    for s in seqs {
                        tracker.mark(s);
                    }
                }
                Err(e) => {
                    ::metrics::counter!(m::SUBMIT_ERRORS_TOTAL).increment(1);
                    warn!("sink refused records: {e}");
                    let reason: &[u8] = match e {
                        SubmitError::Overloaded { .. } => b"sink overloaded",
                        SubmitError::RaceClosed(_) => b"race closed",
                        SubmitError::Unavailable(_) => b"sink unavailable",
                    };
                    conn.close(VarInt::from_u32(CLOSE_SINK), reason);
                    return;
                }
            }
        }
        let acked = tracker.acked();
        // Records that landed above a gap leave the ack where it was; saying so anyway (a
        // duplicate ack) tells the device at once that the record at the gap was lost (a dropped
        // datagram), instead of after its resend timeout.
        let above_gap = tracker.gaps_pending() > 0;
        drop(tracker_guard);
        if acked > last_ack_sent || saw_duplicate || above_gap {
            // Acks only on a confirmed handshake (never to a possible 0-RTT replay).
            if !confirmation.wait().await {
                return;
            }
            let msg = DeviceMessage::Ack(Ack { acked_seq: acked });
            if send_msg(&mut send, &msg).await.is_err() {
                // Connection gone: keep draining so queued records still become durable.
                continue;
            }
            ::metrics::counter!(m::ACKS_SENT_TOTAL).increment(1);
            last_ack_sent = acked;
        }
    }
}
