//! Flevum gateway: HTTP API, WebSocket live fan-out, alerts feed, tracker-app ingest, auth and
//! limits.
//!
//! Owns everything between the engine's frames and the outside world over HTTP: the in-process
//! [`LiveHub`], the axum router and [`run`]. Holds no race logic: the engine, behind
//! [`EngineControl`], computes every answer and publishes frames into the hub.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod config;
pub mod engine_control;
pub mod error;
pub mod hub;
pub mod ingest;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod router;
pub mod state;
pub mod web_assets;

use std::future::Future;
use std::net::SocketAddr;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};

pub use config::{ConfigError, GatewayConfig};
pub use engine_control::{
    AdminError, AdminRequest, BoxFuture, EngineControl, RaceDetail, RaceStatus, RaceSummary,
    SplitRow, Standing, SubmitError, TrackPoint, Visibility,
};
pub use hub::{Encoding, HubConfig, LiveHub};
pub use router::router;
pub use state::{GatewayState, StaticAssets};

/// Installs the global Prometheus recorder (call once per process) and describes the gateway's
/// metrics; the handle goes into [`GatewayState::new`].
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    metrics::describe();
    Ok(handle)
}

/// Serves the gateway on `listener` until `shutdown` resolves, then closes WebSockets
/// (code 1001) and finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: GatewayState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let closer = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("gateway shutting down");
            closer.begin_shutdown();
        })
        .await
}
