//! [`NatsEngineBus`]: the engine side of the NATS bus. Publishes each race's frames once per
//! tick, already encoded (rkyv binary `FanFrame`), on `race.<id>.frames`, alerts on
//! `race.<id>.alerts`, and answers `race.<id>.snapshot` with the merged state fans were shown.
//!
//! Publishing never waits: frames go through a bounded queue to one sender task; a full queue
//! drops and counts (gateways see the tick gap and resync). Does not decide race ownership.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use flevum_protocol::{Alert, Delta, FanFrame, Snapshot, encode_frame_binary};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use flevum_protocol::SnapshotMerger;

/// Alerts kept in the merged snapshot that answers `race.<id>.snapshot`.
const RECENT_ALERTS: usize = 50;
use crate::metrics as m;
use crate::{Bus, BusConfig, BusError, subjects};

/// What the sender task does next.
enum Outgoing {
    /// Publish an encoded frame.
    Publish {
        /// Subject.
        subject: String,
        /// rkyv `FanFrame`.
        payload: Bytes,
    },
    /// Start answering snapshot requests for a race.
    Serve(String),
    /// Stop answering snapshot requests of a race (handed to another engine).
    Unserve(String),
    /// Flush the connection, then signal.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// A race's merged state and its encoded form, cached until the next change.
struct RaceState {
    /// State as published.
    merger: SnapshotMerger,
    /// Encoded snapshot frame of `merger`, built on the first request after a change.
    encoded: Option<Bytes>,
}

/// Races by id, shared by the publishing side and the snapshot responders.
type Races = Arc<Mutex<HashMap<String, RaceState>>>;

/// Locks the races; a poisoned lock still yields the data.
fn lock(races: &Races) -> MutexGuard<'_, HashMap<String, RaceState>> {
    races.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared part of the engine bus; dropping the last handle stops its tasks.
struct Inner {
    /// The NATS connection.
    client: async_nats::Client,
    /// Merged state per race.
    races: Races,
    /// Queue to the sender task.
    tx: mpsc::Sender<Outgoing>,
    /// Tasks to stop with the bus (sender, responders, control server).
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            t.abort();
        }
    }
}

/// The engine side of the NATS bus; cheap to clone.
#[derive(Clone)]
pub struct NatsEngineBus {
    /// Shared state.
    inner: Arc<Inner>,
}

impl NatsEngineBus {
    /// Connects to NATS and starts the sender task.
    pub async fn connect(config: &BusConfig) -> Result<NatsEngineBus, BusError> {
        let client = config.connect().await?;
        let races: Races = Arc::default();
        let (tx, rx) = mpsc::channel(config.publish_queue.max(16));
        let sender = tokio::spawn(send_loop(client.clone(), races.clone(), rx));
        Ok(NatsEngineBus {
            inner: Arc::new(Inner {
                client,
                races,
                tx,
                tasks: Mutex::new(vec![sender.abort_handle()]),
            }),
        })
    }

    /// The NATS connection (for the control server and the JetStream journal).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// Stops a task together with the bus.
    pub fn adopt(&self, task: AbortHandle) {
        if let Ok(mut t) = self.inner.tasks.lock() {
            t.push(task);
        }
    }

    /// Waits until every frame queued before the call was handed to the server (tests,
    /// shutdown).
    pub async fn flush(&self) -> Result<(), BusError> {
        let stopped = || BusError::Publish {
            subject: "(flush)".into(),
            message: "the bus stopped".into(),
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        self.inner
            .tx
            .send(Outgoing::Flush(done_tx))
            .await
            .map_err(|_| stopped())?;
        done_rx.await.map_err(|_| stopped())
    }

    /// Forgets a race this engine no longer owns: its merged state is dropped and its snapshot
    /// requests are left to the new owner.
    pub fn forget_race(&self, race_id: &str) {
        lock(&self.inner.races).remove(race_id);
        // Must not be dropped when the queue is full: a stale responder would answer with an
        // old state.
        let tx = self.inner.tx.clone();
        let race_id = race_id.to_string();
        tokio::spawn(async move {
            let _ = tx.send(Outgoing::Unserve(race_id)).await;
        });
    }

    /// Races this engine publishes.
    pub fn races(&self) -> Vec<String> {
        lock(&self.inner.races).keys().cloned().collect()
    }

    fn enqueue(&self, out: Outgoing, kind: &'static str) {
        match self.inner.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(m::BUS_DROPPED, "kind" => kind).increment(1);
                debug!(kind, "bus publish queue full; frame dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!(m::BUS_DROPPED, "kind" => kind).increment(1);
            }
        }
    }
}

