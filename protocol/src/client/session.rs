//! The client's connection task: connect, handshake, live/backfill sending, acks, reconnects.
//!
//! Owns one QUIC session at a time and the back-off between sessions. Does not own the buffer
//! (shared with the handle, which pushes and sends live datagrams itself).

use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::VarInt;
use rand::Rng;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, warn};

use super::{ClientStatus, Shared, ZeroRtt};
use crate::PROTOCOL_VERSION;
use crate::codec::{DeviceMessage, decode_message, encode_message, message_len};
use crate::handshake::{Hello, Refusal, RefusalReason};
use crate::record::{PositionBatch, PositionRecord, RecordFlags};

/// How a session ended.
enum End {
    /// `close` was called.
    Shutdown,
    /// The connection failed or was lost; `welcomed` says whether the handshake had succeeded.
    Lost {
        /// Whether a `Welcome` was received (resets the back-off).
        welcomed: bool,
    },
    /// The engine refused the handshake.
    Refused(Refusal),
    /// The engine refused the QUIC connection itself (`CONNECTION_REFUSED`, its admission
    /// control is full); retry after a jittered delay of at least `refused_retry_after`.
    Busy,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why a connection attempt failed before `Welcome`.
enum Failure {
    /// QUIC-level `CONNECTION_REFUSED` from the engine's admission control.
    Busy,
    /// Anything else (timeout, TLS, lost connection, protocol).
    Other(String),
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Reads one length-prefixed message body; `Ok(None)` at a clean end.
async fn read_body(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, String> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = message_len(prefix).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(body))
}

/// The connection task: sessions separated by jittered exponential back-off.
pub(super) async fn run(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    let cfg = shared.config.clone();
    let mut shutdown = shared.shutdown_tx.subscribe();
    let mut backoff = cfg.backoff_min;
    let span = tracing::info_span!("device_client", server = %cfg.server);
    async {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let end = session(&shared, &endpoint, &mut shutdown).await;
            if !matches!(end, End::Refused(_)) {
                let mut st = shared.lock();
                if matches!(st.status, ClientStatus::Refused(_)) {
                    // The connection got past the handshake or failed otherwise: not refused now.
                    st.status = ClientStatus::Connecting;
                }
            }
            shared.lock().conn = None;
            let delay = match end {
                End::Shutdown => break,
                End::Lost { welcomed } => {
                    if welcomed {
                        backoff = cfg.backoff_min;
                    }
                    jitter(backoff)
                }
                End::Busy => {
                    debug!("engine busy (connection refused), backing off");
                    jitter(backoff.max(cfg.refused_retry_after))
                }
                End::Refused(r) => {
                    warn!(reason = ?r.reason, "engine refused: {}", r.message);
                    if r.retry_after_ms > 0 || r.reason == RefusalReason::Overloaded {
                        // Not before `retry_after_ms`, spread over the following half of it so
                        // thousands of refused devices do not come back in the same instant.
                        let after = Duration::from_millis(u64::from(r.retry_after_ms));
                        jitter(backoff).max(after.mul_f64(rand::rng().random_range(1.0..1.5)))
                    } else {
                        shared.lock().status = ClientStatus::Refused(r);
                        jitter(cfg.backoff_max)
                    }
                }
            };
            backoff = (backoff * 2).min(cfg.backoff_max);
            debug!(?delay, "reconnecting after back-off");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => break,
            }
        }
        if shared.owns_endpoint {
            endpoint.close(VarInt::from_u32(0), b"client closed");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }
    .instrument(span)
    .await;
}

/// Why a connection failed, from its close reason (`CONNECTION_REFUSED` = the engine is busy).
fn failure(conn: &quinn::Connection, what: impl std::fmt::Display) -> Failure {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ConnectionClosed(c))
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            Failure::Busy
        }
        _ => Failure::Other(what.to_string()),
    }
}

/// Opens the handshake stream, sends `hello`, reads the engine's answer.
async fn hello_exchange(
    conn: &quinn::Connection,
    hello: &[u8],
) -> Result<(quinn::SendStream, quinn::RecvStream, DeviceMessage), Failure> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failure(conn, e))?;
    send.write_all(hello).await.map_err(|e| failure(conn, e))?;
    let body = read_body(&mut recv)
        .await
        .map_err(|e| failure(conn, e))?
        .ok_or_else(|| failure(conn, "handshake stream closed"))?;
    let msg = decode_message(&body, now_ms()).map_err(|e| Failure::Other(e.to_string()))?;
    Ok((send, recv, msg))
}

