//! HTTP API handlers: races, standings, groups, splits, tracks, config, organiser commands,
//! health, metrics and the page routes.
//!
//! Owns request parsing, viewer/admin authorisation and response shapes (JSON, GeoJSON, GPX).
//! Does not compute anything about a race: every answer comes from [`EngineControl`].
//!
//! [`EngineControl`]: crate::engine_control::EngineControl

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flevum_protocol::GroupView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{bearer, verify_share_token};
use crate::engine_control::{
    AdminRequest, RaceDetail, RaceSummary, SplitRow, Standing, TrackPoint,
};
use crate::error::ApiError;
use crate::metrics as m;
use crate::state::GatewayState;

/// `?viewer=` on race endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ViewerQuery {
    /// Viewer token (share token or engine viewer token) for private races.
    pub viewer: Option<String>,
}

/// Seconds since the Unix epoch now.
fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True if the hub or the engine knows the race.
pub(crate) async fn race_exists(state: &GatewayState, race: &str) -> bool {
    state.hub.has_race(race) || state.engine.races().await.iter().any(|r| r.id == race)
}

/// 404 unless the race exists.
pub(crate) async fn require_race(state: &GatewayState, race: &str) -> Result<(), ApiError> {
    if race_exists(state, race).await {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("unknown race {race:?}")))
    }
}

/// Allows a viewer on `race`: a valid HMAC share token, else whatever the engine says (public
/// races always pass).
pub(crate) async fn check_viewer(
    state: &GatewayState,
    race: &str,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(), ApiError> {
    let token = query_token.or_else(|| bearer(headers)).map(str::to_string);
    if let (Some(secret), Some(t)) = (&state.config.share_secret, &token)
        && verify_share_token(secret, t, race, now_s())
    {
        return Ok(());
    }
    if state.engine.viewer_allowed(race.to_string(), token).await {
        Ok(())
    } else {
        metrics::counter!(m::VIEWER_DENIED).increment(1);
        Err(ApiError::forbidden(
            "this race is private: a viewer token is required",
        ))
    }
}

/// `GET /v1/config` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicConfig {
    /// Raster tile URL template, or null for the page's default.
    pub tile_url: Option<String>,
    /// Tile attribution.
    pub tile_attribution: Option<String>,
}

/// Map settings for the page.
#[utoipa::path(get, path = "/v1/config", responses((status = 200, body = PublicConfig)))]
pub async fn public_config(State(state): State<GatewayState>) -> Json<PublicConfig> {
    Json(PublicConfig {
        tile_url: state.config.tile_url.clone(),
        tile_attribution: state.config.tile_attribution.clone(),
    })
}

/// The public races; with the organiser's bearer token, every race. A private race is reached
/// through its viewer link, so listing it would only tell strangers it exists.
#[utoipa::path(get, path = "/v1/races", responses((status = 200, body = [RaceSummary])))]
pub async fn races(
    State(state): State<GatewayState>,
    headers: HeaderMap,
) -> Json<Vec<RaceSummary>> {
    let organiser = bearer(&headers).is_some_and(|t| state.admin_tokens.check(t));
    let mut races = state.engine.races().await;
    if !organiser {
        races.retain(|r| r.visibility == crate::engine_control::Visibility::Public);
    }
    Json(races)
}

