//! Test support: a fake `EngineControl`, state builders, a served gateway on port 0, helpers.
//!
//! Owns nothing the library uses; the fake engine records what the gateway asked of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use flevum_gateway::{
    AdminError, AdminRequest, BoxFuture, EngineControl, GatewayConfig, GatewayState, LiveHub,
    RaceDetail, RaceStatus, RaceSummary, SplitRow, Standing, SubmitError, TrackPoint, Visibility,
};
use flevum_protocol::{
    CourseSummary, GroupView, PositionRecord, RiderInfo, RiderStatus, RiderView, Snapshot,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// Admin token of the test config.
pub const ADMIN: &str = "admin-token-0123456789";
/// Share secret of the test config.
pub const SHARE_SECRET: &str = "share-secret-0123456789";
/// The engine's own viewer token for the private race.
pub const ENGINE_VIEWER: &str = "engine-viewer-token";
/// Device tokens the fake engine accepts.
pub const DEVICE_TOKENS: &[&str] = &["902064", "123456", "8737767034", "owntracks-secret"];

/// A fake engine: two races ("ronde" public, "secret" private), recording calls.
#[derive(Default)]
pub struct FakeEngine {
    /// Whether `/readyz` is ready.
    pub ready: AtomicBool,
    /// `(token, records)` of every submit.
    pub submitted: Mutex<Vec<(String, Vec<PositionRecord>)>>,
    /// `(race, request)` of every admin command.
    pub admin_calls: Mutex<Vec<(Option<String>, AdminRequest)>>,
}

fn summary(id: &str, visibility: Visibility) -> RaceSummary {
    RaceSummary {
        id: id.to_string(),
        name: format!("Race {id}"),
        sport: "road".into(),
        start_ms: 1_700_000_000_000,
        visibility,
        status: RaceStatus::Live,
        riders: 2,
    }
}

impl EngineControl for FakeEngine {
    fn races(&self) -> BoxFuture<Vec<RaceSummary>> {
        Box::pin(async {
            vec![
                summary("ronde", Visibility::Public),
                summary("secret", Visibility::Private),
            ]
        })
    }

    fn race_detail(&self, race: String) -> BoxFuture<Option<RaceDetail>> {
        Box::pin(async move {
            (race == "ronde" || race == "secret").then(|| RaceDetail {
                id: race.clone(),
                name: format!("Race {race}"),
                sport: "road".into(),
                start_ms: 1_700_000_000_000,
                status: RaceStatus::Live,
                course: serde_json::json!({"type":"Feature","geometry":{"type":"LineString","coordinates":[[5.0,52.0],[5.1,52.1]]},"properties":{}}),
                length_m: 13_000.0,
                ascent_m: 12.0,
                elevation: vec![[0.0, 1.0], [13_000.0, 5.0]],
                checkpoints: vec![],
                riders: vec![RiderInfo { rider_id: 1, bib: "1".into(), name: "A".into(), team: "".into() }],
            })
        })
    }

    fn standings(&self, race: String) -> BoxFuture<Option<Vec<Standing>>> {
        Box::pin(async move {
            (race == "ronde" || race == "secret").then(|| {
                vec![Standing {
                    rank: 1,
                    rider_id: 1,
                    bib: "1".into(),
                    name: "A".into(),
                    team: "".into(),
                    distance_m: 100.0,
                    gap_to_leader_ms: Some(0),
                    status: RiderStatus::Racing,
                    finish_time_ms: None,
                }]
            })
        })
    }

    fn groups(&self, race: String) -> BoxFuture<Option<Vec<GroupView>>> {
        Box::pin(async move { (race == "ronde").then(Vec::new) })
    }

    fn splits(&self, race: String) -> BoxFuture<Option<Vec<SplitRow>>> {
        Box::pin(async move { (race == "ronde").then(Vec::new) })
    }

    fn rider_track(&self, race: String, rider: u32) -> BoxFuture<Option<Vec<TrackPoint>>> {
        Box::pin(async move {
            (race == "ronde" && rider == 1).then(|| {
                vec![
                    TrackPoint {
                        time_ms: 1_700_000_000_000,
                        lat: 52.0,
                        lon: 5.0,
                        ele: Some(1.0),
                        distance_m: Some(0.0),
                    },
                    TrackPoint {
                        time_ms: 1_700_000_010_000,
                        lat: 52.001,
                        lon: 5.001,
                        ele: Some(2.0),
                        distance_m: Some(130.0),
                    },
                ]
            })
        })
    }

    fn submit_positions(
        &self,
        device_token: String,
        records: Vec<PositionRecord>,
    ) -> BoxFuture<Result<(), SubmitError>> {
        let ok = DEVICE_TOKENS.contains(&device_token.as_str());
        if ok {
            self.submitted.lock().unwrap().push((device_token, records));
        }
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(SubmitError::Unauthorized)
            }
        })
    }

    fn admin(
        &self,
        race: Option<String>,
        request: AdminRequest,
    ) -> BoxFuture<Result<serde_json::Value, AdminError>> {
        self.admin_calls
            .lock()
            .unwrap()
            .push((race.clone(), request.clone()));
        Box::pin(async move {
            match (race.as_deref(), request) {
                (None, AdminRequest::CreateRace { .. }) => Ok(serde_json::json!({"raceId": "new"})),
                (Some("ronde"), AdminRequest::IssueToken { rider_id }) => {
                    Ok(serde_json::json!({"token": format!("tok-{rider_id}")}))
                }
                (Some("ronde"), _) => Ok(serde_json::json!({"ok": true})),
                (Some(r), _) => Err(AdminError::NotFound(format!("race {r}"))),
                (None, _) => Err(AdminError::Invalid("no race".into())),
            }
        })
    }

    fn viewer_allowed(&self, race: String, token: Option<String>) -> BoxFuture<bool> {
        Box::pin(async move { race != "secret" || token.as_deref() == Some(ENGINE_VIEWER) })
    }

    fn ready(&self) -> BoxFuture<bool> {
        let r = self.ready.load(Ordering::SeqCst);
        Box::pin(async move { r })
    }
}

