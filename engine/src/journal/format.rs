//! On-disk format of journal segments: the segment header and the entry frame.
//!
//! A segment is `[header 24 B]` followed by frames `[len u32][crc32 u32][kind u8][payload]`, all
//! little-endian; `len` counts `kind + payload`, the checksum covers `len`, `kind` and `payload`.
//! Owns encoding and decoding of single frames only; files and recovery live in `segment`.

use flevum_protocol::PositionRecord;
use flevum_protocol::codec::RECORD_BYTES;

use super::JournalEntry;
use super::error::{CorruptionKind, JournalError};

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLVMJRNL";
/// Version of the segment format written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header: magic, version u32, flags u32, first entry index u64.
pub const HEADER_LEN: u64 = 24;
/// Size of the `len` + `crc32` prefix of a frame.
pub const FRAME_PREFIX_LEN: usize = 8;
/// Largest `len` (kind + payload) accepted, to bound memory when reading damaged files.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

/// Entry kind: a position fix (`arrival_ms i64`, `rider_id u32`, 32-byte record).
pub const KIND_FIX: u8 = 1;
/// Entry kind: an admin command (`at_ms i64`, UTF-8 JSON).
pub const KIND_ADMIN: u8 = 2;
/// Entry kind: an erased entry (GDPR erasure); keeps entry indexes stable, carries no data.
pub const KIND_ERASED: u8 = 3;

/// Payload size of a fix entry.
pub const FIX_PAYLOAD_LEN: usize = 8 + 4 + RECORD_BYTES;
/// Whole frame size of a fix entry (prefix + kind + payload).
pub const FIX_FRAME_LEN: usize = FRAME_PREFIX_LEN + 1 + FIX_PAYLOAD_LEN;

/// A decoded frame: a real entry, or the tombstone an erasure left behind.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A fix or admin entry.
    Entry(JournalEntry),
    /// An erased entry (no content).
    Erased,
}

/// The segment header for a segment whose first entry has index `first_index`.
pub fn encode_header(first_index: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&0u32.to_le_bytes());
    h[16..24].copy_from_slice(&first_index.to_le_bytes());
    h
}

