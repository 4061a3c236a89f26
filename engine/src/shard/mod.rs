//! The race shard: the one task that owns a race's core state (the single writer), fed with
//! fixes and organiser commands that the journal has already made durable, ticking on the wall
//! clock and publishing every tick's delta and alerts to a [`FramePublisher`].
//!
//! Owns the order "journal, then apply", recovery by replay on open and per-device durable
//! sequence numbers. Does not speak QUIC or HTTP: ingest and the gateway reach it via [`RaceHandle`].

mod delayed;
pub mod metrics;
mod seq;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use flevum_protocol::{Alert, Delta, PositionRecord, Snapshot};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use crate::core::race::AdminError;
use crate::core::{AdminCommand, CourseIndex, Millis, Race, RaceConfig, RaceOutput};
use crate::journal::{Journal, JournalBackend, JournalConfig, JournalEntry, JournalError};
pub use delayed::DelayedQueue;
pub use seq::ContiguousSeq;

/// Where a shard's frames go: the in-process hub of the gateway, or a NATS publisher.
pub trait FramePublisher: Send + Sync + 'static {
    /// The full state, at open and after recovery (a new epoch).
    fn snapshot(&self, snapshot: Snapshot);
    /// One tick's changes.
    fn delta(&self, delta: Delta);
    /// One alert, for the commentators' feed.
    fn alert(&self, race_id: &str, alert: Alert);
    /// Reads the state as published so far (behind the race's publish delay: what its fans
    /// see) in place, when the publisher keeps one: `read` runs once with it and true is
    /// returned; false when nothing is published (yet). The API answers delayed races from it,
    /// taking only what each answer needs (one rider's state, the statuses) instead of a copy.
    fn read_published(&self, _race_id: &str, _read: &mut dyn FnMut(&Snapshot)) -> bool {
        false
    }
    /// Whether [`FramePublisher::read_published`] answers at all: false from a publisher that
    /// keeps the published state means "nothing published yet", from one that keeps none it
    /// means "not known here".
    fn keeps_published(&self) -> bool {
        false
    }
}

/// How a shard runs.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Where the race's journal lives.
    pub journal: JournalConfig,
    /// Wall-clock time between ticks (one delta frame per tick).
    pub tick_interval: Duration,
    /// Commands waiting for the shard; a full queue makes submitters wait (back-pressure).
    pub command_queue: usize,
    /// The race clock: the wall clock live, a scaled one when a finished race is replayed.
    pub clock: ShardClock,
}

/// Where a shard's `now` comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum ShardClock {
    /// The wall clock (live races).
    #[default]
    Wall,
    /// Race time that starts at `origin_ms` when `since` was taken and runs `speed` times faster
    /// than the wall clock (`flevum replay`).
    Scaled {
        /// Race time at `since`, ms since the Unix epoch.
        origin_ms: Millis,
        /// How many race seconds pass per wall second.
        speed: f64,
        /// The wall instant at which race time was `origin_ms`.
        since: std::time::Instant,
    },
}

impl ShardClock {
    /// The race clock's current time, ms since the Unix epoch.
    pub fn now_ms(&self) -> Millis {
        match *self {
            ShardClock::Wall => wall_ms(),
            ShardClock::Scaled {
                origin_ms,
                speed,
                since,
            } => origin_ms + (since.elapsed().as_secs_f64() * 1000.0 * speed) as Millis,
        }
    }
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            journal: JournalConfig::default(),
            tick_interval: Duration::from_secs(1),
            command_queue: 4096,
            clock: ShardClock::Wall,
        }
    }
}

/// Why a shard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The journal refused or failed the write: nothing was acknowledged.
    #[error("journal: {0}")]
    Journal(JournalError),
    /// The race could not be built from its config.
    #[error("race: {0}")]
    Race(crate::core::race::RaceError),
    /// The organiser command was refused by the race.
    #[error("admin command refused: {0}")]
    Admin(AdminError),
    /// The command could not be serialised for the journal.
    #[error("admin command could not be encoded: {0}")]
    Encode(String),
    /// The shard task has stopped (shutdown).
    #[error("the race shard has stopped")]
    Stopped,
}