/// One race with course, profile, checkpoints and riders.
#[utoipa::path(get, path = "/v1/races/{race}", params(("race" = String, Path)),
    responses((status = 200, body = RaceDetail), (status = 404, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn race_detail(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    Query(q): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Result<Json<RaceDetail>, ApiError> {
    let detail = state
        .engine
        .race_detail(race.clone())
        .await
        .ok_or_else(|| ApiError::not_found(format!("unknown race {race:?}")))?;
    check_viewer(&state, &race, &headers, q.viewer.as_deref()).await?;
    Ok(Json(detail))
}

/// Current standings.
#[utoipa::path(get, path = "/v1/races/{race}/standings", params(("race" = String, Path)),
    responses((status = 200, body = [Standing]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn standings(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    Query(q): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<Standing>>, ApiError> {
    check_viewer(&state, &race, &headers, q.viewer.as_deref()).await?;
    state
        .engine
        .standings(race.clone())
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown race {race:?}")))
}

/// Current groups, front first.
#[utoipa::path(get, path = "/v1/races/{race}/groups", params(("race" = String, Path)),
    responses((status = 200, body = [Object]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn groups(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    Query(q): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<GroupView>>, ApiError> {
    check_viewer(&state, &race, &headers, q.viewer.as_deref()).await?;
    state
        .engine
        .groups(race.clone())
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown race {race:?}")))
}

/// Checkpoint passages.
#[utoipa::path(get, path = "/v1/races/{race}/splits", params(("race" = String, Path)),
    responses((status = 200, body = [SplitRow]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn splits(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    Query(q): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<SplitRow>>, ApiError> {
    check_viewer(&state, &race, &headers, q.viewer.as_deref()).await?;
    state
        .engine
        .splits(race.clone())
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown race {race:?}")))
}

/// `?format=` of the track endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrackQuery {
    /// `geojson` (default) or `gpx`.
    pub format: Option<String>,
    /// Viewer token for private races.
    pub viewer: Option<String>,
}

/// A rider's track as GeoJSON (Feature LineString with times) or GPX.
#[utoipa::path(get, path = "/v1/races/{race}/riders/{rider}/track",
    params(("race" = String, Path), ("rider" = u32, Path), ("format" = Option<String>, Query)),
    responses((status = 200, description = "GeoJSON Feature or GPX document"),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn rider_track(
    State(state): State<GatewayState>,
    Path((race, rider)): Path<(String, u32)>,
    Query(q): Query<TrackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_viewer(&state, &race, &headers, q.viewer.as_deref()).await?;
    let points = state
        .engine
        .rider_track(race.clone(), rider)
        .await
        .ok_or_else(|| ApiError::not_found(format!("unknown race or rider {race:?}/{rider}")))?;
    match q.format.as_deref().unwrap_or("geojson") {
        "geojson" | "json" => Ok((
            [(CONTENT_TYPE, "application/geo+json")],
            Json(track_geojson(&race, rider, &points)),
        )
            .into_response()),
        "gpx" => Ok((
            [(CONTENT_TYPE, "application/gpx+xml")],
            track_gpx(&race, rider, &points),
        )
            .into_response()),
        other => Err(ApiError::bad_request(
            "bad_format",
            format!("format {other:?}: use geojson or gpx"),
        )),
    }
}

/// A track as a GeoJSON Feature (LineString `[lon, lat, ele]`, times in properties).
pub fn track_geojson(race: &str, rider: u32, points: &[TrackPoint]) -> serde_json::Value {
    let coords: Vec<serde_json::Value> = points
        .iter()
        .map(|p| match p.ele {
            Some(e) => serde_json::json!([p.lon, p.lat, e]),
            None => serde_json::json!([p.lon, p.lat]),
        })
        .collect();
    let times: Vec<i64> = points.iter().map(|p| p.time_ms).collect();
    let distances: Vec<Option<f64>> = points.iter().map(|p| p.distance_m).collect();
    serde_json::json!({
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": {"raceId": race, "riderId": rider, "timesMs": times, "distancesM": distances},
    })
}

/// XML text escape.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// RFC 3339 UTC time of ms since the Unix epoch.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = crate::ingest::civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// A track as a GPX 1.1 document.
pub fn track_gpx(race: &str, rider: u32, points: &[TrackPoint]) -> String {
    let mut s = String::with_capacity(200 + points.len() * 110);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(
        "<gpx version=\"1.1\" creator=\"flevum\" xmlns=\"http://www.topografix.com/GPX/1/1\">\n",
    );
    s.push_str(&format!(
        "<trk><name>{} rider {rider}</name><trkseg>\n",
        xml_escape(race)
    ));
    for p in points {
        s.push_str(&format!(
            "<trkpt lat=\"{:.7}\" lon=\"{:.7}\">",
            p.lat, p.lon
        ));
        if let Some(e) = p.ele {
            s.push_str(&format!("<ele>{e:.1}</ele>"));
        }
        s.push_str(&format!("<time>{}</time></trkpt>\n", rfc3339(p.time_ms)));
    }
    s.push_str("</trkseg></trk>\n</gpx>\n");
    s
}

/// 401 unless the request carries an admin bearer token.
fn require_admin(state: &GatewayState, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(t) if state.admin_tokens.check(t) => Ok(()),
        _ => {
            metrics::counter!(m::ADMIN_REQUESTS, "outcome" => "unauthorized").increment(1);
            Err(ApiError::unauthorized("admin bearer token required"))
        }
    }
}

/// Runs an admin command and counts the outcome.
async fn run_admin(
    state: &GatewayState,
    race: Option<String>,
    request: AdminRequest,
) -> Result<Json<serde_json::Value>, ApiError> {
    tracing::info!(race = ?race, action = ?std::mem::discriminant(&request), "admin command");
    match state.engine.admin(race, request).await {
        Ok(v) => {
            metrics::counter!(m::ADMIN_REQUESTS, "outcome" => "ok").increment(1);
            Ok(Json(v))
        }
        Err(e) => {
            metrics::counter!(m::ADMIN_REQUESTS, "outcome" => "error").increment(1);
            Err(e.into())
        }
    }
}

/// Parses an admin JSON body into a typed request (400 with the serde message otherwise).
fn parse_admin(body: &[u8]) -> Result<AdminRequest, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

/// Create a race (`{"action":"create_race","config_toml":…,"gpx":…}`).
#[utoipa::path(post, path = "/v1/admin/races", request_body = AdminRequest,
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody),
              (status = 400, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn admin_create(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &headers)?;
    let req = parse_admin(&body)?;
    if !matches!(req, AdminRequest::CreateRace { .. }) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "POST /v1/admin/races takes create_race; other actions go to /v1/admin/races/{race}",
        ));
    }
    run_admin(&state, None, req).await
}

/// Any organiser command on one race.
#[utoipa::path(post, path = "/v1/admin/races/{race}", params(("race" = String, Path)),
    request_body = AdminRequest,
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn admin_race(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &headers)?;
    let req = parse_admin(&body)?;
    run_admin(&state, Some(race), req).await
}

/// Device tokens of a race (no secrets).
#[utoipa::path(get, path = "/v1/admin/races/{race}/tokens", params(("race" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn admin_list_tokens(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &headers)?;
    run_admin(&state, Some(race), AdminRequest::ListTokens).await
}

/// Body of `POST /v1/admin/races/{race}/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct IssueTokenBody {
    /// Rider the new device token is for.
    pub rider_id: u32,
}

/// Issue a device token (returned once).
#[utoipa::path(post, path = "/v1/admin/races/{race}/tokens", params(("race" = String, Path)),
    request_body = IssueTokenBody,
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn admin_issue_token(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &headers)?;
    let b: IssueTokenBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    run_admin(
        &state,
        Some(race),
        AdminRequest::IssueToken {
            rider_id: b.rider_id,
        },
    )
    .await
}

/// Body of `POST /v1/admin/races/{race}/viewer-links` (may be empty).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ViewerLinkBody {
    /// How long the link opens the race, seconds (default 7 days, at most 366 days).
    #[serde(default)]
    pub valid_for_s: Option<u64>,
}

/// Longest a viewer link may stay valid, seconds.
const VIEWER_LINK_MAX_S: u64 = 366 * 86_400;

/// Mint a viewer link for a race: a signed token that opens a private race's page, feeds and
/// queries until it expires (public races need none). Links are not stored: they end with
/// their expiry or when the gateway's share secret changes.
#[utoipa::path(post, path = "/v1/admin/races/{race}/viewer-links", params(("race" = String, Path)),
    request_body = ViewerLinkBody,
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn admin_viewer_link(
    State(state): State<GatewayState>,
    Path(race): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &headers)?;
    require_race(&state, &race).await?;
    let b: ViewerLinkBody = if body.is_empty() {
        ViewerLinkBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?
    };
    let valid_for_s = b.valid_for_s.unwrap_or(7 * 86_400);
    if !(60..=VIEWER_LINK_MAX_S).contains(&valid_for_s) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("valid_for_s must be in 60..={VIEWER_LINK_MAX_S}"),
        ));
    }
    let Some(secret) = &state.config.share_secret else {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "no_share_secret",
            "this gateway has no share secret to sign viewer links with",
        ));
    };
    let expires_s = now_s() + valid_for_s;
    let token = crate::auth::sign_share_token(secret, &race, expires_s);
    metrics::counter!(m::ADMIN_REQUESTS, "outcome" => "ok").increment(1);
    Ok(Json(serde_json::json!({
        "race": race,
        "token": token,
        "expires_s": expires_s,
        "page": format!("/races/{race}?viewer={token}"),
    })))
}

