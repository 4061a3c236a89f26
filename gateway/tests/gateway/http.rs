//! HTTP API tests through the router (no socket).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use flevum_gateway::auth::sign_share_token;
use flevum_gateway::{AdminRequest, GatewayConfig, StaticAssets};
use flevum_protocol::{AlertKind, Severity};
use std::sync::atomic::Ordering;

use crate::support::*;

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn health_ready_config_races_openapi_metrics() {
    let (state, engine, _hub) = state_with(config());
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
    engine.ready.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&state, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let (s, b) = get(&state, "/v1/config").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json(&b),
        serde_json::json!({"tileUrl": "https://tiles.example/{z}/{x}/{y}.png", "tileAttribution": "© example"})
    );

    // Strangers see the public races only; the organiser sees the private one too.
    let (s, b) = get(&state, "/v1/races").await;
    assert_eq!(s, StatusCode::OK);
    let races = json(&b);
    assert_eq!(races.as_array().unwrap().len(), 1, "{races}");
    assert_eq!(races[0]["id"], "ronde");
    assert_eq!(races[0]["startMs"], 1_700_000_000_000i64);
    let (s, _, b) = call(&state, bearer_get("/v1/races", ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    let races = json(&b);
    assert_eq!(races[1]["visibility"], "private");
    assert_eq!(races[1]["status"], "live");

    let (s, b) = get(&state, "/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let doc = json(&b);
    assert!(doc["paths"]["/v1/races/{race}/standings"]["get"].is_object());
    assert!(doc["paths"]["/v1/ingest/osmand"]["post"].is_object());
    assert!(doc["components"]["schemas"]["AdminRequest"].is_object());

    let (s, _, _) = call(
        &state,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn race_endpoints_and_tracks() {
    let (state, _engine, _hub) = state_with(config());
    let (s, b) = get(&state, "/v1/races/ronde").await;
    assert_eq!(s, StatusCode::OK);
    let d = json(&b);
    assert_eq!(d["course"]["geometry"]["type"], "LineString");
    assert_eq!(d["lengthM"], 13_000.0);
    assert_eq!(d["riders"][0]["riderId"], 1);
    let (s, b) = get(&state, "/v1/races/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(json(&b)["error"], "not_found");

    let (s, b) = get(&state, "/v1/races/ronde/standings").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)[0]["gapToLeaderMs"], 0);
    assert_eq!(
        get(&state, "/v1/races/ronde/groups").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&state, "/v1/races/ronde/splits").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&state, "/v1/races/nope/splits").await.0,
        StatusCode::NOT_FOUND
    );

    let (s, b) = get(&state, "/v1/races/ronde/riders/1/track").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json(&b)["geometry"]["coordinates"][1],
        serde_json::json!([5.001, 52.001, 2.0])
    );
    let (s, h, b) = call(
        &state,
        Request::get("/v1/races/ronde/riders/1/track?format=gpx")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/gpx+xml");
    let gpx = String::from_utf8(b).unwrap();
    assert!(gpx.contains("<trkpt lat=\"52.0010000\" lon=\"5.0010000\"><ele>2.0</ele><time>2023-11-14T22:13:30.000Z</time></trkpt>"));
    assert_eq!(
        get(&state, "/v1/races/ronde/riders/9/track").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&state, "/v1/races/ronde/riders/1/track?format=kml")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn private_race_needs_viewer_token() {
    let (state, _engine, _hub) = state_with(config());
    assert_eq!(
        get(&state, "/v1/races/secret/standings").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&state, "/v1/races/secret").await.0,
        StatusCode::FORBIDDEN
    );
    let share = sign_share_token(SHARE_SECRET, "secret", 4_000_000_000);
    assert_eq!(
        get(
            &state,
            &format!("/v1/races/secret/standings?viewer={share}")
        )
        .await
        .0,
        StatusCode::OK
    );
    let expired = sign_share_token(SHARE_SECRET, "secret", 1_000);
    assert_eq!(
        get(
            &state,
            &format!("/v1/races/secret/standings?viewer={expired}")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let other = sign_share_token(SHARE_SECRET, "ronde", 4_000_000_000);
    assert_eq!(
        get(
            &state,
            &format!("/v1/races/secret/standings?viewer={other}")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (s, _, _) = call(
        &state,
        bearer_get("/v1/races/secret/standings", ENGINE_VIEWER),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// A GET carrying `token` as its bearer token.
fn bearer_get(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn admin_post(uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn admin_endpoints() {
    let (state, engine, _hub) = state_with(config());
    let create = r#"{"action":"create_race","config_toml":"id = \"new\"","gpx":"<gpx/>"}"#;
    let (s, _, b) = call(&state, admin_post("/v1/admin/races", None, create)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"], "unauthorized");
    let (s, _, _) = call(
        &state,
        admin_post("/v1/admin/races", Some("wrong-token-0123456789"), create),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        engine.admin_calls.lock().unwrap().is_empty(),
        "nothing reaches the engine"
    );

    let (s, _, b) = call(&state, admin_post("/v1/admin/races", Some(ADMIN), create)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["raceId"], "new");
    let (s, _, b) = call(
        &state,
        admin_post(
            "/v1/admin/races/ronde/tokens",
            Some(ADMIN),
            r#"{"rider_id":4}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["token"], "tok-4");
    let (s, _, _) = call(
        &state,
        admin_post(
            "/v1/admin/races/ronde",
            Some(ADMIN),
            r#"{"action":"move_checkpoint","name":"KOM","distance_m":1200.5}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &state,
        admin_post(
            "/v1/admin/races/ronde",
            Some(ADMIN),
            r#"{"action":"start"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = call(
        &state,
        admin_post(
            "/v1/admin/races/ronde",
            Some(ADMIN),
            r#"{"action":"explode"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json(&b)["error"], "invalid_request");
    let (s, _, _) = call(
        &state,
        admin_post(
            "/v1/admin/races/gone",
            Some(ADMIN),
            r#"{"action":"finish"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        &state,
        Request::delete("/v1/admin/races/ronde/tokens/dev-1")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let calls = engine.admin_calls.lock().unwrap();
    assert_eq!(
        calls[0],
        (
            None,
            AdminRequest::CreateRace {
                config_toml: "id = \"new\"".into(),
                gpx: "<gpx/>".into()
            }
        )
    );
    assert_eq!(
        calls[1],
        (
            Some("ronde".into()),
            AdminRequest::IssueToken { rider_id: 4 }
        )
    );
    assert_eq!(
        calls[2].1,
        AdminRequest::MoveCheckpoint {
            name: "KOM".into(),
            distance_m: 1200.5
        }
    );
    assert_eq!(calls[3].1, AdminRequest::Start);
    assert_eq!(
        calls.last().unwrap().1,
        AdminRequest::RevokeToken {
            device_id: "dev-1".into()
        }
    );
}

#[tokio::test]
async fn rate_limit_and_body_limit() {
    let (state, _engine, _hub) = state_with(GatewayConfig {
        rate_burst: 3,
        requests_per_minute_per_ip: 1,
        max_body_bytes: 2048,
        ..config()
    });
    for _ in 0..3 {
        assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    }
    let (s, b) = get(&state, "/healthz").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(&b)["error"], "rate_limited");

    let (state, _engine, _hub) = state_with(GatewayConfig {
        max_body_bytes: 2048,
        ..config()
    });
    let big = format!(
        r#"{{"action":"create_race","config_toml":"{}","gpx":""}}"#,
        "x".repeat(4096)
    );
    let (s, _, _) = call(&state, admin_post("/v1/admin/races", Some(ADMIN), &big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn pages_with_and_without_static_assets() {
    let (state, _engine, _hub) = state_with(config());
    let (s, b) = get(&state, "/").await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(b).unwrap();
    assert!(page.contains("/races/ronde"));
    assert!(
        !page.contains("/races/secret"),
        "private races are not listed"
    );
    assert_eq!(get(&state, "/assets/app.js").await.0, StatusCode::NOT_FOUND);

    fn index() -> &'static [u8] {
        b"<!doctype html><title>flevum</title>"
    }
    fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
        (path == "app.js").then_some((b"console.log(1)".as_slice(), "text/javascript"))
    }
    let state = state.with_static_assets(StaticAssets {
        index_html: index,
        asset,
    });
    for uri in ["/", "/races/ronde", "/races/ronde/console"] {
        let (s, b) = get(&state, uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert_eq!(b, index());
    }
    let (s, h, b) = call(
        &state,
        Request::get("/assets/app.js").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/javascript");
    assert_eq!(b, b"console.log(1)");
}

#[tokio::test]
async fn alerts_json_history_with_filters() {
    let (state, _engine, hub) = state_with(config());
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    let alert = |seq, riders: Vec<u32>, severity, kind| flevum_protocol::Alert {
        seq,
        epoch: 1,
        time_ms: 1_700_000_000_000,
        race_time_ms: 0,
        course_km: 3.0,
        riders,
        severity,
        kind,
    };
    hub.publish_alert(
        "ronde",
        alert(1, vec![], Severity::Info, AlertKind::RaceStarted),
    );
    hub.publish_alert(
        "ronde",
        alert(2, vec![12], Severity::Critical, AlertKind::PossibleCrash),
    );
    hub.publish_alert(
        "ronde",
        alert(
            3,
            vec![12, 4],
            Severity::Notable,
            AlertKind::BreakawayFormed {
                group_id: 2,
                gap_ms: 30_000,
            },
        ),
    );
    hub.publish_alert(
        "ronde",
        alert(4, vec![5], Severity::Info, AlertKind::RiderStopped),
    );
    let seqs = |b: &[u8]| -> Vec<u64> {
        json(b)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["seq"].as_u64().unwrap())
            .collect()
    };
    let (s, b) = get(&state, "/v1/races/ronde/alerts").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(seqs(&b), [1, 2, 3, 4]);
    assert_eq!(json(&b)[2]["kind"]["type"], "breakaway_formed");
    assert_eq!(
        seqs(&get(&state, "/v1/races/ronde/alerts?since=2").await.1),
        [3, 4]
    );
    assert_eq!(seqs(&get(&state, "/v1/races/ronde/alerts?types=breakaway_formed,possible_crash&rider=12&minSeverity=notable").await.1), [2, 3]);
    assert_eq!(
        seqs(
            &get(&state, "/v1/races/ronde/alerts?minSeverity=critical")
                .await
                .1
        ),
        [2]
    );
    assert_eq!(
        get(&state, "/v1/races/nope/alerts").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&state, "/v1/races/secret/alerts").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let (state, _engine, _hub) = state_with(config());
    let (s, headers, _) = call(
        &state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let id = headers.get("x-request-id").expect("a generated request id");
    assert!(id.to_str().unwrap().starts_with("req-"));
    // A caller's own id is kept.
    let req = Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = call(&state, req).await;
    assert_eq!(headers.get("x-request-id").unwrap(), "abc-123");
}

/// The organiser mints viewer links for a private race; a link opens the race until it
/// expires, and nothing else mints one.
#[tokio::test]
async fn organiser_viewer_links_open_a_private_race() {
    let (state, _engine, _hub) = state_with(config());
    let link = "/v1/admin/races/secret/viewer-links";
    let (s, _, _) = call(&state, admin_post(link, None, "")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(
        &state,
        admin_post(link, Some(ADMIN), r#"{"valid_for_s":10}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "under a minute");
    let (s, _, _) = call(
        &state,
        admin_post("/v1/admin/races/nope/viewer-links", Some(ADMIN), ""),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    assert_eq!(
        get(&state, "/v1/races/secret/standings").await.0,
        StatusCode::FORBIDDEN
    );
    let (s, _, b) = call(
        &state,
        admin_post(link, Some(ADMIN), r#"{"valid_for_s":3600}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let body = json(&b);
    let token = body["token"].as_str().unwrap().to_string();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_s = body["expires_s"].as_u64().unwrap();
    assert!((now_s + 3590..=now_s + 3610).contains(&expires_s), "{body}");
    assert_eq!(
        body["page"].as_str().unwrap(),
        format!("/races/secret?viewer={token}")
    );
    assert_eq!(
        get(
            &state,
            &format!("/v1/races/secret/standings?viewer={token}")
        )
        .await
        .0,
        StatusCode::OK
    );
}

/// With a metrics token configured, `/metrics` (which names every race, private ones too)
/// answers only to it; without one it stays open for a scraper on a trusted network.
#[tokio::test]
async fn metrics_answer_only_to_their_token_when_one_is_set() {
    const METRICS: &str = "metrics-token-0123456789";
    let (open, _engine, _hub) = state_with(config());
    assert_eq!(get(&open, "/metrics").await.0, StatusCode::OK);

    let (closed, _engine, _hub) = state_with(GatewayConfig {
        metrics_token: Some(METRICS.into()),
        ..config()
    });
    let scrape = |token: &str| bearer_get("/metrics", token);
    assert_eq!(get(&closed, "/metrics").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&closed, scrape(ADMIN)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&closed, scrape(METRICS)).await.0, StatusCode::OK);
}
