//! proptest strategies that build valid protocol values (in-range records, finite frames).
//!
//! Only valid values: the hostile-input test makes invalid ones by mutating these encodings.

use flevum_protocol::*;
use proptest::prelude::*;

/// A record with every field in range and a timestamp in 2001..2033.
pub fn record() -> impl Strategy<Value = PositionRecord> {
    (
        (1u32..u32::MAX, 978_307_200_000i64..1_999_999_999_999),
        (
            -900_000_000i32..=900_000_000,
            -1_800_000_000i32..=1_800_000_000,
        ),
        (any::<i32>(), any::<u16>()),
        (prop_oneof![0u16..36_000, Just(u16::MAX)], any::<u16>()),
        (prop_oneof![0u8..=100, Just(255u8)], any::<u8>()),
    )
        .prop_map(
            |(
                (seq, time_ms),
                (lat_e7, lon_e7),
                (elevation_dm, speed_cms),
                (heading_cdeg, accuracy_dm),
                (battery_pct, flags),
            )| PositionRecord {
                time_ms,
                seq,
                lat_e7,
                lon_e7,
                elevation_dm,
                speed_cms,
                heading_cdeg,
                accuracy_dm,
                battery_pct,
                flags,
            },
        )
}

fn refusal_reason() -> impl Strategy<Value = RefusalReason> {
    prop_oneof![
        Just(RefusalReason::BadToken),
        Just(RefusalReason::UnsupportedVersion),
        Just(RefusalReason::RaceClosed),
        Just(RefusalReason::Overloaded),
        Just(RefusalReason::Malformed),
    ]
}

/// Any device message.
pub fn device_message() -> impl Strategy<Value = DeviceMessage> {
    prop_oneof![
        (".{0,64}", any::<u32>()).prop_map(|(device_token, last_acked_seq)| {
            DeviceMessage::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                device_token,
                last_acked_seq,
            })
        }),
        (
            "[a-z0-9-]{1,20}",
            any::<u32>(),
            any::<i64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(race_id, rider_id, server_time_ms, report_interval_ms, acked_seq)| {
                    DeviceMessage::Welcome(Welcome {
                        protocol_version: PROTOCOL_VERSION,
                        race_id,
                        rider_id,
                        server_time_ms,
                        report_interval_ms,
                        acked_seq,
                    })
                }
            ),
        (refusal_reason(), ".{0,40}", any::<u32>()).prop_map(
            |(reason, message, retry_after_ms)| {
                DeviceMessage::Refusal(Refusal {
                    reason,
                    message,
                    retry_after_ms,
                })
            }
        ),
        prop::collection::vec(record(), 0..100).prop_map(|records| {
            DeviceMessage::Batch(PositionBatch {
                version: PROTOCOL_VERSION,
                records,
            })
        }),
        any::<u32>().prop_map(|acked_seq| DeviceMessage::Ack(Ack { acked_seq })),
    ]
}

fn rider_status() -> impl Strategy<Value = RiderStatus> {
    prop_oneof![
        Just(RiderStatus::NotStarted),
        Just(RiderStatus::Racing),
        Just(RiderStatus::Stopped),
        Just(RiderStatus::OffCourse),
        Just(RiderStatus::SignalLost),
        Just(RiderStatus::Finished),
        Just(RiderStatus::Abandoned),
    ]
}

fn rider_view() -> impl Strategy<Value = RiderView> {
    (
        (
            any::<u32>(),
            -90.0f64..90.0,
            -180.0f64..180.0,
            0.0f64..400_000.0,
        ),
        (
            0.0f32..120.0,
            any::<u32>(),
            any::<Option<i64>>(),
            any::<Option<i64>>(),
        ),
        (
            any::<Option<u32>>(),
            rider_status(),
            any::<i64>(),
            any::<Option<i64>>(),
            any::<Option<u8>>(),
        ),
    )
        .prop_map(
            |(
                (rider_id, lat, lon, distance_m),
                (speed_kmh, rank, gap_to_leader_ms, gap_to_ahead_ms),
                (group_id, status, last_fix_ms, eta_finish_ms, battery_pct),
            )| RiderView {
                rider_id,
                lat,
                lon,
                distance_m,
                speed_kmh,
                rank,
                gap_to_leader_ms,
                gap_to_ahead_ms,
                group_id,
                status,
                last_fix_ms,
                eta_finish_ms,
                battery_pct,
            },
        )
}

fn group_view() -> impl Strategy<Value = GroupView> {
    (
        any::<u32>(),
        prop_oneof![
            Just(GroupKind::Breakaway),
            Just(GroupKind::Peloton),
            Just(GroupKind::Chasers),
            Just(GroupKind::Stragglers)
        ],
        prop::collection::vec(any::<u32>(), 0..20),
        0.0f64..400_000.0,
        any::<Option<i64>>(),
        any::<Option<i64>>(),
    )
        .prop_map(
            |(group_id, kind, riders, head_distance_m, gap_to_ahead_ms, gap_to_leader_ms)| {
                GroupView {
                    group_id,
                    kind,
                    riders,
                    head_distance_m,
                    gap_to_ahead_ms,
                    gap_to_leader_ms,
                }
            },
        )
}

