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

/// Counter: connection attempts by admission outcome, label [`LABEL_OUTCOME`] (`admitted`,
/// `queued`, `refused`).
pub const ADMISSION_TOTAL: &str = "flevum_ingest_admission_total";
/// Gauge: connection attempts waiting for a handshake token.
pub const ADMISSION_QUEUE: &str = "flevum_ingest_admission_queue";
/// Gauge: effective kernel receive buffer of the UDP socket, bytes (as granted, see `rmem_max`).
pub const SOCKET_RECV_BUFFER_BYTES: &str = "flevum_ingest_socket_recv_buffer_bytes";
/// Gauge: effective kernel send buffer of the UDP socket, bytes (as granted, see `wmem_max`).
pub const SOCKET_SEND_BUFFER_BYTES: &str = "flevum_ingest_socket_send_buffer_bytes";

/// Counter: TLS handshakes by session kind, label [`LABEL_KIND`] (`full`, `resumed`).
pub const TLS_HANDSHAKES_TOTAL: &str = "flevum_ingest_tls_handshakes_total";
/// Counter: connections of devices holding a session ticket by 0-RTT outcome, label
/// [`LABEL_OUTCOME`] (`accepted`: early data delivered; `rejected`: ticket unknown or used, or
/// early data refused, so the device's 0-RTT data was discarded and resent after the handshake).
pub const ZERO_RTT_TOTAL: &str = "flevum_ingest_zero_rtt_total";
/// Counter: 0-RTT connections closed because their handshake was never confirmed (a replayed
/// or abandoned first flight).
pub const ZERO_RTT_UNCONFIRMED_TOTAL: &str = "flevum_ingest_zero_rtt_unconfirmed_total";

/// Label key: handshake outcome.
pub const LABEL_OUTCOME: &str = "outcome";
/// Label key: TLS session kind.
pub const LABEL_KIND: &str = "kind";
/// Label key: why a record was rejected.
pub const LABEL_REASON: &str = "reason";
/// Label key: how records arrived (`datagram` or `stream`).
pub const LABEL_PATH: &str = "path";
