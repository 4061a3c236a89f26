//! The journal as the race shard sees it: [`JournalBackend`] (append a batch, resolve once it is
//! durable) implemented by the local file [`Journal`] here and by a replicated store elsewhere
//! (the root binary's JetStream adapter), plus the batch encoding such a store keeps
//! ([`encode_batch`] / [`decode_batch`]: the segment files' own checksummed entry frames).
//!
//! Owns no IO beyond delegating to the file journal; recovery is fed by whoever opens the store.

use std::future::Future;
use std::pin::Pin;

use super::format::{self, Decoded, FRAME_PREFIX_LEN};
use super::{CorruptionKind, Journal, JournalEntry, JournalError, JournalStats};

/// The future of [`JournalBackend::append`].
pub type AppendFuture = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'static>>;

/// Where a race shard journals: every fix and organiser command is appended (durably) before the
/// race applies it and before anything is acknowledged.
pub trait JournalBackend: Send + Sync + 'static {
    /// Appends `entries` in order; resolves once all of them are durable. On error nothing of
    /// this batch may be acknowledged (it may or may not have been stored).
    fn append(&self, entries: Vec<JournalEntry>) -> AppendFuture;

    /// Counters for readiness and metrics (zeros where the store has none).
    fn stats(&self) -> JournalStats {
        JournalStats::default()
    }
}

impl JournalBackend for Journal {
    fn append(&self, entries: Vec<JournalEntry>) -> AppendFuture {
        let journal = self.clone();
        Box::pin(async move { Journal::append(&journal, entries).await })
    }

    fn stats(&self) -> JournalStats {
        Journal::stats(self)
    }
}

/// Encodes `entries` as one blob of entry frames (the segment format without a header).
pub fn encode_batch(entries: &[JournalEntry]) -> Result<Vec<u8>, JournalError> {
    let mut out = Vec::with_capacity(entries.len() * format::FIX_FRAME_LEN);
    for e in entries {
        format::encode_entry(e, &mut out)?;
    }
    Ok(out)
}

/// Why a batch blob does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal batch damaged at byte {offset}: {kind}")]
pub struct BatchDecodeError {
    /// Offset of the damaged frame in the blob.
    pub offset: usize,
    /// What is wrong.
    pub kind: CorruptionKind,
}

/// Decodes a blob made by [`encode_batch`] (erased tombstones are skipped).
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<JournalEntry>, BatchDecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let fail = |kind| BatchDecodeError { offset: at, kind };
        let Some(prefix) = bytes
            .get(at..at + FRAME_PREFIX_LEN)
            .and_then(|p| <&[u8; FRAME_PREFIX_LEN]>::try_from(p).ok())
        else {
            return Err(fail(CorruptionKind::TornEntry));
        };
        let (len, crc) = format::decode_prefix(prefix).map_err(fail)?;
        let start = at + FRAME_PREFIX_LEN;
        let Some(body) = bytes.get(start..start + len) else {
            return Err(fail(CorruptionKind::TornEntry));
        };
        match format::decode_body(body, crc).map_err(fail)? {
            Decoded::Entry(e) => out.push(e),
            Decoded::Erased => {}
        }
        at = start + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flevum_protocol::PositionRecord;

    fn batch() -> Vec<JournalEntry> {
        vec![
            JournalEntry::Fix {
                arrival_ms: 1_764_000_000_000,
                rider_id: 7,
                record: PositionRecord::from_degrees(
                    3,
                    1_764_000_000_000,
                    52.1,
                    5.2,
                    Some(3.0),
                    Some(9.5),
                    None,
                    Some(4.0),
                ),
            },
            JournalEntry::Admin {
                at_ms: 1_764_000_000_500,
                command_json: "\"Start\"".into(),
            },
        ]
    }

    #[test]
    fn a_batch_round_trips_and_damage_is_reported() {
        let entries = batch();
        let blob = encode_batch(&entries).unwrap();
        assert_eq!(decode_batch(&blob).unwrap(), entries);
        assert_eq!(decode_batch(&[]).unwrap(), vec![]);
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let err = decode_batch(&bad).unwrap_err();
        assert_eq!(err.kind, CorruptionKind::Checksum);
        assert!(err.offset > 0, "the first frame is intact");
        assert_eq!(
            decode_batch(&blob[..blob.len() - 2]).unwrap_err().kind,
            CorruptionKind::TornEntry
        );
    }

    #[tokio::test]
    async fn the_file_journal_is_a_backend() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = super::super::JournalConfig {
            dir: tmp.path().to_path_buf(),
            fsync: false,
            ..Default::default()
        };
        let (journal, _) = Journal::open(&cfg, "r").unwrap();
        let backend: std::sync::Arc<dyn JournalBackend> = std::sync::Arc::new(journal);
        backend.append(batch()).await.unwrap();
        assert_eq!(backend.stats().entries, 2);
        drop(backend);
        let (_, rec) = Journal::open(&cfg, "r").unwrap();
        assert_eq!(rec.entries, batch());
    }
}
