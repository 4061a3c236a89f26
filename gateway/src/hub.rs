//! `LiveHub`: the in-process bus between the engine and the gateway's clients.
//!
//! Owns, per race, the latest snapshot (merged from the published deltas), a short ring of
//! recent deltas for resume, a ring of recent alerts, and the broadcast channels the WebSocket
//! and SSE handlers read. Each frame is encoded once and shared as `Bytes`; publishing never
//! waits for a client. Does not filter per client or talk to sockets (see `live` and `alerts`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use dashmap::DashMap;
use flevum_protocol::{
    Alert, Delta, FanFrame, Snapshot, SnapshotMerger, encode_frame_binary, encode_frame_json,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::metrics as m;

/// Sizes of the hub's rings and channels.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Alerts kept per race for history, SSE resume and the alerts WebSocket.
    pub alert_ring: usize,
    /// Deltas kept per race so a reconnecting client can resume without a snapshot.
    pub resume_ticks: usize,
    /// Live events buffered per race; a client further behind lags and gets a fresh snapshot.
    pub channel_capacity: usize,
    /// Alerts buffered per race for live alert subscribers.
    pub alert_channel_capacity: usize,
    /// Alerts carried in the merged snapshot's `recent_alerts`.
    pub snapshot_alerts: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            alert_ring: 1000,
            resume_ticks: 120,
            channel_capacity: 64,
            alert_channel_capacity: 256,
            snapshot_alerts: 50,
        }
    }
}

/// How a client wants frames encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Text frames with `FanFrame` JSON.
    #[default]
    Json,
    /// Binary frames with rkyv `FanFrame`.
    Binary,
}

/// A frame with its encodings, computed at most once each and shared by all clients.
#[derive(Debug)]
pub struct SharedFrame {
    /// The frame itself, for per-client filtering.
    frame: FanFrame,
    /// JSON encoding, computed on first use and UTF-8-checked once (not once per client).
    json: OnceLock<Utf8Bytes>,
    /// Binary encoding, computed on first use.
    binary: OnceLock<Bytes>,
}

impl SharedFrame {
    /// Wraps a frame; nothing is encoded yet.
    pub fn new(frame: FanFrame) -> SharedFrame {
        SharedFrame {
            frame,
            json: OnceLock::new(),
            binary: OnceLock::new(),
        }
    }

    /// The frame.
    pub fn frame(&self) -> &FanFrame {
        &self.frame
    }

    /// The JSON bytes (encoded on first call, then shared).
    pub fn json(&self) -> Bytes {
        Bytes::from(self.json_text())
    }

    /// The JSON text, ready for a WebSocket text frame: encoded and checked as UTF-8 on the
    /// first call, then shared (a clone is a reference count, no per-client check). Empty in
    /// the impossible case of an encoder writing invalid UTF-8 (such a frame is not sent).
    pub fn json_text(&self) -> Utf8Bytes {
        self.json
            .get_or_init(|| Utf8Bytes::try_from(encode_frame_json(&self.frame)).unwrap_or_default())
            .clone()
    }

    /// The binary bytes (encoded on first call, then shared).
    pub fn binary(&self) -> Bytes {
        self.binary
            .get_or_init(|| encode_frame_binary(&self.frame))
            .clone()
    }

    /// The bytes in `encoding`.
    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        match encoding {
            Encoding::Json => self.json(),
            Encoding::Binary => self.binary(),
        }
    }

    /// `(epoch, tick)` of a snapshot or delta frame, None for an alert frame.
    pub fn position(&self) -> Option<(u64, u64)> {
        match &self.frame {
            FanFrame::Snapshot(s) => Some((s.epoch, s.tick)),
            FanFrame::Delta(d) => Some((d.epoch, d.tick)),
            FanFrame::Alert(_) => None,
        }
    }
}

/// What a live subscriber receives from the hub.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// One tick's delta, already merged into the hub's snapshot.
    Delta {
        /// The shared, lazily encoded delta frame.
        frame: Arc<SharedFrame>,
        /// Running total of delta JSON bytes published for this race, including this frame;
        /// `published_bytes() - mark` is what is still queued behind this frame.
        mark: u64,
    },
    /// A new snapshot replaced the race state (new epoch or recovery): send it.
    Snapshot,
}

