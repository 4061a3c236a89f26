//! The protocol crate's integration tests: round trips of every message and frame, a million
//! random and mutated inputs to every decoder, and one test per error variant.
//!
//! `strategies` builds valid values for proptest; the tests here own the assertions.

mod strategies;

use flevum_protocol::codec::{RECORD_BYTES, validate_frame};
use flevum_protocol::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strategies::*;

/// Receiver clock used by the tests: ahead of every generated timestamp.
const NOW: i64 = 2_000_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn records_round_trip_through_datagrams(records in prop::collection::vec(record(), 1..=32)) {
        let bytes = encode_datagram(&records);
        prop_assert_eq!(decode_datagram(&bytes, NOW).unwrap(), records);
    }

    #[test]
    fn device_messages_round_trip(msg in device_message()) {
        let bytes = encode_message(&msg);
        let len = message_len([bytes[0], bytes[1], bytes[2], bytes[3]]).unwrap();
        prop_assert_eq!(len, bytes.len() - 4);
        prop_assert_eq!(decode_message(&bytes[4..], NOW).unwrap(), msg);
    }

    #[test]
    fn frames_round_trip_binary_and_json(frame in fan_frame()) {
        validate_frame(&frame).unwrap();
        let bin = encode_frame_binary(&frame);
        prop_assert_eq!(&decode_frame_binary(&bin).unwrap(), &frame);
        let json = encode_frame_json(&frame);
        prop_assert_eq!(&decode_frame_json(&json).unwrap(), &frame);
    }
}

#[test]
fn archived_record_is_at_most_32_bytes() {
    assert!(size_of::<ArchivedPositionRecord>() <= 32);
    assert_eq!(RECORD_BYTES, 32);
}

/// Mutates a valid encoding: bit flips, byte overwrites, truncation, extension, or pure noise.
fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut v = valid.to_vec();
    match rng.random_range(0..6) {
        0 => {
            for _ in 0..rng.random_range(1..4) {
                if !v.is_empty() {
                    let i = rng.random_range(0..v.len());
                    v[i] ^= 1 << rng.random_range(0..8);
                }
            }
        }
        1 => {
            if !v.is_empty() {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
        }
        2 => v.truncate(rng.random_range(0..=v.len())),
        3 => {
            for _ in 0..rng.random_range(1..64) {
                v.push(rng.random());
            }
        }
        4 => {
            for b in v.iter_mut().skip(3) {
                if rng.random_bool(0.1) {
                    *b = rng.random();
                }
            }
        }
        _ => {
            let n = rng.random_range(0..256);
            v = (0..n).map(|_| rng.random()).collect();
        }
    }
    v
}

/// Draws one value from a strategy with a deterministic runner.
fn sample<T: std::fmt::Debug>(
    runner: &mut proptest::test_runner::TestRunner,
    s: impl Strategy<Value = T>,
) -> T {
    s.new_tree(runner).unwrap().current()
}

/// A million random and mutated inputs, spread over every decoder; each must return an error or a
/// valid value, never panic (a panic fails the test).
#[test]
fn a_million_hostile_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xF1E7);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let datagrams: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            encode_datagram(&sample(
                &mut runner,
                prop::collection::vec(record(), 1..=32),
            ))
        })
        .collect();
    let messages: Vec<Vec<u8>> = (0..16)
        .map(|_| encode_message(&sample(&mut runner, device_message()))[4..].to_vec())
        .collect();
    let frames: Vec<FanFrame> = (0..8).map(|_| sample(&mut runner, fan_frame())).collect();
    let bin_frames: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| encode_frame_binary(f).to_vec())
        .collect();
    let json_frames: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| encode_frame_json(f).to_vec())
        .collect();

    let total = 1_000_000usize;
    let (mut ok, mut err) = (0usize, 0usize);
    for i in 0..total {
        let valid = match i % 5 {
            0 => {
                let input = mutate(&mut rng, &datagrams[i % datagrams.len()]);
                let r = decode_datagram(&input, NOW);
                if let Ok(records) = &r {
                    for rec in records {
                        rec.validate(NOW, &RecordLimits::default()).unwrap();
                    }
                }
                r.is_ok()
            }
            1 => {
                let input = mutate(&mut rng, &messages[i % messages.len()]);
                decode_message(&input, NOW).is_ok()
            }
            2 => {
                let input = mutate(&mut rng, &bin_frames[i % bin_frames.len()]);
                let r = decode_frame_binary(&input);
                if let Ok(f) = &r {
                    validate_frame(f).unwrap();
                }
                r.is_ok()
            }
            3 => {
                let input = mutate(&mut rng, &json_frames[i % json_frames.len()]);
                decode_frame_json(&input).is_ok()
            }
            _ => message_len(rng.random()).is_ok(),
        };
        if valid {
            ok += 1;
        } else {
            err += 1;
        }
    }
    assert_eq!(ok + err, total);
    // Mutations must be rejected most of the time, or the test exercises nothing.
    assert!(
        err > total / 2,
        "only {err} of {total} inputs were rejected"
    );
    eprintln!("hostile inputs: {total} decoded, {ok} valid, {err} rejected with a typed error");
}

