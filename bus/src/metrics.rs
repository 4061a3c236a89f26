//! Metric names of the bus (counters of frames published, received, dropped and resyncs).
//!
//! Names, [`describe`], and small recorders for the binary's JetStream journal adapter and race
//! ownership (which do not depend on the `metrics` crate themselves).

/// Frames an engine handed to NATS (label `kind`: snapshot, delta, alert).
pub const BUS_PUBLISHED: &str = "flevum_bus_published_total";
/// Frames an engine dropped because its publish queue was full.
pub const BUS_DROPPED: &str = "flevum_bus_dropped_total";
/// Frames a gateway received (label `kind`).
pub const BUS_RECEIVED: &str = "flevum_bus_received_total";
/// Payloads a gateway could not decode.
pub const BUS_BAD_PAYLOADS: &str = "flevum_bus_bad_payloads_total";
/// Snapshot requests a gateway made (at watch and after a gap).
pub const BUS_SNAPSHOT_REQUESTS: &str = "flevum_bus_snapshot_requests_total";
/// Races a gateway follows now.
pub const BUS_WATCHED_RACES: &str = "flevum_bus_watched_races";
/// Control requests an engine answered (label `method`).
pub const BUS_CONTROL_REQUESTS: &str = "flevum_bus_control_requests_total";

/// Seconds from a JetStream journal append to its acknowledgement (label `outcome`: ok,
/// fenced, failed).
pub const BUS_JOURNAL_APPEND_SECONDS: &str = "flevum_bus_journal_append_seconds";
/// Race lease events of this engine (label `event`: acquired, lost, released).
pub const BUS_LEASE_EVENTS: &str = "flevum_bus_lease_events_total";
/// Races this engine owns now.
pub const BUS_OWNED_RACES: &str = "flevum_bus_owned_races";
/// Requests forwarded to a race's owner (labels `kind`: ingest, control; `outcome`: ok, error).
pub const BUS_FORWARDED: &str = "flevum_bus_forwarded_total";

/// Records one JetStream journal append.
pub fn record_journal_append(seconds: f64, outcome: &'static str) {
    metrics::histogram!(BUS_JOURNAL_APPEND_SECONDS, "outcome" => outcome).record(seconds);
}

/// Records a lease event and moves the owned-races gauge with it.
pub fn record_lease(event: &'static str) {
    metrics::counter!(BUS_LEASE_EVENTS, "event" => event).increment(1);
    match event {
        "acquired" => metrics::gauge!(BUS_OWNED_RACES).increment(1.0),
        _ => metrics::gauge!(BUS_OWNED_RACES).decrement(1.0),
    }
}

/// Records a request forwarded to a race's owner.
pub fn record_forward(kind: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(BUS_FORWARDED, "kind" => kind, "outcome" => outcome).increment(1);
}

/// Describes the bus metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(BUS_PUBLISHED, "frames handed to NATS by this engine");
    metrics::describe_counter!(BUS_DROPPED, "frames dropped on a full publish queue");
    metrics::describe_counter!(BUS_RECEIVED, "frames received from NATS by this gateway");
    metrics::describe_counter!(BUS_BAD_PAYLOADS, "undecodable bus payloads");
    metrics::describe_counter!(BUS_SNAPSHOT_REQUESTS, "snapshot requests made");
    metrics::describe_gauge!(BUS_WATCHED_RACES, "races this gateway follows");
    metrics::describe_counter!(BUS_CONTROL_REQUESTS, "control requests answered");
    metrics::describe_histogram!(
        BUS_JOURNAL_APPEND_SECONDS,
        metrics::Unit::Seconds,
        "JetStream journal append until acknowledged"
    );
    metrics::describe_counter!(BUS_LEASE_EVENTS, "race lease events of this engine");
    metrics::describe_gauge!(BUS_OWNED_RACES, "races this engine owns");
    metrics::describe_counter!(BUS_FORWARDED, "requests forwarded to a race's owner");
}
