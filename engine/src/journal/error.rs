//! The journal's typed errors.
//!
//! Every variant that concerns a file names the file and, where it applies, the byte offset, so an
//! operator can find the damage. Does not decide what is recoverable: recovery does that.

use std::path::PathBuf;
use std::sync::Arc;

/// What is wrong with bytes found in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptionKind {
    /// The segment header is shorter than its fixed size.
    TornHeader,
    /// The segment header has the wrong magic, version or first index.
    BadHeader,
    /// The file ends inside an entry (length, checksum or payload incomplete).
    TornEntry,
    /// The entry's checksum does not match its bytes.
    Checksum,
    /// The entry's length field is impossible (too small or above the maximum).
    BadLength,
    /// The entry's kind byte is unknown.
    UnknownKind,
    /// The checksum matched but the payload does not decode (wrong size, invalid UTF-8).
    BadPayload,
}

impl std::fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            CorruptionKind::TornHeader => "torn segment header",
            CorruptionKind::BadHeader => "bad segment header",
            CorruptionKind::TornEntry => "torn entry",
            CorruptionKind::Checksum => "checksum mismatch",
            CorruptionKind::BadLength => "impossible entry length",
            CorruptionKind::UnknownKind => "unknown entry kind",
            CorruptionKind::BadPayload => "undecodable payload",
        };
        f.write_str(s)
    }
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A race id that cannot be used as a directory name (empty, too long, path separators, `..`).
    #[error("invalid race id {race_id:?}: {reason}")]
    InvalidRaceId {
        /// The refused id, verbatim.
        race_id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An IO operation on a journal file or directory failed.
    #[error("journal IO error on {path} during {op}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the journal was doing (open, read, write, fsync, rename, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Corruption that recovery must not repair silently (inside a segment that is not the last,
    /// or a damaged header of the last segment).
    #[error("journal corruption in {file} at offset {offset}: {kind}")]
    Corrupt {
        /// The damaged segment file.
        file: PathBuf,
        /// Byte offset of the damaged entry or header.
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// Segments do not follow each other (a segment file is missing or renamed).
    #[error(
        "journal segment {file} starts at entry {found}, expected {expected} (segment missing?)"
    )]
    SegmentGap {
        /// The segment whose first index does not continue the previous one.
        file: PathBuf,
        /// The first index the previous segments imply.
        expected: u64,
        /// The first index the file carries.
        found: u64,
    },
    /// A file in the race directory looks like a segment but its name does not parse.
    #[error("unexpected file {file} in journal directory")]
    StrayFile {
        /// The file.
        file: PathBuf,
    },
    /// An admin entry larger than the maximum entry size.
    #[error("journal entry of {bytes} bytes exceeds the maximum of {max}")]
    EntryTooLarge {
        /// Size of the encoded entry.
        bytes: usize,
        /// The maximum.
        max: usize,
    },
    /// Another process or handle holds the race's journal open.
    #[error("journal {dir} is locked by another handle or process")]
    Locked {
        /// The race directory.
        dir: PathBuf,
    },
    /// A group commit failed: the data of this append may not be durable. Every waiter of the
    /// failed commit receives this; the journal refuses further appends.
    #[error("journal commit to {file} at offset {offset} failed: {source}")]
    CommitFailed {
        /// The segment being written.
        file: PathBuf,
        /// Offset in the segment where the failed batch started.
        offset: u64,
        /// The underlying error, shared by every waiter of the batch.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// An earlier commit failed; the journal no longer accepts appends (reopen to recover).
    #[error("journal of race {race_id} is poisoned by an earlier write failure; reopen it")]
    Poisoned {
        /// The race.
        race_id: String,
    },
    /// The writer thread is gone (it panicked or the journal is shutting down).
    #[error("journal writer of race {race_id} has stopped")]
    WriterGone {
        /// The race.
        race_id: String,
    },
}

impl JournalError {
    /// Builds an [`JournalError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        JournalError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