/// Revoke a device's tokens.
#[utoipa::path(delete, path = "/v1/admin/races/{race}/tokens/{device_id}",
    params(("race" = String, Path), ("device_id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn admin_revoke_token(
    State(state): State<GatewayState>,
    Path((race, device_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&state, &headers)?;
    run_admin(&state, Some(race), AdminRequest::RevokeToken { device_id }).await
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness (engine recovered and serving).
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"),
    (status = 503, description = "not ready")))]
pub async fn readyz(State(state): State<GatewayState>) -> Response {
    if state.engine.ready().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Prometheus text exposition (with the metrics bearer token when one is configured).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text"),
    (status = 401, body = crate::error::ErrorBody)))]
pub async fn metrics_text(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    if let Some(want) = &state.config.metrics_token {
        let given = bearer(&headers).unwrap_or_default();
        if !crate::auth::constant_time_eq(given.as_bytes(), want.as_bytes()) {
            return ApiError::unauthorized("metrics bearer token required").into_response();
        }
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

/// `/`, `/races/{race}`, `/races/{race}/console`: the page, or a text list of races without it.
pub async fn index(State(state): State<GatewayState>) -> Response {
    if let Some(assets) = state.static_assets {
        return (
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-cache"),
            ],
            (assets.index_html)(),
        )
            .into_response();
    }
    let mut text = String::from("Flevum live tracking\n\nRaces:\n");
    let public = state
        .engine
        .races()
        .await
        .into_iter()
        .filter(|r| r.visibility == crate::engine_control::Visibility::Public);
    for r in public {
        text.push_str(&format!(
            "  /races/{}  {} ({}, {:?}, {} riders)\n",
            r.id, r.name, r.sport, r.status, r.riders
        ));
    }
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// `/races/{race}` and its console (same page, routed client-side).
pub async fn race_page(state: State<GatewayState>, _race: Path<String>) -> Response {
    index(state).await
}

/// `/assets/{*path}`.
pub async fn asset(State(state): State<GatewayState>, Path(path): Path<String>) -> Response {
    match state.static_assets.and_then(|a| (a.asset)(&path)) {
        Some((bytes, content_type)) => (
            [
                (CONTENT_TYPE, content_type),
                (CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => ApiError::not_found(format!("no asset {path:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpx_and_geojson_tracks() {
        let pts = vec![
            TrackPoint {
                time_ms: 1_718_447_112_000,
                lat: 48.8566,
                lon: 2.3522,
                ele: Some(35.0),
                distance_m: Some(0.0),
            },
            TrackPoint {
                time_ms: 1_718_447_113_500,
                lat: 48.857,
                lon: 2.353,
                ele: None,
                distance_m: None,
            },
        ];
        let gpx = track_gpx("a&b", 7, &pts);
        assert!(gpx.contains("<name>a&amp;b rider 7</name>"));
        assert!(gpx.contains("<trkpt lat=\"48.8566000\" lon=\"2.3522000\"><ele>35.0</ele><time>2024-06-15T10:25:12.000Z</time></trkpt>"));
        assert!(gpx.contains("<time>2024-06-15T10:25:13.500Z</time>"));
        let gj = track_geojson("r", 7, &pts);
        assert_eq!(
            gj["geometry"]["coordinates"][0],
            serde_json::json!([2.3522, 48.8566, 35.0])
        );
        assert_eq!(
            gj["geometry"]["coordinates"][1],
            serde_json::json!([2.353, 48.857])
        );
    }
}
