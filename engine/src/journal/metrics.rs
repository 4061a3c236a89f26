//! Metric names of the journal, one `pub const` per series.
//!
//! Owns only the names; the writer thread and recovery record the values. Names follow the
//! Prometheus conventions (`_total` counters, `_seconds` histograms).

/// Counter: entries made durable by `Journal::append` (fixes and admin entries).
pub const APPENDS_TOTAL: &str = "flevum_journal_appends_total";
/// Counter: framed bytes written to segment files (headers included).
pub const BYTES_TOTAL: &str = "flevum_journal_bytes_total";
/// Histogram: duration of one `fsync` of a segment file, in seconds.
pub const FSYNC_SECONDS: &str = "flevum_journal_fsync_seconds";
/// Histogram: entries written by one group commit.
pub const BATCH_ENTRIES: &str = "flevum_journal_batch_entries";
/// Histogram: time from the start of a group commit's write to the acknowledgement, in seconds.
pub const COMMIT_SECONDS: &str = "flevum_journal_commit_seconds";
/// Counter: segments created (rolls and first segments).
pub const SEGMENTS_CREATED_TOTAL: &str = "flevum_journal_segments_created_total";
/// Counter: torn or corrupt tails truncated during recovery.
pub const RECOVERY_TRUNCATIONS_TOTAL: &str = "flevum_journal_recovery_truncations_total";
/// Counter: bytes cut off by recovery truncations.
pub const RECOVERY_TRUNCATED_BYTES_TOTAL: &str = "flevum_journal_recovery_truncated_bytes_total";
/// Counter: group commits that failed with an IO error (the journal is poisoned afterwards).
pub const WRITE_FAILURES_TOTAL: &str = "flevum_journal_write_failures_total";

/// Registers units and help texts of the journal's metrics with the installed recorder (call once
/// at start-up, after installing the exporter; harmless without one).
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(APPENDS_TOTAL, Unit::Count, "Journal entries made durable.");
    describe_counter!(
        BYTES_TOTAL,
        Unit::Bytes,
        "Bytes written to journal segments."
    );
    describe_histogram!(
        FSYNC_SECONDS,
        Unit::Seconds,
        "Duration of one journal fsync."
    );
    describe_histogram!(
        BATCH_ENTRIES,
        Unit::Count,
        "Entries per journal group commit."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Journal group commit duration (write + fsync)."
    );
    describe_counter!(
        SEGMENTS_CREATED_TOTAL,
        Unit::Count,
        "Journal segment files created."
    );
    describe_counter!(
        RECOVERY_TRUNCATIONS_TOTAL,
        Unit::Count,
        "Torn journal tails truncated on open."
    );
    describe_counter!(
        RECOVERY_TRUNCATED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes cut off torn journal tails on open."
    );
    describe_counter!(
        WRITE_FAILURES_TOTAL,
        Unit::Count,
        "Journal group commits that failed (journal poisoned)."
    );
}
