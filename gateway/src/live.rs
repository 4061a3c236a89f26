//! The live WebSocket (`GET /v1/races/{race}/live`): snapshot, then one delta per tick.
//!
//! Owns the per-client loop: start (snapshot or resume), per-client viewport/follow filters and
//! encoding, resync on lag, byte budget (close 4008), pings and idle/write timeouts. The loop is
//! generic over a `Sink<Message>` and a `Stream<Item = Result<Message, E>>` so it is tested
//! without sockets. Does not merge or encode shared frames: the hub does that once per tick.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flevum_protocol::{FanFrame, RiderView, encode_frame_binary, encode_frame_json};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::api::{check_viewer, race_exists};
use crate::error::ApiError;
use crate::hub::{Encoding, HubEvent, LiveStart, LiveSubscription, SharedFrame};
use crate::metrics as m;
use crate::state::GatewayState;

/// Close code: the client's queued bytes exceeded its budget (reconnect and resync).
pub const CLOSE_BYTE_BUDGET: u16 = 4008;
/// Close code: unknown race.
pub const CLOSE_UNKNOWN_RACE: u16 = 4004;
/// Close code: private race without a valid viewer token.
pub const CLOSE_FORBIDDEN: u16 = 4003;
/// Close code: server going away (shutdown) or idle.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Timing and budget of one live client.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Close after this long without anything from the client.
    pub idle_timeout: Duration,
    /// Close when one write takes longer.
    pub write_timeout: Duration,
    /// Close with 4008 when more delta bytes than this are queued behind the client.
    pub byte_budget: u64,
}

/// Why a live connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEnd {
    /// The client closed or the stream ended.
    ClientGone,
    /// Closed with 4008.
    ByteBudget,
    /// Nothing received for the idle timeout.
    Idle,
    /// A write timed out or failed.
    WriteFailed,
    /// The server is shutting down.
    Shutdown,
    /// The hub dropped the race channel.
    HubClosed,
}

/// A command from the client (text JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientCommand {
    /// Riders to always include, whatever the viewport.
    Follow {
        /// Rider ids.
        riders: Vec<u32>,
    },
    /// Map viewport `[minLon, minLat, maxLon, maxLat]`, or null for everything.
    Viewport {
        /// The bounding box.
        bbox: Option<[f64; 4]>,
    },
    /// Switch between JSON text and binary frames.
    Encoding {
        /// The new encoding.
        value: Encoding,
    },
}

/// A client's filter: riders outside the viewport and not followed are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientFilter {
    /// Followed riders.
    pub follow: HashSet<u32>,
    /// Viewport, None = the whole world (no filtering).
    pub bbox: Option<[f64; 4]>,
}

impl ClientFilter {
    /// True if frames must be filtered (and encoded) for this client alone.
    pub fn is_active(&self) -> bool {
        self.bbox.is_some()
    }

    /// Whether the client sees this rider.
    pub fn keeps(&self, r: &RiderView) -> bool {
        match self.bbox {
            None => true,
            Some([min_lon, min_lat, max_lon, max_lat]) => {
                self.follow.contains(&r.rider_id)
                    || (r.lat >= min_lat
                        && r.lat <= max_lat
                        && if min_lon <= max_lon {
                            r.lon >= min_lon && r.lon <= max_lon
                        } else {
                            // viewport across the antimeridian
                            r.lon >= min_lon || r.lon <= max_lon
                        })
            }
        }
    }

    /// The frame as this client sees it, or None when nothing is filtered out (use the shared
    /// bytes).
    fn apply(&self, frame: &FanFrame) -> Option<FanFrame> {
        if !self.is_active() {
            return None;
        }
        match frame {
            FanFrame::Delta(d) => {
                let mut d = d.clone();
                d.states.retain(|r| self.keeps(r));
                Some(FanFrame::Delta(d))
            }
            FanFrame::Snapshot(s) => {
                let mut s = s.clone();
                s.states.retain(|r| self.keeps(r));
                Some(FanFrame::Snapshot(s))
            }
            FanFrame::Alert(_) => None,
        }
    }
}

