//! Control request/reply between gateways and engines: JSON requests on
//! `flevum.ctl.<method>`, answered by one engine of the queue group `flevum-engines`.
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
    let subject = format!("{}.>", subjects::CONTROL_PREFIX);
    let mut sub = client
        .queue_subscribe(subject.clone(), subjects::CONTROL_QUEUE.to_string())
        .await
        .map_err(|e| BusError::Subscribe {
            subject,
            message: e.to_string(),
        })?;
    crate::config::round_trip(client, std::time::Duration::from_secs(10)).await?;
    let client = client.clone();
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let method = msg
                .subject
                .strip_prefix(subjects::CONTROL_PREFIX)
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

/// Sends a control request and decodes the answer.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    method: &str,
    request: &Req,
) -> Result<Resp, BusError> {
    let subject = subjects::control(method);
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
