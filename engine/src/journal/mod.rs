//! The durable journal: an append-only, checksummed, segmented log per race with group commit,
//! recovery on open and streaming replay, plus organiser tools (erasure, GPX export, retention).
//!
//! Layout: `<dir>/<race_id>/<first index, 20 digits>.log`; see `format` for the bytes. Owns
//! durability only: it does not interpret fixes or admin commands (the race core does).

mod backend;
mod error;
mod format;
pub mod metrics;
mod organiser;
mod segment;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use flevum_protocol::PositionRecord;
use tokio::sync::oneshot;

pub use backend::{AppendFuture, BatchDecodeError, JournalBackend, decode_batch, encode_batch};
pub use error::{CorruptionKind, JournalError};
pub use segment::TornTail;

pub use format::{FIX_FRAME_LEN, FORMAT_VERSION, HEADER_LEN, MAX_ENTRY_BYTES};
pub use organiser::{
    EraseReport, apply_retention, apply_retention_at, erase_rider, export_rider_gpx, list_races,
};

use self::metrics as m;
use format::Decoded;
use segment::{LOCK_FILE, sync_dir};
use writer::{Request, Shared, Writer};

/// Where and how journals are written.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Root directory; each race gets `<dir>/<race_id>/`.
    pub dir: PathBuf,
    /// A segment is closed and a new one started before a write would take it past this size.
    pub segment_bytes: u64,
    /// After the first append of a batch arrives, wait this long for more before writing
    /// (zero: write at once; appends queued during an fsync still share the next one).
    pub commit_interval: Duration,
    /// Fsync every commit (must be true in production: acks promise durability).
    pub fsync: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: PathBuf::from("journal"),
            segment_bytes: 64 * 1024 * 1024,
            commit_interval: Duration::ZERO,
            fsync: true,
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEntry {
    /// A position fix as accepted by ingest.
    Fix {
        /// Server clock when the fix arrived (the core's arrival-order replay needs it).
        arrival_ms: i64,
        /// The rider the device is registered to.
        rider_id: u32,
        /// The fix itself.
        record: PositionRecord,
    },
    /// An organiser command (start, finish, abandon, checkpoint move, ...).
    Admin {
        /// Server clock when the command was accepted.
        at_ms: i64,
        /// The command, serialised as JSON by the caller.
        command_json: String,
    },
}

/// What `Journal::open` found on disk.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Every entry, in journal order.
    pub entries: Vec<JournalEntry>,
    /// Bytes of a torn or corrupt tail cut off the last segment (0 after a clean shutdown).
    pub torn_bytes_truncated: u64,
    /// Segment files after recovery.
    pub segments: usize,
    /// Where and why the last segment was truncated (`None` after a clean shutdown).
    pub truncated: Option<TornTail>,
}

/// What a streaming scan ([`replay`], [`Journal::open_streaming`]) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Entries delivered to the callback.
    pub entries: u64,
    /// Erased entries (GDPR tombstones) skipped.
    pub erased: u64,
    /// Valid bytes read (headers included).
    pub bytes: u64,
    /// Segment files read.
    pub segments: usize,
    /// Bytes of a torn tail at the end of the last segment (not delivered; `replay` leaves them
    /// on disk, `open` truncates them).
    pub torn_bytes: u64,
    /// Details of that torn tail.
    pub torn: Option<TornTail>,
}

/// Counters of an open journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Entry slots in the journal (recovered and appended; erased tombstones included).
    pub entries: u64,
    /// Bytes in the segment files.
    pub bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Fsyncs of segment data since open.
    pub fsyncs: u64,
    /// Group commits since open (each one write + at most one fsync per segment touched).
    pub commits: u64,
    /// Duration of the last group commit, from the start of its write to the end of its fsync.
    pub last_commit_latency: Duration,
    /// True after a failed commit: appends are refused until the journal is reopened.
    pub poisoned: bool,
}

/// Maximum length of a race id.
pub const MAX_RACE_ID_LEN: usize = 64;

