//! `flevum gateway --bus nats://…`: the HTTP/WebSocket gateway with a hub fed from NATS. The
//! gateway follows a race on the bus only while it has clients for it (the hub's interest
//! hook), and asks the engines over NATS request/reply ([`NatsControl`]).
//!
//! Only wiring and the adapters between the gateway's types and the bus; no race logic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use anyhow::{Context, bail};
use flevum_bus::{BusConfig, BusError, FrameSink, NatsGatewayBus};
use flevum_gateway::engine_control::{
    AdminError, AdminRequest, BoxFuture, EngineControl, RaceDetail, RaceSummary, SplitRow,
    Standing, SubmitError, TrackPoint,
};
use flevum_gateway::{GatewayConfig, GatewayState, LiveHub, StaticAssets};
use flevum_protocol::{Alert, Delta, GroupView, PositionRecord, Snapshot};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::config::ServerConfig;
use crate::engine_role::{AdminReply, ControlRequest, SubmitReply};

/// Feeds frames received from the bus into the gateway's hub.
pub struct HubSink(pub LiveHub);

impl FrameSink for HubSink {
    fn snapshot(&self, snapshot: Snapshot) {
        self.0.publish_snapshot(snapshot);
    }
    fn delta(&self, delta: Delta) {
        self.0.publish_delta(delta);
    }
    fn alert(&self, race_id: &str, alert: Alert) {
        self.0.publish_alert(race_id, alert);
    }
    fn watchers(&self, race_id: &str) -> usize {
        self.0.watchers(race_id)
    }
    fn forget(&self, race_id: &str) {
        // A client that arrived meanwhile keeps the race (the next sweep looks again).
        if self.0.watchers(race_id) == 0 {
            self.0.remove_race(race_id);
        }
    }
}

/// How long an engine's answer to "may anyone watch this race" stays good at a gateway.
const VISIBILITY_TTL: Duration = Duration::from_secs(5);

/// The gateway's `EngineControl` over NATS request/reply to the engines.
#[derive(Clone)]
pub struct NatsControl {
    /// The bus to the engines.
    bus: NatsGatewayBus,
    /// Public races and when the engines last said so. The engines answer `viewer_allowed`
    /// from the race's visibility alone (private races are opened with the gateway's own share
    /// tokens), so one answer serves every fan for a few seconds: a connect storm of thousands
    /// of fans costs one request, not one each, and a slow engine cannot turn a public race
    /// into a refused one. Only "yes" answers are kept, so made-up race ids in requests cannot
    /// grow it beyond the races that exist.
    public_races: Arc<DashMap<String, Instant>>,
}

impl NatsControl {
    /// A control over `bus`.
    pub fn new(bus: NatsGatewayBus) -> NatsControl {
        NatsControl {
            bus,
            public_races: Arc::new(DashMap::new()),
        }
    }

    /// Calls `method`; a failure is logged and answered with `fallback`.
    fn ask<T: DeserializeOwned + Send + 'static>(
        &self,
        method: &'static str,
        req: ControlRequest,
        fallback: T,
    ) -> BoxFuture<T> {
        let bus = self.bus.clone();
        Box::pin(async move {
            match bus.call::<_, T>(method, &req).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(method, "engine request over the bus failed: {e}");
                    fallback
                }
            }
        })
    }

    fn race(race: String) -> ControlRequest {
        ControlRequest {
            race: Some(race),
            ..ControlRequest::default()
        }
    }
}

/// A bus failure as the HTTP ingest's error.
fn unavailable(e: BusError) -> String {
    format!("no engine reachable over the bus: {e}")
}

