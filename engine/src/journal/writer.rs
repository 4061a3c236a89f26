//! The per-race writer thread: group commit of queued appends, segment rolling, fsync.
//!
//! One plain `std::thread` per open journal drains a channel, writes everything queued in one go,
//! fsyncs once and then completes every waiting `append`. Does not read segments (recovery hands
//! it the position to continue from) and never acknowledges a batch whose write or fsync failed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::error::JournalError;
use super::format::{self, FRAME_PREFIX_LEN, HEADER_LEN};
use super::metrics as m;
use super::segment::segment_name;

/// One `append` call waiting for its group commit.
pub struct Request {
    /// The encoded frames of the call's entries, back to back.
    pub frames: Vec<u8>,
    /// Number of entries in `frames`.
    pub count: u64,
    /// Completed once the frames are durable, or with the commit's error.
    pub done: oneshot::Sender<Result<(), JournalError>>,
}

/// State shared between the handles and the writer thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Entry slots in the journal (recovered + appended).
    pub entries: AtomicU64,
    /// Bytes in the segment files (headers included).
    pub bytes: AtomicU64,
    /// Segment files.
    pub segments: AtomicU64,
    /// Fsyncs of segment files performed since open.
    pub fsyncs: AtomicU64,
    /// Group commits performed since open.
    pub commits: AtomicU64,
    /// Duration of the last group commit (write + fsync), in nanoseconds.
    pub last_commit_nanos: AtomicU64,
    /// Set after a failed commit; appends are refused from then on.
    pub poisoned: AtomicBool,
    /// Test hook: the next write fails with an injected IO error.
    pub fail_next_write: AtomicBool,
}

/// The writer thread's own state.
pub struct Writer {
    /// Race directory (`<dir>/<race_id>`).
    pub race_dir: PathBuf,
    /// Open segment, positioned at its end.
    pub file: File,
    /// Path of the open segment.
    pub path: PathBuf,
    /// Length of the open segment.
    pub seg_len: u64,
    /// Index of the next entry written.
    pub next_index: u64,
    /// Roll to a new segment before a frame would take the segment past this size.
    pub segment_bytes: u64,
    /// Whether to fsync (off only for tests and benchmarks of the non-durable path).
    pub fsync: bool,
    /// Extra time to gather appends after the first one of a batch arrives.
    pub commit_interval: Duration,
    /// Counters visible to the handles.
    pub shared: Arc<Shared>,
}

/// Why a commit failed: which file, where the batch started, the IO error.
struct CommitError {
    file: PathBuf,
    offset: u64,
    source: io::Error,
}

impl Writer {
    /// Creates the segment starting at `first_index` (header written, directory fsynced).
    pub fn create_segment(
        race_dir: &std::path::Path,
        first_index: u64,
        fsync: bool,
    ) -> io::Result<(File, PathBuf)> {
        let path = race_dir.join(segment_name(first_index));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.write_all(&format::encode_header(first_index))?;
        if fsync {
            file.sync_all()?;
            File::open(race_dir)?.sync_all()?;
        }
        metrics::counter!(m::SEGMENTS_CREATED_TOTAL).increment(1);
        Ok((file, path))
    }