/// The test config.
pub fn config() -> GatewayConfig {
    GatewayConfig {
        admin_tokens: vec![ADMIN.to_string()],
        share_secret: Some(SHARE_SECRET.to_string()),
        tile_url: Some("https://tiles.example/{z}/{x}/{y}.png".into()),
        tile_attribution: Some("© example".into()),
        ..GatewayConfig::default()
    }
}

/// State over a fresh fake engine and hub.
pub fn state_with(config: GatewayConfig) -> (GatewayState, Arc<FakeEngine>, LiveHub) {
    let engine = Arc::new(FakeEngine::default());
    engine.ready.store(true, Ordering::SeqCst);
    let hub = LiveHub::new(config.hub.clone());
    let handle = PrometheusBuilder::new().build_recorder().handle();
    let state = GatewayState::new(config, hub.clone(), engine.clone(), handle);
    (state, engine, hub)
}

/// One request through the router (no socket): status and body.
pub async fn call(
    state: &GatewayState,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = flevum_gateway::router(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

/// GET through the router.
pub async fn get(state: &GatewayState, uri: &str) -> (StatusCode, Vec<u8>) {
    let (s, _, b) = call(state, Request::get(uri).body(Body::empty()).unwrap()).await;
    (s, b)
}

/// A gateway served on 127.0.0.1:0; dropping the returned sender shuts it down.
pub struct Served {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Send (or drop) to shut down.
    pub shutdown: Option<oneshot::Sender<()>>,
    /// The server task.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `state` on an ephemeral port.
pub async fn serve(state: GatewayState) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(flevum_gateway::run(listener, state, async move {
        let _ = rx.await;
    }));
    Served {
        addr,
        shutdown: Some(tx),
        task,
    }
}

/// A rider view at a position.
pub fn rider(id: u32, lon: f64, lat: f64) -> RiderView {
    RiderView {
        rider_id: id,
        lat,
        lon,
        distance_m: 0.0,
        speed_kmh: 30.0,
        rank: id,
        gap_to_leader_ms: None,
        gap_to_ahead_ms: None,
        group_id: None,
        status: RiderStatus::Racing,
        last_fix_ms: 1_700_000_000_000,
        eta_finish_ms: None,
        battery_pct: None,
    }
}

/// A snapshot of race `race`.
pub fn snapshot(race: &str, epoch: u64, tick: u64, states: Vec<RiderView>) -> Snapshot {
    Snapshot {
        race_id: race.to_string(),
        race_name: "Race".into(),
        epoch,
        tick,
        time_ms: 1_700_000_000_000,
        start_ms: 1_700_000_000_000,
        course: CourseSummary {
            name: "c".into(),
            length_m: 1.0,
            ascent_m: 0.0,
            line: vec![],
            checkpoints: vec![],
        },
        riders: vec![],
        states,
        groups: vec![],
        recent_alerts: vec![],
    }
}

/// A file of the shared tracker-app samples, or None (printed) when missing and not required.
pub fn shared_client_file(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/clients")
        .join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            if std::env::var("FLEVUM_REQUIRE_SHARED_DATA").as_deref() == Ok("1") {
                panic!(
                    "{} is required (FLEVUM_REQUIRE_SHARED_DATA=1): {e}",
                    path.display()
                );
            }
            println!("skipping: {} missing ({e})", path.display());
            None
        }
    }
}
