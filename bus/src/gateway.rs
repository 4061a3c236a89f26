//! [`NatsGatewayBus`]: the gateway side of the NATS bus. Follows a race (subscribes to its
//! frames and alerts, fetches its snapshot) only while the gateway has clients for it, and feeds
//! what arrives into a [`FrameSink`] (the gateway's live hub).
//!
//! Owns gap detection: a delta that does not follow the last tick makes it ask for a fresh
//! snapshot. Does not serve clients; the hub does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flevum_protocol::{Delta, FanFrame, Snapshot, decode_frame_binary};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::metrics as m;
use crate::{BusConfig, BusError, FrameSink, subjects};

/// One followed race.
struct Watch {
    /// The feeder task.
    task: AbortHandle,
    /// Since when the race has had no watchers (None: watched now).
    idle_since: Option<Instant>,
}

/// Shared part of the gateway bus.
struct Inner {
    /// The NATS connection.
    client: async_nats::Client,
    /// Where received frames go.
    sink: Arc<dyn FrameSink>,
    /// Settings.
    config: BusConfig,
    /// Followed races by id.
    watched: Mutex<HashMap<String, Watch>>,
    /// The sweeper task that drops races nobody watches.
    sweeper: Mutex<Option<AbortHandle>>,
}

impl Inner {
    fn watched(&self) -> MutexGuard<'_, HashMap<String, Watch>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(s) = self.sweeper.get_mut().ok().and_then(Option::take) {
            s.abort();
        }
        for (_, w) in self
            .watched
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            w.task.abort();
        }
    }
}

/// The gateway side of the NATS bus; cheap to clone.
#[derive(Clone)]
pub struct NatsGatewayBus {
    /// Shared state.
    inner: Arc<Inner>,
}

impl NatsGatewayBus {
    /// Connects to NATS and starts the sweeper; follows no race yet.
    pub async fn connect(
        config: &BusConfig,
        sink: Arc<dyn FrameSink>,
    ) -> Result<NatsGatewayBus, BusError> {
        let client = config.connect().await?;
        let inner = Arc::new(Inner {
            client,
            sink,
            config: config.clone(),
            watched: Mutex::new(HashMap::new()),
            sweeper: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let period = (config.linger / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                sweep(&inner);
            }
        });
        if let Ok(mut s) = inner.sweeper.lock() {
            *s = Some(sweeper.abort_handle());
        }
        Ok(NatsGatewayBus { inner })
    }

    /// The NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// Follows `race_id` (idempotent): subscribes, fetches the snapshot, feeds the sink.
    pub fn watch(&self, race_id: &str) -> Result<(), BusError> {
        subjects::check_race_id(race_id)?;
        let mut watched = self.inner.watched();
        if let Some(w) = watched.get_mut(race_id) {
            w.idle_since = None;
            return Ok(());
        }
        let task = tokio::spawn(feed(
            self.inner.client.clone(),
            self.inner.sink.clone(),
            self.inner.config.clone(),
            race_id.to_string(),
        ));
        watched.insert(
            race_id.to_string(),
            Watch {
                task: task.abort_handle(),
                idle_since: None,
            },
        );
        metrics::gauge!(m::BUS_WATCHED_RACES).set(watched.len() as f64);
        info!(race = %race_id, "following race on the bus");
        Ok(())
    }

    /// Stops following `race_id` and tells the sink to forget it; false if not followed.
    pub fn unwatch(&self, race_id: &str) -> bool {
        let mut watched = self.inner.watched();
        let Some(w) = watched.remove(race_id) else {
            return false;
        };
        w.task.abort();
        self.inner.sink.forget(race_id);
        metrics::gauge!(m::BUS_WATCHED_RACES).set(watched.len() as f64);
        true
    }

    /// Races followed now, sorted.
    pub fn watching(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.watched().keys().cloned().collect();
        v.sort();
        v
    }

    /// A control request to the engines: `request` as JSON on `flevum.ctl.<method>`, the
    /// answer decoded from JSON.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, BusError> {
        crate::control::call(&self.inner.client, method, request).await
    }
}

/// Drops races that have had no watchers for the linger time.
fn sweep(inner: &Inner) {
    let now = Instant::now();
    let mut watched = inner.watched();
    let mut gone = Vec::new();
    for (race, w) in watched.iter_mut() {
        if inner.sink.watchers(race) > 0 {
            w.idle_since = None;
            continue;
        }
        let since = *w.idle_since.get_or_insert(now);
        if now.duration_since(since) >= inner.config.linger {
            gone.push(race.clone());
        }
    }
    for race in gone {
        if let Some(w) = watched.remove(&race) {
            w.task.abort();
            inner.sink.forget(&race);
            info!(race = %race, "no clients left; race no longer followed");
        }
    }
    metrics::gauge!(m::BUS_WATCHED_RACES).set(watched.len() as f64);
}

/// Where the feeder stands with a race.
struct Sync {
    /// `(epoch, tick)` of the last frame handed to the sink; None until a snapshot arrived.
    at: Option<(u64, u64)>,
    /// Deltas received while waiting for a snapshot, oldest first.
    pending: VecDeque<Delta>,
    /// A snapshot request is in flight.
    requesting: bool,
}