/// How a new live subscriber starts.
#[derive(Debug)]
pub enum LiveStart {
    /// Send this snapshot first.
    Snapshot(Arc<SharedFrame>),
    /// Resume accepted: send these deltas (possibly none), no snapshot.
    Resume(Vec<Arc<SharedFrame>>),
    /// The hub has no snapshot for the race yet; one follows as a [`HubEvent::Snapshot`].
    Waiting,
}

/// A live subscription: where to start and the receiver for what follows.
#[derive(Debug)]
pub struct LiveSubscription {
    /// The race's hub entry, to fetch fresh snapshots and the byte counter.
    pub race: RaceHandle,
    /// First frames to send.
    pub start: LiveStart,
    /// Everything published after `start`.
    pub rx: broadcast::Receiver<HubEvent>,
}

/// An alerts subscription: the backlog after the requested seq, then live alerts.
#[derive(Debug)]
pub struct AlertSubscription {
    /// Alerts in the ring after the requested sequence, oldest first.
    pub backlog: Vec<Alert>,
    /// Alerts published after the backlog was taken.
    pub rx: broadcast::Receiver<Arc<Alert>>,
}

/// Mutable per-race state, behind one short lock.
#[derive(Debug, Default)]
struct RaceState {
    /// Latest snapshot with every delta since merged in, None until the engine published one.
    merged: Option<SnapshotMerger>,
    /// Encoded form of `snapshot`, built on demand and dropped at the next delta.
    encoded: Option<Arc<SharedFrame>>,
    /// Recent deltas (contiguous ticks of the current epoch), oldest first, for resume.
    recent: VecDeque<Arc<SharedFrame>>,
    /// Recent alerts, oldest first.
    alerts: VecDeque<Alert>,
}

/// One race's entry in the hub.
#[derive(Debug)]
struct RaceChannel {
    /// Live events for this race.
    tx: broadcast::Sender<HubEvent>,
    /// Live alerts for this race.
    alerts_tx: broadcast::Sender<Arc<Alert>>,
    /// Running total of delta JSON bytes published (for per-client byte budgets).
    published_bytes: AtomicU64,
    /// Snapshot, rings; publishing sends on the channels while holding it so subscribers get a
    /// gap-free start.
    state: Mutex<RaceState>,
}

/// A cloneable handle on one race's hub entry.
#[derive(Debug, Clone)]
pub struct RaceHandle(Arc<RaceChannel>);

/// Called with a race id each time a client subscribes to the race's frames or alerts (a
/// NATS-fed gateway starts following the race then).
pub type InterestHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The hub's interest hook, set at most once.
#[derive(Clone, Default)]
struct Interest(Arc<OnceLock<InterestHook>>);

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Interest(hook)"
        } else {
            "Interest(none)"
        })
    }
}

/// The in-process bus: cheap to clone, shared by the engine side and the gateway.
#[derive(Debug, Clone)]
pub struct LiveHub {
    /// Sizes.
    config: Arc<HubConfig>,
    /// Races by id.
    races: Arc<DashMap<String, RaceHandle>>,
    /// Told when a client subscribes to a race (None in the embedded default).
    interest: Interest,
}

impl RaceChannel {
    /// Locks the state; a poisoned lock (a panic elsewhere) still yields the data.
    fn lock(&self) -> MutexGuard<'_, RaceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaceState {
    /// Encoded form of the current snapshot, cached until the next change.
    fn snapshot_frame(&mut self) -> Option<Arc<SharedFrame>> {
        if self.encoded.is_none() {
            let snap = self.merged.as_ref()?.snapshot().clone();
            self.encoded = Some(Arc::new(SharedFrame::new(FanFrame::Snapshot(snap))));
        }
        self.encoded.clone()
    }
}

impl RaceHandle {
    /// The current snapshot, shared and lazily encoded; None before the first snapshot.
    pub fn snapshot_frame(&self) -> Option<Arc<SharedFrame>> {
        self.0.lock().snapshot_frame()
    }

    /// Running total of delta JSON bytes published for this race.
    pub fn published_bytes(&self) -> u64 {
        self.0.published_bytes.load(Ordering::Acquire)
    }

    /// `(epoch, tick)` of the current state.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.0.lock().merged.as_ref().map(SnapshotMerger::position)
    }
}

