//! Tracker-app ingest on the real sample requests in `../shared/data/clients/`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use flevum_gateway::ingest::seq_for_time;

use crate::support::*;

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn osmand_and_traccar_sample_requests() {
    let Some(text) = shared_client_file("osmand_requests.txt") else {
        return;
    };
    let (state, engine, _hub) = state_with(config());
    let mut outcomes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let req = if let Some(path) = line.strip_prefix("GET ") {
            let query = path.trim().trim_start_matches('/');
            Request::get(format!("/v1/ingest/osmand{query}"))
                .body(Body::empty())
                .unwrap()
        } else if let Some(body) = line.strip_prefix("POST-JSON ") {
            Request::post("/v1/ingest/osmand")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        } else {
            panic!("unexpected sample line {line:?}");
        };
        let (s, _, b) = call(&state, req).await;
        outcomes.push((s, b));
    }
    let statuses: Vec<StatusCode> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::OK
        ]
    );
    assert_eq!(json(&outcomes[4].1)["error"], "missing_device_id");

    let sub = engine.submitted.lock().unwrap();
    assert_eq!(sub.len(), 5);
    let (tok, recs) = &sub[0];
    assert_eq!(tok, "902064");
    let r = recs[0];
    assert_eq!(r.time_ms, 1_453_920_947_000, "ISO 8601 timestamp");
    assert_eq!(r.seq, seq_for_time(r.time_ms));
    assert_eq!((r.lat_e7, r.lon_e7), (420_628_800, -882_341_200));
    assert_eq!(r.elevation_m(), Some(224.0));
    assert_eq!(r.accuracy_m(), Some(6.0), "hdop taken as accuracy");
    assert_eq!(sub[1].1[0].time_ms, 1_442_068_686_579, "Unix ms timestamp");
    assert_eq!(sub[2].0, "123456");
    assert_eq!(
        sub[2].1[0].time_ms, 1_377_177_267_000,
        "Unix seconds timestamp"
    );
    assert_eq!(sub[2].1[0].heading_deg(), Some(0.0));
    assert_eq!(
        (sub[3].1[0].lat_e7, sub[3].1[0].lon_e7),
        (600_000_000, 300_000_000),
        "location=LAT,LON"
    );
    assert_eq!(
        sub[2].1[0].seq, sub[3].1[0].seq,
        "same timestamp, same seq: replays dedupe"
    );
    let (tok, recs) = &sub[4];
    assert_eq!(tok, "8737767034", "Traccar Client JSON");
    let r = recs[0];
    assert_eq!(r.time_ms, 1_626_854_794_444);
    assert_eq!((r.lat_e7, r.lon_e7), (-61_148_096, 1_066_837_015));
    assert_eq!(r.speed_cms, 1867, "JSON speed is m/s");
    assert_eq!(r.heading_deg(), Some(63.0));
    assert_eq!(r.battery(), Some(79));
}

#[tokio::test]
async fn osmand_post_form_bad_input_and_bad_token() {
    let (state, engine, _hub) = state_with(config());
    let (s, _, _) = call(
        &state,
        Request::post(
            "/v1/ingest/osmand?id=123456&lat=52.1&lon=5.2&timestamp=1700000000&speed=10&batt=80",
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &state,
        Request::post("/v1/ingest/osmand")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(
                "id=123456&lat=52.1&lon=5.2&timestamp=2023-11-14+22%3A13%3A21",
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    {
        let sub = engine.submitted.lock().unwrap();
        assert_eq!(sub.len(), 2);
        assert_eq!(sub[0].1[0].speed_cms, 514, "10 knots");
        assert_eq!(sub[0].1[0].battery(), Some(80));
        assert_eq!(sub[1].1[0].time_ms, 1_700_000_001_000);
    }
    for (uri, code) in [
        (
            "/v1/ingest/osmand?id=123456&lat=north&lon=5",
            "bad_parameter",
        ),
        (
            "/v1/ingest/osmand?id=123456&lat=95&lon=5&timestamp=1700000000",
            "invalid_position",
        ),
        (
            "/v1/ingest/osmand?id=123456&lat=5&lon=5&timestamp=4102444800",
            "invalid_position",
        ),
        (
            "/v1/ingest/osmand?id=123456&lat=5&lon=5&timestamp=someday",
            "bad_timestamp",
        ),
    ] {
        let (s, b) = get(&state, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(json(&b)["error"], code, "{uri}");
        assert!(json(&b)["detail"].is_string());
    }
    let (s, b) = get(
        &state,
        "/v1/ingest/osmand?id=stolen&lat=5&lon=5&timestamp=1700000000",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"], "bad_token");
    assert_eq!(engine.submitted.lock().unwrap().len(), 2);
}

fn basic(user: &str, pass: &str) -> String {
    // tiny base64 for the test
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{pass}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test]
async fn owntracks_sample_location() {
    let Some(body) = shared_client_file("owntracks_location.json") else {
        return;
    };
    let (state, engine, _hub) = state_with(config());
    let post = |auth: Option<String>, body: String| {
        let mut r =
            Request::post("/v1/ingest/owntracks").header("content-type", "application/json");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::from(body)).unwrap()
    };
    let (s, _, b) = call(
        &state,
        post(Some(basic("rider7", "owntracks-secret")), body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b), serde_json::json!([]));
    let (s, _, _) = call(&state, post(None, body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, b) = call(&state, post(Some(basic("rider7", "nope")), body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"], "bad_token");
    let (s, _, b) = call(
        &state,
        post(
            Some(basic("rider7", "owntracks-secret")),
            "{not json".into(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json(&b)["error"], "bad_json");
    let (s, _, _) = call(
        &state,
        post(
            Some(basic("rider7", "owntracks-secret")),
            r#"{"_type":"transition"}"#.into(),
        ),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "non-location messages are accepted and ignored"
    );

    let sub = engine.submitted.lock().unwrap();
    assert_eq!(sub.len(), 1);
    let (tok, recs) = &sub[0];
    assert_eq!(tok, "owntracks-secret");
    let r = recs[0];
    assert_eq!(r.time_ms, 1_718_447_112_000);
    assert_eq!(r.seq, seq_for_time(1_718_447_112_000));
    assert_eq!((r.lat_e7, r.lon_e7), (488_566_000, 23_522_000));
    assert_eq!(r.speed_cms, 861, "31 km/h");
    assert_eq!(r.heading_deg(), Some(270.0));
    assert_eq!(r.accuracy_m(), Some(8.0));
    assert_eq!(r.elevation_m(), Some(35.0));
    assert_eq!(r.battery(), Some(76));
}