/// Per-connection state of the loop.
struct Client<S> {
    /// Where frames go.
    sink: S,
    /// JSON or binary.
    encoding: Encoding,
    /// Viewport and follow set.
    filter: ClientFilter,
    /// `(epoch, tick)` of the last snapshot or delta sent, to skip overlaps after a resync.
    last: Option<(u64, u64)>,
    /// Write timeout.
    write_timeout: Duration,
    /// `WS_BYTES_SENT`, looked up once per client instead of once per frame.
    bytes_sent: metrics::Counter,
}

/// Sending failed or timed out.
struct SendFailed;

impl<S> Client<S>
where
    S: Sink<Message> + Unpin,
{
    /// Writes one message within the write timeout.
    async fn send(&mut self, msg: Message) -> Result<(), SendFailed> {
        match tokio::time::timeout(self.write_timeout, self.sink.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SendFailed),
            Err(_) => {
                metrics::counter!(m::WS_TIMEOUTS).increment(1);
                Err(SendFailed)
            }
        }
    }

    /// Sends a snapshot or delta frame, filtered for this client if it has a viewport.
    async fn send_frame(&mut self, frame: &SharedFrame) -> Result<(), SendFailed> {
        if let (Some((le, lt)), FanFrame::Delta(d)) = (self.last, frame.frame())
            && le == d.epoch
            && d.tick <= lt
        {
            return Ok(());
        }
        let msg = match self.filter.apply(frame.frame()) {
            // The shared encoding: a reference count per client, no copy and no UTF-8 check.
            None => match self.encoding {
                Encoding::Json => Message::Text(frame.json_text()),
                Encoding::Binary => Message::Binary(frame.binary()),
            },
            Some(own) => {
                metrics::counter!(m::WS_FILTERED_ENCODES).increment(1);
                let bytes = match self.encoding {
                    Encoding::Json => encode_frame_json(&own),
                    Encoding::Binary => encode_frame_binary(&own),
                };
                match self.encoding {
                    Encoding::Json => match Utf8Bytes::try_from(bytes) {
                        Ok(text) => Message::Text(text),
                        Err(_) => Message::Text(Utf8Bytes::default()),
                    },
                    Encoding::Binary => Message::Binary(bytes),
                }
            }
        };
        if let Some(pos) = frame.position() {
            self.last = Some(pos);
        }
        self.send_data(msg).await
    }

    /// Sends a text (JSON) or binary data frame; an empty text (an encoding that was not
    /// UTF-8) is not sent.
    async fn send_data(&mut self, msg: Message) -> Result<(), SendFailed> {
        let len = match &msg {
            Message::Text(t) if t.is_empty() => return Ok(()),
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        self.bytes_sent.increment(len as u64);
        self.send(msg).await
    }

    /// Sends a close frame (best effort).
    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    }
}