impl LiveHub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> LiveHub {
        LiveHub {
            config: Arc::new(config),
            races: Arc::new(DashMap::new()),
            interest: Interest::default(),
        }
    }

    /// Sets the hook told about every new live or alerts subscriber (once; false if a hook
    /// was already set). The hook runs on the subscriber's task and must not block.
    pub fn set_interest_hook(&self, hook: InterestHook) -> bool {
        self.interest.0.set(hook).is_ok()
    }

    /// Live and alert subscribers the race has now (0 for an unknown race).
    pub fn watchers(&self, race_id: &str) -> usize {
        self.race_handle(race_id).map_or(0, |r| {
            r.0.tx.receiver_count() + r.0.alerts_tx.receiver_count()
        })
    }

    /// Tells the interest hook about a subscriber of `race_id`.
    fn interested(&self, race_id: &str) {
        if let Some(hook) = self.interest.0.get() {
            hook(race_id);
        }
    }

    /// The race's entry, created empty if missing.
    fn race(&self, race_id: &str) -> RaceHandle {
        if let Some(r) = self.races.get(race_id) {
            return r.clone();
        }
        self.races
            .entry(race_id.to_string())
            .or_insert_with(|| {
                RaceHandle(Arc::new(RaceChannel {
                    tx: broadcast::channel(self.config.channel_capacity.max(1)).0,
                    alerts_tx: broadcast::channel(self.config.alert_channel_capacity.max(1)).0,
                    published_bytes: AtomicU64::new(0),
                    state: Mutex::new(RaceState::default()),
                }))
            })
            .clone()
    }

    /// The race's entry if it exists.
    pub fn race_handle(&self, race_id: &str) -> Option<RaceHandle> {
        self.races.get(race_id).map(|r| r.clone())
    }

    /// True once a snapshot was published for the race.
    pub fn has_race(&self, race_id: &str) -> bool {
        self.race_handle(race_id)
            .is_some_and(|r| r.0.lock().merged.is_some())
    }

    /// `(epoch, tick)` of the race's current state.
    pub fn position(&self, race_id: &str) -> Option<(u64, u64)> {
        self.race_handle(race_id).and_then(|r| r.position())
    }

    /// A copy of the race's current merged snapshot.
    pub fn snapshot(&self, race_id: &str) -> Option<Snapshot> {
        self.read_snapshot(race_id, Snapshot::clone)
    }

    /// What `read` takes from the race's current merged snapshot, read in place (under the
    /// race's lock: keep it short) rather than copied whole.
    pub fn read_snapshot<R>(&self, race_id: &str, read: impl FnOnce(&Snapshot) -> R) -> Option<R> {
        let race = self.race_handle(race_id)?;
        let st = race.0.lock();
        Some(read(st.merged.as_ref()?.snapshot()))
    }

    /// Forgets a race (after it is archived) so its state is freed once no client holds it;
    /// connected clients keep their handle (and get nothing more) until they leave.
    pub fn remove_race(&self, race_id: &str) -> bool {
        self.races.remove(race_id).is_some()
    }

    /// Ids of the races the hub holds.
    pub fn race_ids(&self) -> Vec<String> {
        self.races.iter().map(|r| r.key().clone()).collect()
    }

    /// Replaces the race state (race open, engine recovery, new epoch); clients get it next.
    pub fn publish_snapshot(&self, snapshot: Snapshot) {
        let race = self.race(&snapshot.race_id);
        metrics::counter!(m::HUB_SNAPSHOTS).increment(1);
        let mut st = race.0.lock();
        if st.alerts.is_empty() {
            st.alerts.extend(snapshot.recent_alerts.iter().cloned());
            while st.alerts.len() > self.config.alert_ring {
                st.alerts.pop_front();
            }
        }
        st.merged = Some(SnapshotMerger::new(snapshot, self.config.snapshot_alerts));
        st.encoded = None;
        st.recent.clear();
        // No receivers is not an error: nobody is watching yet.
        let _ = race.0.tx.send(HubEvent::Snapshot);
    }

    /// Merges one tick's delta into the race state and broadcasts it, encoded once.
    ///
    /// A delta for another epoch than the current snapshot, or not newer than it, is dropped
    /// (the engine publishes a snapshot first when its epoch changes).
    pub fn publish_delta(&self, delta: Delta) {
        let race = self.race(&delta.race_id);
        let mut st = race.0.lock();
        let Some(merged) = st.merged.as_mut() else {
            tracing::debug!(race = %delta.race_id, "delta before any snapshot dropped");
            return;
        };
        let (_, tick) = merged.position();
        if !merged.apply(&delta) {
            tracing::debug!(
                race = %delta.race_id,
                epoch = delta.epoch,
                tick = delta.tick,
                "stale or foreign-epoch delta dropped"
            );
            return;
        }
        let contiguous = delta.tick == tick + 1;
        st.encoded = None;

        let frame = Arc::new(SharedFrame::new(FanFrame::Delta(delta)));
        let started = Instant::now();
        let len = frame.json().len() as u64;
        metrics::histogram!(m::HUB_ENCODE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(m::HUB_DELTAS).increment(1);
        if !contiguous {
            st.recent.clear();
        }
        st.recent.push_back(frame.clone());
        while st.recent.len() > self.config.resume_ticks {
            st.recent.pop_front();
        }
        let mark = race.0.published_bytes.fetch_add(len, Ordering::AcqRel) + len;
        let _ = race.0.tx.send(HubEvent::Delta { frame, mark });
    }

    /// Adds an alert to the race's alerts ring and feed (alerts inside deltas are not re-added).
    pub fn publish_alert(&self, race_id: &str, alert: Alert) {
        let race = self.race(race_id);
        metrics::counter!(m::HUB_ALERTS).increment(1);
        let mut st = race.0.lock();
        st.alerts.push_back(alert.clone());
        while st.alerts.len() > self.config.alert_ring {
            st.alerts.pop_front();
        }
        let _ = race.0.alerts_tx.send(Arc::new(alert));
    }

    /// Alerts in the ring with `seq > since`, oldest first, at most `limit`.
    pub fn alerts_since(&self, race_id: &str, since: u64, limit: usize) -> Vec<Alert> {
        let Some(race) = self.race_handle(race_id) else {
            return Vec::new();
        };
        let st = race.0.lock();
        st.alerts
            .iter()
            .filter(|a| a.seq > since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Sequence number of the newest alert in the race's ring, if any.
    pub fn last_alert_seq(&self, race_id: &str) -> Option<u64> {
        let race = self.race_handle(race_id)?;
        let st = race.0.lock();
        st.alerts.back().map(|a| a.seq)
    }

    /// Subscribes to the race's alerts, with the ring's alerts after `since` as backlog.
    pub fn subscribe_alerts(&self, race_id: &str, since: Option<u64>) -> AlertSubscription {
        let race = self.race(race_id);
        let st = race.0.lock();
        let rx = race.0.alerts_tx.subscribe();
        let backlog = match since {
            Some(since) => st
                .alerts
                .iter()
                .filter(|a| a.seq > since)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        drop(st);
        self.interested(race_id);
        AlertSubscription { backlog, rx }
    }

    /// Subscribes to the race's live frames. With `resume = Some((epoch, tick))` and every delta
    /// after `tick` of that epoch still in the ring, starts with those deltas and no snapshot.
    pub fn subscribe_live(&self, race_id: &str, resume: Option<(u64, u64)>) -> LiveSubscription {
        let race = self.race(race_id);
        let mut st = race.0.lock();
        let rx = race.0.tx.subscribe();
        let start = Self::live_start(&mut st, resume);
        drop(st);
        self.interested(race_id);
        LiveSubscription { race, start, rx }
    }

    /// Where a subscriber with `resume` starts, under the race lock.
    fn live_start(st: &mut RaceState, resume: Option<(u64, u64)>) -> LiveStart {
        match st.merged.as_ref().map(SnapshotMerger::position) {
            None => LiveStart::Waiting,
            Some((epoch, tick)) => match resume {
                Some((r_epoch, r_tick)) if r_epoch == epoch && r_tick == tick => {
                    LiveStart::Resume(Vec::new())
                }
                Some((r_epoch, r_tick)) if r_epoch == epoch && r_tick < tick => {
                    let oldest = st.recent.front().and_then(|f| f.position()).map(|p| p.1);
                    if oldest.is_some_and(|o| o <= r_tick + 1) {
                        LiveStart::Resume(
                            st.recent
                                .iter()
                                .filter(|f| f.position().is_some_and(|p| p.1 > r_tick))
                                .cloned()
                                .collect(),
                        )
                    } else {
                        snapshot_start(st)
                    }
                }
                _ => snapshot_start(st),
            },
        }
    }
}

/// The snapshot start for a race that has a snapshot.
fn snapshot_start(st: &mut RaceState) -> LiveStart {
    match st.snapshot_frame() {
        Some(f) => LiveStart::Snapshot(f),
        None => LiveStart::Waiting,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flevum_protocol::{
        AlertKind, CourseSummary, GroupKind, GroupView, RiderStatus, RiderView, Severity,
    };

    pub(crate) fn rider(id: u32, lon: f64, lat: f64) -> RiderView {
        RiderView {
            rider_id: id,
            lat,
            lon,
            distance_m: 0.0,
            speed_kmh: 30.0,
            rank: id,
            gap_to_leader_ms: None,
            gap_to_ahead_ms: None,
            group_id: None,
            status: RiderStatus::Racing,
            last_fix_ms: 1_700_000_000_000,
            eta_finish_ms: None,
            battery_pct: None,
        }
    }

    pub(crate) fn snapshot(race: &str, epoch: u64, tick: u64, states: Vec<RiderView>) -> Snapshot {
        Snapshot {
            race_id: race.to_string(),
            race_name: "Test".to_string(),
            epoch,
            tick,
            time_ms: 1_700_000_000_000,
            start_ms: 1_700_000_000_000,
            course: CourseSummary {
                name: "c".into(),
                length_m: 1000.0,
                ascent_m: 0.0,
                line: vec![[5.0, 52.0], [5.1, 52.1]],
                checkpoints: vec![],
            },
            riders: vec![],
            states,
            groups: vec![],
            recent_alerts: vec![],
        }
    }

    pub(crate) fn delta(race: &str, epoch: u64, tick: u64, states: Vec<RiderView>) -> Delta {
        Delta {
            race_id: race.to_string(),
            epoch,
            tick,
            time_ms: 1_700_000_000_000 + tick as i64 * 1000,
            states,
            groups: None,
            alerts: vec![],
        }
    }

    pub(crate) fn alert(seq: u64, riders: Vec<u32>, severity: Severity, kind: AlertKind) -> Alert {
        Alert {
            seq,
            epoch: 1,
            time_ms: 1_700_000_000_000 + seq as i64,
            race_time_ms: 0,
            course_km: 1.0,
            riders,
            severity,
            kind,
        }
    }

    #[test]
    fn removing_a_race_frees_it_once_unheld() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        let LiveSubscription { race, mut rx, .. } = hub.subscribe_live("r", None);
        drop(race);
        assert_eq!(hub.race_ids(), ["r"]);
        assert!(hub.remove_race("r"));
        assert!(!hub.has_race("r"));
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn interest_hook_sees_subscribers_and_watchers_are_counted() {
        let hub = LiveHub::new(HubConfig::default());
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s2 = seen.clone();
        assert!(hub.set_interest_hook(Arc::new(move |r: &str| {
            s2.lock().unwrap().push(r.to_string());
        })));
        assert!(!hub.set_interest_hook(Arc::new(|_: &str| {})), "set once");
        assert_eq!(hub.watchers("r"), 0);
        let live = hub.subscribe_live("r", None);
        let alerts = hub.subscribe_alerts("r", None);
        assert_eq!(hub.watchers("r"), 2);
        assert_eq!(*seen.lock().unwrap(), ["r", "r"]);
        drop(live);
        drop(alerts);
        assert_eq!(hub.watchers("r"), 0);
    }

    #[test]
    fn deltas_merge_into_snapshot() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot(
            "r",
            1,
            0,
            vec![rider(1, 5.0, 52.0), rider(2, 5.0, 52.0)],
        ));
        let mut moved = rider(2, 5.05, 52.05);
        moved.distance_m = 500.0;
        let mut d = delta("r", 1, 1, vec![moved.clone(), rider(3, 5.0, 52.0)]);
        d.groups = Some(vec![GroupView {
            group_id: 7,
            kind: GroupKind::Peloton,
            riders: vec![1, 2, 3],
            head_distance_m: 500.0,
            gap_to_ahead_ms: None,
            gap_to_leader_ms: None,
        }]);
        hub.publish_delta(d);
        hub.publish_delta(delta("r", 1, 2, vec![]));
        let s = hub.snapshot("r").unwrap();
        assert_eq!(s.tick, 2);
        assert_eq!(s.states.len(), 3);
        assert_eq!(s.states[1], moved);
        let one = |race: &str, id: u32| {
            hub.read_snapshot(race, |s| {
                s.states.iter().find(|v| v.rider_id == id).cloned()
            })
            .flatten()
        };
        assert_eq!(one("r", 2), Some(moved.clone()), "one rider, merged");
        assert_eq!(one("r", 9), None);
        assert_eq!(one("other", 2), None);
        assert_eq!(s.groups.len(), 1, "groups kept when a later delta has None");
        // stale and foreign-epoch deltas are dropped
        hub.publish_delta(delta("r", 1, 2, vec![rider(9, 0.0, 0.0)]));
        hub.publish_delta(delta("r", 2, 3, vec![rider(9, 0.0, 0.0)]));
        assert_eq!(hub.snapshot("r").unwrap().states.len(), 3);
    }

    #[test]
    fn delta_encoded_once_and_shared() {
        let hub = LiveHub::new(HubConfig::default());
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        let mut a = hub.subscribe_live("r", None).rx;
        let mut b = hub.subscribe_live("r", None).rx;
        hub.publish_delta(delta("r", 1, 1, vec![rider(1, 5.0, 52.0)]));
        let (Ok(HubEvent::Delta { frame: fa, .. }), Ok(HubEvent::Delta { frame: fb, .. })) =
            (a.try_recv(), b.try_recv())
        else {
            panic!("both subscribers get the delta");
        };
        assert!(Arc::ptr_eq(&fa, &fb));
        let (ja, jb) = (fa.json(), fb.json());
        assert_eq!(ja.as_ptr(), jb.as_ptr(), "the same bytes, not a re-encode");
        assert_eq!(fa.binary().as_ptr(), fb.binary().as_ptr());
    }

    #[test]
    fn resume_within_ring_and_fallback_to_snapshot() {
        let hub = LiveHub::new(HubConfig {
            resume_ticks: 3,
            ..HubConfig::default()
        });
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        for t in 1..=5 {
            hub.publish_delta(delta("r", 1, t, vec![]));
        }
        // ring holds ticks 3, 4, 5
        match hub.subscribe_live("r", Some((1, 2))).start {
            LiveStart::Resume(v) => {
                let ticks: Vec<u64> = v.iter().filter_map(|f| f.position()).map(|p| p.1).collect();
                assert_eq!(ticks, [3, 4, 5]);
            }
            other => panic!("expected resume, got {other:?}"),
        }
        assert!(
            matches!(hub.subscribe_live("r", Some((1, 5))).start, LiveStart::Resume(v) if v.is_empty())
        );
        assert!(matches!(
            hub.subscribe_live("r", Some((1, 1))).start,
            LiveStart::Snapshot(_)
        ));
        assert!(matches!(
            hub.subscribe_live("r", Some((2, 4))).start,
            LiveStart::Snapshot(_)
        ));
        assert!(matches!(
            hub.subscribe_live("r", Some((1, 9))).start,
            LiveStart::Snapshot(_)
        ));
        assert!(matches!(
            hub.subscribe_live("other", None).start,
            LiveStart::Waiting
        ));
    }

    #[test]
    fn publish_never_blocks_without_readers_and_alert_ring_is_bounded() {
        let hub = LiveHub::new(HubConfig {
            alert_ring: 10,
            channel_capacity: 2,
            ..HubConfig::default()
        });
        hub.publish_snapshot(snapshot("r", 1, 0, vec![]));
        let _idle = hub.subscribe_live("r", None);
        for t in 1..=100 {
            hub.publish_delta(delta("r", 1, t, vec![]));
        }
        for s in 1..=25 {
            hub.publish_alert(
                "r",
                alert(s, vec![], Severity::Info, AlertKind::RaceStarted),
            );
        }
        let all = hub.alerts_since("r", 0, 1000);
        assert_eq!(all.len(), 10);
        assert_eq!(all[0].seq, 16);
        assert_eq!(
            hub.alerts_since("r", 20, 2)
                .iter()
                .map(|a| a.seq)
                .collect::<Vec<_>>(),
            [21, 22]
        );
    }
}