/// A handshaken connection: its streams, the engine's answer, how 0-RTT went.
struct Established {
    /// The connection.
    conn: quinn::Connection,
    /// Handshake stream, send half (kept open: closing it would end the session).
    send: quinn::SendStream,
    /// Handshake stream, receive half (acks).
    recv: quinn::RecvStream,
    /// `Welcome` or `Refusal`.
    answer: DeviceMessage,
    /// Whether the `Hello` went as 0-RTT data.
    zero_rtt: ZeroRtt,
    /// The buffered backlog reached the engine as accepted 0-RTT data (not to be resent now).
    backlog_sent: bool,
}

/// Connects and says `Hello`: with a session ticket, `Hello` and the buffered backlog leave as
/// 0-RTT data with the first flight; if the engine refuses that data, both are repeated after the
/// full handshake.
async fn connect(shared: &Shared, endpoint: &quinn::Endpoint) -> Result<Established, Failure> {
    let cfg = &shared.config;
    let connecting = endpoint
        .connect_with(shared.quic.clone(), cfg.server, &cfg.server_name)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let hello = encode_message(&DeviceMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        device_token: cfg.token.clone(),
        last_acked_seq: shared.lock().buffer.acked(),
    }));
    let (conn, accepted) = match connecting.into_0rtt() {
        Ok(early) => early,
        Err(connecting) => {
            let conn = connecting.await.map_err(|e| match e {
                quinn::ConnectionError::ConnectionClosed(c)
                    if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
                {
                    Failure::Busy
                }
                e => Failure::Other(e.to_string()),
            })?;
            let (send, recv, answer) = hello_exchange(&conn, &hello).await?;
            return Ok(Established {
                conn,
                send,
                recv,
                answer,
                zero_rtt: ZeroRtt::NotAttempted,
                backlog_sent: false,
            });
        }
    };
    // 0-RTT: everything unacknowledged is due on this new connection; send it with the Hello.
    let backlog = {
        let mut st = shared.lock();
        st.buffer.reset_sent();
        st.buffer
            .take_due(
                Instant::now(),
                cfg.resend_policy(),
                cfg.backfill_batch.max(1) * 8,
                cfg.max_in_flight.max(1),
            )
            .records
    };
    let had_backlog = !backlog.is_empty();
    let (exchange, backlog_result) = tokio::join!(hello_exchange(&conn, &hello), async {
        if backlog.is_empty() {
            Ok(())
        } else {
            send_backfill(&conn, backlog, cfg.backfill_batch.max(1)).await
        }
    });
    // Resolves once the handshake is done: `false` when the engine refused the early data (or
    // the connection failed).
    if accepted.await {
        let (send, recv, answer) = exchange?;
        return Ok(Established {
            conn,
            send,
            recv,
            answer,
            zero_rtt: ZeroRtt::Accepted,
            backlog_sent: had_backlog && backlog_result.is_ok(),
        });
    }
    if conn.close_reason().is_some() {
        return Err(failure(&conn, "connection lost during the 0-RTT handshake"));
    }
    debug!("engine refused 0-RTT data, repeating Hello after the handshake");
    let (send, recv, answer) = hello_exchange(&conn, &hello).await?;
    Ok(Established {
        conn,
        send,
        recv,
        answer,
        zero_rtt: ZeroRtt::Rejected,
        backlog_sent: false,
    })
}

