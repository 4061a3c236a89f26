//! Metric names of the QUIC ingest, as constants so dashboards and tests share one spelling.
//!
//! Owns only names and label keys; the counters are recorded through the `metrics` facade where the
//! events happen. Does not install an exporter (the binary does).

/// Gauge: open device connections.
pub const CONNECTIONS_OPEN: &str = "flevum_ingest_connections_open";
/// Counter: QUIC connections accepted (TLS done), before the device handshake.
pub const CONNECTIONS_TOTAL: &str = "flevum_ingest_connections_total";
/// Counter: device handshakes, label [`LABEL_OUTCOME`] (`ok`, `bad_token`, `unsupported_version`,
/// `overloaded`, `malformed`, `timeout`).
pub const HANDSHAKES_TOTAL: &str = "flevum_ingest_handshakes_total";
/// Counter: records passed to the sink, label [`LABEL_PATH`] (`datagram`, `stream`).
pub const RECORDS_ACCEPTED_TOTAL: &str = "flevum_ingest_records_accepted_total";
/// Counter: records not passed to the sink, label [`LABEL_REASON`] (a validation error kind,
/// `duplicate`, `seq_window`, `rate_limited`, `queue_full`).
pub const RECORDS_REJECTED_TOTAL: &str = "flevum_ingest_records_rejected_total";
/// Counter: datagrams or stream messages that could not be decoded at all, label [`LABEL_PATH`].
pub const UNDECODABLE_TOTAL: &str = "flevum_ingest_undecodable_total";
/// Histogram: seconds from calling `IngestSink::submit` until it resolved (durability latency).
pub const SUBMIT_SECONDS: &str = "flevum_ingest_submit_seconds";
/// Counter: sink submissions that failed (the connection is closed so the device resends).
pub const SUBMIT_ERRORS_TOTAL: &str = "flevum_ingest_submit_errors_total";
/// Counter: `Ack` messages sent to devices.
pub const ACKS_SENT_TOTAL: &str = "flevum_ingest_acks_sent_total";

/// Label key: handshake outcome.
pub const LABEL_OUTCOME: &str = "outcome";
/// Label key: why a record was rejected.
pub const LABEL_REASON: &str = "reason";
/// Label key: how records arrived (`datagram` or `stream`).
pub const LABEL_PATH: &str = "path";