// The messages above already carry the inner error's text, so these are plain conversions
// rather than `#[from]` sources (which would print every message twice in an error chain).
impl From<JournalError> for ShardError {
    fn from(e: JournalError) -> Self {
        ShardError::Journal(e)
    }
}

impl From<crate::core::race::RaceError> for ShardError {
    fn from(e: crate::core::race::RaceError) -> Self {
        ShardError::Race(e)
    }
}

impl From<AdminError> for ShardError {
    fn from(e: AdminError) -> Self {
        ShardError::Admin(e)
    }
}

type Query = Box<dyn FnOnce(&mut Race) + Send>;

enum Command {
    /// Durable fixes to apply.
    Fixes(Vec<JournalEntry>),
    /// A durable admin command to apply; the race's verdict goes back.
    Admin {
        at_ms: Millis,
        command: AdminCommand,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    /// Read (or, for tests and tools, change) the race inside the shard.
    Query(Query),
}

/// A cheap, cloneable handle to a running race shard.
#[derive(Clone)]
pub struct RaceHandle {
    /// The race id (subjects, journal directory, logs).
    race_id: Arc<str>,
    /// The race's journal: every fix and command is appended (durably) before it is applied.
    journal: Arc<dyn JournalBackend>,
    /// Commands to the shard task.
    tx: mpsc::Sender<Command>,
    /// Highest contiguous durable sequence per rider, for acks and `Welcome`.
    durable: Arc<DashMap<u32, ContiguousSeq>>,
    /// The race config as opened (rider list, devices, report interval) for lookups off-task.
    config: Arc<RaceConfig>,
    /// The shard's clock, which stamps arrival times.
    clock: ShardClock,
}

/// What recovery found when the shard opened.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Fix entries replayed into the core.
    pub fixes: u64,
    /// Admin entries replayed.
    pub admin: u64,
    /// Bytes of a torn journal tail that were cut off.
    pub torn_bytes: u64,
    /// Replay wall time.
    pub elapsed: Duration,
}

