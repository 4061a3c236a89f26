//! Flevum wire protocol: the device→engine records and the engine→fan frames.
//!
//! Owns the byte layout of everything that crosses a process boundary and the validated decoding of
//! it. Deliberately holds no race logic and no IO (the optional `client` feature adds the device
//! client, which is the only part that touches a socket).

#![deny(unsafe_code)]

pub mod codec;
pub mod error;
pub mod frames;
pub mod handshake;
pub mod record;

pub use codec::{
    DeviceMessage, MAX_MESSAGE_BYTES, MAX_RECORDS_PER_DATAGRAM, RecordLimits, decode_datagram,
    decode_frame_binary, decode_frame_json, decode_message, encode_datagram, encode_frame_binary,
    encode_frame_json, encode_message, message_len,
};
pub use error::{DecodeError, RecordError};
pub use frames::{
    Alert, AlertKind, CheckpointInfo, CourseSummary, Delta, FanFrame, GroupKind, GroupView,
    RiderInfo, RiderStatus, RiderView, Severity, Snapshot,
};
pub use handshake::{Ack, Hello, Refusal, RefusalReason, Welcome};
pub use record::{PositionBatch, PositionRecord, RecordFlags};

/// The protocol version spoken by this build, sent in `Hello` and checked on every decode.
///
/// Evolution rule: a change that keeps every archived layout byte-compatible (new optional frame
/// field handled by JSON only, a new alert kind appended at the end) keeps the version; any change
/// to an archived layout (record size, field order, enum order) bumps it, and the engine keeps
/// accepting the previous version for one release.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN identifier negotiated on every device QUIC connection.
pub const ALPN: &[u8] = b"flevum/1";
