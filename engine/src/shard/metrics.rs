//! Metric names of the race shard, defined once, and the small helpers that record them.
//! Ingest and journal metrics live in their own modules.

use std::time::Duration;

use super::RecoveryReport;

/// Fixes applied to the core, labelled `race` and `outcome` (`accepted` or a rejection reason).
pub const FIXES_TOTAL: &str = "flevum_shard_fixes_total";
/// Seconds one tick took (apply due fixes, analytics, delta), labelled `race`.
pub const TICK_SECONDS: &str = "flevum_shard_tick_seconds";
/// Alerts raised, labelled `race`.
pub const ALERTS_TOTAL: &str = "flevum_shard_alerts_total";
/// Seconds from submit to durable (journal group commit), labelled `race`.
pub const DURABLE_SECONDS: &str = "flevum_shard_durable_seconds";
/// Seconds from a fix's device timestamp to the delta frame that first carries it (GPS time to
/// fans, including the reorder window), labelled `race`.
pub const FIX_TO_FRAME_SECONDS: &str = "flevum_shard_fix_to_frame_seconds";
/// Rider states held back by the race's publish delay (in the deltas waiting for it), labelled
/// `race`: the delayed feed's memory grows with it (104 bytes a rider state, and the vectors).
pub const DELAYED_RIDER_STATES: &str = "flevum_shard_delayed_rider_states";
/// Journal entries replayed at open, labelled `race`.
pub const RECOVERED_ENTRIES_TOTAL: &str = "flevum_shard_recovered_entries_total";
/// Seconds recovery took, labelled `race`.
pub const RECOVERY_SECONDS: &str = "flevum_shard_recovery_seconds";

/// Describes the metrics for the exporter.
pub fn describe() {
    metrics::describe_counter!(FIXES_TOTAL, "Fixes applied to the race core, by outcome");
    metrics::describe_histogram!(TICK_SECONDS, metrics::Unit::Seconds, "Race tick duration");
    metrics::describe_counter!(ALERTS_TOTAL, "Alerts raised");
    metrics::describe_histogram!(
        DURABLE_SECONDS,
        metrics::Unit::Seconds,
        "Submit to durable (journal fsync)"
    );
    metrics::describe_histogram!(
        FIX_TO_FRAME_SECONDS,
        metrics::Unit::Seconds,
        "Device fix time to the delta frame carrying it"
    );
    metrics::describe_gauge!(
        DELAYED_RIDER_STATES,
        "Rider states in deltas waiting for the race's publish delay"
    );
    metrics::describe_counter!(RECOVERED_ENTRIES_TOTAL, "Journal entries replayed at open");
    metrics::describe_histogram!(RECOVERY_SECONDS, metrics::Unit::Seconds, "Recovery time");
}

pub(super) fn record_fix(race: &str, rejected: Option<&'static str>) {
    metrics::counter!(FIXES_TOTAL, "race" => race.to_string(), "outcome" => rejected.unwrap_or("accepted"))
        .increment(1);
}

pub(super) fn record_tick(race: &str, took: Duration) {
    metrics::histogram!(TICK_SECONDS, "race" => race.to_string()).record(took.as_secs_f64());
}

pub(super) fn record_delayed(race: &str, rider_states: usize) {
    metrics::gauge!(DELAYED_RIDER_STATES, "race" => race.to_string()).set(rider_states as f64);
}

pub(super) fn record_alert(race: &str) {
    metrics::counter!(ALERTS_TOTAL, "race" => race.to_string()).increment(1);
}

pub(super) fn record_durable(race: &str, took: Duration, _records: usize) {
    metrics::histogram!(DURABLE_SECONDS, "race" => race.to_string()).record(took.as_secs_f64());
}

pub(super) fn record_recovery(race: &str, report: &RecoveryReport) {
    metrics::counter!(RECOVERED_ENTRIES_TOTAL, "race" => race.to_string())
        .increment(report.fixes + report.admin);
    metrics::histogram!(RECOVERY_SECONDS, "race" => race.to_string())
        .record(report.elapsed.as_secs_f64());
}

/// Records, for every rider whose newest fix appears in `delta` for the first time, how long ago
/// the device took it; `seen` remembers the newest fix already counted per rider.
pub(super) fn record_fix_to_frame(
    race: &str,
    now_ms: i64,
    delta: &flevum_protocol::Delta,
    seen: &mut std::collections::HashMap<u32, i64>,
) {
    let h = metrics::histogram!(FIX_TO_FRAME_SECONDS, "race" => race.to_string());
    for s in &delta.states {
        let prev = seen.entry(s.rider_id).or_insert(0);
        if s.last_fix_ms > *prev {
            *prev = s.last_fix_ms;
            h.record((now_ms - s.last_fix_ms).max(0) as f64 / 1000.0);
        }
    }
}
