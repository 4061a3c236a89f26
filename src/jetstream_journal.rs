//! The race shard's journal on JetStream: [`JetStreamBackend`] implements the engine's
//! `JournalBackend` over `flevum_bus::jetstream::JetStreamJournal` (one message per appended
//! batch, the engine's own entry encoding) and [`replay_into`] rebuilds a race from the stream.
//!
//! Appends are fenced: each expects the stream's last sequence (`Nats-Expected-Last-Sequence`),
//! so once another engine has written, this one cannot; after a failure the next append first
//! checks that this engine still holds the race's lease. Does not take or renew leases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use flevum_bus::async_nats::jetstream::kv;
use flevum_bus::bytes::Bytes;
use flevum_bus::jetstream::{FencedAppendError, JetStreamJournal, RaceLease};
use flevum_engine::journal::{
    AppendFuture, JournalBackend, JournalEntry, JournalError, JournalStats, decode_batch,
    encode_batch,
};
use flevum_engine::shard::RaceRecovery;
use tokio::sync::Mutex;
use tracing::warn;

/// Whether this engine may still write a race: cleared for good when the lease is lost, and
/// valid only until a deadline that each lease renewal pushes out, so appends stop in time even
/// when a renewal hangs (a slow or partitioned NATS server).
pub struct Ownership {
    /// The lease was lost or given up.
    lost: AtomicBool,
    /// Milliseconds after `origin` until which the lease is surely still ours.
    valid_until_ms: AtomicU64,
    /// Reference point of `valid_until_ms`.
    origin: std::time::Instant,
}

impl Ownership {
    /// Owned for `valid_for` from now.
    pub fn new(valid_for: std::time::Duration) -> Ownership {
        let o = Ownership {
            lost: AtomicBool::new(false),
            valid_until_ms: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        };
        o.renewed(valid_for);
        o
    }

    /// A renewal succeeded: owned for `valid_for` from now.
    pub fn renewed(&self, valid_for: std::time::Duration) {
        let until = self.origin.elapsed() + valid_for;
        self.valid_until_ms
            .store(until.as_millis() as u64, Ordering::Release);
    }

    /// The lease is gone: refuse every later append.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// Whether appends are allowed now.
    pub fn holds(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
            && (self.origin.elapsed().as_millis() as u64)
                < self.valid_until_ms.load(Ordering::Acquire)
    }
}

/// Where the next fenced append stands.
struct Fence {
    /// The stream's last sequence as this engine wrote it: the next append expects it.
    last: u64,
    /// An append failed: `last` may be wrong; re-read it (after checking the lease) first.
    stale: bool,
}

/// State shared by the clones of a backend.
struct Inner {
    /// The race's stream.
    journal: JetStreamJournal,
    /// The race (errors, lease key).
    race_id: String,
    /// The lease bucket, to check ownership before trusting the stream again after a failure.
    leases: kv::Store,
    /// This engine's lease owner name.
    owner: String,
    /// Whether the lease is (surely) still held: appends are refused otherwise.
    owned: Arc<Ownership>,
    /// The expected last sequence; held while publishing so batches are stored in order.
    fence: Mutex<Fence>,
    /// Entries acknowledged by JetStream since open (recovered ones included).
    entries: AtomicU64,
    /// Appends acknowledged since open.
    commits: AtomicU64,
}

/// A race's journal on JetStream (cheap to clone).
#[derive(Clone)]
pub struct JetStreamBackend {
    /// Shared state.
    inner: Arc<Inner>,
}

/// The journal error for a JetStream failure (the engine's errors are file-shaped).
fn failed(race_id: &str, what: impl std::fmt::Display) -> JournalError {
    JournalError::Io {
        path: format!("jetstream:race.{race_id}.journal").into(),
        op: "append",
        source: std::io::Error::other(what.to_string()),
    }
}

impl JetStreamBackend {
    /// Opens the race's stream and replays it into `recovery`; the backend's first append
    /// expects the sequence the replay ended at. `owned` is kept by the lease keeper.
    pub async fn open(
        client: flevum_bus::async_nats::Client,
        race_id: &str,
        config: &flevum_bus::jetstream::JetStreamConfig,
        leases: kv::Store,
        owner: String,
        owned: Arc<Ownership>,
        recovery: &mut RaceRecovery,
    ) -> Result<JetStreamBackend, flevum_bus::BusError> {
        let journal = JetStreamJournal::open(client, race_id, config).await?;
        let (last, entries) = replay_into(&journal, recovery).await?;
        Ok(JetStreamBackend {
            inner: Arc::new(Inner {
                journal,
                race_id: race_id.to_string(),
                leases,
                owner,
                owned,
                fence: Mutex::new(Fence { last, stale: false }),
                entries: AtomicU64::new(entries),
                commits: AtomicU64::new(0),
            }),
        })
    }