/// Runs one live client until it leaves, lags past its byte budget, idles or the server stops.
pub async fn serve_live<S, R, E>(
    sink: S,
    mut stream: R,
    sub: LiveSubscription,
    settings: LiveSettings,
    encoding: Encoding,
    mut shutdown: watch::Receiver<bool>,
) -> LiveEnd
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let LiveSubscription {
        race,
        start,
        mut rx,
    } = sub;
    let mut client = Client {
        sink,
        encoding,
        filter: ClientFilter::default(),
        last: None,
        write_timeout: settings.write_timeout,
        bytes_sent: metrics::counter!(m::WS_BYTES_SENT),
    };
    if *shutdown.borrow() {
        client.close(CLOSE_GOING_AWAY, "server shutting down").await;
        return LiveEnd::Shutdown;
    }
    let started = match start {
        LiveStart::Snapshot(frame) => client.send_frame(&frame).await,
        LiveStart::Resume(frames) => {
            metrics::counter!(m::WS_RESUMED).increment(1);
            let mut res = Ok(());
            for f in &frames {
                res = client.send_frame(f).await;
                if res.is_err() {
                    break;
                }
            }
            if frames.is_empty() {
                client.last = race.position();
            }
            res
        }
        LiveStart::Waiting => Ok(()),
    };
    if started.is_err() {
        return LiveEnd::WriteFailed;
    }

    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let mut watch_shutdown = true;

    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed(), if watch_shutdown => {
                if changed.is_err() {
                    watch_shutdown = false;
                } else if *shutdown.borrow() {
                    client.close(CLOSE_GOING_AWAY, "server shutting down").await;
                    return LiveEnd::Shutdown;
                }
            }
            incoming = stream.next() => {
                last_seen = Instant::now();
                match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return LiveEnd::ClientGone,
                    Some(Ok(Message::Text(text))) => {
                        match serde_json::from_str::<ClientCommand>(text.as_str()) {
                            Ok(cmd) => {
                                if apply_command(&mut client, cmd, &race).await.is_err() {
                                    return LiveEnd::WriteFailed;
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "ignoring malformed client command"),
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
            event = rx.recv() => {
                let sent = match event {
                    Ok(HubEvent::Delta { frame, mark }) => {
                        let queued = race.published_bytes().saturating_sub(mark);
                        if queued > settings.byte_budget {
                            metrics::counter!(m::WS_BUDGET_CLOSES).increment(1);
                            client.close(CLOSE_BYTE_BUDGET, "byte budget exceeded").await;
                            return LiveEnd::ByteBudget;
                        }
                        client.send_frame(&frame).await
                    }
                    Ok(HubEvent::Snapshot) => send_current_snapshot(&mut client, &race).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        metrics::counter!(m::WS_RESYNCS).increment(1);
                        tracing::debug!(missed, "client lagged; resync with a snapshot");
                        send_current_snapshot(&mut client, &race).await
                    }
                    Err(broadcast::error::RecvError::Closed) => return LiveEnd::HubClosed,
                };
                if sent.is_err() {
                    return LiveEnd::WriteFailed;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > settings.idle_timeout {
                    metrics::counter!(m::WS_TIMEOUTS).increment(1);
                    client.close(CLOSE_GOING_AWAY, "idle timeout").await;
                    return LiveEnd::Idle;
                }
                if client.send(Message::Ping(Bytes::new())).await.is_err() {
                    return LiveEnd::WriteFailed;
                }
            }
        }
    }
}

/// Sends the hub's current snapshot (a resync), forgetting the last position so it is sent.
async fn send_current_snapshot<S>(
    client: &mut Client<S>,
    race: &crate::hub::RaceHandle,
) -> Result<(), SendFailed>
where
    S: Sink<Message> + Unpin,
{
    match race.snapshot_frame() {
        Some(frame) => {
            client.last = None;
            client.send_frame(&frame).await
        }
        None => Ok(()),
    }
}

/// Applies a client command; a changed filter or encoding is followed by a fresh snapshot so
/// the client's map matches its new view.
async fn apply_command<S>(
    client: &mut Client<S>,
    cmd: ClientCommand,
    race: &crate::hub::RaceHandle,
) -> Result<(), SendFailed>
where
    S: Sink<Message> + Unpin,
{
    match cmd {
        ClientCommand::Follow { riders } => {
            client.filter.follow = riders.into_iter().collect();
            Ok(())
        }
        ClientCommand::Viewport { bbox } => {
            let valid = bbox.is_none_or(|b| b.iter().all(|v| v.is_finite()) && b[1] <= b[3]);
            if valid {
                client.filter.bbox = bbox;
            }
            Ok(())
        }
        ClientCommand::Encoding { value } => {
            if value != client.encoding {
                client.encoding = value;
                return send_current_snapshot(client, race).await;
            }
            Ok(())
        }
    }
}

/// Query of the live endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LiveQuery {
    /// `epoch:tick` of the last frame the client applied.
    pub resume: Option<String>,
    /// Initial encoding (`json` default, or `binary`).
    pub encoding: Option<Encoding>,
    /// Viewer token for private races.
    pub viewer: Option<String>,
}

/// Parses `epoch:tick`.
pub fn parse_resume(s: &str) -> Option<(u64, u64)> {
    let (e, t) = s.split_once(':')?;
    Some((e.trim().parse().ok()?, t.trim().parse().ok()?))
}

/// Checks race and viewer before the upgrade; Err carries the close code to send after it.
pub(crate) async fn admission(
    state: &GatewayState,
    race: &str,
    headers: &HeaderMap,
    viewer: Option<&str>,
) -> Result<(), (u16, &'static str)> {
    if !race_exists(state, race).await {
        return Err((CLOSE_UNKNOWN_RACE, "unknown race"));
    }
    match check_viewer(state, race, headers, viewer).await {
        Ok(()) => Ok(()),
        Err(_) => Err((CLOSE_FORBIDDEN, "viewer token required")),
    }
}

