//! The alerts feed `GET /v1/races/{race}/alerts`: WebSocket, SSE (resumable) or JSON history.
//!
//! Owns the feed filters (types, rider, minimum severity), the choice of transport by request
//! (upgrade header, `Accept: text/event-stream`, else JSON) and resume (`Last-Event-ID`,
//! `?since=`). Does not create alerts: the engine publishes them into the hub's ring.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flevum_protocol::{Alert, FanFrame, Severity, encode_frame_json};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::api::check_viewer;
use crate::error::ApiError;
use crate::hub::AlertSubscription;
use crate::limits::ConnectionGuard;
use crate::live::{CLOSE_BYTE_BUDGET, CLOSE_GOING_AWAY, LiveEnd, admission, refuse};
use crate::metrics as m;
use crate::state::GatewayState;

/// Query of the alerts feed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertsQuery {
    /// Comma-separated alert types (`breakaway_formed,possible_crash`); empty = all.
    pub types: Option<String>,
    /// Only alerts involving this rider.
    pub rider: Option<u32>,
    /// Minimum severity (`info`, `notable`, `critical`).
    pub min_severity: Option<Severity>,
    /// Only alerts with a greater sequence number.
    pub since: Option<u64>,
    /// Viewer token for private races.
    pub viewer: Option<String>,
}

/// A parsed alert filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Allowed types; empty = all.
    pub types: HashSet<String>,
    /// Required rider.
    pub rider: Option<u32>,
    /// Minimum severity.
    pub min_severity: Option<Severity>,
}

/// The serde tag (`type`) of an alert's kind, e.g. `breakaway_formed`.
pub fn alert_type(alert: &Alert) -> String {
    serde_json::to_value(&alert.kind)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_default()
}

impl AlertFilter {
    /// The filter of a query.
    pub fn from_query(q: &AlertsQuery) -> AlertFilter {
        AlertFilter {
            types: q
                .types
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            rider: q.rider,
            min_severity: q.min_severity,
        }
    }

    /// Whether the alert passes.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.min_severity.is_none_or(|min| alert.severity >= min)
            && self.rider.is_none_or(|r| alert.riders.contains(&r))
            && (self.types.is_empty() || self.types.contains(&alert_type(alert)))
    }
}

/// Timing of an alerts WebSocket client.
#[derive(Debug, Clone, Copy)]
pub struct AlertsTiming {
    /// Close when one write takes longer.
    pub write_timeout: Duration,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Close after this long without anything from the client.
    pub idle_timeout: Duration,
}

/// Writes one message within the timeout.
async fn send_within<S>(sink: &mut S, msg: Message, timeout: Duration) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    match tokio::time::timeout(timeout, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The close message with `code`.
fn close_msg(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Runs one alerts WebSocket client: the filtered backlog, then live alerts as `FanFrame::Alert`
/// JSON text frames. A client that falls behind the hub's alert channel is closed with 4008
/// (it reconnects with `?since=<last seq>` and resumes from the ring).
pub async fn serve_alerts<S, R, E>(
    mut sink: S,
    mut stream: R,
    sub: AlertSubscription,
    filter: &AlertFilter,
    timing: AlertsTiming,
    mut shutdown: watch::Receiver<bool>,
) -> LiveEnd
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let _gauge = SubscriberGauge::new();
    let encode = |a: &Alert| {
        Utf8Bytes::try_from(encode_frame_json(&FanFrame::Alert(a.clone()))).map(Message::Text)
    };
    for a in sub.backlog.iter().filter(|a| filter.matches(a)) {
        if let Ok(msg) = encode(a)
            && send_within(&mut sink, msg, timing.write_timeout)
                .await
                .is_err()
        {
            return LiveEnd::WriteFailed;
        }
    }
    let mut rx = sub.rx;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.ping_interval,
        timing.ping_interval,
    );
    let mut last_seen = tokio::time::Instant::now();
    let mut watch_shutdown = true;
    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed(), if watch_shutdown => {
                if changed.is_err() {
                    watch_shutdown = false;
                } else if *shutdown.borrow() {
                    let _ = send_within(&mut sink, close_msg(CLOSE_GOING_AWAY, "server shutting down"), timing.write_timeout).await;
                    return LiveEnd::Shutdown;
                }
            }
            incoming = stream.next() => {
                last_seen = tokio::time::Instant::now();
                match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return LiveEnd::ClientGone,
                    Some(Ok(_)) => {}
                }
            }
            event = rx.recv() => match event {
                Ok(a) => {
                    if filter.matches(&a)
                        && let Ok(msg) = encode(&a)
                        && send_within(&mut sink, msg, timing.write_timeout).await.is_err()
                    {
                        return LiveEnd::WriteFailed;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!(m::WS_BUDGET_CLOSES).increment(1);
                    let _ = send_within(&mut sink, close_msg(CLOSE_BYTE_BUDGET, "alert queue exceeded; resume with since"), timing.write_timeout).await;
                    return LiveEnd::ByteBudget;
                }
                Err(broadcast::error::RecvError::Closed) => return LiveEnd::HubClosed,
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > timing.idle_timeout {
                    let _ = send_within(&mut sink, close_msg(CLOSE_GOING_AWAY, "idle timeout"), timing.write_timeout).await;
                    return LiveEnd::Idle;
                }
                if send_within(&mut sink, Message::Ping(bytes::Bytes::new()), timing.write_timeout).await.is_err() {
                    return LiveEnd::WriteFailed;
                }
            }
        }
    }
}