/// Milliseconds since the Unix epoch on the wall clock (the shell's clock; the core has none).
pub fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Opens a race on the local file journal: opens it, replays it into a fresh core, publishes a
/// snapshot and spawns the shard task. The returned future completes when the shard stops.
pub fn open_race(
    config: &ShardConfig,
    race_config: RaceConfig,
    course: CourseIndex,
    publisher: Arc<dyn FramePublisher>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(RaceHandle, RecoveryReport, tokio::task::JoinHandle<()>), ShardError> {
    let race_id = race_config.id.clone();
    let mut recovery = RaceRecovery::new(config, race_config, course)?;
    let (journal, stats) =
        Journal::open_streaming(&config.journal, &race_id, |entry| recovery.feed(entry))?;
    recovery.set_torn_bytes(stats.torn_bytes);
    Ok(recovery.start(config, Arc::new(journal), publisher, shutdown))
}

/// A race being rebuilt from its journal, entry by entry, before its shard starts. Whoever owns
/// the journal store feeds it (the file journal in [`open_race`], a replicated store elsewhere)
/// and then starts the shard with that store as its [`JournalBackend`].
pub struct RaceRecovery {
    /// The core being rebuilt.
    race: Race,
    /// Durable sequences per rider, rebuilt from the fixes.
    durable: Arc<DashMap<u32, ContiguousSeq>>,
    /// What was replayed.
    report: RecoveryReport,
    /// The next tick the live shard would have run, once the first entry set it.
    next_tick: Option<Millis>,
    /// The tick interval in race ms.
    tick_ms: Millis,
    /// When recovery started (for the report's elapsed time).
    started: std::time::Instant,
    /// The race config, kept for the handle.
    race_config: RaceConfig,
    /// The delayed feed being rebuilt (for a race with a publish delay).
    feed: DelayedReplay,
}

impl RaceRecovery {
    /// A fresh core for `race_config`, waiting for the journal's entries.
    pub fn new(
        config: &ShardConfig,
        race_config: RaceConfig,
        course: CourseIndex,
    ) -> Result<RaceRecovery, ShardError> {
        let epoch = wall_ms() as u64;
        let mut race = Race::new(race_config.clone(), course, epoch)?;
        let tick_ms = config.tick_interval.as_millis().max(1) as Millis;
        race.set_tick_interval(tick_ms);
        let delay_ms = Millis::from(race_config.publish_delay_s) * 1000;
        Ok(RaceRecovery {
            feed: DelayedReplay::new(delay_ms, config.clock.now_ms() - delay_ms),
            race,
            durable: Arc::new(DashMap::new()),
            report: RecoveryReport::default(),
            next_tick: None,
            tick_ms,
            started: std::time::Instant::now(),
            race_config,
        })
    }

    /// The race being recovered.
    pub fn race_id(&self) -> &str {
        &self.race_config.id
    }

    /// Replays one journal entry (in journal order).
    pub fn feed(&mut self, entry: JournalEntry) {
        let race = &mut self.race;
        match entry {
            JournalEntry::Fix {
                arrival_ms,
                rider_id,
                record,
            } => {
                replay_ticks(
                    race,
                    &mut self.next_tick,
                    arrival_ms,
                    self.tick_ms,
                    &mut self.feed,
                );
                self.durable.entry(rider_id).or_default().mark(record.seq);
                let _ = race.handle_fix(arrival_ms, rider_id, &record);
                self.report.fixes += 1;
            }
            JournalEntry::Admin {
                at_ms,
                command_json,
            } => {
                replay_ticks(
                    race,
                    &mut self.next_tick,
                    at_ms,
                    self.tick_ms,
                    &mut self.feed,
                );
                if let Ok(cmd) = serde_json::from_str::<AdminCommand>(&command_json) {
                    let _ = race.handle_admin(at_ms, cmd);
                }
                self.report.admin += 1;
            }
        }
    }

    /// Records the bytes of a torn tail the store cut off (for the report).
    pub fn set_torn_bytes(&mut self, bytes: u64) {
        self.report.torn_bytes = bytes;
    }

    /// Catches the replayed race up to now, publishes its snapshot and spawns the shard task,
    /// which journals to `journal` from now on and stops when `shutdown` completes.
    pub fn start(
        self,
        config: &ShardConfig,
        journal: Arc<dyn JournalBackend>,
        publisher: Arc<dyn FramePublisher>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (RaceHandle, RecoveryReport, tokio::task::JoinHandle<()>) {
        let RaceRecovery {
            mut race,
            durable,
            mut report,
            next_tick,
            started,
            race_config,
            mut feed,
            ..
        } = self;
        // Catch the replayed race up to now. Without a delay the replay's outputs are forgotten:
        // fans of the new epoch start from the snapshot, and the alert history stays in the
        // race's ring.
        if let Some(t) = next_tick {
            let at = t.max(config.clock.now_ms());
            feed.before_tick(&race, at);
            race.handle_tick(at);
            feed.after_tick(&mut race, at);
        }
        while race.poll_output().is_some() {}
        report.elapsed = started.elapsed();
        metrics::record_recovery(&race_config.id, &report);
        if report.fixes + report.admin > 0 {
            info!(
                race = %race_config.id,
                fixes = report.fixes,
                admin = report.admin,
                torn_bytes = report.torn_bytes,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "race recovered from its journal"
            );
        }
        // Behind a publish delay the delayed feed resumes where it was: at once the race as it
        // was `delay` ago (published as it is now, it would show fans the live race), then the
        // replayed ticks since, each at its time plus the delay, as the live shard would have.
        let snapshot = feed.opening.take().unwrap_or_else(|| race.snapshot());
        publisher.snapshot(snapshot);
        let queued = std::mem::take(&mut feed.queued);

        let (tx, rx) = mpsc::channel(config.command_queue.max(1));
        let handle = RaceHandle {
            race_id: Arc::from(race_config.id.as_str()),
            journal,
            tx,
            durable,
            config: Arc::new(race_config),
            clock: config.clock,
        };
        let span = info_span!("race_shard", race = %handle.race_id);
        let task = tokio::spawn(
            run_shard(
                race,
                rx,
                publisher,
                queued,
                config.tick_interval,
                config.clock,
                shutdown,
            )
            .instrument(span),
        );
        (handle, report, task)
    }
}

/// Longest time between two journal entries whose ticks a replay runs one by one: a week (1.2 M
/// quiet ticks at 500 ms). A live race has no such gap; a damaged or forged journal may (an
/// entry dated decades away would tick for hours), so a longer gap is jumped to its last tick,
/// and the alerts its skipped ticks would have raised are not in the replayed history.
const MAX_REPLAY_GAP_MS: Millis = 7 * 24 * 3_600_000;

/// The delayed feed of a race with a publish delay, rebuilt while its journal is replayed: the
/// state as it was `delay` ago, and the outputs of the ticks since, each due at its time plus the
/// delay. Without a delay it keeps nothing.
struct DelayedReplay {
    /// The race's publish delay, ms (0: none).
    delay_ms: Millis,
    /// Ticks after this time (now - delay) are still in the delayed feed's future.
    cutoff_ms: Millis,
    /// The race as of the last tick at or before the cutoff, taken before the first tick after it.
    opening: Option<Snapshot>,
    /// Outputs of the ticks after the cutoff, with when the live shard publishes them.
    queued: DelayedQueue,
}

impl DelayedReplay {
    fn new(delay_ms: Millis, cutoff_ms: Millis) -> DelayedReplay {
        DelayedReplay {
            delay_ms,
            cutoff_ms,
            opening: None,
            queued: DelayedQueue::new(),
        }
    }

    /// Before the tick at `at`: the first tick past the cutoff takes the opening snapshot.
    fn before_tick(&mut self, race: &Race, at: Millis) {
        if self.delay_ms > 0 && at > self.cutoff_ms && self.opening.is_none() {
            self.opening = Some(race.snapshot());
        }
    }

    /// After the tick at `at`: its outputs are queued once past the cutoff, else dropped.
    fn after_tick(&mut self, race: &mut Race, at: Millis) {
        while let Some(out) = race.poll_output() {
            if self.opening.is_some() {
                self.queued.push(at.saturating_add(self.delay_ms), out);
            }
        }
    }
}

/// Replays the ticks the live shard would have run before `t`, so time-based state (statuses,
/// groups, alerts) is rebuilt in the same order as it was lived; `feed` keeps what a delayed
/// feed still has to publish.
fn replay_ticks(
    race: &mut Race,
    next_tick: &mut Option<Millis>,
    t: Millis,
    tick_ms: Millis,
    feed: &mut DelayedReplay,
) {
    let last_before = t - t.rem_euclid(tick_ms);
    let mut next = next_tick.unwrap_or(last_before.saturating_add(tick_ms));
    if t.saturating_sub(next) > MAX_REPLAY_GAP_MS {
        warn!(
            from_ms = next,
            to_ms = t,
            "journal entries far apart: the ticks between them are skipped"
        );
        next = last_before;
    }
    while next <= t {
        feed.before_tick(race, next);
        race.handle_tick(next);
        feed.after_tick(race, next);
        match next.checked_add(tick_ms) {
            Some(n) => next = n,
            // At the end of time: nothing comes after this tick.
            None => break,
        }
    }
    *next_tick = Some(next);
}

async fn run_shard(
    mut race: Race,
    mut rx: mpsc::Receiver<Command>,
    publisher: Arc<dyn FramePublisher>,
    queued: DelayedQueue,
    tick_interval: Duration,
    clock: ShardClock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let race_id = race.config().id.clone();
    // The organiser's publish delay: frames wait this long before fans see them.
    let delay_ms = Millis::from(race.config().publish_delay_s) * 1000;
    // Outputs waiting for the delay, due time first (the recovery's replayed ticks first).
    let mut delayed = queued;
    let mut fix_seen = std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {
                let started = std::time::Instant::now();
                let now = clock.now_ms();
                race.handle_tick(now);
                let mut publish = |out: RaceOutput| match out {
                    RaceOutput::Delta(d) => {
                        metrics::record_fix_to_frame(&race_id, clock.now_ms(), &d, &mut fix_seen);
                        publisher.delta(d)
                    }
                    RaceOutput::Alert(a) => {
                        metrics::record_alert(&race_id);
                        publisher.alert(&race_id, a);
                    }
                };
                while let Some(out) = race.poll_output() {
                    if delay_ms > 0 {
                        delayed.push(now + delay_ms, out);
                    } else {
                        publish(out);
                    }
                }
                while let Some(out) = delayed.pop_due(now) {
                    publish(out);
                }
                if delay_ms > 0 {
                    metrics::record_delayed(&race_id, delayed.states());
                }
                metrics::record_tick(&race_id, started.elapsed());
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                apply(&mut race, cmd, &race_id);
            }
        }
    }
    if delay_ms > 0 {
        // The queue goes with the shard (a restart or another engine rebuilds it).
        metrics::record_delayed(&race_id, 0);
    }
    info!(race = %race_id, "race shard stopped");
}

