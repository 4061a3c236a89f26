//! The `flevum engine` role's own small HTTP listener: `/metrics` (Prometheus text), `/healthz`
//! and `/readyz`, on `[telemetry] engine_metrics_listen`. The engine has no gateway to serve
//! them; everything else (API, WebSockets) stays on the gateways.
//!
//! Only these three routes, no request bodies, no authentication: bind it to a private address.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::host::EngineHost;

/// What the routes read.
#[derive(Clone)]
struct Telemetry {
    /// Renders the process's metrics.
    prometheus: PrometheusHandle,
    /// Readiness: every configured race opened (or handed to the lease keeper), ingest bound.
    host: Arc<EngineHost>,
}

/// The three routes.
fn router(prometheus: PrometheusHandle, host: Arc<EngineHost>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(t): State<Telemetry>| async move { t.prometheus.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(t): State<Telemetry>| async move {
                if t.host.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(Telemetry { prometheus, host })
}

/// Serves the routes on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    prometheus: PrometheusHandle,
    host: Arc<EngineHost>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(prometheus, host);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("engine metrics listener stopped: {e}");
    }
}
