//! Flevum wire protocol: the device→engine records and the engine→fan frames.
//!
//! Owns the byte layout of everything that crosses a process boundary and the validated decoding of
//! it. Deliberately holds no race logic and no IO (the optional `client` feature adds the device
//! client, which is the only part that touches a socket).

#![deny(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod error;
pub mod frames;
pub mod handshake;
pub mod merge;
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
pub use merge::SnapshotMerger;
pub use record::{ArchivedPositionRecord, PositionBatch, PositionRecord, RecordFlags};

/// The protocol version spoken by this build, sent first in every message body, datagram and
/// binary frame, and checked on every decode.
///
/// Rule for evolving it:
/// 1. A change that leaves every byte layout as it is (a new JSON-only frame field with a serde
///    default, a doc change) keeps the version.
/// 2. Any change to a binary layout (the 32-byte record, an rkyv archived type: field added,
///    removed, reordered or retyped, an enum variant added anywhere, including at the end) bumps
///    the version by one.
/// 3. After a bump the engine keeps decoding the previous version for at least one release (a
///    decoder per supported version), and refuses older ones with `UnsupportedVersion`, so
///    devices in the field can upgrade before the old layout is dropped.
/// 4. The fuzz targets in `protocol/fuzz/` (run with `cargo +nightly fuzz run decode_datagram`,
///    `decode_message`, `decode_frame_binary`, `decode_frame_json`) and the round-trip tests must
///    cover the new layout before it ships.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN identifier negotiated on every device QUIC connection.
pub const ALPN: &[u8] = b"flevum/1";
