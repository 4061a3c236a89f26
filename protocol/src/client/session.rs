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

use super::{ClientStatus, Shared};
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

/// One connection from connect to loss.
async fn session(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let cfg = &shared.config;
    let handshake = async {
        let conn = endpoint
            .connect_with(shared.quic.clone(), cfg.server, &cfg.server_name)
            .map_err(|e| Failure::Other(e.to_string()))?
            .await
            .map_err(|e| match e {
                quinn::ConnectionError::ConnectionClosed(c)
                    if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
                {
                    Failure::Busy
                }
                e => Failure::Other(e.to_string()),
            })?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        let hello = DeviceMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_token: cfg.token.clone(),
            last_acked_seq: shared.lock().buffer.acked(),
        });
        send.write_all(&encode_message(&hello))
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        let body = read_body(&mut recv)
            .await
            .map_err(Failure::Other)?
            .ok_or_else(|| Failure::Other("handshake stream closed".to_string()))?;
        let msg = decode_message(&body, now_ms()).map_err(|e| Failure::Other(e.to_string()))?;
        Ok::<_, Failure>((conn, send, recv, msg))
    };
    let result = tokio::select! {
        r = tokio::time::timeout(cfg.connect_timeout, handshake) => r,
        _ = shutdown.changed() => return End::Shutdown,
    };
    let (conn, _send, recv, msg) = match result {
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
        "connected"
    );
    shared.apply_ack(welcome.acked_seq);
    {
        let mut st = shared.lock();
        st.buffer.reset_sent();
        st.conn = Some(conn.clone());
        st.status = ClientStatus::Connected;
    }
    shared.connected_tx.send_replace(true);
    let mut acks = tokio::spawn(read_acks(shared.clone(), recv));
    let mut tick = tokio::time::interval(cfg.backfill_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
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
            _ = tick.tick() => {}
            () = shared.wake.notified() => {}
        }
        let due = shared.lock().buffer.take_due(
            Instant::now(),
            cfg.resend_after,
            cfg.backfill_batch.max(1) * 8,
            cfg.max_in_flight.max(1),
        );
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
