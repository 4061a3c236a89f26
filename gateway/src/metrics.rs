//! Metric names of the gateway, in one place.
//!
//! Owns the names (and their descriptions) of every counter, gauge and histogram the gateway
//! records through the `metrics` facade. Does not install a recorder: the binary does that once
//! (see [`crate::install_prometheus`]) and hands the handle to [`crate::GatewayState`].

/// HTTP requests served, labelled by `route` and `status`.
pub const HTTP_REQUESTS: &str = "flevum_gateway_http_requests_total";
/// Requests refused with 429 by the per-IP rate limiter.
pub const RATE_LIMITED: &str = "flevum_gateway_rate_limited_total";
/// Live WebSocket connections currently open.
pub const WS_CONNECTIONS: &str = "flevum_gateway_ws_connections";
/// WebSocket upgrades refused because the connection cap was reached.
pub const WS_REFUSED: &str = "flevum_gateway_ws_refused_total";
/// Fresh snapshots sent to clients that lagged behind the live stream.
pub const WS_RESYNCS: &str = "flevum_gateway_ws_resyncs_total";
/// Clients closed with 4008 because their queued bytes exceeded the byte budget.
pub const WS_BUDGET_CLOSES: &str = "flevum_gateway_ws_budget_closes_total";
/// Clients closed because they were idle or a write timed out.
pub const WS_TIMEOUTS: &str = "flevum_gateway_ws_timeouts_total";
/// Bytes written to live WebSocket clients.
pub const WS_BYTES_SENT: &str = "flevum_gateway_ws_bytes_sent_total";
/// Deltas that had to be filtered and encoded for one client (viewport set).
pub const WS_FILTERED_ENCODES: &str = "flevum_gateway_ws_filtered_encodes_total";
/// Resume requests answered without a snapshot.
pub const WS_RESUMED: &str = "flevum_gateway_ws_resumed_total";
/// Deltas published into the hub.
pub const HUB_DELTAS: &str = "flevum_gateway_hub_deltas_total";
/// Snapshots published into the hub.
pub const HUB_SNAPSHOTS: &str = "flevum_gateway_hub_snapshots_total";
/// Alerts published into the hub.
pub const HUB_ALERTS: &str = "flevum_gateway_hub_alerts_total";
/// Time to encode one delta frame (JSON), seconds.
pub const HUB_ENCODE_SECONDS: &str = "flevum_gateway_hub_encode_seconds";
/// Alert-feed subscribers (WebSocket and SSE) currently open.
pub const ALERT_SUBSCRIBERS: &str = "flevum_gateway_alert_subscribers";
/// Positions accepted from tracker-app HTTP ingest, labelled by `app`.
pub const INGEST_POSITIONS: &str = "flevum_gateway_ingest_positions_total";
/// Tracker-app requests rejected, labelled by `app` and `reason`.
pub const INGEST_REJECTED: &str = "flevum_gateway_ingest_rejected_total";
/// Organiser (admin) requests, labelled by `outcome`.
pub const ADMIN_REQUESTS: &str = "flevum_gateway_admin_requests_total";
/// Viewer access refused on private races.
pub const VIEWER_DENIED: &str = "flevum_gateway_viewer_denied_total";

/// Registers descriptions for every metric (call once after installing the recorder).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests served");
    describe_counter!(RATE_LIMITED, "Requests refused by the per-IP rate limiter");
    describe_gauge!(
        WS_CONNECTIONS,
        "Long-lived fan connections open (WebSockets and SSE alert streams)"
    );
    describe_counter!(
        WS_REFUSED,
        "WebSocket upgrades and SSE streams refused at the connection cap"
    );
    describe_counter!(WS_RESYNCS, "Snapshots sent to lagging clients");
    describe_counter!(
        WS_BUDGET_CLOSES,
        "Clients closed for exceeding the byte budget"
    );
    describe_counter!(WS_TIMEOUTS, "Clients closed as idle or for a write timeout");
    describe_counter!(WS_BYTES_SENT, "Bytes written to live clients");
    describe_counter!(WS_FILTERED_ENCODES, "Per-client filtered delta encodes");
    describe_counter!(WS_RESUMED, "Resumes served without a snapshot");
    describe_counter!(HUB_DELTAS, "Deltas published into the hub");
    describe_counter!(HUB_SNAPSHOTS, "Snapshots published into the hub");
    describe_counter!(HUB_ALERTS, "Alerts published into the hub");
    describe_histogram!(HUB_ENCODE_SECONDS, "Delta JSON encode time");
    describe_gauge!(ALERT_SUBSCRIBERS, "Alert feed subscribers open");
    describe_counter!(INGEST_POSITIONS, "Tracker-app positions accepted");
    describe_counter!(INGEST_REJECTED, "Tracker-app requests rejected");
    describe_counter!(ADMIN_REQUESTS, "Organiser requests");
    describe_counter!(VIEWER_DENIED, "Viewer access refused on private races");
}
