//! [`BusConfig`]: where the NATS server is and how patient the bus is with it.
//!
//! Only settings; the binary maps its TOML and `--bus` flag onto this struct.

use std::time::Duration;

/// Settings of the NATS bus (unused by the in-process bus).
#[derive(Debug, Clone, PartialEq)]
pub struct BusConfig {
    /// NATS server URL(s), comma separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    pub url: String,
    /// Connection name shown by the NATS server's monitoring (`flevum-engine-1`).
    pub name: String,
    /// Longest wait for a control or snapshot answer.
    pub request_timeout: Duration,
    /// How long a gateway keeps following a race after its last client left (a fan who
    /// reloads the page should not cost a resubscription and a snapshot).
    pub linger: Duration,
    /// Frames waiting to be handed to the NATS client per engine; beyond it frames are dropped
    /// and counted, and gateways resync from a snapshot.
    pub publish_queue: usize,
    /// Wait before asking again for a snapshot nobody answered.
    pub snapshot_retry: Duration,
    /// Deltas a gateway holds while it waits for a race's snapshot.
    pub pending_deltas: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            url: "nats://127.0.0.1:4222".into(),
            name: "flevum".into(),
            request_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(30),
            publish_queue: 8192,
            snapshot_retry: Duration::from_millis(500),
            pending_deltas: 256,
        }
    }
}

impl BusConfig {
    /// The default settings for a server at `url`.
    pub fn with_url(url: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            ..BusConfig::default()
        }
    }

    /// Connects a NATS client with these settings.
    pub(crate) async fn connect(&self) -> Result<async_nats::Client, crate::BusError> {
        async_nats::ConnectOptions::new()
            .name(&self.name)
            .request_timeout(Some(self.request_timeout))
            .connect(self.url.as_str())
            .await
            .map_err(|e| crate::BusError::Connect {
                url: self.url.clone(),
                message: e.to_string(),
            })
    }
}

/// A round trip through the server on `client`'s connection: once it returns, the server has
/// processed every subscription and publish this connection made before (a plain flush only
/// empties the socket buffer).
pub async fn round_trip(
    client: &async_nats::Client,
    timeout: Duration,
) -> Result<(), crate::BusError> {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let fail = |message: String| crate::BusError::Publish {
        subject: "(round trip)".into(),
        message,
    };
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| fail(e.to_string()))?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| fail(e.to_string()))?;
    match tokio::time::timeout(timeout, sub.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(fail("connection closed".into())),
        Err(_) => Err(crate::BusError::Timeout("(round trip)".into())),
    }
}
