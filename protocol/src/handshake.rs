//! The device handshake (`Hello` → `Welcome` or `Refusal`) and acknowledgements.
//!
//! Owns the messages of the first bidirectional stream and the ack message. Does not check tokens:
//! the engine's ingest does that.

use rkyv::{Archive, Deserialize, Serialize};

/// First message of a device on its handshake stream.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Hello {
    /// The protocol version the device speaks.
    pub protocol_version: u16,
    /// The per-device secret token issued by the organiser.
    pub device_token: String,
    /// Highest sequence number the device has already had acknowledged (0 if none), so the engine
    /// can tell a resumed session from a fresh one.
    pub last_acked_seq: u32,
}

/// The engine's answer to an accepted `Hello`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Welcome {
    /// Protocol version the engine will speak on this connection.
    pub protocol_version: u16,
    /// Race the token belongs to.
    pub race_id: String,
    /// Rider the token belongs to.
    pub rider_id: u32,
    /// Engine wall clock in ms since the Unix epoch, so the device can estimate its clock offset.
    pub server_time_ms: i64,
    /// How often the device should report a fix, in ms.
    pub report_interval_ms: u32,
    /// Highest contiguous sequence number already durable for this device.
    pub acked_seq: u32,
}

/// Why the engine refused a `Hello`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum RefusalReason {
    /// The token is unknown or revoked.
    BadToken,
    /// The device speaks a protocol version the engine does not.
    UnsupportedVersion,
    /// The race is finished or not open for tracking.
    RaceClosed,
    /// The engine is overloaded; retry after `retry_after_ms`.
    Overloaded,
    /// The message could not be decoded.
    Malformed,
}

/// A typed refusal of a `Hello`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Refusal {
    /// Machine-readable reason.
    pub reason: RefusalReason,
    /// Human-readable detail for logs.
    pub message: String,
    /// When to retry (0 = do not retry with the same token).
    pub retry_after_ms: u32,
}

/// Acknowledgement: every record of this device with `seq <= acked_seq` is durable.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Ack {
    /// Highest contiguous durable sequence number.
    pub acked_seq: u32,
}
