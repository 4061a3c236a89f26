//! Metric names of the bus (counters of frames published, received, dropped and resyncs).
//!
//! Names only, plus [`describe`]; the stages record them where they happen.

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

/// Describes the bus metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(BUS_PUBLISHED, "frames handed to NATS by this engine");
    metrics::describe_counter!(BUS_DROPPED, "frames dropped on a full publish queue");
    metrics::describe_counter!(BUS_RECEIVED, "frames received from NATS by this gateway");
    metrics::describe_counter!(BUS_BAD_PAYLOADS, "undecodable bus payloads");
    metrics::describe_counter!(BUS_SNAPSHOT_REQUESTS, "snapshot requests made");
    metrics::describe_gauge!(BUS_WATCHED_RACES, "races this gateway follows");
    metrics::describe_counter!(BUS_CONTROL_REQUESTS, "control requests answered");
}
