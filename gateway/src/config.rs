//! Typed configuration of the gateway and its validation.
//!
//! Owns [`GatewayConfig`] (limits, auth secrets, map tiles, WebSocket timing) and reports every
//! invalid value at once. Does not read files or the environment: the binary does that and hands
//! the struct over.

use std::time::Duration;

use serde::Deserialize;

use crate::hub::HubConfig;

/// Everything the gateway can be configured with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Bearer tokens accepted on `/v1/admin/...` (held hashed in memory once the state is built).
    pub admin_tokens: Vec<String>,
    /// Secret for HMAC-SHA256 viewer share tokens `race_id.expiry.sig`; None disables them.
    pub share_secret: Option<String>,
    /// Bearer token `GET /metrics` requires (the metrics name every race, private ones too);
    /// None leaves it open, for a scraper on a trusted network.
    pub metrics_token: Option<String>,
    /// Raster tile URL template for the live map, returned by `GET /v1/config`.
    pub tile_url: Option<String>,
    /// Attribution text for the tiles.
    pub tile_attribution: Option<String>,
    /// Allowed CORS origins (`*` for any, empty for no CORS headers).
    pub cors_origins: Vec<String>,
    /// Largest accepted request body in bytes (GPX uploads are the biggest).
    pub max_body_bytes: usize,
    /// Sustained HTTP requests per minute allowed per client IP (token bucket refill rate).
    pub requests_per_minute_per_ip: u32,
    /// Burst size of the per-IP token bucket.
    pub rate_burst: u32,
    /// Concurrent long-lived connections allowed in total: live and alerts WebSockets and SSE
    /// alert streams.
    pub max_websockets: usize,
    /// Concurrent long-lived connections (as `max_websockets`) allowed per client IP.
    pub websockets_per_ip: u32,
    /// Bytes that may queue for one live client before it is closed with 4008.
    pub client_byte_budget: usize,
    /// Interval between server pings, ms.
    pub ping_interval_ms: u64,
    /// A client that sent nothing (not even a pong) for this long is closed, ms.
    pub idle_timeout_ms: u64,
    /// A single socket write that takes longer than this closes the client, ms.
    pub write_timeout_ms: u64,
    /// Most alerts returned by one JSON history request.
    pub alerts_page_limit: usize,
    /// Settings of the in-process hub.
    pub hub: HubConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            admin_tokens: Vec::new(),
            share_secret: None,
            metrics_token: None,
            tile_url: None,
            tile_attribution: None,
            cors_origins: vec!["*".to_string()],
            max_body_bytes: 8 * 1024 * 1024,
            requests_per_minute_per_ip: 1200,
            rate_burst: 200,
            max_websockets: 19_000,
            websockets_per_ip: 64,
            client_byte_budget: 4 * 1024 * 1024,
            ping_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            write_timeout_ms: 10_000,
            alerts_page_limit: 1000,
            hub: HubConfig::default(),
        }
    }
}

/// One invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gateway.{key}: {message}")]
pub struct ConfigError {
    /// Dotted key below `gateway`, e.g. `max_body_bytes`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl GatewayConfig {
    /// Checks every value and returns all errors at once.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |key: &str, message: &str| {
            errors.push(ConfigError {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if self.admin_tokens.iter().any(|t| t.len() < 16) {
            err(
                "admin_tokens",
                "every admin token must be at least 16 characters",
            );
        }
        if self.share_secret.as_deref().is_some_and(|s| s.len() < 16) {
            err("share_secret", "must be at least 16 characters");
        }
        if self.metrics_token.as_deref().is_some_and(|s| s.len() < 16) {
            err("metrics_token", "must be at least 16 characters");
        }
        if let Some(url) = &self.tile_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            err("tile_url", "must be an http(s) URL template");
        }
        if self.max_body_bytes < 1024 {
            err("max_body_bytes", "must be at least 1024");
        }
        if self.requests_per_minute_per_ip == 0 {
            err("requests_per_minute_per_ip", "must be positive");
        }
        if self.rate_burst == 0 {
            err("rate_burst", "must be positive");
        }
        if self.max_websockets == 0 {
            err("max_websockets", "must be positive");
        }
        if self.websockets_per_ip == 0 {
            err("websockets_per_ip", "must be positive");
        }
        if self.client_byte_budget < 4096 {
            err("client_byte_budget", "must be at least 4096");
        }
        if self.ping_interval_ms == 0 {
            err("ping_interval_ms", "must be positive");
        }
        if self.idle_timeout_ms <= self.ping_interval_ms {
            err("idle_timeout_ms", "must be longer than ping_interval_ms");
        }
        if self.write_timeout_ms == 0 {
            err("write_timeout_ms", "must be positive");
        }
        if self.alerts_page_limit == 0 {
            err("alerts_page_limit", "must be positive");
        }
        if self.hub.alert_ring == 0 {
            err("hub.alert_ring", "must be positive");
        }
        if self.hub.channel_capacity == 0 {
            err("hub.channel_capacity", "must be positive");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Ping interval as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// Idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// Write timeout as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(GatewayConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_reports_all_errors() {
        let cfg = GatewayConfig {
            admin_tokens: vec!["short".into()],
            max_body_bytes: 1,
            max_websockets: 0,
            ..GatewayConfig::default()
        };
        let errs = cfg.validate().unwrap_err();
        let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["admin_tokens", "max_body_bytes", "max_websockets"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let ok: GatewayConfig = serde_json::from_str(r#"{"max_websockets": 5}"#).unwrap();
        assert_eq!(ok.max_websockets, 5);
        assert!(serde_json::from_str::<GatewayConfig>(r#"{"max_websokets": 5}"#).is_err());
    }
}
