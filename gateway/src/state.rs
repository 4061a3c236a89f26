//! Shared state of every handler: config, hub, engine handle, auth, limits, metrics handle.
//!
//! Owns [`GatewayState`] and [`StaticAssets`] (the hook through which the binary hands in the
//! built web page). Does not hold race state: that lives in the engine and in the hub.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::auth::AdminTokens;
use crate::config::GatewayConfig;
use crate::engine_control::EngineControl;
use crate::hub::LiveHub;
use crate::limits::{ConnectionLimits, RateLimiter};

/// A built asset's bytes and content type.
pub type AssetBody = (&'static [u8], &'static str);

/// The built web page, provided by the binary (from `web_assets.rs`).
#[derive(Debug, Clone, Copy)]
pub struct StaticAssets {
    /// The page's `index.html`.
    pub index_html: fn() -> &'static [u8],
    /// A built asset by path below `/assets/`, with its content type.
    pub asset: fn(&str) -> Option<AssetBody>,
}

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    /// Configuration (validated by the caller).
    pub config: Arc<GatewayConfig>,
    /// The frame and alert bus.
    pub hub: LiveHub,
    /// The engine behind the API.
    pub engine: Arc<dyn EngineControl>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// The web page, or None for the plain-text fallback.
    pub static_assets: Option<StaticAssets>,
    /// Admin token digests.
    pub admin_tokens: Arc<AdminTokens>,
    /// Per-IP request buckets.
    pub rate_limiter: Arc<RateLimiter>,
    /// Open-WebSocket caps.
    pub connections: Arc<ConnectionLimits>,
    /// Flips to true when the server shuts down, so WebSocket tasks close cleanly.
    pub shutdown: watch::Receiver<bool>,
    /// The sending side of `shutdown`, used by [`crate::run`].
    pub(crate) shutdown_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("config", &self.config)
            .field("static_assets", &self.static_assets.is_some())
            .finish_non_exhaustive()
    }
}

impl GatewayState {
    /// Builds the state; `config` should have passed [`GatewayConfig::validate`].
    pub fn new(
        config: GatewayConfig,
        hub: LiveHub,
        engine: Arc<dyn EngineControl>,
        prometheus: PrometheusHandle,
    ) -> GatewayState {
        let (shutdown_tx, shutdown) = watch::channel(false);
        GatewayState {
            admin_tokens: Arc::new(AdminTokens::new(&config.admin_tokens)),
            rate_limiter: Arc::new(RateLimiter::new(
                config.requests_per_minute_per_ip,
                config.rate_burst,
            )),
            connections: ConnectionLimits::new(
                config.max_websockets,
                config.websockets_per_ip as usize,
            ),
            config: Arc::new(config),
            hub,
            engine,
            prometheus,
            static_assets: None,
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
        }
    }

    /// The same state with the web page hooked in.
    pub fn with_static_assets(mut self, assets: StaticAssets) -> GatewayState {
        self.static_assets = Some(assets);
        self
    }

    /// Asks every open WebSocket to close (also done by [`crate::run`] on shutdown).
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }
}