fn apply(race: &mut Race, cmd: Command, race_id: &str) {
    match cmd {
        Command::Fixes(entries) => {
            for e in entries {
                if let JournalEntry::Fix {
                    arrival_ms,
                    rider_id,
                    record,
                } = e
                {
                    match race.handle_fix(arrival_ms, rider_id, &record) {
                        Ok(_) => metrics::record_fix(race_id, None),
                        Err(why) => metrics::record_fix(race_id, Some(why.as_str())),
                    }
                }
            }
        }
        Command::Admin {
            at_ms,
            command,
            reply,
        } => {
            let _ = reply.send(race.handle_admin(at_ms, command));
        }
        Command::Query(q) => q(race),
    }
}

impl RaceHandle {
    /// The race id.
    pub fn race_id(&self) -> &str {
        &self.race_id
    }

    /// The race config the shard was opened with.
    pub fn config(&self) -> &RaceConfig {
        &self.config
    }

    /// Journals a device's fixes (resolving once they are durable), then hands them to the shard.
    /// Duplicates and fixes the race rejects count as handled: they are journaled and replay
    /// rejects them the same way.
    pub async fn submit(
        &self,
        rider_id: u32,
        records: Vec<PositionRecord>,
    ) -> Result<(), ShardError> {
        if self.tx.is_closed() {
            // The shard stopped (shutdown, or the race was handed to another engine): nothing
            // more may be journaled or acknowledged here.
            return Err(ShardError::Stopped);
        }
        // Already durable (a device resending what it was not acked for): journaling it again
        // would only duplicate it; it counts as handled.
        let records: Vec<PositionRecord> = match self.durable.get(&rider_id) {
            Some(seen) => records
                .into_iter()
                .filter(|r| !seen.contains(r.seq))
                .collect(),
            None => records,
        };
        if records.is_empty() {
            return Ok(());
        }
        let arrival_ms = self.clock.now_ms();
        let entries: Vec<JournalEntry> = records
            .iter()
            .map(|record| JournalEntry::Fix {
                arrival_ms,
                rider_id,
                record: *record,
            })
            .collect();
        let started = std::time::Instant::now();
        self.journal.append(entries.clone()).await?;
        metrics::record_durable(&self.race_id, started.elapsed(), records.len());
        {
            let mut seq = self.durable.entry(rider_id).or_default();
            for r in &records {
                seq.mark(r.seq);
            }
        }
        self.tx
            .send(Command::Fixes(entries))
            .await
            .map_err(|_| ShardError::Stopped)
    }