    async fn append_batch(self, entries: Vec<JournalEntry>) -> Result<(), JournalError> {
        let inner = &self.inner;
        let refused = || JournalError::Poisoned {
            race_id: inner.race_id.clone(),
        };
        if !inner.owned.holds() {
            return Err(refused());
        }
        if entries.is_empty() {
            return Ok(());
        }
        let payload = Bytes::from(encode_batch(&entries)?);
        let started = std::time::Instant::now();
        let record = |outcome| {
            flevum_bus::metrics::record_journal_append(started.elapsed().as_secs_f64(), outcome)
        };
        let ack = {
            let mut fence = inner.fence.lock().await;
            if fence.stale {
                match RaceLease::owner(&inner.leases, &inner.race_id).await {
                    Ok(Some(o)) if o == inner.owner => {}
                    Ok(other) => {
                        warn!(race = %inner.race_id, owner = ?other, "lease lost: journal fenced");
                        inner.owned.lose();
                        record("fenced");
                        return Err(refused());
                    }
                    Err(e) => {
                        record("failed");
                        return Err(failed(&inner.race_id, e));
                    }
                }
                fence.last = match inner.journal.last_sequence().await {
                    Ok(last) => last,
                    Err(e) => {
                        record("failed");
                        return Err(failed(&inner.race_id, e));
                    }
                };
                fence.stale = false;
            }
            match inner.journal.publish_after(payload, fence.last).await {
                Ok(ack) => {
                    fence.last += 1;
                    ack
                }
                Err(e) => {
                    fence.stale = true;
                    record("failed");
                    return Err(failed(&inner.race_id, e));
                }
            }
        };
        match inner.journal.acknowledged(ack).await {
            Ok(_) => {
                inner
                    .entries
                    .fetch_add(entries.len() as u64, Ordering::Relaxed);
                inner.commits.fetch_add(1, Ordering::Relaxed);
                record("ok");
                Ok(())
            }
            Err(e) => {
                inner.fence.lock().await.stale = true;
                if matches!(e, FencedAppendError::WrongLastSequence(_)) {
                    warn!(race = %inner.race_id, "journal append refused: {e}");
                    record("fenced");
                } else {
                    record("failed");
                }
                Err(failed(&inner.race_id, e))
            }
        }
    }
}

impl JournalBackend for JetStreamBackend {
    fn append(&self, entries: Vec<JournalEntry>) -> AppendFuture {
        Box::pin(self.clone().append_batch(entries))
    }

    fn stats(&self) -> JournalStats {
        JournalStats {
            entries: self.inner.entries.load(Ordering::Relaxed),
            commits: self.inner.commits.load(Ordering::Relaxed),
            poisoned: !self.inner.owned.holds(),
            ..JournalStats::default()
        }
    }
}

/// Replays every batch of the stream into `recovery`; returns the stream's last sequence and
/// the number of entries. An undecodable message is skipped with an error log (it was written
/// by this code, so only a bug or tampering makes one).
pub async fn replay_into(
    journal: &JetStreamJournal,
    recovery: &mut RaceRecovery,
) -> Result<(u64, u64), flevum_bus::BusError> {
    let mut entries = 0u64;
    let last = journal
        .replay_to_last(|bytes| match decode_batch(&bytes) {
            Ok(batch) => {
                for e in batch {
                    entries += 1;
                    recovery.feed(e);
                }
            }
            Err(e) => {
                tracing::error!(race = %recovery.race_id(), "skipping a journal message: {e}")
            }
        })
        .await?;
    Ok((last, entries))
}

#[cfg(test)]
mod tests {
    use super::Ownership;
    use std::time::Duration;

    #[test]
    fn ownership_ends_when_lost_or_past_its_deadline() {
        let owned = Ownership::new(Duration::from_secs(3600));
        assert!(owned.holds());
        owned.lose();
        assert!(!owned.holds(), "a lost lease is never held again");
        owned.renewed(Duration::from_secs(3600));
        assert!(!owned.holds(), "even after a late renewal");
        let expired = Ownership::new(Duration::ZERO);
        assert!(!expired.holds(), "past its deadline without a renewal");
        expired.renewed(Duration::from_secs(3600));
        assert!(expired.holds(), "a renewal extends it");
    }
}
