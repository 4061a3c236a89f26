//! The OpenAPI document of the HTTP API, generated with utoipa.
//!
//! Owns the list of documented paths and schemas. Does not document the WebSocket protocol
//! beyond the upgrade endpoints' existence (see CONTRACTS.md for frames and close codes).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::engine_control::{
    AdminRequest, RaceDetail, RaceStatus, RaceSummary, SplitRow, Standing, TrackPoint, Visibility,
};
use crate::error::ErrorBody;
use crate::ingest;

/// Adds the admin bearer scheme.
struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API description served at `/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Flevum gateway API", description = "Live race tracking: races, standings, tracks, organiser commands, tracker-app ingest. Live frames: WebSocket GET /v1/races/{race}/live; alerts: GET /v1/races/{race}/alerts (WebSocket, SSE or JSON)."),
    paths(
        api::public_config, api::races, api::race_detail, api::standings, api::groups,
        api::splits, api::rider_track, api::admin_create, api::admin_race,
        api::admin_list_tokens, api::admin_issue_token, api::admin_revoke_token,
        api::admin_viewer_link,
        api::healthz, api::readyz, api::metrics_text, ingest::osmand, ingest::owntracks,
    ),
    components(schemas(
        RaceSummary, RaceDetail, Standing, SplitRow, TrackPoint, AdminRequest, Visibility,
        RaceStatus, ErrorBody, api::PublicConfig, api::IssueTokenBody, api::ViewerLinkBody,
    )),
    modifiers(&AdminSecurity),
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_string())
}