/// `GET /v1/races/{race}/alerts`: WebSocket upgrade, SSE, or JSON history.
pub async fn alerts(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    Query(q): Query<AlertsQuery>,
    headers: HeaderMap,
    crate::router::ClientIp(ip): crate::router::ClientIp,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let filter = AlertFilter::from_query(&q);
    if let Ok(ws) = ws {
        let Some(guard) = state.connections.acquire(ip) else {
            return ApiError::too_many_connections().into_response();
        };
        if let Err((code, reason)) = admission(&state, &race, &headers, q.viewer.as_deref()).await {
            return refuse(ws, code, reason);
        }
        let span = tracing::info_span!("alerts_ws", race = %race, %ip);
        let timing = AlertsTiming {
            write_timeout: state.config.write_timeout(),
            ping_interval: state.config.ping_interval(),
            idle_timeout: state.config.idle_timeout(),
        };
        return ws
            .max_message_size(crate::limits::FAN_MESSAGE_MAX_BYTES)
            .max_frame_size(crate::limits::FAN_MESSAGE_MAX_BYTES)
            .read_buffer_size(4 * 1024)
            .write_buffer_size(16 * 1024)
            .on_upgrade(move |socket| {
                async move {
                    let sub = state.hub.subscribe_alerts(&race, q.since);
                    let (sink, stream) = socket.split();
                    let end =
                        serve_alerts(sink, stream, sub, &filter, timing, state.shutdown.clone())
                            .await;
                    tracing::debug!(?end, "alerts client done");
                    drop(guard);
                }
                .instrument(span)
            });
    }

    if let Err(e) = crate::api::require_race(&state, &race).await {
        return e.into_response();
    }
    if let Err(e) = check_viewer(&state, &race, &headers, q.viewer.as_deref()).await {
        return e.into_response();
    }
    let wants_sse = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        let last_id = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // A commentator tuning in mid-race first gets the last few alerts for context; a
        // reconnecting client resumes exactly after the last one it saw.
        let since = last_id.or(q.since).or_else(|| {
            state
                .hub
                .last_alert_seq(&race)
                .map(|seq| seq.saturating_sub(SSE_CONTEXT_ALERTS))
        });
        // An SSE stream is as long-lived as a WebSocket: it takes a slot under the same caps.
        let Some(guard) = state.connections.acquire(ip) else {
            return ApiError::too_many_connections().into_response();
        };
        return sse(&state, &race, since, filter, guard).into_response();
    }
    let limit = state.config.alerts_page_limit;
    let list: Vec<Alert> = state
        .hub
        .alerts_since(&race, q.since.unwrap_or(0), usize::MAX)
        .into_iter()
        .filter(|a| filter.matches(a))
        .take(limit)
        .collect();
    Json(list).into_response()
}

/// Alerts replayed to a new SSE subscriber that names no position to resume from.
const SSE_CONTEXT_ALERTS: u64 = 20;