/// Upgrades and closes immediately with `code`.
pub(crate) fn refuse(ws: WebSocketUpgrade, code: u16, reason: &'static str) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    })
}

/// `GET /v1/races/{race}/live`.
pub async fn live_ws(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    Query(q): Query<LiveQuery>,
    headers: HeaderMap,
    crate::router::ClientIp(ip): crate::router::ClientIp,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(guard) = state.connections.acquire(ip) else {
        return ApiError::too_many_connections().into_response();
    };
    if let Err((code, reason)) = admission(&state, &race, &headers, q.viewer.as_deref()).await {
        return refuse(ws, code, reason);
    }
    let resume = q.resume.as_deref().and_then(parse_resume);
    let encoding = q.encoding.unwrap_or_default();
    let settings = LiveSettings {
        ping_interval: state.config.ping_interval(),
        idle_timeout: state.config.idle_timeout(),
        write_timeout: state.config.write_timeout(),
        byte_budget: state.config.client_byte_budget as u64,
    };
    let span = tracing::info_span!("live_ws", race = %race, %ip);
    // Fans send a few small commands, so a small read buffer (tungstenite's default is 128 KiB
    // per connection) keeps an idle fan's memory low; writes are flushed once per tick.
    ws.max_message_size(crate::limits::FAN_MESSAGE_MAX_BYTES)
        .max_frame_size(crate::limits::FAN_MESSAGE_MAX_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| {
            async move {
                let sub = state.hub.subscribe_live(&race, resume);
                let (sink, stream) = socket.split();
                let end = serve_live(
                    sink,
                    stream,
                    sub,
                    settings,
                    encoding,
                    state.shutdown.clone(),
                )
                .await;
                tracing::debug!(?end, "live client done");
                drop(guard);
            }
            .instrument(span)
        })
}