impl EngineControl for NatsControl {
    fn races(&self) -> BoxFuture<Vec<RaceSummary>> {
        self.ask("races", ControlRequest::default(), Vec::new())
    }
    fn race_detail(&self, race: String) -> BoxFuture<Option<RaceDetail>> {
        self.ask("race_detail", Self::race(race), None)
    }
    fn standings(&self, race: String) -> BoxFuture<Option<Vec<Standing>>> {
        self.ask("standings", Self::race(race), None)
    }
    fn groups(&self, race: String) -> BoxFuture<Option<Vec<GroupView>>> {
        self.ask("groups", Self::race(race), None)
    }
    fn splits(&self, race: String) -> BoxFuture<Option<Vec<SplitRow>>> {
        self.ask("splits", Self::race(race), None)
    }
    fn rider_track(&self, race: String, rider: u32) -> BoxFuture<Option<Vec<TrackPoint>>> {
        let req = ControlRequest {
            rider: Some(rider),
            ..Self::race(race)
        };
        self.ask("rider_track", req, None)
    }
    fn submit_positions(
        &self,
        device_token: String,
        records: Vec<PositionRecord>,
    ) -> BoxFuture<Result<(), SubmitError>> {
        let bus = self.bus.clone();
        Box::pin(async move {
            let req = ControlRequest {
                token: Some(device_token),
                records,
                ..ControlRequest::default()
            };
            match bus.call::<_, SubmitReply>("submit_positions", &req).await {
                Ok(r) => r.into(),
                Err(e) => Err(SubmitError::Unavailable(unavailable(e))),
            }
        })
    }
    fn admin(
        &self,
        race: Option<String>,
        request: AdminRequest,
    ) -> BoxFuture<Result<serde_json::Value, AdminError>> {
        let bus = self.bus.clone();
        Box::pin(async move {
            let req = ControlRequest {
                race,
                request: Some(request),
                ..ControlRequest::default()
            };
            match bus.call::<_, AdminReply>("admin", &req).await {
                Ok(r) => r.into(),
                Err(e) => Err(AdminError::Internal(unavailable(e))),
            }
        })
    }
    fn viewer_allowed(&self, race: String, token: Option<String>) -> BoxFuture<bool> {
        let known_public = self.public_races.get(&race).map(|at| *at.value());
        if known_public.is_some_and(|at| at.elapsed() < VISIBILITY_TTL) {
            return Box::pin(async { true });
        }
        let bus = self.bus.clone();
        let public_races = Arc::clone(&self.public_races);
        Box::pin(async move {
            let req = ControlRequest {
                token,
                ..Self::race(race.clone())
            };
            match bus.call::<_, bool>("viewer_allowed", &req).await {
                Ok(true) => {
                    public_races.insert(race, Instant::now());
                    true
                }
                Ok(false) => {
                    public_races.remove(&race);
                    false
                }
                Err(e) => {
                    // An engine that is slow to answer does not make a public race private:
                    // the last answer stands until the engines answer again.
                    warn!("viewer check over the bus failed: {e}");
                    known_public.is_some()
                }
            }
        })
    }
    fn ready(&self) -> BoxFuture<bool> {
        self.ask("ready", ControlRequest::default(), false)
    }
}

/// The gateway settings of `cfg` (as `serve` maps them), validated.
pub fn gateway_config(cfg: &ServerConfig) -> anyhow::Result<GatewayConfig> {
    let mut admin_token = cfg.gateway.admin_token.clone();
    if admin_token.is_empty() {
        admin_token = crate::serve::random_token();
        eprintln!("flevum: organiser admin token for this run: {admin_token}");
    }
    // Without a configured key, viewer links are signed with one made for this run.
    let share_secret = if cfg.gateway.share_secret.is_empty() {
        crate::serve::random_token()
    } else {
        cfg.gateway.share_secret.clone()
    };
    let gateway_config = GatewayConfig {
        admin_tokens: vec![admin_token],
        share_secret: Some(share_secret),
        metrics_token: Some(cfg.gateway.metrics_token.clone()).filter(|t| !t.is_empty()),
        tile_url: cfg.gateway.tile_url.clone().filter(|u| !u.is_empty()),
        cors_origins: cfg.gateway.cors_origins.clone(),
        max_body_bytes: cfg.gateway.max_body_bytes,
        requests_per_minute_per_ip: cfg.gateway.requests_per_minute_per_ip,
        websockets_per_ip: cfg.gateway.websockets_per_ip,
        client_byte_budget: cfg.gateway.client_byte_budget,
        ..GatewayConfig::default()
    };
    if let Err(errors) = gateway_config.validate() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!("invalid gateway settings: {}", list.join("; "));
    }
    Ok(gateway_config)
}

/// Runs the gateway role until Ctrl-C or SIGTERM.
pub async fn gateway(cfg: ServerConfig, bus: BusConfig) -> anyhow::Result<()> {
    let prometheus = flevum_gateway::install_prometheus()
        .context("installing the Prometheus metrics recorder")?;
    flevum_bus::metrics::describe();
    let gateway_config = gateway_config(&cfg)?;
    let hub = LiveHub::new(Default::default());
    let nats = NatsGatewayBus::connect(&bus, Arc::new(HubSink(hub.clone())))
        .await
        .context("connecting the gateway to the bus")?;
    let follower = nats.clone();
    hub.set_interest_hook(Arc::new(move |race: &str| {
        if let Err(e) = follower.watch(race) {
            warn!(race, "cannot follow race: {e}");
        }
    }));
    let listener = tokio::net::TcpListener::bind(cfg.gateway.listen)
        .await
        .with_context(|| format!("binding the gateway on {}", cfg.gateway.listen))?;
    let http_addr = listener.local_addr()?;
    let state = GatewayState::new(
        gateway_config,
        hub,
        Arc::new(NatsControl::new(nats.clone())),
        prometheus,
    )
    .with_static_assets(StaticAssets {
        index_html: flevum_gateway::web_assets::index_html,
        asset: flevum_gateway::web_assets::asset,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(async move {
        flevum_gateway::run(listener, state, crate::host::until_shutdown(stop_rx)).await
    });
    eprintln!(
        "flevum gateway: live map and API on http://{http_addr}/ (bus {})",
        bus.url
    );
    tokio::select! {
        _ = crate::serve::wait_for_signal() => {}
        r = &mut server => {
            // The server stopped on its own.
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e).context("gateway server"),
                Err(e) => Err(e).context("gateway task"),
            };
        }
    }
    eprintln!("flevum gateway: shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