/// Parses a segment header; returns the first entry index, or `None` when magic or version are
/// wrong.
pub fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Option<u64> {
    if h[0..8] != SEGMENT_MAGIC {
        return None;
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != FORMAT_VERSION {
        return None;
    }
    let mut idx = [0u8; 8];
    idx.copy_from_slice(&h[16..24]);
    Some(u64::from_le_bytes(idx))
}

fn push_frame(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) -> Result<(), JournalError> {
    let body_len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    if body_len > MAX_ENTRY_BYTES {
        return Err(JournalError::EntryTooLarge {
            bytes: body_len,
            max: MAX_ENTRY_BYTES,
        });
    }
    // Fits in u32 because MAX_ENTRY_BYTES does.
    let len = (body_len as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(&[kind]);
    for p in parts {
        hasher.update(p);
    }
    out.extend_from_slice(&len);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.push(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(())
}

/// Appends the frame of `entry` to `out`.
pub fn encode_entry(entry: &JournalEntry, out: &mut Vec<u8>) -> Result<(), JournalError> {
    match entry {
        JournalEntry::Fix {
            arrival_ms,
            rider_id,
            record,
        } => push_frame(
            out,
            KIND_FIX,
            &[
                &arrival_ms.to_le_bytes(),
                &rider_id.to_le_bytes(),
                &record.to_wire(),
            ],
        ),
        JournalEntry::Admin {
            at_ms,
            command_json,
        } => push_frame(
            out,
            KIND_ADMIN,
            &[&at_ms.to_le_bytes(), command_json.as_bytes()],
        ),
    }
}

/// Appends the frame of an erased entry (tombstone) to `out`.
pub fn encode_erased(out: &mut Vec<u8>) {
    // Cannot exceed the maximum: the body is one byte.
    let len = 1u32.to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(&[KIND_ERASED]);
    out.extend_from_slice(&len);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.push(KIND_ERASED);
}

/// Parses a frame prefix into `(len, crc)`; `Err` when `len` is impossible.
pub fn decode_prefix(p: &[u8; FRAME_PREFIX_LEN]) -> Result<(usize, u32), CorruptionKind> {
    let len = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize;
    let crc = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    if len == 0 || len > MAX_ENTRY_BYTES {
        return Err(CorruptionKind::BadLength);
    }
    Ok((len, crc))
}

/// Verifies the checksum of `body` (`kind + payload`) and decodes it.
pub fn decode_body(body: &[u8], crc: u32) -> Result<Decoded, CorruptionKind> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&(body.len() as u32).to_le_bytes());
    hasher.update(body);
    if hasher.finalize() != crc {
        return Err(CorruptionKind::Checksum);
    }
    let Some((&kind, payload)) = body.split_first() else {
        return Err(CorruptionKind::BadLength);
    };
    match kind {
        KIND_FIX => {
            let Ok(p) = <&[u8; FIX_PAYLOAD_LEN]>::try_from(payload) else {
                return Err(CorruptionKind::BadPayload);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[0..8]);
            let mut r = [0u8; 4];
            r.copy_from_slice(&p[8..12]);
            let mut rec = [0u8; RECORD_BYTES];
            rec.copy_from_slice(&p[12..]);
            Ok(Decoded::Entry(JournalEntry::Fix {
                arrival_ms: i64::from_le_bytes(a),
                rider_id: u32::from_le_bytes(r),
                record: PositionRecord::from_wire(&rec),
            }))
        }
        KIND_ADMIN => {
            if payload.len() < 8 {
                return Err(CorruptionKind::BadPayload);
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&payload[0..8]);
            let Ok(json) = std::str::from_utf8(&payload[8..]) else {
                return Err(CorruptionKind::BadPayload);
            };
            Ok(Decoded::Entry(JournalEntry::Admin {
                at_ms: i64::from_le_bytes(a),
                command_json: json.to_owned(),
            }))
        }
        KIND_ERASED if payload.is_empty() => Ok(Decoded::Erased),
        KIND_ERASED => Err(CorruptionKind::BadPayload),
        _ => Err(CorruptionKind::UnknownKind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(rider_id: u32, seq: u32) -> JournalEntry {
        JournalEntry::Fix {
            arrival_ms: 1_764_000_000_000 + i64::from(seq),
            rider_id,
            record: PositionRecord::from_degrees(
                seq,
                1_764_000_000_000,
                52.1,
                5.2,
                Some(3.5),
                Some(9.0),
                Some(180.0),
                Some(4.0),
            ),
        }
    }

    fn decode_one(buf: &[u8]) -> Result<Decoded, CorruptionKind> {
        let mut p = [0u8; FRAME_PREFIX_LEN];
        p.copy_from_slice(&buf[..FRAME_PREFIX_LEN]);
        let (len, crc) = decode_prefix(&p)?;
        decode_body(&buf[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + len], crc)
    }

    #[test]
    fn fix_frame_round_trips_and_has_fixed_size() {
        let e = fix(7, 3);
        let mut buf = Vec::new();
        encode_entry(&e, &mut buf).unwrap();
        assert_eq!(buf.len(), FIX_FRAME_LEN);
        assert_eq!(decode_one(&buf), Ok(Decoded::Entry(e)));
    }

    #[test]
    fn admin_frame_round_trips() {
        let e = JournalEntry::Admin {
            at_ms: -5,
            command_json: r#"{"cmd":"start","ünï":"✓"}"#.to_owned(),
        };
        let mut buf = Vec::new();
        encode_entry(&e, &mut buf).unwrap();
        assert_eq!(decode_one(&buf), Ok(Decoded::Entry(e)));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_entry(&fix(1, 1), &mut buf).unwrap();
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                // A flipped length may point past the buffer: that is a torn/bad frame too.
                let mut p = [0u8; FRAME_PREFIX_LEN];
                p.copy_from_slice(&b[..FRAME_PREFIX_LEN]);
                let res = match decode_prefix(&p) {
                    Err(k) => Err(k),
                    Ok((len, _)) if FRAME_PREFIX_LEN + len > b.len() => {
                        Err(CorruptionKind::TornEntry)
                    }
                    Ok((len, crc)) => {
                        decode_body(&b[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + len], crc)
                    }
                };
                assert!(
                    res.is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn header_round_trips_and_rejects_wrong_magic_or_version() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Some(42));
        let mut bad = h;
        bad[0] ^= 0xff;
        assert_eq!(decode_header(&bad), None);
        let mut v2 = h;
        v2[8] = 2;
        assert_eq!(decode_header(&v2), None);
    }

    #[test]
    fn oversized_admin_entry_is_refused() {
        let e = JournalEntry::Admin {
            at_ms: 0,
            command_json: "x".repeat(MAX_ENTRY_BYTES),
        };
        let mut buf = Vec::new();
        assert!(matches!(
            encode_entry(&e, &mut buf),
            Err(JournalError::EntryTooLarge { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn tombstone_decodes_as_erased() {
        let mut buf = Vec::new();
        encode_erased(&mut buf);
        assert_eq!(decode_one(&buf), Ok(Decoded::Erased));
    }
}
