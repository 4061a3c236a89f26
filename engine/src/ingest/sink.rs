//! The boundary between the ingest shell and whatever makes records durable (journal + race shard).
//!
//! Owns the [`IngestSink`] trait and its error type. Does not implement a sink: the engine's shard
//! wiring does, and tests use an in-memory one.

use std::future::Future;
use std::pin::Pin;

use flevum_protocol::PositionRecord;

use super::tokens::DeviceGrant;

/// The future returned by [`IngestSink::submit`].
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<(), SubmitError>> + Send + 'static>>;

/// Why a sink could not take records. The records are then not acknowledged, and the device resends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The sink is saturated; the device should back off for about `retry_after_ms`.
    #[error("sink overloaded, retry after {retry_after_ms} ms")]
    Overloaded {
        /// Suggested back-off, ms.
        retry_after_ms: u32,
    },
    /// The race of the grant is not open (not loaded, finished).
    #[error("race {0} is not accepting positions")]
    RaceClosed(String),
    /// The journal or shard failed (IO error, shard gone).
    #[error("sink unavailable: {0}")]
    Unavailable(String),
}

/// Where validated records go. Implemented by the engine (journal, then race shard).
pub trait IngestSink: Send + Sync + 'static {
    /// Journals the records, applies them to the race, resolves once durable. Every record
    /// passed here already passed `validate`; the sink may still reject some (duplicates,
    /// impossible speed): those count as handled, not as errors.
    fn submit(&self, grant: &DeviceGrant, records: Vec<PositionRecord>) -> SubmitFuture;

    /// Highest contiguous sequence already durable for this device (0 if none), for `Welcome`.
    fn durable_seq(&self, grant: &DeviceGrant) -> u32;
}