/// The shared pre-encoded snapshot of a race, for tests and callers outside the loop.
pub fn shared_snapshot(state: &GatewayState, race: &str) -> Option<Arc<SharedFrame>> {
    state.hub.race_handle(race).and_then(|r| r.snapshot_frame())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests::{delta, rider, snapshot};
    use crate::hub::{HubConfig, LiveHub};
    use flevum_protocol::{decode_frame_binary, decode_frame_json};
    use std::pin::Pin;
    use tokio::sync::mpsc;

    type TestSink = Pin<Box<dyn Sink<Message, Error = ()> + Send>>;
    type TestStream = Pin<Box<dyn Stream<Item = Result<Message, ()>> + Send>>;

    fn pipes() -> (
        TestSink,
        mpsc::UnboundedReceiver<Message>,
        TestStream,
        mpsc::UnboundedSender<Message>,
    ) {
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Message>();
        let sink = futures_util::sink::unfold(out_tx, |tx, msg: Message| async move {
            tx.send(msg).map_err(|_| ())?;
            Ok::<_, ()>(tx)
        });
        let (in_tx, in_rx) = mpsc::unbounded_channel::<Message>();
        let stream = futures_util::stream::unfold(in_rx, |mut rx| async move {
            rx.recv().await.map(|m| (Ok::<_, ()>(m), rx))
        });
        (Box::pin(sink), out_rx, Box::pin(stream), in_tx)
    }

    fn settings(budget: u64) -> LiveSettings {
        LiveSettings {
            ping_interval: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(7200),
            write_timeout: Duration::from_secs(3600),
            byte_budget: budget,
        }
    }

    fn frame_of(msg: &Message) -> FanFrame {
        match msg {
            Message::Text(t) => decode_frame_json(t.as_bytes()).unwrap(),
            Message::Binary(b) => decode_frame_binary(b).unwrap(),
            other => panic!("unexpected message {other:?}"),
        }
    }

    fn no_shutdown() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    #[tokio::test]
    async fn snapshot_then_shared_deltas() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot("r", 1, 0, vec![rider(1, 5.0, 52.0)]));
        let (sink, mut out, stream, input) = pipes();
        let sub = hub.subscribe_live("r", None);
        let task = tokio::spawn(serve_live(
            sink,
            stream,
            sub,
            settings(1 << 20),
            Encoding::Json,
            no_shutdown(),
        ));
        let first = out.recv().await.unwrap();
        assert!(matches!(frame_of(&first), FanFrame::Snapshot(s) if s.tick == 0));
        hub.publish_delta(delta("r", 1, 1, vec![rider(1, 5.01, 52.0)]));
        let second = out.recv().await.unwrap();
        match (&second, frame_of(&second)) {
            (Message::Text(t), FanFrame::Delta(d)) => {
                assert_eq!(d.tick, 1);
                assert!(t.as_str().starts_with("{\"frame\":\"delta\""));
            }
            other => panic!("expected a delta, got {other:?}"),
        }
        drop(input);
        assert_eq!(task.await.unwrap(), LiveEnd::ClientGone);
    }

    #[tokio::test]
    async fn viewport_filters_and_follow_keeps() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot(
            "r",
            1,
            0,
            vec![rider(1, 5.0, 52.0), rider(2, 9.0, 48.0)],
        ));
        let (sink, mut out, stream, input) = pipes();
        let cmd = |s: &str| Message::Text(Utf8Bytes::from(s.to_string()));
        input
            .send(cmd(r#"{"type":"viewport","bbox":[4.5,51.5,5.5,52.5]}"#))
            .unwrap();
        input
            .send(cmd(r#"{"type":"follow","riders":[3]}"#))
            .unwrap();
        let sub = hub.subscribe_live("r", None);
        let task = tokio::spawn(serve_live(
            sink,
            stream,
            sub,
            settings(1 << 20),
            Encoding::Json,
            no_shutdown(),
        ));
        let _snap = out.recv().await.unwrap();
        // commands are read before hub events (biased select), so this delta is filtered
        hub.publish_delta(delta(
            "r",
            1,
            1,
            vec![
                rider(1, 5.1, 52.1),
                rider(2, 9.1, 48.1),
                rider(3, 20.0, 10.0),
            ],
        ));
        let FanFrame::Delta(d) = frame_of(&out.recv().await.unwrap()) else {
            panic!()
        };
        let ids: Vec<u32> = d.states.iter().map(|s| s.rider_id).collect();
        assert_eq!(
            ids,
            [1, 3],
            "rider 2 is outside the viewport and not followed"
        );
        input
            .send(cmd(r#"{"type":"viewport","bbox":null}"#))
            .unwrap();
        input
            .send(cmd(r#"{"type":"encoding","value":"binary"}"#))
            .unwrap();
        // switching encoding sends a fresh snapshot in the new encoding
        let m = out.recv().await.unwrap();
        assert!(matches!(m, Message::Binary(_)));
        let FanFrame::Snapshot(s) = frame_of(&m) else {
            panic!()
        };
        assert_eq!(s.states.len(), 3, "no viewport: everything");
        hub.publish_delta(delta("r", 1, 2, vec![rider(2, 9.2, 48.2)]));
        let m = out.recv().await.unwrap();
        let shared = hub.subscribe_live("r", Some((1, 1)));
        let LiveStart::Resume(frames) = shared.start else {
            panic!()
        };
        match m {
            Message::Binary(b) => {
                assert_eq!(b.as_ptr(), frames[0].binary().as_ptr(), "shared bytes")
            }
            other => panic!("expected binary, got {other:?}"),
        }
        drop(input);
        assert_eq!(task.await.unwrap(), LiveEnd::ClientGone);
    }

    #[tokio::test]
    async fn lagging_client_gets_a_fresh_snapshot() {
        let hub = LiveHub::new(HubConfig {
            channel_capacity: 2,
            ..HubConfig::default()
        });
        hub.publish_snapshot(snapshot("r", 1, 0, vec![rider(1, 5.0, 52.0)]));
        let (sink, mut out, stream, input) = pipes();
        let sub = hub.subscribe_live("r", None);
        for t in 1..=10 {
            hub.publish_delta(delta(
                "r",
                1,
                t,
                vec![rider(1, 5.0 + t as f64 * 0.001, 52.0)],
            ));
        }
        let task = tokio::spawn(serve_live(
            sink,
            stream,
            sub,
            settings(1 << 30),
            Encoding::Json,
            no_shutdown(),
        ));
        let FanFrame::Snapshot(s0) = frame_of(&out.recv().await.unwrap()) else {
            panic!()
        };
        assert_eq!(s0.tick, 0);
        let FanFrame::Snapshot(s1) = frame_of(&out.recv().await.unwrap()) else {
            panic!("resync snapshot expected")
        };
        assert_eq!(s1.tick, 10);
        // the deltas still buffered (ticks 9, 10) are older than the snapshot: skipped
        hub.publish_delta(delta("r", 1, 11, vec![]));
        let FanFrame::Delta(d) = frame_of(&out.recv().await.unwrap()) else {
            panic!()
        };
        assert_eq!(d.tick, 11);
        drop(input);
        assert_eq!(task.await.unwrap(), LiveEnd::ClientGone);
    }

    #[tokio::test]
    async fn byte_budget_closes_with_4008() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        let (sink, mut out, stream, _input) = pipes();
        let sub = hub.subscribe_live("r", None);
        for t in 1..=5 {
            hub.publish_delta(delta("r", 1, t, vec![rider(1, 5.0, 52.0)]));
        }
        let end = serve_live(
            sink,
            stream,
            sub,
            settings(100),
            Encoding::Json,
            no_shutdown(),
        )
        .await;
        assert_eq!(end, LiveEnd::ByteBudget);
        let _snapshot = out.recv().await.unwrap();
        match out.recv().await.unwrap() {
            Message::Close(Some(cf)) => assert_eq!(cf.code, CLOSE_BYTE_BUDGET),
            other => panic!("expected close, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn resume_sends_missed_deltas_without_snapshot() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        for t in 1..=4 {
            hub.publish_delta(delta("r", 1, t, vec![]));
        }
        let (sink, mut out, stream, input) = pipes();
        let sub = hub.subscribe_live("r", Some((1, 2)));
        let task = tokio::spawn(serve_live(
            sink,
            stream,
            sub,
            settings(1 << 20),
            Encoding::Json,
            no_shutdown(),
        ));
        for want in [3, 4] {
            let FanFrame::Delta(d) = frame_of(&out.recv().await.unwrap()) else {
                panic!("no snapshot on resume")
            };
            assert_eq!(d.tick, want);
        }
        drop(input);
        assert_eq!(task.await.unwrap(), LiveEnd::ClientGone);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_then_idle_close() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        let (sink, mut out, stream, _input) = pipes();
        let sub = hub.subscribe_live("r", None);
        let s = LiveSettings {
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(40),
            ..settings(1 << 20)
        };
        let end = serve_live(sink, stream, sub, s, Encoding::Json, no_shutdown()).await;
        assert_eq!(end, LiveEnd::Idle);
        let _snap = out.recv().await.unwrap();
        assert!(matches!(out.recv().await.unwrap(), Message::Ping(_)));
        assert!(matches!(out.recv().await.unwrap(), Message::Ping(_)));
        assert!(
            matches!(out.recv().await.unwrap(), Message::Close(Some(cf)) if cf.code == CLOSE_GOING_AWAY)
        );
    }

    #[test]
    fn resync_is_counted_in_a_metric() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                let hub = LiveHub::new(HubConfig {
                    channel_capacity: 1,
                    ..HubConfig::default()
                });
                hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
                let (sink, mut out, stream, input) = pipes();
                let sub = hub.subscribe_live("r", None);
                for t in 1..=3 {
                    hub.publish_delta(delta("r", 1, t, vec![]));
                }
                let task = tokio::spawn(serve_live(
                    sink,
                    stream,
                    sub,
                    settings(1 << 30),
                    Encoding::Json,
                    no_shutdown(),
                ));
                let _first = out.recv().await.unwrap();
                let FanFrame::Snapshot(s) = frame_of(&out.recv().await.unwrap()) else {
                    panic!("resync snapshot expected")
                };
                assert_eq!(s.tick, 3);
                drop(input);
                task.await.unwrap();
            });
        });
        assert!(
            handle
                .render()
                .contains("flevum_gateway_ws_resyncs_total 1"),
            "{}",
            handle.render()
        );
    }

    #[test]
    fn resume_parsing() {
        assert_eq!(parse_resume("3:17"), Some((3, 17)));
        assert_eq!(parse_resume("3"), None);
        assert_eq!(parse_resume("a:1"), None);
    }
}
