//! Control request/reply between gateways and engines: JSON requests on
//! `flevum.ctl.<method>`, answered by one engine of the queue group `flevum-engines`, and
//! per-race requests on `race.<id>.ctl.<method>`, answered only by the engine owning the race
//! (the others forward what concerns a race they do not own there).
//!
//! Owns the envelope (`{"ok": …}` or `{"error": "…"}`) and the server loop; what the methods
//! mean is the binary's business ([`ControlHandler`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span};

use crate::metrics as m;
use crate::{BusError, subjects};

/// The future a [`ControlHandler`] answers with: the JSON answer, or an error message.
pub type ControlFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>;

/// Answers control requests (implemented by the engine role over the engine host).
pub trait ControlHandler: Send + Sync + 'static {
    /// Answers `method` with the request's JSON `body`.
    fn handle(&self, method: String, body: serde_json::Value) -> ControlFuture;
}

/// The reply envelope.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    /// The answer.
    Ok(serde_json::Value),
    /// Why there is none.
    Error(String),
}

/// Answers `flevum.ctl.>` in the engines' queue group until the returned task is aborted.
pub async fn serve_control(
    client: &async_nats::Client,
    handler: Arc<dyn ControlHandler>,
) -> Result<JoinHandle<()>, BusError> {
    serve_on(
        client,
        subjects::CONTROL_PREFIX.to_string(),
        Some(subjects::CONTROL_QUEUE),
        handler,
    )
    .await
}

/// The owner's answering of a race's control subject; [`RaceControlServer::stop`] ends it.
pub struct RaceControlServer {
    /// Asks the loop to unsubscribe; it answers once the server has processed that.
    stop: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>,
    /// The loop.
    task: JoinHandle<()>,
}

impl RaceControlServer {
    /// Unsubscribes and waits (bounded) until the NATS server knows, so requests sent after
    /// this go to the new owner (or fail at once) instead of waiting for a reply from here.
    pub async fn stop(self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.stop.send(done).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), wait).await;
        }
        self.task.abort();
    }
}

/// Answers `race.<id>.ctl.>` (the owner of the race, no queue group) until stopped; the
/// subscription is live on the server when this returns.
pub async fn serve_race_control(
    client: &async_nats::Client,
    race_id: &str,
    handler: Arc<dyn ControlHandler>,
) -> Result<RaceControlServer, BusError> {
    subjects::check_race_id(race_id)?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = serve_on_until(
        client,
        subjects::race_control_prefix(race_id),
        None,
        handler,
        Some(stopped),
    )
    .await?;
    Ok(RaceControlServer { stop, task })
}

async fn serve_on(
    client: &async_nats::Client,
    prefix: String,
    queue: Option<&str>,
    handler: Arc<dyn ControlHandler>,
) -> Result<JoinHandle<()>, BusError> {
    // Never asked to stop: the task is aborted instead.
    serve_on_until(client, prefix, queue, handler, None).await
}

async fn serve_on_until(
    client: &async_nats::Client,
    prefix: String,
    queue: Option<&str>,
    handler: Arc<dyn ControlHandler>,
    mut stopped: Option<tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>>,
) -> Result<JoinHandle<()>, BusError> {
    let subject = format!("{prefix}.>");
    let subscribed = match queue {
        Some(q) => client.queue_subscribe(subject.clone(), q.to_string()).await,
        None => client.subscribe(subject.clone()).await,
    };
    let mut sub = subscribed.map_err(|e| BusError::Subscribe {
        subject,
        message: e.to_string(),
    })?;
    crate::config::round_trip(client, std::time::Duration::from_secs(10)).await?;
    let client = client.clone();
    Ok(tokio::spawn(async move {
        loop {
            let stop_asked = async {
                match stopped.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                m = sub.next() => m,
                stop = stop_asked => {
                    let Ok(done) = stop else {
                        // The stopper is gone without asking: serve until aborted.
                        stopped = None;
                        continue;
                    };
                    let _ = sub.unsubscribe().await;
                    let _ = crate::config::round_trip(&client, std::time::Duration::from_secs(2))
                        .await;
                    let _ = done.send(());
                    return;
                }
            };
            let Some(msg) = msg else { return };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let method = msg
                .subject
                .strip_prefix(prefix.as_str())
                .and_then(|m| m.strip_prefix('.'))
                .unwrap_or_default()
                .to_string();
            let (client, handler) = (client.clone(), handler.clone());
            let span = info_span!("control", method = %method);
            tokio::spawn(
                async move {
                    metrics::counter!(m::BUS_CONTROL_REQUESTS, "method" => method.clone())
                        .increment(1);
                    let answer = match serde_json::from_slice::<serde_json::Value>(&msg.payload) {
                        Ok(body) => match handler.handle(method, body).await {
                            Ok(v) => Reply::Ok(v),
                            Err(e) => Reply::Error(e),
                        },
                        Err(e) => Reply::Error(format!("request is not JSON: {e}")),
                    };
                    let bytes = serde_json::to_vec(&answer).unwrap_or_default();
                    if let Err(e) = client.publish(reply, Bytes::from(bytes)).await {
                        debug!("control reply failed: {e}");
                    }
                }
                .instrument(span),
            );
        }
    }))
}

/// Sends a request to the owner of `race_id` (`race.<id>.ctl.<method>`) and decodes the answer;
/// [`BusError::NoResponders`] when no engine owns the race right now.
pub async fn call_race<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    race_id: &str,
    method: &str,
    request: &Req,
) -> Result<Resp, BusError> {
    subjects::check_race_id(race_id)?;
    call_subject(client, subjects::race_control(race_id, method), request).await
}

/// Sends a control request and decodes the answer.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    method: &str,
    request: &Req,
) -> Result<Resp, BusError> {
    call_subject(client, subjects::control(method), request).await
}

async fn call_subject<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    request: &Req,
) -> Result<Resp, BusError> {
    let body = serde_json::to_vec(request).map_err(|e| BusError::Payload {
        subject: subject.clone(),
        message: e.to_string(),
    })?;
    let msg = client
        .request(subject.clone(), Bytes::from(body))
        .await
        .map_err(|e| {
            use async_nats::RequestErrorKind as K;
            match e.kind() {
                K::NoResponders => BusError::NoResponders(subject.clone()),
                K::TimedOut => BusError::Timeout(subject.clone()),
                _ => BusError::Request {
                    subject: subject.clone(),
                    message: e.to_string(),
                },
            }
        })?;
    match serde_json::from_slice::<Reply>(&msg.payload) {
        Ok(Reply::Ok(v)) => serde_json::from_value(v).map_err(|e| BusError::Payload {
            subject,
            message: e.to_string(),
        }),
        Ok(Reply::Error(e)) => Err(BusError::Remote(e)),
        Err(e) => Err(BusError::Payload {
            subject,
            message: e.to_string(),
        }),
    }
}
