//! Encoding and validated decoding of everything on the wire.
//!
//! Owns the byte framing: length-prefixed device messages on QUIC streams, compact datagrams of
//! fixed 32-byte records, and fan frames as JSON or binary (rkyv). Every decoder checks lengths,
//! the protocol version, the archive structure (bytecheck) and value ranges, and returns a typed
//! [`DecodeError`]; none of them panics on any input.

use bytes::Bytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::PROTOCOL_VERSION;
use crate::error::{DecodeError, RecordError};
use crate::frames::{Alert, FanFrame, RiderView, Snapshot};
use crate::handshake::{Ack, Hello, Refusal, Welcome};
use crate::record::{PositionBatch, PositionRecord};

/// Largest device message body on a stream, bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most records in one datagram (32 × 32 B + 3 B header stays under a 1200 B QUIC datagram).
pub const MAX_RECORDS_PER_DATAGRAM: usize = 32;
/// Size of one encoded position record.
pub const RECORD_BYTES: usize = 32;
/// Datagram header: version (u16) and record count (u8).
const DATAGRAM_HEADER: usize = 3;
/// Largest fan frame accepted by the binary and JSON decoders, bytes.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Earliest plausible fix time: 2000-01-01T00:00:00Z in ms.
const EARLIEST_MS: i64 = 946_684_800_000;

/// Limits applied when validating a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// How far a record's timestamp may be ahead of the receiver's clock, ms.
    pub max_future_ms: i64,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_future_ms: 5 * 60 * 1000,
        }
    }
}

/// Any message on a device's QUIC streams.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum DeviceMessage {
    /// Device → engine: authenticate.
    Hello(Hello),
    /// Engine → device: accepted.
    Welcome(Welcome),
    /// Engine → device: refused.
    Refusal(Refusal),
    /// Device → engine: a batch of records (backlog).
    Batch(PositionBatch),
    /// Engine → device: records up to a sequence are durable.
    Ack(Ack),
}

impl PositionRecord {
    /// Builds a record from degrees and SI units, rounding to the wire resolution.
    #[allow(clippy::too_many_arguments)]
    pub fn from_degrees(
        seq: u32,
        time_ms: i64,
        lat: f64,
        lon: f64,
        elevation_m: Option<f64>,
        speed_mps: Option<f64>,
        heading_deg: Option<f64>,
        accuracy_m: Option<f64>,
    ) -> PositionRecord {
        PositionRecord {
            time_ms,
            seq,
            lat_e7: (lat * 1e7).round() as i32,
            lon_e7: (lon * 1e7).round() as i32,
            elevation_dm: elevation_m.map_or(i32::MIN, |e| (e * 10.0).round() as i32),
            speed_cms: speed_mps
                .map_or(u16::MAX, |s| (s * 100.0).round().clamp(0.0, 65534.0) as u16),
            heading_cdeg: heading_deg.map_or(u16::MAX, |h| {
                ((h.rem_euclid(360.0) * 100.0).round() as u16).min(35_999)
            }),
            accuracy_dm: accuracy_m
                .map_or(u16::MAX, |a| (a * 10.0).round().clamp(0.0, 65534.0) as u16),
            battery_pct: 255,
            flags: 0,
        }
    }

    /// Latitude in degrees.
    pub fn lat_deg(&self) -> f64 {
        f64::from(self.lat_e7) * 1e-7
    }

    /// Longitude in degrees.
    pub fn lon_deg(&self) -> f64 {
        f64::from(self.lon_e7) * 1e-7
    }

    /// Elevation in metres, if known.
    pub fn elevation_m(&self) -> Option<f64> {
        (self.elevation_dm != i32::MIN).then(|| f64::from(self.elevation_dm) / 10.0)
    }

    /// Ground speed in m/s, if known.
    pub fn speed_mps(&self) -> Option<f64> {
        (self.speed_cms != u16::MAX).then(|| f64::from(self.speed_cms) / 100.0)
    }

