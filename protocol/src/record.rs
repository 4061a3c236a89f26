//! The fixed-size position record a device sends for every GPS fix, and batches of them.
//!
//! Owns the record layout (32 bytes archived) and unit conversions. Does not judge whether a fix is
//! plausible for a race (speed, event time): that is the engine's job.

use rkyv::{Archive, Deserialize, Serialize};

/// One GPS fix as sent by a device. Integer fields keep the archived form fixed-size and exact.
///
/// Field order is chosen so the archived struct has no padding (8 + 6×4 … = 32 bytes).
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct PositionRecord {
    /// Device timestamp of the fix, milliseconds since the Unix epoch (event time, not arrival).
    pub time_ms: i64,
    /// Per-device sequence number, strictly increasing per fix; duplicates are dropped by it.
    pub seq: u32,
    /// Latitude in units of 1e-7 degree (about 1.1 cm).
    pub lat_e7: i32,
    /// Longitude in units of 1e-7 degree.
    pub lon_e7: i32,
    /// Elevation above sea level in decimetres; `i32::MIN` when unknown.
    pub elevation_dm: i32,
    /// Ground speed in cm/s; `u16::MAX` when unknown.
    pub speed_cms: u16,
    /// Heading in centidegrees (0..36000, clockwise from north); `u16::MAX` when unknown.
    pub heading_cdeg: u16,
    /// Horizontal accuracy (1 sigma) in decimetres; `u16::MAX` when unknown.
    pub accuracy_dm: u16,
    /// Battery charge in percent (0..=100); 255 when unknown.
    pub battery_pct: u8,
    /// Bit flags, see [`RecordFlags`].
    pub flags: u8,
}

/// Bits of [`PositionRecord::flags`].
pub struct RecordFlags;

impl RecordFlags {
    /// The fix was buffered on the device while offline and is sent as backlog.
    pub const BACKFILL: u8 = 1 << 0;
    /// The rider pressed the emergency / SOS button.
    pub const SOS: u8 = 1 << 1;
    /// The device is charging.
    pub const CHARGING: u8 = 1 << 2;
}

/// A batch of records from one device (backlog upload, or several live fixes in one datagram).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PositionBatch {
    /// Protocol version of the sender, checked on decode.
    pub version: u16,
    /// The records, in any order; the engine orders them by `seq`.
    pub records: Vec<PositionRecord>,
}