/// Follows one race until aborted: subscriptions first, then the snapshot, then the stream.
async fn feed(
    client: async_nats::Client,
    sink: Arc<dyn FrameSink>,
    config: BusConfig,
    race_id: String,
) {
    loop {
        match feed_once(&client, &sink, &config, &race_id).await {
            Ok(()) => return,
            Err(e) => {
                warn!(race = %race_id, "bus feed failed, retrying: {e}");
                tokio::time::sleep(config.snapshot_retry).await;
            }
        }
    }
}

async fn feed_once(
    client: &async_nats::Client,
    sink: &Arc<dyn FrameSink>,
    config: &BusConfig,
    race_id: &str,
) -> Result<(), BusError> {
    let subscribe = |subject: String| async move {
        client
            .subscribe(subject.clone())
            .await
            .map_err(|e| BusError::Subscribe {
                subject,
                message: e.to_string(),
            })
    };
    let mut frames = subscribe(subjects::frames(race_id)).await?;
    let mut alerts = subscribe(subjects::alerts(race_id)).await?;
    // The subscriptions are in place at the server before the snapshot is taken, so no tick
    // falls between the snapshot and the first delta.
    crate::config::round_trip(client, config.request_timeout).await?;
    let (snap_tx, mut snap_rx) = mpsc::channel::<Option<Snapshot>>(1);
    let mut sync = Sync {
        at: None,
        pending: VecDeque::new(),
        requesting: false,
    };
    request_snapshot(client, config, race_id, &snap_tx, &mut sync, Duration::ZERO);
    loop {
        tokio::select! {
            msg = frames.next() => {
                let Some(msg) = msg else { return Ok(()) };
                match decode(&msg.payload) {
                    Some(FanFrame::Snapshot(s)) => apply_snapshot(sink, &mut sync, s),
                    Some(FanFrame::Delta(d)) => {
                        metrics::counter!(m::BUS_RECEIVED, "kind" => "delta").increment(1);
                        match sync.at {
                            None => {
                                sync.pending.push_back(d);
                                while sync.pending.len() > config.pending_deltas.max(1) {
                                    sync.pending.pop_front();
                                }
                            }
                            Some((epoch, tick)) if d.epoch == epoch && d.tick == tick + 1 => {
                                sync.at = Some((epoch, d.tick));
                                sink.delta(d);
                            }
                            Some((epoch, tick)) if d.epoch == epoch && d.tick <= tick => {}
                            Some(_) => {
                                debug!(race = %race_id, tick = d.tick, "gap on the bus; resync");
                                sync.at = None;
                                sync.pending.clear();
                                sync.pending.push_back(d);
                                request_snapshot(client, config, race_id, &snap_tx, &mut sync, Duration::ZERO);
                            }
                        }
                    }
                    Some(FanFrame::Alert(_)) | None => {}
                }
            }
            msg = alerts.next() => {
                let Some(msg) = msg else { return Ok(()) };
                if let Some(FanFrame::Alert(a)) = decode(&msg.payload) {
                    metrics::counter!(m::BUS_RECEIVED, "kind" => "alert").increment(1);
                    sink.alert(race_id, a);
                }
            }
            Some(answer) = snap_rx.recv() => {
                sync.requesting = false;
                match answer {
                    Some(s) if sync.at.is_none() => apply_snapshot(sink, &mut sync, s),
                    None if sync.at.is_none() => {
                        request_snapshot(client, config, race_id, &snap_tx, &mut sync, config.snapshot_retry);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Hands a snapshot to the sink, then the held deltas that follow it.
fn apply_snapshot(sink: &Arc<dyn FrameSink>, sync: &mut Sync, s: Snapshot) {
    metrics::counter!(m::BUS_RECEIVED, "kind" => "snapshot").increment(1);
    let (epoch, mut tick) = (s.epoch, s.tick);
    sink.snapshot(s);
    for d in std::mem::take(&mut sync.pending) {
        if d.epoch == epoch && d.tick == tick + 1 {
            tick = d.tick;
            sink.delta(d);
        }
    }
    sync.at = Some((epoch, tick));
}

/// Starts a snapshot request (after `delay`) unless one is in flight; the answer (None: no
/// engine answered or it does not know the race) arrives on `tx`.
fn request_snapshot(
    client: &async_nats::Client,
    config: &BusConfig,
    race_id: &str,
    tx: &mpsc::Sender<Option<Snapshot>>,
    sync: &mut Sync,
    delay: Duration,
) {
    if sync.requesting {
        return;
    }
    sync.requesting = true;
    let (client, tx, subject) = (client.clone(), tx.clone(), subjects::snapshot(race_id));
    let timeout = config.request_timeout;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        metrics::counter!(m::BUS_SNAPSHOT_REQUESTS).increment(1);
        let answer = match tokio::time::timeout(
            timeout,
            client.request(subject.clone(), Bytes::new()),
        )
        .await
        {
            Ok(Ok(msg)) => match decode(&msg.payload) {
                Some(FanFrame::Snapshot(s)) => Some(s),
                _ => None,
            },
            Ok(Err(e)) => {
                debug!(%subject, "snapshot request failed: {e}");
                None
            }
            Err(_) => None,
        };
        let _ = tx.send(answer).await;
    });
}

/// Decodes a frame, counting what cannot be decoded.
fn decode(payload: &Bytes) -> Option<FanFrame> {
    if payload.is_empty() {
        return None;
    }
    match decode_frame_binary(payload) {
        Ok(f) => Some(f),
        Err(e) => {
            metrics::counter!(m::BUS_BAD_PAYLOADS).increment(1);
            debug!("undecodable bus frame: {e}");
            None
        }
    }
}