    /// Runs until every handle is dropped (the channel disconnects).
    pub fn run(mut self, rx: Receiver<Request>) {
        let mut batch: Vec<Request> = Vec::new();
        while let Ok(first) = rx.recv() {
            batch.push(first);
            if !self.commit_interval.is_zero() {
                let deadline = Instant::now() + self.commit_interval;
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(r) => batch.push(r),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            while let Ok(r) = rx.try_recv() {
                batch.push(r);
            }
            self.commit_batch(&mut batch);
        }
        tracing::debug!(dir = %self.race_dir.display(), "journal writer stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            for r in batch.drain(..) {
                let _ = r.done.send(Err(JournalError::Poisoned {
                    race_id: self.race_id(),
                }));
            }
            return;
        }
        let started = Instant::now();
        let entries: u64 = batch.iter().map(|r| r.count).sum();
        match self.write(batch) {
            Ok(()) => {
                let elapsed = started.elapsed();
                self.shared
                    .last_commit_nanos
                    .store(elapsed.as_nanos() as u64, Ordering::Relaxed);
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::APPENDS_TOTAL).increment(entries);
                metrics::histogram!(m::BATCH_ENTRIES).record(entries as f64);
                metrics::histogram!(m::COMMIT_SECONDS).record(elapsed.as_secs_f64());
                for r in batch.drain(..) {
                    // The caller may have stopped waiting (future dropped): nothing to do then.
                    let _ = r.done.send(Ok(()));
                }
            }
            Err(e) => {
                self.shared.poisoned.store(true, Ordering::Release);
                metrics::counter!(m::WRITE_FAILURES_TOTAL).increment(1);
                tracing::error!(
                    file = %e.file.display(),
                    offset = e.offset,
                    error = %e.source,
                    "journal commit failed; journal poisoned"
                );
                let source = Arc::new(e.source);
                for r in batch.drain(..) {
                    let _ = r.done.send(Err(JournalError::CommitFailed {
                        file: e.file.clone(),
                        offset: e.offset,
                        source: Arc::clone(&source),
                    }));
                }
            }
        }
    }

    fn race_id(&self) -> String {
        self.race_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Writes `buf` to the open segment, honouring the failure-injection hook.
    fn write_out(&mut self, buf: &mut Vec<u8>) -> Result<(), CommitError> {
        if buf.is_empty() {
            return Ok(());
        }
        let offset = self.seg_len;
        let res = if self.shared.fail_next_write.swap(false, Ordering::AcqRel) {
            Err(io::Error::other("injected journal write failure"))
        } else {
            self.file.write_all(buf)
        };
        res.map_err(|source| CommitError {
            file: self.path.clone(),
            offset,
            source,
        })?;
        self.seg_len += buf.len() as u64;
        self.shared
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        metrics::counter!(m::BYTES_TOTAL).increment(buf.len() as u64);
        buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), CommitError> {
        if !self.fsync {
            return Ok(());
        }
        let t = Instant::now();
        self.file.sync_data().map_err(|source| CommitError {
            file: self.path.clone(),
            offset: self.seg_len,
            source,
        })?;
        metrics::histogram!(m::FSYNC_SECONDS).record(t.elapsed().as_secs_f64());
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn roll(&mut self) -> Result<(), CommitError> {
        self.sync()?;
        let (file, path) = Self::create_segment(&self.race_dir, self.next_index, self.fsync)
            .map_err(|source| CommitError {
                file: self.race_dir.join(segment_name(self.next_index)),
                offset: 0,
                source,
            })?;
        tracing::debug!(segment = %path.display(), "journal segment rolled");
        self.file = file;
        self.path = path;
        self.seg_len = HEADER_LEN;
        self.shared.segments.fetch_add(1, Ordering::Relaxed);
        self.shared.bytes.fetch_add(HEADER_LEN, Ordering::Relaxed);
        Ok(())
    }

    /// Writes every request's frames (rolling segments at frame boundaries), then fsyncs once.
    fn write(&mut self, batch: &[Request]) -> Result<(), CommitError> {
        let total: usize = batch.iter().map(|r| r.frames.len()).sum();
        let mut buf = Vec::with_capacity(total.min(8 << 20));
        for req in batch {
            let frames = &req.frames;
            let mut pos = 0usize;
            while pos + FRAME_PREFIX_LEN <= frames.len() {
                // Frames were encoded by this process: the length prefix is trusted.
                let len = u32::from_le_bytes([
                    frames[pos],
                    frames[pos + 1],
                    frames[pos + 2],
                    frames[pos + 3],
                ]) as usize;
                let end = (pos + FRAME_PREFIX_LEN + len).min(frames.len());
                let flen = (end - pos) as u64;
                let pending = self.seg_len + buf.len() as u64;
                if pending > HEADER_LEN && pending + flen > self.segment_bytes {
                    self.write_out(&mut buf)?;
                    self.roll()?;
                }
                buf.extend_from_slice(&frames[pos..end]);
                self.next_index += 1;
                pos = end;
                if buf.len() >= 8 << 20 {
                    self.write_out(&mut buf)?;
                }
            }
        }
        self.write_out(&mut buf)?;
        self.sync()?;
        self.shared
            .entries
            .store(self.next_index, Ordering::Relaxed);
        Ok(())
    }
}