fn good_record() -> PositionRecord {
    PositionRecord::from_degrees(1, NOW - 1000, 45.0, 7.0, None, None, None, None)
}

#[test]
fn wrong_version_is_refused() {
    let mut bytes = encode_datagram(&[good_record()]);
    bytes[0] = 99;
    assert!(matches!(
        decode_datagram(&bytes, NOW),
        Err(DecodeError::Version { got: 99, .. })
    ));
    let mut frame = encode_frame_binary(&FanFrame::Alert(sample_alert())).to_vec();
    frame[1] = 7;
    assert!(matches!(
        decode_frame_binary(&frame),
        Err(DecodeError::Version { .. })
    ));
}

#[test]
fn short_and_long_inputs_are_refused() {
    assert!(matches!(
        decode_datagram(&[1, 0], NOW),
        Err(DecodeError::TooShort { .. })
    ));
    assert!(matches!(
        decode_datagram(&[0; 4096], NOW),
        Err(DecodeError::TooLong { .. })
    ));
    assert!(matches!(
        message_len(0u32.to_le_bytes()),
        Err(DecodeError::TooShort { .. })
    ));
    assert!(matches!(
        message_len(u32::MAX.to_le_bytes()),
        Err(DecodeError::TooLong { .. })
    ));
    let mut bytes = encode_datagram(&[good_record()]);
    bytes[2] = 2; // claims two records, carries one
    assert!(matches!(
        decode_datagram(&bytes, NOW),
        Err(DecodeError::LengthMismatch { .. })
    ));
}

#[test]
fn out_of_range_values_have_their_own_errors() {
    let check = |r: PositionRecord| decode_datagram(&encode_datagram(&[r]), NOW).unwrap_err();
    let base = good_record();
    assert_eq!(
        check(PositionRecord {
            lat_e7: 910_000_000,
            ..base
        }),
        DecodeError::Invalid(RecordError::Latitude(910_000_000))
    );
    assert_eq!(
        check(PositionRecord {
            lon_e7: -1_800_000_001,
            ..base
        }),
        DecodeError::Invalid(RecordError::Longitude(-1_800_000_001))
    );
    assert!(matches!(
        check(PositionRecord {
            time_ms: NOW + 3_600_000,
            ..base
        }),
        DecodeError::Invalid(RecordError::FutureTimestamp {
            ahead_ms: 3_600_000,
            ..
        })
    ));
    assert!(matches!(
        check(PositionRecord { time_ms: 5, ..base }),
        DecodeError::Invalid(RecordError::AncientTimestamp(5))
    ));
    assert!(matches!(
        check(PositionRecord {
            heading_cdeg: 36_000,
            ..base
        }),
        DecodeError::Invalid(RecordError::Heading(36_000))
    ));
    assert!(matches!(
        check(PositionRecord {
            battery_pct: 101,
            ..base
        }),
        DecodeError::Invalid(RecordError::Battery(101))
    ));
    assert!(matches!(
        check(PositionRecord { seq: 0, ..base }),
        DecodeError::Invalid(RecordError::ZeroSeq)
    ));
}

#[test]
fn nan_in_a_frame_is_refused_in_both_forms() {
    let mut alert = sample_alert();
    alert.course_km = f64::NAN;
    let frame = FanFrame::Alert(alert);
    let bin = encode_frame_binary(&frame);
    assert_eq!(
        decode_frame_binary(&bin),
        Err(DecodeError::Invalid(RecordError::NotFinite("courseKm")))
    );
    // serde_json writes NaN as null, which the schema refuses.
    assert!(matches!(
        decode_frame_json(&encode_frame_json(&frame)),
        Err(DecodeError::Json(_))
    ));
}

#[test]
fn batch_records_are_validated_inside_messages() {
    let msg = DeviceMessage::Batch(PositionBatch {
        version: PROTOCOL_VERSION,
        records: vec![
            good_record(),
            PositionRecord {
                lat_e7: i32::MAX,
                ..good_record()
            },
        ],
    });
    let bytes = encode_message(&msg);
    assert!(matches!(
        decode_message(&bytes[4..], NOW),
        Err(DecodeError::Invalid(RecordError::Latitude(_)))
    ));
}

#[test]
fn garbage_archive_is_a_typed_error() {
    let mut body = PROTOCOL_VERSION.to_le_bytes().to_vec();
    body.extend_from_slice(&[0xFF; 40]);
    assert!(matches!(
        decode_message(&body, NOW),
        Err(DecodeError::Archive(_))
    ));
}