/// The SSE stream: backlog after `since`, then live alerts; ends when the client lags (it
/// reconnects with `Last-Event-ID` and resumes from the ring). It holds `slot` until it ends.
fn sse(
    state: &GatewayState,
    race: &str,
    since: Option<u64>,
    filter: AlertFilter,
    slot: ConnectionGuard,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>> + use<>> {
    let sub = state.hub.subscribe_alerts(race, since);
    let filter = Arc::new(filter);
    let backlog: Vec<Alert> = sub
        .backlog
        .into_iter()
        .filter(|a| filter.matches(a))
        .collect();
    let shutdown = state.shutdown.clone();
    let backlog_stream = futures_util::stream::iter(backlog.into_iter().map(|a| Ok(event_of(&a))));
    let live = futures_util::stream::unfold(
        (sub.rx, filter, shutdown, (SubscriberGauge::new(), slot)),
        |(mut rx, filter, mut shutdown, held)| async move {
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return None,
                    ev = rx.recv() => match ev {
                        Ok(a) if filter.matches(&a) => {
                            return Some((Ok(event_of(&a)), (rx, filter, shutdown, held)));
                        }
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            }
        },
    );
    Sse::new(backlog_stream.chain(live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Counts an open SSE subscriber for as long as it lives.
struct SubscriberGauge;

impl SubscriberGauge {
    /// Increments the gauge.
    fn new() -> SubscriberGauge {
        metrics::gauge!(m::ALERT_SUBSCRIBERS).increment(1.0);
        SubscriberGauge
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        metrics::gauge!(m::ALERT_SUBSCRIBERS).decrement(1.0);
    }
}

/// One SSE event: `id:` = seq, `event: alert`, data = the alert JSON.
fn event_of(alert: &Alert) -> Event {
    let data = serde_json::to_string(alert).unwrap_or_default();
    Event::default()
        .id(alert.seq.to_string())
        .event("alert")
        .data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests::alert;
    use flevum_protocol::AlertKind;

    #[tokio::test]
    async fn alerts_client_that_lags_is_closed_with_4008() {
        use crate::hub::{HubConfig, LiveHub};
        let hub = LiveHub::new(HubConfig {
            alert_channel_capacity: 2,
            ..HubConfig::default()
        });
        let sub = hub.subscribe_alerts("r", Some(0));
        for seq in 1..=5 {
            hub.publish_alert(
                "r",
                alert(seq, vec![], Severity::Info, AlertKind::RaceStarted),
            );
        }
        let (tx, mut out) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let sink = Box::pin(futures_util::sink::unfold(
            tx,
            |tx, m: Message| async move {
                tx.send(m).map_err(|_| ())?;
                Ok::<_, ()>(tx)
            },
        ));
        let stream = futures_util::stream::pending::<Result<Message, ()>>();
        let (_stx, srx) = watch::channel(false);
        let timing = AlertsTiming {
            write_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
        };
        let end = serve_alerts(sink, stream, sub, &AlertFilter::default(), timing, srx).await;
        assert_eq!(end, LiveEnd::ByteBudget);
        match out.recv().await.unwrap() {
            Message::Close(Some(cf)) => assert_eq!(cf.code, CLOSE_BYTE_BUDGET),
            other => panic!("expected close, got {other:?}"),
        }
    }

    #[test]
    fn filters() {
        let crash = alert(
            1,
            vec![12, 13],
            Severity::Critical,
            AlertKind::PossibleCrash,
        );
        let stop = alert(2, vec![12], Severity::Info, AlertKind::RiderStopped);
        let q = AlertsQuery {
            types: Some("breakaway_formed, possible_crash".into()),
            ..AlertsQuery::default()
        };
        let f = AlertFilter::from_query(&q);
        assert!(f.matches(&crash) && !f.matches(&stop));
        let f = AlertFilter {
            rider: Some(13),
            ..AlertFilter::default()
        };
        assert!(f.matches(&crash) && !f.matches(&stop));
        let f = AlertFilter {
            min_severity: Some(Severity::Notable),
            ..AlertFilter::default()
        };
        assert!(f.matches(&crash) && !f.matches(&stop));
        assert_eq!(alert_type(&stop), "rider_stopped");
    }
}