    /// The shard's clock now (the wall clock live, the scaled race clock in a replay).
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Highest contiguous sequence number of this rider's device that is durable (0: none).
    pub fn durable_seq(&self, rider_id: u32) -> u32 {
        self.durable.get(&rider_id).map_or(0, |s| s.contiguous())
    }

    /// Journals an organiser command, then applies it; the race's verdict is returned.
    pub async fn admin(&self, command: AdminCommand) -> Result<(), ShardError> {
        if self.tx.is_closed() {
            return Err(ShardError::Stopped);
        }
        let at_ms = self.clock.now_ms();
        let command_json =
            serde_json::to_string(&command).map_err(|e| ShardError::Encode(e.to_string()))?;
        self.journal
            .append(vec![JournalEntry::Admin {
                at_ms,
                command_json,
            }])
            .await?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Admin {
                at_ms,
                command,
                reply,
            })
            .await
            .map_err(|_| ShardError::Stopped)?;
        match rx.await {
            Ok(r) => r.map_err(ShardError::Admin),
            Err(_) => Err(ShardError::Stopped),
        }
    }

    /// Runs `f` on the race inside the shard (reads for the API: snapshot, splits, tracks).
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Race) -> T + Send + 'static,
    ) -> Result<T, ShardError> {
        let (reply, rx) = oneshot::channel();
        let q: Query = Box::new(move |race| {
            let _ = reply.send(f(race));
        });
        if self.tx.send(Command::Query(q)).await.is_err() {
            warn!(race = %self.race_id, "query to a stopped shard");
            return Err(ShardError::Stopped);
        }
        rx.await.map_err(|_| ShardError::Stopped)
    }

    /// Journal statistics (entries, fsyncs, last commit latency) for readiness and metrics.
    pub fn journal_stats(&self) -> crate::journal::JournalStats {
        self.journal.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::race::config::RiderConfig;
    use crate::core::{Course, RaceConfig};

    fn race() -> Race {
        let rider = RiderConfig {
            id: 1,
            bib: "1".into(),
            name: "A".into(),
            team: String::new(),
            device_id: "dev-1".into(),
            device_token_sha256: None,
        };
        let config = RaceConfig::new("gap", "Gap", 1_800_000_000_000, vec![rider]);
        let course =
            Course::from_points("line", &[(52.0, 5.0, None), (52.0, 5.1, None)]).expect("course");
        Race::new(config, CourseIndex::new(course), 1).expect("race")
    }

    #[test]
    fn replay_runs_every_tick_of_a_normal_gap() {
        let mut race = race();
        let (mut next, mut feed) = (None, DelayedReplay::new(0, 0));
        replay_ticks(&mut race, &mut next, 1_800_000_000_000, 500, &mut feed);
        replay_ticks(&mut race, &mut next, 1_800_000_060_000, 500, &mut feed);
        assert_eq!(race.snapshot().tick, 120, "a minute of 500 ms ticks");
        assert!(
            feed.opening.is_none() && feed.queued.next_due().is_none(),
            "no delay, nothing kept"
        );
    }

    #[test]
    fn a_delayed_replay_keeps_the_state_of_delay_ago_and_the_outputs_since() {
        let mut race = race();
        // Ten seconds behind, replayed up to 60 s after the first tick: the feed's now is 50 s.
        let t0 = 1_800_000_000_000;
        let (mut next, mut feed) = (None, DelayedReplay::new(10_000, t0 + 50_000));
        replay_ticks(&mut race, &mut next, t0, 500, &mut feed);
        replay_ticks(&mut race, &mut next, t0 + 60_000, 500, &mut feed);
        let opening = feed.opening.as_ref().expect("an opening snapshot");
        // The first tick follows the first entry: t0 + 500 … t0 + 50 000 are at or before the
        // cutoff, 100 of them.
        assert_eq!(opening.tick, 100);
        assert_eq!(opening.time_ms, t0 + 50_000);
        // One delta for each of the 20 ticks after it, due at its time plus the delay.
        let mut deltas: Vec<(Millis, u64)> = Vec::new();
        while let Some(at) = feed.queued.next_due() {
            if let Some(RaceOutput::Delta(d)) = feed.queued.pop_due(at) {
                deltas.push((at, d.tick));
            }
        }
        assert_eq!(deltas.len(), 20);
        assert_eq!(deltas[0], (t0 + 50_500 + 10_000, 101));
        assert_eq!(deltas[19], (t0 + 60_000 + 10_000, 120));
    }

    #[test]
    fn replay_jumps_a_gap_no_live_race_has_and_stops_at_the_end_of_time() {
        let mut race = race();
        let (mut next, mut feed) = (None, DelayedReplay::new(0, 0));
        replay_ticks(&mut race, &mut next, 1_800_000_000_000, 500, &mut feed);
        // A forged entry thirty years later: one tick, not two billion.
        replay_ticks(&mut race, &mut next, 2_746_000_000_000, 500, &mut feed);
        assert_eq!(race.snapshot().tick, 1);
        replay_ticks(&mut race, &mut next, Millis::MAX, 500, &mut feed);
        assert_eq!(race.snapshot().tick, 2);
    }
}