impl Bus for NatsEngineBus {
    fn read_published(&self, race_id: &str, read: &mut dyn FnMut(&Snapshot)) -> bool {
        match lock(&self.inner.races).get(race_id) {
            Some(r) => {
                read(r.merger.snapshot());
                true
            }
            None => false,
        }
    }

    fn keeps_published(&self) -> bool {
        true
    }

    fn publish_snapshot(&self, snapshot: Snapshot) {
        let race_id = snapshot.race_id.clone();
        if let Err(e) = subjects::check_race_id(&race_id) {
            warn!("not published: {e}");
            return;
        }
        let payload = encode_frame_binary(&FanFrame::Snapshot(snapshot.clone()));
        let first = {
            let mut races = lock(&self.inner.races);
            let first = !races.contains_key(&race_id);
            races.insert(
                race_id.clone(),
                RaceState {
                    merger: SnapshotMerger::new(snapshot, RECENT_ALERTS),
                    encoded: Some(payload.clone()),
                },
            );
            first
        };
        if first {
            self.enqueue(Outgoing::Serve(race_id.clone()), "serve");
        }
        // Watching gateways switch to the new epoch at once.
        self.enqueue(
            Outgoing::Publish {
                subject: subjects::frames(&race_id),
                payload,
            },
            "snapshot",
        );
    }

    fn publish_delta(&self, delta: Delta) {
        {
            let mut races = lock(&self.inner.races);
            let Some(race) = races.get_mut(&delta.race_id) else {
                debug!(race = %delta.race_id, "delta before the race's snapshot dropped");
                return;
            };
            if !race.merger.apply(&delta) {
                return;
            }
            race.encoded = None;
        }
        let subject = subjects::frames(&delta.race_id);
        let payload = encode_frame_binary(&FanFrame::Delta(delta));
        self.enqueue(Outgoing::Publish { subject, payload }, "delta");
    }

    fn publish_alert(&self, race_id: &str, alert: Alert) {
        if subjects::check_race_id(race_id).is_err() {
            return;
        }
        let payload = encode_frame_binary(&FanFrame::Alert(alert));
        self.enqueue(
            Outgoing::Publish {
                subject: subjects::alerts(race_id),
                payload,
            },
            "alert",
        );
    }
}

/// Hands queued frames to the NATS client, in order; starts snapshot responders.
async fn send_loop(client: async_nats::Client, races: Races, mut rx: mpsc::Receiver<Outgoing>) {
    let mut responders: HashMap<String, AbortHandle> = HashMap::new();
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Publish { subject, payload } => {
                if let Err(e) = client.publish(subject, payload).await {
                    warn!("bus publish failed: {e}");
                } else {
                    metrics::counter!(m::BUS_PUBLISHED).increment(1);
                }
            }
            Outgoing::Flush(done) => {
                if let Err(e) =
                    crate::config::round_trip(&client, std::time::Duration::from_secs(10)).await
                {
                    warn!("bus flush failed: {e}");
                }
                let _ = done.send(());
            }
            Outgoing::Serve(race_id) => {
                let subject = subjects::snapshot(&race_id);
                match client.subscribe(subject.clone()).await {
                    Ok(sub) => {
                        let task = tokio::spawn(answer_snapshots(
                            client.clone(),
                            races.clone(),
                            race_id.clone(),
                            sub,
                        ));
                        if let Some(old) = responders.insert(race_id, task.abort_handle()) {
                            old.abort();
                        }
                    }
                    Err(e) => warn!(%subject, "cannot answer snapshot requests: {e}"),
                }
            }
            Outgoing::Unserve(race_id) => {
                if let Some(r) = responders.remove(&race_id) {
                    r.abort();
                }
            }
        }
    }
    for r in responders.into_values() {
        r.abort();
    }
}

/// Answers `race.<id>.snapshot` requests with the encoded merged state.
async fn answer_snapshots(
    client: async_nats::Client,
    races: Races,
    race_id: String,
    mut sub: async_nats::Subscriber,
) {
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply else { continue };
        let payload = {
            let mut races = lock(&races);
            match races.get_mut(&race_id) {
                Some(r) => r
                    .encoded
                    .get_or_insert_with(|| {
                        encode_frame_binary(&FanFrame::Snapshot(r.merger.snapshot().clone()))
                    })
                    .clone(),
                None => Bytes::new(),
            }
        };
        if let Err(e) = client.publish(reply, payload).await {
            debug!(race = %race_id, "snapshot reply failed: {e}");
        }
    }
}