/// Checks that `race_id` is safe as a directory name: 1–64 characters of `[A-Za-z0-9_.-]`,
/// starting with a letter or digit (so no `.`, `..`, hidden names, separators or drive letters).
pub fn validate_race_id(race_id: &str) -> Result<(), JournalError> {
    let refuse = |reason| {
        Err(JournalError::InvalidRaceId {
            race_id: race_id.to_owned(),
            reason,
        })
    };
    let Some(first) = race_id.bytes().next() else {
        return refuse("empty");
    };
    if race_id.len() > MAX_RACE_ID_LEN {
        return refuse("longer than 64 bytes");
    }
    if !first.is_ascii_alphanumeric() {
        return refuse("must start with a letter or digit");
    }
    if !race_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return refuse("only letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

/// The race directory, after validating the id.
pub(crate) fn race_dir(config: &JournalConfig, race_id: &str) -> Result<PathBuf, JournalError> {
    validate_race_id(race_id)?;
    Ok(config.dir.join(race_id))
}

/// Takes the race's exclusive lock (held for the lifetime of the returned file).
pub(crate) fn lock_race(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| JournalError::io(&path, "open lock", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(JournalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(JournalError::io(&path, "lock", e)),
    }
}

/// Creates `dir` (and parents) and makes its entry durable in the parent.
fn create_dir_durable(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, "create directory", e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Handle to a race's open journal. Clones share one writer thread; the thread stops (after
/// committing what is queued) when the last clone is dropped, and that drop blocks until it has
/// (so the race can be reopened right after). The race directory is locked while open.
#[derive(Clone)]
pub struct Journal {
    /// The state shared by clones.
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("race_id", &self.inner.race_id)
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// The race, for error messages.
    race_id: String,
    /// The race directory.
    dir: PathBuf,
    /// Queue to the writer thread; taken on drop so the thread sees the disconnect.
    tx: Option<mpsc::Sender<Request>>,
    /// The writer thread, joined on drop so the files and the lock are released when drop returns.
    thread: Option<JoinHandle<()>>,
    /// Counters shared with the writer.
    shared: Arc<Shared>,
    /// The race's lock file, locked while this journal is open.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(race_id = %self.race_id, "journal writer thread panicked");
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal of `race_id`, recovering every entry.
    ///
    /// A torn or corrupt tail of the last segment is truncated and reported; damage anywhere else
    /// is an error. Loads all entries into memory: use [`Journal::open_streaming`] for big ones.
    pub fn open(
        config: &JournalConfig,
        race_id: &str,
    ) -> Result<(Journal, Recovery), JournalError> {
        let mut entries = Vec::new();
        let (journal, stats) = Self::open_streaming(config, race_id, |e| entries.push(e))?;
        let recovery = Recovery {
            entries,
            torn_bytes_truncated: stats.torn_bytes,
            segments: stats.segments,
            truncated: stats.torn,
        };
        Ok((journal, recovery))
    }

    /// Like [`Journal::open`] but hands each recovered entry to `f` instead of collecting them.
    /// `ReplayStats::torn_bytes` is what was truncated.
    pub fn open_streaming(
        config: &JournalConfig,
        race_id: &str,
        mut f: impl FnMut(JournalEntry),
    ) -> Result<(Journal, ReplayStats), JournalError> {
        let dir = race_dir(config, race_id)?;
        create_dir_durable(&dir)?;
        let lock = lock_race(&dir)?;
        let scan = segment::scan_race(&dir, |_, d| {
            if let Decoded::Entry(e) = d {
                f(e);
            }
        })?;
        let mut segments = scan.segments.clone();
        let mut torn_bytes = 0;
        if let Some(torn) = &scan.torn {
            torn_bytes = torn.bytes;
            if let Some(at) = torn.later_valid_frame_at {
                tracing::error!(
                    file = %torn.file.display(),
                    damage_offset = torn.offset,
                    valid_frame_at = at,
                    "journal recovery: valid entries follow the damage in the last segment; \
                     they are truncated with it (bit rot or a torn final batch)"
                );
            }
            tracing::warn!(
                file = %torn.file.display(),
                offset = torn.offset,
                bytes = torn.bytes,
                kind = %torn.kind,
                "journal recovery: truncating torn tail of the last segment"
            );
            ::metrics::counter!(m::RECOVERY_TRUNCATIONS_TOTAL).increment(1);
            ::metrics::counter!(m::RECOVERY_TRUNCATED_BYTES_TOTAL).increment(torn.bytes);
            if torn.offset < HEADER_LEN {
                // Not even the header made it to disk: the segment never held an entry.
                fs::remove_file(&torn.file)
                    .map_err(|e| JournalError::io(&torn.file, "remove torn segment", e))?;
                segments.pop();
            } else {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&torn.file)
                    .map_err(|e| JournalError::io(&torn.file, "open for truncation", e))?;
                file.set_len(torn.offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| JournalError::io(&torn.file, "truncate", e))?;
            }
            sync_dir(&dir)?;
        }
        let shared = Arc::new(Shared::default());
        let (file, path, seg_len) = match segments.last() {
            Some(last) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&last.file.path)
                    .map_err(|e| JournalError::io(&last.file.path, "open for append", e))?;
                (file, last.file.path.clone(), last.valid_len)
            }
            None => {
                let (file, path) = Writer::create_segment(&dir, scan.next_index, config.fsync)
                    .map_err(|e| {
                        JournalError::io(
                            dir.join(segment::segment_name(scan.next_index)),
                            "create",
                            e,
                        )
                    })?;
                segments.push(segment::ScannedSegment {
                    file: segment::SegmentFile {
                        path: path.clone(),
                        first_index: scan.next_index,
                    },
                    slots: 0,
                    valid_len: HEADER_LEN,
                });
                (file, path, HEADER_LEN)
            }
        };
        let bytes: u64 = segments.iter().map(|s| s.valid_len).sum();
        shared.entries.store(scan.next_index, Ordering::Relaxed);
        shared.bytes.store(bytes, Ordering::Relaxed);
        shared
            .segments
            .store(segments.len() as u64, Ordering::Relaxed);
        let writer = Writer {
            race_dir: dir.clone(),
            file,
            path,
            seg_len,
            next_index: scan.next_index,
            segment_bytes: config.segment_bytes.max(HEADER_LEN + 1),
            fsync: config.fsync,
            commit_interval: config.commit_interval,
            shared: Arc::clone(&shared),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("journal-{race_id}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::io(&dir, "spawn writer thread", e))?;
        tracing::info!(
            race_id,
            entries = scan.entries,
            segments = segments.len(),
            torn_bytes,
            "journal opened"
        );
        let stats = ReplayStats {
            entries: scan.entries,
            erased: scan.erased,
            bytes,
            segments: segments.len(),
            torn_bytes,
            torn: scan.torn.clone(),
        };
        let journal = Journal {
            inner: Arc::new(Inner {
                race_id: race_id.to_owned(),
                dir,
                tx: Some(tx),
                thread: Some(thread),
                shared,
                _lock: lock,
            }),
        };
        Ok((journal, stats))
    }

    /// Appends `entries` (in order, contiguously) and resolves once they are durable.
    ///
    /// Concurrent appends are group-committed: one write and one fsync for everything queued. On
    /// an IO error every waiter of that commit gets [`JournalError::CommitFailed`] and later
    /// appends get [`JournalError::Poisoned`].
    pub async fn append(&self, entries: Vec<JournalEntry>) -> Result<(), JournalError> {
        let rx = self.enqueue(&entries)?;
        match rx {
            None => Ok(()),
            Some(rx) => rx.await.map_err(|_| JournalError::WriterGone {
                race_id: self.inner.race_id.clone(),
            })?,
        }
    }

    /// Encodes and queues `entries`; `None` when there is nothing to write.
    fn enqueue(
        &self,
        entries: &[JournalEntry],
    ) -> Result<Option<oneshot::Receiver<Result<(), JournalError>>>, JournalError> {
        if self.inner.shared.poisoned.load(Ordering::Acquire) {
            return Err(JournalError::Poisoned {
                race_id: self.inner.race_id.clone(),
            });
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let mut frames = Vec::with_capacity(entries.len() * FIX_FRAME_LEN);
        for e in entries {
            format::encode_entry(e, &mut frames)?;
        }
        let (done, rx) = oneshot::channel();
        let gone = || JournalError::WriterGone {
            race_id: self.inner.race_id.clone(),
        };
        self.inner
            .tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Request {
                frames,
                count: entries.len() as u64,
                done,
            })
            .map_err(|_| gone())?;
        Ok(Some(rx))
    }

    /// Current counters.
    pub fn stats(&self) -> JournalStats {
        let s = &self.inner.shared;
        JournalStats {
            entries: s.entries.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            segments: s.segments.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            last_commit_latency: Duration::from_nanos(s.last_commit_nanos.load(Ordering::Relaxed)),
            poisoned: s.poisoned.load(Ordering::Acquire),
        }
    }

    /// The race this journal belongs to.
    pub fn race_id(&self) -> &str {
        &self.inner.race_id
    }

    /// The race directory (`<dir>/<race_id>`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Fault injection for tests: the next write of the writer thread fails with an IO error, as
    /// a full disk or a dying device would.
    #[doc(hidden)]
    pub fn inject_write_failure(&self) {
        self.inner
            .shared
            .fail_next_write
            .store(true, Ordering::Release);
    }
}

/// Streams every entry of `race_id`'s journal to `f`, in order, without loading it all and without
/// modifying files (a torn tail is skipped and counted, not truncated). Damage before the tail is
/// an error. Safe to run while the journal is open elsewhere.
pub fn replay(
    config: &JournalConfig,
    race_id: &str,
    mut f: impl FnMut(JournalEntry),
) -> Result<ReplayStats, JournalError> {
    let dir = race_dir(config, race_id)?;
    let scan = segment::scan_race(&dir, |_, d| {
        if let Decoded::Entry(e) = d {
            f(e);
        }
    })?;
    Ok(ReplayStats {
        entries: scan.entries,
        erased: scan.erased,
        bytes: scan.bytes,
        segments: scan.segments.len(),
        torn_bytes: scan.torn.as_ref().map_or(0, |t| t.bytes),
        torn: scan.torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn race_id_validation_accepts_plain_names_and_refuses_escapes() {
        let longest = "x".repeat(MAX_RACE_ID_LEN);
        for ok in ["a", "R1", "tour-2026.stage_3", longest.as_str()] {
            assert!(validate_race_id(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "", ".", "..", "../x", "x/..", "a/b", "a\\b", "-a", "_a", "a b", "é",
        ] {
            assert!(
                matches!(
                    validate_race_id(bad),
                    Err(JournalError::InvalidRaceId { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_race_id(&"x".repeat(MAX_RACE_ID_LEN + 1)).is_err());
    }

    #[test]
    fn open_creates_the_first_segment_with_a_header() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            dir: tmp.path().join("nested/root"),
            ..JournalConfig::default()
        };
        let (j, rec) = Journal::open(&cfg, "r").unwrap();
        assert_eq!(rec.segments, 1);
        let seg = cfg.dir.join("r").join(segment::segment_name(0));
        let bytes = fs::read(&seg).unwrap();
        assert_eq!(bytes, format::encode_header(0));
        assert_eq!(
            j.stats(),
            JournalStats {
                bytes: HEADER_LEN,
                segments: 1,
                ..JournalStats::default()
            }
        );
    }

    #[test]
    fn a_torn_header_of_the_last_segment_is_removed_and_recreated() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            dir: tmp.path().to_path_buf(),
            ..JournalConfig::default()
        };
        let dir = tmp.path().join("r");
        fs::create_dir_all(&dir).unwrap();
        let seg = dir.join(segment::segment_name(0));
        fs::write(&seg, &format::encode_header(0)[..10]).unwrap();
        let (_j, rec) = Journal::open(&cfg, "r").unwrap();
        assert_eq!(rec.torn_bytes_truncated, 10);
        assert_eq!(fs::read(&seg).unwrap(), format::encode_header(0));
    }

    #[test]
    fn a_wrong_header_is_an_error_even_in_the_last_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            dir: tmp.path().to_path_buf(),
            ..JournalConfig::default()
        };
        let dir = tmp.path().join("r");
        fs::create_dir_all(&dir).unwrap();
        // Header claims first index 5 in the file named 0.
        fs::write(dir.join(segment::segment_name(0)), format::encode_header(5)).unwrap();
        assert!(matches!(
            Journal::open(&cfg, "r"),
            Err(JournalError::Corrupt {
                offset: 0,
                kind: CorruptionKind::BadHeader,
                ..
            })
        ));
    }

    #[test]
    fn a_stray_log_file_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            dir: tmp.path().to_path_buf(),
            ..JournalConfig::default()
        };
        let dir = tmp.path().join("r");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("notes.log"), b"x").unwrap();
        assert!(matches!(
            replay(&cfg, "r", |_| {}),
            Err(JournalError::StrayFile { .. })
        ));
    }
}