fn alert_kind() -> impl Strategy<Value = AlertKind> {
    prop_oneof![
        Just(AlertKind::RaceStarted),
        (any::<u32>(), any::<i64>())
            .prop_map(|(group_id, gap_ms)| AlertKind::BreakawayFormed { group_id, gap_ms }),
        any::<u32>().prop_map(|group_id| AlertKind::BreakawayCaught { group_id }),
        (any::<u32>(), any::<u32>()).prop_map(|(group_id, new_group_id)| AlertKind::GroupSplit {
            group_id,
            new_group_id
        }),
        (any::<u32>(), any::<i64>(), any::<i64>(), any::<bool>()).prop_map(
            |(group_id, threshold_ms, gap_ms, growing)| AlertKind::GapChanged {
                group_id,
                threshold_ms,
                gap_ms,
                growing
            }
        ),
        any::<Option<u32>>().prop_map(|previous| AlertKind::LeaderChanged { previous }),
        Just(AlertKind::RiderStopped),
        Just(AlertKind::PossibleCrash),
        any::<u32>().prop_map(|group_id| AlertKind::DroppedFromGroup { group_id }),
        (0.0f64..10_000.0).prop_map(|offset_m| AlertKind::OffCourse { offset_m }),
        Just(AlertKind::BackOnCourse),
        Just(AlertKind::SignalLost),
        Just(AlertKind::SignalRegained),
        (0u8..=100).prop_map(|battery_pct| AlertKind::LowBattery { battery_pct }),
        ".{0,20}".prop_map(|checkpoint| AlertKind::CheckpointLeader { checkpoint }),
        (any::<u32>(), any::<i64>()).prop_map(|(position, race_time_ms)| AlertKind::Finisher {
            position,
            race_time_ms
        }),
        Just(AlertKind::Sos),
        proptest::option::of(any::<u32>())
            .prop_map(|finish_position| AlertKind::RiderAbandoned { finish_position }),
        proptest::option::of(any::<u32>())
            .prop_map(|finish_position| AlertKind::RiderReinstated { finish_position }),
    ]
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Info),
        Just(Severity::Notable),
        Just(Severity::Critical)
    ]
}

/// Any valid alert.
pub fn alert() -> impl Strategy<Value = Alert> {
    (
        (any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>()),
        (
            0.0f64..400.0,
            prop::collection::vec(any::<u32>(), 0..8),
            severity(),
            alert_kind(),
        ),
    )
        .prop_map(
            |((seq, epoch, time_ms, race_time_ms), (course_km, riders, severity, kind))| Alert {
                seq,
                epoch,
                time_ms,
                race_time_ms,
                course_km,
                riders,
                severity,
                kind,
            },
        )
}

/// A fixed, valid alert for the error-variant tests.
pub fn sample_alert() -> Alert {
    Alert {
        seq: 1,
        epoch: 1,
        time_ms: 1_700_000_000_000,
        race_time_ms: 60_000,
        course_km: 12.5,
        riders: vec![3, 4],
        severity: Severity::Notable,
        kind: AlertKind::BreakawayFormed {
            group_id: 2,
            gap_ms: 15_000,
        },
    }
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        (
            "[a-z]{1,8}",
            ".{0,16}",
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            any::<i64>(),
        ),
        (
            prop::collection::vec(
                (-180.0f64..180.0, -90.0f64..90.0).prop_map(|(a, b)| [a, b]),
                0..20,
            ),
            prop::collection::vec(
                ("[A-Z ]{0,8}", 0.0f64..1e5, -90.0f64..90.0, -180.0f64..180.0),
                0..4,
            ),
        ),
        prop::collection::vec((any::<u32>(), "[0-9]{1,3}", ".{0,12}", ".{0,12}"), 0..6),
        prop::collection::vec(rider_view(), 0..6),
        prop::collection::vec(group_view(), 0..3),
        prop::collection::vec(alert(), 0..3),
    )
        .prop_map(
            |(
                (race_id, race_name, epoch, tick, time_ms, start_ms),
                (line, cps),
                riders,
                states,
                groups,
                recent_alerts,
            )| Snapshot {
                race_id,
                race_name,
                epoch,
                tick,
                time_ms,
                start_ms,
                course: CourseSummary {
                    name: "course".into(),
                    length_m: 1000.0,
                    ascent_m: 10.0,
                    line,
                    checkpoints: cps
                        .into_iter()
                        .map(|(name, distance_m, lat, lon)| CheckpointInfo {
                            name,
                            distance_m,
                            lat,
                            lon,
                        })
                        .collect(),
                },
                riders: riders
                    .into_iter()
                    .map(|(rider_id, bib, name, team)| RiderInfo {
                        rider_id,
                        bib,
                        name,
                        team,
                    })
                    .collect(),
                states,
                groups,
                recent_alerts,
            },
        )
}

/// Any valid fan frame.
pub fn fan_frame() -> impl Strategy<Value = FanFrame> {
    prop_oneof![
        snapshot().prop_map(FanFrame::Snapshot),
        (
            ("[a-z]{1,8}", any::<u64>(), any::<u64>(), any::<i64>()),
            prop::collection::vec(rider_view(), 0..8),
            prop::option::of(prop::collection::vec(group_view(), 0..3)),
            prop::collection::vec(alert(), 0..3),
        )
            .prop_map(
                |((race_id, epoch, tick, time_ms), states, groups, alerts)| {
                    FanFrame::Delta(Delta {
                        race_id,
                        epoch,
                        tick,
                        time_ms,
                        states,
                        groups,
                        alerts,
                    })
                }
            ),
        alert().prop_map(FanFrame::Alert),
    ]
}