/// One connection from connect to loss.
async fn session(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let cfg = &shared.config;
    let result = tokio::select! {
        r = tokio::time::timeout(cfg.connect_timeout, connect(shared, endpoint)) => r,
        _ = shutdown.changed() => return End::Shutdown,
    };
    let Established {
        conn,
        send: _send,
        recv,
        answer: msg,
        zero_rtt,
        backlog_sent,
    } = match result {
        Ok(Ok(x)) => x,
        Ok(Err(Failure::Busy)) => return End::Busy,
        Ok(Err(Failure::Other(e))) => {
            debug!("connect failed: {e}");
            return End::Lost { welcomed: false };
        }
        Err(_) => {
            debug!("connect timed out");
            return End::Lost { welcomed: false };
        }
    };
    let welcome = match msg {
        DeviceMessage::Welcome(w) => w,
        DeviceMessage::Refusal(r) => {
            conn.close(VarInt::from_u32(0), b"refused");
            return End::Refused(r);
        }
        other => {
            debug!("unexpected handshake answer: {other:?}");
            conn.close(VarInt::from_u32(1), b"protocol");
            return End::Lost { welcomed: false };
        }
    };
    info!(
        race = %welcome.race_id,
        rider = welcome.rider_id,
        acked = welcome.acked_seq,
        ?zero_rtt,
        "connected"
    );
    shared.apply_ack(welcome.acked_seq);
    {
        let mut st = shared.lock();
        if !backlog_sent {
            // Everything unacknowledged is due on the new connection.
            st.buffer.reset_sent();
        }
        st.last_zero_rtt = zero_rtt;
        match zero_rtt {
            ZeroRtt::Accepted => st.zero_rtt_counts.accepted += 1,
            ZeroRtt::Rejected => st.zero_rtt_counts.rejected += 1,
            ZeroRtt::NotAttempted => {}
        }
        st.conn = Some(conn.clone());
        st.status = ClientStatus::Connected;
        // Under the lock: a `cut_connection` right after this sees the connection and reports
        // the cut after this report, never before it.
        shared.connected_tx.send_replace(true);
    }
    let mut acks = tokio::spawn(read_acks(shared.clone(), recv));
    // Wakes for the next resend deadline too, so a lost datagram is resent after the resend
    // timeout (which follows the ack round trip), not at the next backfill check.
    let mut next_due: Option<Instant> = None;
    // The backfill check also runs every `backfill_tick` while anything is unacknowledged (records
    // beyond the in-flight window or the per-pass limit are not in `next_due`). With an empty
    // buffer it would find nothing: then only a push (`wake`), an ack or a deadline wakes the task,
    // so thousands of idle devices cost no timer wake-ups.
    let mut next_check: Option<Instant> = Some(Instant::now());
    let end = loop {
        let deadline = match (next_due, next_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = shutdown.changed() => {
                conn.close(VarInt::from_u32(0), b"client closed");
                break End::Shutdown;
            }
            _ = conn.closed() => break End::Lost { welcomed: true },
            _ = &mut acks => {
                conn.close(VarInt::from_u32(1), b"ack stream ended");
                break End::Lost { welcomed: true };
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() => {}
            () = shared.wake.notified() => {}
        }
        let now = Instant::now();
        let taken = {
            let mut st = shared.lock();
            let taken = st.buffer.take_due(
                now,
                cfg.resend_policy(),
                cfg.backfill_batch.max(1) * 8,
                cfg.max_in_flight.max(1),
            );
            next_check = (!st.buffer.is_empty()).then(|| now + cfg.backfill_tick);
            taken
        };
        next_due = taken.next;
        let due = taken.records;
        if due.is_empty() {
            continue;
        }
        debug!(records = due.len(), "backfilling");
        tokio::select! {
            r = send_backfill(&conn, due, cfg.backfill_batch.max(1)) => {
                if let Err(e) = r {
                    debug!("backfill failed: {e}");
                    break End::Lost { welcomed: true };
                }
            }
            _ = shutdown.changed() => {
                conn.close(VarInt::from_u32(0), b"client closed");
                break End::Shutdown;
            }
        }
    };
    acks.abort();
    shared.connected_tx.send_replace(false);
    {
        let mut st = shared.lock();
        st.conn = None;
        if st.status == ClientStatus::Connected {
            st.status = ClientStatus::Connecting;
        }
    }
    end
}

/// Sends records on a new unidirectional stream in `Batch` messages, flagged as backfill.
async fn send_backfill(
    conn: &quinn::Connection,
    records: Vec<PositionRecord>,
    batch: usize,
) -> Result<(), String> {
    let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
    for chunk in records.chunks(batch) {
        let msg = DeviceMessage::Batch(PositionBatch {
            version: PROTOCOL_VERSION,
            records: chunk
                .iter()
                .map(|r| PositionRecord {
                    flags: r.flags | RecordFlags::BACKFILL,
                    ..*r
                })
                .collect(),
        });
        stream
            .write_all(&encode_message(&msg))
            .await
            .map_err(|e| e.to_string())?;
    }
    stream.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// Applies `Ack` messages from the handshake stream until it ends.
async fn read_acks(shared: Arc<Shared>, mut recv: quinn::RecvStream) {
    loop {
        match read_body(&mut recv).await {
            Ok(Some(body)) => match decode_message(&body, now_ms()) {
                Ok(DeviceMessage::Ack(a)) => shared.apply_ack(a.acked_seq),
                Ok(other) => debug!("unexpected message on the handshake stream: {other:?}"),
                Err(e) => {
                    debug!("undecodable message from the engine: {e}");
                    return;
                }
            },
            Ok(None) => return,
            Err(e) => {
                debug!("handshake stream failed: {e}");
                return;
            }
        }
    }
}
