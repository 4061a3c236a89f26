//! The axum router: every route, the per-IP rate limit, body limits, CORS and request tracing.
//!
//! Owns the URL layout of CONTRACTS.md and the middleware order. Does not implement handlers
//! (see `api`, `live`, `alerts`, `ingest`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::metrics as m;
use crate::state::GatewayState;
use crate::{alerts, api, ingest, live, openapi};

/// The client's IP for limits (unspecified when unknown, e.g. in-process tests).
pub(crate) fn client_ip(peer: Option<&SocketAddr>) -> IpAddr {
    peer.map(|p| p.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Extractor of the client's IP (from `ConnectInfo` when served by [`crate::run`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| &c.0),
        )))
    }
}

/// Token-bucket rate limit per client IP, and a request counter.
async fn rate_limit(State(state): State<GatewayState>, req: Request, next: Next) -> Response {
    let ip = client_ip(
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| &c.0),
    );
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    if !state.rate_limiter.check(ip, Instant::now()) {
        metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => "429").increment(1);
        let mut resp = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address",
        )
        .into_response();
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return resp;
    }
    let resp = next.run(req).await;
    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

/// `/v1/openapi.json`.
async fn openapi_doc() -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        openapi::openapi_json(),
    )
        .into_response()
}

/// CORS from the configured origins.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(Any));
    }
    let list: Vec<_> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    Some(layer.allow_origin(AllowOrigin::list(list)))
}

/// Builds the full router over `state`.
pub fn router(state: GatewayState) -> Router {
    let api = Router::new()
        .route("/", get(api::index))
        .route("/races/{race}", get(api::race_page))
        .route("/races/{race}/console", get(api::race_page))
        .route("/assets/{*path}", get(api::asset))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics_text))
        .route("/v1/openapi.json", get(openapi_doc))
        .route("/v1/config", get(api::public_config))
        .route("/v1/races", get(api::races))
        .route("/v1/races/{race}", get(api::race_detail))
        .route("/v1/races/{race}/standings", get(api::standings))
        .route("/v1/races/{race}/groups", get(api::groups))
        .route("/v1/races/{race}/splits", get(api::splits))
        .route(
            "/v1/races/{race}/riders/{rider}/track",
            get(api::rider_track),
        )
        .route("/v1/races/{race}/live", get(live::live_ws))
        .route("/v1/races/{race}/alerts", get(alerts::alerts))
        .route(
            "/v1/ingest/osmand",
            get(ingest::osmand).post(ingest::osmand),
        )
        .route("/v1/ingest/owntracks", post(ingest::owntracks))
        .route("/v1/admin/races", post(api::admin_create))
        .route("/v1/admin/races/{race}", post(api::admin_race))
        .route(
            "/v1/admin/races/{race}/tokens",
            get(api::admin_list_tokens).post(api::admin_issue_token),
        )
        .route(
            "/v1/admin/races/{race}/viewer-links",
            post(api::admin_viewer_link),
        )
        .route(
            "/v1/admin/races/{race}/tokens/{device_id}",
            axum::routing::delete(api::admin_revoke_token),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    let api = match cors(&state.config.cors_origins) {
        Some(c) => api.layer(c),
        None => api,
    };
    // Every request gets an id (the caller's `x-request-id`, or a counter) that the trace span
    // and the response carry, so one request can be followed through the logs.
    let header = axum::http::HeaderName::from_static("x-request-id");
    api.layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!(
                "http",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %id,
            )
        }))
        .layer(SetRequestIdLayer::new(header, CountingRequestId::default()))
        .with_state(state)
}

/// Request ids for requests that came without one: a process-wide counter.
#[derive(Clone, Default)]
struct CountingRequestId(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl MakeRequestId for CountingRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        axum::http::HeaderValue::from_str(&format!("req-{n}"))
            .ok()
            .map(RequestId::new)
    }
}
