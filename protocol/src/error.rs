//! Typed errors for decoding bytes that came from outside the process.
//!
//! Owns the error vocabulary of the wire layer: framing problems, version mismatches, archive
//! validation failures and values out of range. Does not log or count them; callers do.

/// A value that decoded structurally but is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// Latitude outside ±90°.
    #[error("latitude {0} × 1e-7° is outside ±90°")]
    Latitude(i32),
    /// Longitude outside ±180°.
    #[error("longitude {0} × 1e-7° is outside ±180°")]
    Longitude(i32),
    /// Heading is not in 0..36000 centidegrees and not the unknown marker.
    #[error("heading {0} cdeg is not in 0..36000")]
    Heading(u16),
    /// Battery above 100 % and not the unknown marker.
    #[error("battery {0} % is above 100")]
    Battery(u8),
    /// Timestamp too far after the receiver's clock.
    #[error("timestamp {time_ms} is {ahead_ms} ms in the future (limit {limit_ms} ms)")]
    FutureTimestamp {
        /// The record's timestamp.
        time_ms: i64,
        /// How far ahead of `now`.
        ahead_ms: i64,
        /// The allowed skew.
        limit_ms: i64,
    },
    /// Timestamp before the earliest plausible date.
    #[error("timestamp {0} is before 2000-01-01")]
    AncientTimestamp(i64),
    /// Sequence number 0 is reserved for "nothing acknowledged yet".
    #[error("sequence number 0 is reserved")]
    ZeroSeq,
    /// A floating-point field of a frame is NaN or infinite.
    #[error("field {0} is not a finite number")]
    NotFinite(&'static str),
    /// A coordinate of a frame is out of range.
    #[error("field {field} = {value} is out of range")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the smallest valid encoding.
    #[error("too short: {len} bytes, need at least {min}")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
    /// More bytes than allowed.
    #[error("too long: {len} bytes, limit {max}")]
    TooLong {
        /// Bytes received or announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The byte length does not match the announced content.
    #[error("length mismatch: header says {expected} bytes, got {actual}")]
    LengthMismatch {
        /// Announced length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// The sender speaks a protocol version this build does not.
    #[error("unsupported protocol version {got} (this build speaks {supported})")]
    Version {
        /// Version in the bytes.
        got: u16,
        /// Version supported here.
        supported: u16,
    },
    /// The archive failed structural validation (bytecheck).
    #[error("invalid archive: {0}")]
    Archive(String),
    /// JSON that does not match the frame schema.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A value is out of range.
    #[error("invalid value: {0}")]
    Invalid(#[from] RecordError),
}