    /// Heading in degrees, if known.
    pub fn heading_deg(&self) -> Option<f64> {
        (self.heading_cdeg != u16::MAX).then(|| f64::from(self.heading_cdeg) / 100.0)
    }

    /// Horizontal accuracy in metres, if known.
    pub fn accuracy_m(&self) -> Option<f64> {
        (self.accuracy_dm != u16::MAX).then(|| f64::from(self.accuracy_dm) / 10.0)
    }

    /// Battery percent, if known.
    pub fn battery(&self) -> Option<u8> {
        (self.battery_pct != 255).then_some(self.battery_pct)
    }

    /// Checks every field's range against the receiver's clock `now_ms`.
    pub fn validate(&self, now_ms: i64, limits: &RecordLimits) -> Result<(), RecordError> {
        if self.seq == 0 {
            return Err(RecordError::ZeroSeq);
        }
        if !(-900_000_000..=900_000_000).contains(&self.lat_e7) {
            return Err(RecordError::Latitude(self.lat_e7));
        }
        if !(-1_800_000_000..=1_800_000_000).contains(&self.lon_e7) {
            return Err(RecordError::Longitude(self.lon_e7));
        }
        if self.heading_cdeg >= 36_000 && self.heading_cdeg != u16::MAX {
            return Err(RecordError::Heading(self.heading_cdeg));
        }
        if self.battery_pct > 100 && self.battery_pct != 255 {
            return Err(RecordError::Battery(self.battery_pct));
        }
        if self.time_ms < EARLIEST_MS {
            return Err(RecordError::AncientTimestamp(self.time_ms));
        }
        let ahead_ms = self.time_ms.saturating_sub(now_ms);
        if ahead_ms > limits.max_future_ms {
            return Err(RecordError::FutureTimestamp {
                time_ms: self.time_ms,
                ahead_ms,
                limit_ms: limits.max_future_ms,
            });
        }
        Ok(())
    }

    /// The fixed 32-byte little-endian wire layout.
    pub fn to_wire(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..8].copy_from_slice(&self.time_ms.to_le_bytes());
        b[8..12].copy_from_slice(&self.seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.lat_e7.to_le_bytes());
        b[16..20].copy_from_slice(&self.lon_e7.to_le_bytes());
        b[20..24].copy_from_slice(&self.elevation_dm.to_le_bytes());
        b[24..26].copy_from_slice(&self.speed_cms.to_le_bytes());
        b[26..28].copy_from_slice(&self.heading_cdeg.to_le_bytes());
        b[28..30].copy_from_slice(&self.accuracy_dm.to_le_bytes());
        b[30] = self.battery_pct;
        b[31] = self.flags;
        b
    }

    /// Reads the fixed 32-byte layout (structure only; call [`PositionRecord::validate`]).
    pub fn from_wire(b: &[u8; RECORD_BYTES]) -> PositionRecord {
        let i64_at = |o: usize| {
            i64::from_le_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        PositionRecord {
            time_ms: i64_at(0),
            seq: u32_at(8),
            lat_e7: i32_at(12),
            lon_e7: i32_at(16),
            elevation_dm: i32_at(20),
            speed_cms: u16_at(24),
            heading_cdeg: u16_at(26),
            accuracy_dm: u16_at(28),
            battery_pct: b[30],
            flags: b[31],
        }
    }
}

/// Checks the leading version of a body and returns the rest.
fn split_version(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let [a, b, rest @ ..] = bytes else {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            min: 2,
        });
    };
    let got = u16::from_le_bytes([*a, *b]);
    if got != PROTOCOL_VERSION {
        return Err(DecodeError::Version {
            got,
            supported: PROTOCOL_VERSION,
        });
    }
    Ok(rest)
}

/// Copies untrusted bytes into an aligned buffer (rkyv validation needs alignment).
fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut v = AlignedVec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

