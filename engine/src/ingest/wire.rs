//! Stream framing and per-record-tolerant decoding for the ingest.
//!
//! Owns reading one length-prefixed message from a QUIC stream, and decoding batches and datagrams
//! so that one invalid record does not discard its neighbours (the protocol's strict decoders fail
//! the whole message; here the archive is still checked structurally and records are validated
//! one by one by the caller). Does not validate record values.

use flevum_protocol::codec::RECORD_BYTES;
use flevum_protocol::{
    DecodeError, DeviceMessage, MAX_RECORDS_PER_DATAGRAM, PROTOCOL_VERSION, PositionRecord,
    RecordError, decode_datagram, decode_message, message_len,
};
use rkyv::rancor;
use rkyv::util::AlignedVec;

/// Why a message could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The stream or connection failed.
    #[error("stream: {0}")]
    Stream(String),
    /// The bytes did not decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
}

/// Reads one message body (without prefix); `Ok(None)` at a clean end of stream.
pub(crate) async fn read_body(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(ReadError::Stream(e.to_string())),
    }
    let len = message_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| ReadError::Stream(e.to_string()))?;
    Ok(Some(body))
}

/// Decodes a message body; a `Batch` with invalid records is still returned (records unvalidated).
pub(crate) fn decode_message_tolerant(
    body: &[u8],
    now_ms: i64,
) -> Result<DeviceMessage, DecodeError> {
    match decode_message(body, now_ms) {
        Err(DecodeError::Invalid(_)) => {
            // Structure and version were fine (they are checked before values): decode again
            // without value checks.
            let archive = body.get(2..).ok_or(DecodeError::TooShort {
                len: body.len(),
                min: 2,
            })?;
            let mut buf = AlignedVec::<16>::with_capacity(archive.len());
            buf.extend_from_slice(archive);
            let msg = rkyv::from_bytes::<DeviceMessage, rancor::Error>(&buf)
                .map_err(|e| DecodeError::Archive(e.to_string()))?;
            match &msg {
                DeviceMessage::Batch(b) if b.version != PROTOCOL_VERSION => {
                    Err(DecodeError::Version {
                        got: b.version,
                        supported: PROTOCOL_VERSION,
                    })
                }
                _ => Ok(msg),
            }
        }
        other => other,
    }
}

/// Decodes a datagram; when some records are out of range, returns all of them unvalidated.
pub(crate) fn decode_datagram_tolerant(
    bytes: &[u8],
    now_ms: i64,
) -> Result<Vec<PositionRecord>, DecodeError> {
    match decode_datagram(bytes, now_ms) {
        Err(DecodeError::Invalid(_)) => {
            // Length and version were checked before values, so the layout is sound.
            let payload = bytes.get(3..).unwrap_or_default();
            let count = usize::from(bytes.get(2).copied().unwrap_or(0));
            if count == 0
                || count > MAX_RECORDS_PER_DATAGRAM
                || payload.len() != count * RECORD_BYTES
            {
                return Err(DecodeError::LengthMismatch {
                    expected: count * RECORD_BYTES,
                    actual: payload.len(),
                });
            }
            Ok(payload
                .chunks_exact(RECORD_BYTES)
                .map(|c| {
                    let mut b = [0u8; RECORD_BYTES];
                    b.copy_from_slice(c);
                    PositionRecord::from_wire(&b)
                })
                .collect())
        }
        other => other,
    }
}

/// Metric label for a record validation failure.
pub(crate) fn reason_label(e: &RecordError) -> &'static str {
    match e {
        RecordError::Latitude(_) => "latitude",
        RecordError::Longitude(_) => "longitude",
        RecordError::Heading(_) => "heading",
        RecordError::Battery(_) => "battery",
        RecordError::FutureTimestamp { .. } => "future_timestamp",
        RecordError::AncientTimestamp(_) => "ancient_timestamp",
        RecordError::ZeroSeq => "zero_seq",
        RecordError::NotFinite(_) | RecordError::OutOfRange { .. } => "out_of_range",
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flevum_protocol::{PositionBatch, encode_datagram, encode_message};

    fn rec(seq: u32) -> PositionRecord {
        PositionRecord::from_degrees(seq, 1_700_000_000_000, 52.0, 5.0, None, None, None, None)
    }

    #[test]
    fn batch_with_bad_record_keeps_all() {
        let bad = PositionRecord {
            lat_e7: 1_000_000_000,
            ..rec(2)
        };
        let msg = DeviceMessage::Batch(PositionBatch {
            version: PROTOCOL_VERSION,
            records: vec![rec(1), bad, rec(3)],
        });
        let bytes = encode_message(&msg);
        assert!(decode_message(&bytes[4..], 1_700_000_000_000).is_err());
        let back = decode_message_tolerant(&bytes[4..], 1_700_000_000_000).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn datagram_with_bad_record_keeps_all() {
        let bad = PositionRecord {
            battery_pct: 200,
            ..rec(2)
        };
        let bytes = encode_datagram(&[rec(1), bad]);
        let back = decode_datagram_tolerant(&bytes, 1_700_000_000_000).unwrap();
        assert_eq!(back, vec![rec(1), bad]);
        assert!(decode_datagram_tolerant(&bytes[..40], 0).is_err());
    }
}