/// Encodes a device message as `[u32 LE body length][u16 LE version][rkyv archive]`.
pub fn encode_message(msg: &DeviceMessage) -> Vec<u8> {
    // Serialising owned in-memory values into a Vec cannot fail for these types.
    let archive = rkyv::to_bytes::<rancor::Error>(msg).unwrap_or_else(|_| AlignedVec::new());
    let body_len = archive.len() + 2;
    let mut out = Vec::with_capacity(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&archive);
    out
}

/// Reads the length prefix of a device message; refuses empty and oversized bodies.
pub fn message_len(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len < 3 {
        return Err(DecodeError::TooShort { len, min: 3 });
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLong {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(len)
}

/// Decodes a device message body (without its 4-byte prefix) and validates every record in it.
pub fn decode_message(body: &[u8], now_ms: i64) -> Result<DeviceMessage, DecodeError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLong {
            len: body.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    let archive = split_version(body)?;
    let buf = aligned(archive);
    let msg = rkyv::from_bytes::<DeviceMessage, rancor::Error>(&buf)
        .map_err(|e| DecodeError::Archive(e.to_string()))?;
    if let DeviceMessage::Batch(batch) = &msg {
        if batch.version != PROTOCOL_VERSION {
            return Err(DecodeError::Version {
                got: batch.version,
                supported: PROTOCOL_VERSION,
            });
        }
        let limits = RecordLimits::default();
        for r in &batch.records {
            r.validate(now_ms, &limits)?;
        }
    }
    Ok(msg)
}

/// Encodes up to [`MAX_RECORDS_PER_DATAGRAM`] records as one datagram (extra records are not
/// encoded: callers split larger sets).
pub fn encode_datagram(records: &[PositionRecord]) -> Vec<u8> {
    let n = records.len().min(MAX_RECORDS_PER_DATAGRAM);
    let mut out = Vec::with_capacity(DATAGRAM_HEADER + n * RECORD_BYTES);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.push(n as u8);
    for r in &records[..n] {
        out.extend_from_slice(&r.to_wire());
    }
    out
}

/// Decodes and validates a datagram of records.
pub fn decode_datagram(bytes: &[u8], now_ms: i64) -> Result<Vec<PositionRecord>, DecodeError> {
    let min = DATAGRAM_HEADER + RECORD_BYTES;
    if bytes.len() < min {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    let max = DATAGRAM_HEADER + MAX_RECORDS_PER_DATAGRAM * RECORD_BYTES;
    if bytes.len() > max {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    let rest = split_version(bytes)?;
    let count = usize::from(rest[0]);
    let payload = &rest[1..];
    if count == 0 || count > MAX_RECORDS_PER_DATAGRAM || payload.len() != count * RECORD_BYTES {
        return Err(DecodeError::LengthMismatch {
            expected: count * RECORD_BYTES,
            actual: payload.len(),
        });
    }
    let limits = RecordLimits::default();
    let mut out = Vec::with_capacity(count);
    for chunk in payload.chunks_exact(RECORD_BYTES) {
        let mut b = [0u8; RECORD_BYTES];
        b.copy_from_slice(chunk);
        let r = PositionRecord::from_wire(&b);
        r.validate(now_ms, &limits)?;
        out.push(r);
    }
    Ok(out)
}

/// Encodes a fan frame as JSON (the browser form).
pub fn encode_frame_json(frame: &FanFrame) -> Bytes {
    // Frames contain only strings, integers and finite floats: serde_json cannot fail on them.
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}

/// Decodes and validates a JSON fan frame.
pub fn decode_frame_json(bytes: &[u8]) -> Result<FanFrame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let frame: FanFrame =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    validate_frame(&frame)?;
    Ok(frame)
}

/// Encodes a fan frame in the compact binary form: `[u16 LE version][rkyv archive]`.
pub fn encode_frame_binary(frame: &FanFrame) -> Bytes {
    let archive = rkyv::to_bytes::<rancor::Error>(frame).unwrap_or_else(|_| AlignedVec::new());
    let mut out = Vec::with_capacity(2 + archive.len());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&archive);
    Bytes::from(out)
}

/// Decodes and validates a binary fan frame.
pub fn decode_frame_binary(bytes: &[u8]) -> Result<FanFrame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let archive = split_version(bytes)?;
    let buf = aligned(archive);
    let frame = rkyv::from_bytes::<FanFrame, rancor::Error>(&buf)
        .map_err(|e| DecodeError::Archive(e.to_string()))?;
    validate_frame(&frame)?;
    Ok(frame)
}

/// Checks that a float is finite and within `lo..=hi`.
fn check(field: &'static str, value: f64, lo: f64, hi: f64) -> Result<(), RecordError> {
    if !value.is_finite() {
        return Err(RecordError::NotFinite(field));
    }
    if !(lo..=hi).contains(&value) {
        return Err(RecordError::OutOfRange { field, value });
    }
    Ok(())
}

fn validate_rider(r: &RiderView) -> Result<(), RecordError> {
    check("lat", r.lat, -90.0, 90.0)?;
    check("lon", r.lon, -180.0, 180.0)?;
    check("distanceM", r.distance_m, -1e7, 1e8)?;
    check("speedKmh", f64::from(r.speed_kmh), -1.0, 1e4)
}

fn validate_alert(a: &Alert) -> Result<(), RecordError> {
    check("courseKm", a.course_km, -1e4, 1e5)?;
    if let crate::frames::AlertKind::OffCourse { offset_m } = a.kind {
        check("offsetM", offset_m, 0.0, 1e8)?;
    }
    Ok(())
}

fn validate_snapshot(s: &Snapshot) -> Result<(), RecordError> {
    check("course.lengthM", s.course.length_m, 0.0, 1e8)?;
    check("course.ascentM", s.course.ascent_m, 0.0, 1e7)?;
    for [lon, lat] in &s.course.line {
        check("course.line.lon", *lon, -180.0, 180.0)?;
        check("course.line.lat", *lat, -90.0, 90.0)?;
    }
    for c in &s.course.checkpoints {
        check("checkpoint.distanceM", c.distance_m, 0.0, 1e8)?;
        check("checkpoint.lat", c.lat, -90.0, 90.0)?;
        check("checkpoint.lon", c.lon, -180.0, 180.0)?;
    }
    s.states.iter().try_for_each(validate_rider)?;
    for g in &s.groups {
        check("group.headDistanceM", g.head_distance_m, -1e7, 1e8)?;
    }
    s.recent_alerts.iter().try_for_each(validate_alert)
}

/// Checks every float of a frame for NaN, infinity and range.
pub fn validate_frame(frame: &FanFrame) -> Result<(), RecordError> {
    match frame {
        FanFrame::Snapshot(s) => validate_snapshot(s),
        FanFrame::Delta(d) => {
            d.states.iter().try_for_each(validate_rider)?;
            for g in d.groups.iter().flatten() {
                check("group.headDistanceM", g.head_distance_m, -1e7, 1e8)?;
            }
            d.alerts.iter().try_for_each(validate_alert)
        }
        FanFrame::Alert(a) => validate_alert(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PositionRecord {
        PositionRecord::from_degrees(
            7,
            1_700_000_000_000,
            52.5,
            5.43,
            Some(-3.2),
            Some(11.1),
            Some(93.5),
            Some(4.0),
        )
    }

    #[test]
    fn record_wire_layout_round_trips() {
        let r = record();
        assert_eq!(PositionRecord::from_wire(&r.to_wire()), r);
    }

    #[test]
    fn datagram_round_trips() {
        let rs = vec![record(), PositionRecord { seq: 8, ..record() }];
        let back = decode_datagram(&encode_datagram(&rs), 1_700_000_000_000).unwrap();
        assert_eq!(back, rs);
    }

    #[test]
    fn message_round_trips() {
        let msg = DeviceMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_token: "tok".into(),
            last_acked_seq: 3,
        });
        let bytes = encode_message(&msg);
        let len = message_len([bytes[0], bytes[1], bytes[2], bytes[3]]).unwrap();
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(decode_message(&bytes[4..], 0).unwrap(), msg);
    }
}
