//! Journal tests against real files in a temporary directory: round trips, reopen, torn tails,
//! mid-journal corruption, segment rolling, concurrent group commit, injected write failures,
//! GDPR erasure and GPX export, race-id validation, retention.
//!
//! Fault injection uses `Journal::inject_write_failure` (tests run as root, permissions would not
//! stop writes).

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use flevum_engine::journal::{
    CorruptionKind, FIX_FRAME_LEN, HEADER_LEN, Journal, JournalConfig, JournalEntry, JournalError,
    apply_retention_at, erase_rider, export_rider_gpx, list_races, replay,
};
use flevum_protocol::PositionRecord;

const T0: i64 = 1_764_082_245_000;

fn config(dir: &tempfile::TempDir) -> JournalConfig {
    JournalConfig {
        dir: dir.path().to_path_buf(),
        ..JournalConfig::default()
    }
}

fn fix(rider_id: u32, seq: u32) -> JournalEntry {
    JournalEntry::Fix {
        arrival_ms: T0 + i64::from(seq) * 1000 + 37,
        rider_id,
        record: PositionRecord::from_degrees(
            seq,
            T0 + i64::from(seq) * 1000,
            52.0 + f64::from(seq) * 1e-4,
            5.0 + f64::from(rider_id) * 1e-3,
            Some(10.0 + f64::from(seq)),
            Some(8.5),
            Some(90.0),
            Some(3.0),
        ),
    }
}

fn admin(n: i64) -> JournalEntry {
    JournalEntry::Admin {
        at_ms: T0 + n,
        command_json: format!(r#"{{"cmd":"move_checkpoint","n":{n},"name":"Col d’Izoard"}}"#),
    }
}

fn segments(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn all_entries(cfg: &JournalConfig, race: &str) -> Vec<JournalEntry> {
    let mut v = Vec::new();
    replay(cfg, race, |e| v.push(e)).unwrap();
    v
}

#[tokio::test]
async fn fixes_and_admin_entries_round_trip_through_reopen_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let written = vec![fix(1, 1), admin(5), fix(2, 1), fix(1, 2), admin(9)];
    {
        let (j, rec) = Journal::open(&cfg, "ragbrai-2026").unwrap();
        assert!(rec.entries.is_empty());
        assert_eq!(rec.torn_bytes_truncated, 0);
        j.append(written[..2].to_vec()).await.unwrap();
        j.append(written[2..].to_vec()).await.unwrap();
        j.append(Vec::new()).await.unwrap();
        let s = j.stats();
        assert_eq!(s.entries, 5);
        assert!(s.fsyncs >= 1 && s.fsyncs <= 2, "{s:?}");
        assert!(!s.poisoned);
    }
    let (_j, rec) = Journal::open(&cfg, "ragbrai-2026").unwrap();
    assert_eq!(rec.entries, written);
    assert_eq!(rec.segments, 1);
    assert_eq!(rec.torn_bytes_truncated, 0);
    // Replay works while the journal is open (read-only).
    assert_eq!(all_entries(&cfg, "ragbrai-2026"), written);
}

#[tokio::test]
async fn reopen_resumes_appending_after_the_last_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    for round in 0..3u32 {
        let (j, rec) = Journal::open(&cfg, "r").unwrap();
        assert_eq!(rec.entries.len() as u32, round * 2);
        j.append(vec![fix(1, round * 2 + 1), fix(1, round * 2 + 2)])
            .await
            .unwrap();
    }
    let got = all_entries(&cfg, "r");
    let want: Vec<_> = (1..=6).map(|s| fix(1, s)).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_second_open_of_the_same_race_is_refused_while_the_first_is_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let (j, _) = Journal::open(&cfg, "r").unwrap();
    assert!(matches!(
        Journal::open(&cfg, "r"),
        Err(JournalError::Locked { .. })
    ));
    drop(j);
    Journal::open(&cfg, "r").unwrap();
}

async fn write_ten(cfg: &JournalConfig) -> PathBuf {
    let (j, _) = Journal::open(cfg, "torn").unwrap();
    j.append((1..=10).map(|s| fix(3, s)).collect())
        .await
        .unwrap();
    segments(&cfg.dir.join("torn")).pop().unwrap()
}

#[tokio::test]
async fn torn_tail_cut_mid_entry_is_truncated_and_earlier_entries_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let seg = write_ten(&cfg).await;
    let len = fs::metadata(&seg).unwrap().len();
    assert_eq!(len, HEADER_LEN + 10 * FIX_FRAME_LEN as u64);
    // Cut the last entry in half.
    let cut = (FIX_FRAME_LEN / 2) as u64;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - cut)
        .unwrap();
    // Replay skips the tail but leaves the file alone.
    let mut n = 0;
    let st = replay(&cfg, "torn", |_| n += 1).unwrap();
    assert_eq!((n, st.torn_bytes), (9, FIX_FRAME_LEN as u64 - cut));
    assert_eq!(fs::metadata(&seg).unwrap().len(), len - cut);

    let (j, rec) = Journal::open(&cfg, "torn").unwrap();
    assert_eq!(rec.entries, (1..=9).map(|s| fix(3, s)).collect::<Vec<_>>());
    assert_eq!(rec.torn_bytes_truncated, FIX_FRAME_LEN as u64 - cut);
    let t = rec.truncated.as_ref().unwrap();
    assert_eq!(t.kind, CorruptionKind::TornEntry);
    assert_eq!(t.offset, HEADER_LEN + 9 * FIX_FRAME_LEN as u64);
    assert_eq!(t.later_valid_frame_at, None);
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        HEADER_LEN + 9 * FIX_FRAME_LEN as u64
    );
    // Appends continue right after the last good entry.
    j.append(vec![fix(3, 11)]).await.unwrap();
    drop(j);
    let mut want: Vec<_> = (1..=9).map(|s| fix(3, s)).collect();
    want.push(fix(3, 11));
    assert_eq!(all_entries(&cfg, "torn"), want);
}

#[tokio::test]
async fn flipped_byte_in_the_last_entry_is_truncated_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let seg = write_ten(&cfg).await;
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40; // inside the last record's payload
    fs::write(&seg, &bytes).unwrap();

    let (_j, rec) = Journal::open(&cfg, "torn").unwrap();
    assert_eq!(rec.entries, (1..=9).map(|s| fix(3, s)).collect::<Vec<_>>());
    assert_eq!(rec.torn_bytes_truncated, FIX_FRAME_LEN as u64);
    let t = rec.truncated.unwrap();
    assert_eq!(t.kind, CorruptionKind::Checksum);
    assert_eq!(t.later_valid_frame_at, None);
}

#[tokio::test]
async fn damage_inside_the_last_segment_truncates_there_and_reports_the_valid_entries_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let seg = write_ten(&cfg).await;
    let mut bytes = fs::read(&seg).unwrap();
    let fifth = HEADER_LEN as usize + 4 * FIX_FRAME_LEN;
    bytes[fifth + 12] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let (_j, rec) = Journal::open(&cfg, "torn").unwrap();
    assert_eq!(rec.entries, (1..=4).map(|s| fix(3, s)).collect::<Vec<_>>());
    assert_eq!(rec.torn_bytes_truncated, 6 * FIX_FRAME_LEN as u64);
    let t = rec.truncated.unwrap();
    assert_eq!(t.offset, fifth as u64);
    assert_eq!(t.kind, CorruptionKind::Checksum);
    assert_eq!(t.later_valid_frame_at, Some((fifth + FIX_FRAME_LEN) as u64));
}

#[tokio::test]
async fn a_crash_at_any_byte_of_the_tail_recovers_exactly_the_whole_entries_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        fsync: false,
        ..config(&tmp)
    };
    let written = vec![fix(1, 1), admin(2), fix(2, 3), admin(4)];
    {
        let (j, _) = Journal::open(&cfg, "cut").unwrap();
        j.append(written.clone()).await.unwrap();
    }
    let seg = segments(&tmp.path().join("cut")).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    // Frame end offsets, from the entries' encoded sizes.
    let mut ends = vec![HEADER_LEN as usize];
    for e in &written {
        let body = match e {
            JournalEntry::Fix { .. } => FIX_FRAME_LEN,
            JournalEntry::Admin { command_json, .. } => 8 + 1 + 8 + command_json.len(),
        };
        ends.push(ends.last().unwrap() + body);
    }
    assert_eq!(*ends.last().unwrap(), full.len());
    for cut in HEADER_LEN as usize..=full.len() {
        fs::write(&seg, &full[..cut]).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
        let (_j, rec) = Journal::open(&cfg, "cut").unwrap();
        assert_eq!(rec.entries, written[..whole], "cut at {cut}");
        assert_eq!(rec.torn_bytes_truncated, (cut - ends[whole]) as u64);
        assert_eq!(fs::metadata(&seg).unwrap().len(), ends[whole] as u64);
    }
}

#[tokio::test]
async fn garbage_after_the_last_entry_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let seg = write_ten(&cfg).await;
    // A preallocated-but-unwritten tail reads back as zeros.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 100]).unwrap();
    drop(f);
    let (_j, rec) = Journal::open(&cfg, "torn").unwrap();
    assert_eq!(rec.entries.len(), 10);
    assert_eq!(rec.torn_bytes_truncated, 100);
}

async fn write_small_segments(cfg: &JournalConfig, race: &str, n: u32) {
    let (j, _) = Journal::open(cfg, race).unwrap();
    for s in 1..=n {
        j.append(vec![fix(s % 3, s)]).await.unwrap();
    }
}

#[tokio::test]
async fn corruption_in_an_earlier_segment_is_an_error_not_silent_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        segment_bytes: HEADER_LEN + 4 * FIX_FRAME_LEN as u64,
        ..config(&tmp)
    };
    write_small_segments(&cfg, "mid", 12).await;
    let segs = segments(&tmp.path().join("mid"));
    assert_eq!(segs.len(), 3);
    let mut bytes = fs::read(&segs[1]).unwrap();
    let off = HEADER_LEN as usize + FIX_FRAME_LEN + 20; // second entry of the middle segment
    bytes[off] ^= 1;
    fs::write(&segs[1], &bytes).unwrap();

    let err = Journal::open(&cfg, "mid").unwrap_err();
    match err {
        JournalError::Corrupt { file, offset, kind } => {
            assert_eq!(file, segs[1]);
            assert_eq!(offset, HEADER_LEN + FIX_FRAME_LEN as u64);
            assert_eq!(kind, CorruptionKind::Checksum);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        replay(&cfg, "mid", |_| {}),
        Err(JournalError::Corrupt { .. })
    ));
    // Nothing was truncated by the failed open.
    assert_eq!(fs::read(&segs[1]).unwrap(), bytes);
}

#[tokio::test]
async fn a_missing_middle_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        segment_bytes: HEADER_LEN + 4 * FIX_FRAME_LEN as u64,
        ..config(&tmp)
    };
    write_small_segments(&cfg, "gap", 12).await;
    let segs = segments(&tmp.path().join("gap"));
    fs::remove_file(&segs[1]).unwrap();
    assert!(matches!(
        Journal::open(&cfg, "gap"),
        Err(JournalError::SegmentGap {
            expected: 4,
            found: 8,
            ..
        })
    ));
}

#[tokio::test]
async fn segments_roll_at_the_size_limit_and_replay_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for 3 fixes per segment.
    let cfg = JournalConfig {
        segment_bytes: HEADER_LEN + 3 * FIX_FRAME_LEN as u64,
        ..config(&tmp)
    };
    let (j, _) = Journal::open(&cfg, "roll").unwrap();
    for s in 1..=20 {
        j.append(vec![fix(1, s)]).await.unwrap();
    }
    // One append spanning several segments rolls inside the batch.
    j.append((21..=30).map(|s| fix(1, s)).collect())
        .await
        .unwrap();
    assert_eq!(j.stats().segments, 10);
    drop(j);
    let segs = segments(&tmp.path().join("roll"));
    assert_eq!(segs.len(), 10);
    for (i, p) in segs.iter().enumerate() {
        assert_eq!(
            p.file_name().unwrap().to_str().unwrap(),
            format!("{:020}.log", i * 3)
        );
        assert!(fs::metadata(p).unwrap().len() <= cfg.segment_bytes);
    }
    let want: Vec<_> = (1..=30).map(|s| fix(1, s)).collect();
    assert_eq!(all_entries(&cfg, "roll"), want);
    let (j, rec) = Journal::open(&cfg, "roll").unwrap();
    assert_eq!(rec.entries, want);
    assert_eq!(rec.segments, 10);
    j.append(vec![fix(1, 31)]).await.unwrap();
    assert_eq!(j.stats().segments, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_eight_tasks_all_resolve_in_a_consistent_order() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let (j, _) = Journal::open(&cfg, "conc").unwrap();
    let mut tasks = Vec::new();
    for rider in 0..8u32 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=50u32 {
                // Each append is 3 entries that must stay contiguous.
                j.append(vec![
                    fix(rider, seq * 3 - 2),
                    fix(rider, seq * 3 - 1),
                    fix(rider, seq * 3),
                ])
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = j.stats();
    assert_eq!(stats.entries, 8 * 150);
    // Group commit: fewer commits than appends is likely but not guaranteed; never more.
    assert!(
        stats.commits <= 8 * 50 && stats.fsyncs <= stats.commits,
        "{stats:?}"
    );
    drop(j);
    let got = all_entries(&cfg, "conc");
    assert_eq!(got.len(), 8 * 150);
    // Per rider, sequences come back in append order; each append's 3 entries are contiguous.
    let mut next = [1u32; 8];
    for chunk in got.chunks(3) {
        let JournalEntry::Fix { rider_id, .. } = chunk[0] else {
            panic!("admin entry?");
        };
        for e in chunk {
            let JournalEntry::Fix {
                rider_id: r,
                record,
                ..
            } = e
            else {
                panic!("admin entry?");
            };
            assert_eq!(*r, rider_id, "append was interleaved");
            assert_eq!(record.seq, next[rider_id as usize]);
            next[rider_id as usize] += 1;
        }
    }
    assert_eq!(next, [151; 8]);
}

#[tokio::test]
async fn an_injected_write_failure_fails_the_commit_and_poisons_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let (j, _) = Journal::open(&cfg, "fail").unwrap();
    j.append(vec![fix(1, 1)]).await.unwrap();
    j.inject_write_failure();
    let err = j.append(vec![fix(1, 2)]).await.unwrap_err();
    assert!(
        matches!(err, JournalError::CommitFailed { offset, .. } if offset == HEADER_LEN + FIX_FRAME_LEN as u64),
        "{err:?}"
    );
    assert!(j.stats().poisoned);
    let err = j.append(vec![fix(1, 3)]).await.unwrap_err();
    assert!(matches!(err, JournalError::Poisoned { .. }), "{err:?}");
    drop(j);
    // Reopening recovers what was acknowledged, and appends work again.
    let (j, rec) = Journal::open(&cfg, "fail").unwrap();
    assert_eq!(rec.entries, vec![fix(1, 1)]);
    j.append(vec![fix(1, 4)]).await.unwrap();
}

#[tokio::test]
async fn every_waiter_of_a_failed_group_commit_gets_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        // Gather all appends of this test into one commit.
        commit_interval: Duration::from_millis(300),
        ..config(&tmp)
    };
    let (j, _) = Journal::open(&cfg, "fail2").unwrap();
    j.inject_write_failure();
    let results = futures_join(&j, 5).await;
    assert_eq!(results.len(), 5);
    for r in results {
        assert!(
            matches!(
                r,
                Err(JournalError::CommitFailed { .. } | JournalError::Poisoned { .. })
            ),
            "{r:?}"
        );
    }
}

async fn futures_join(j: &Journal, n: u32) -> Vec<Result<(), JournalError>> {
    let mut handles = Vec::new();
    for i in 0..n {
        let j = j.clone();
        handles.push(tokio::spawn(async move { j.append(vec![fix(i, 1)]).await }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn erase_rider_removes_exactly_that_riders_fixes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        segment_bytes: HEADER_LEN + 5 * FIX_FRAME_LEN as u64,
        ..config(&tmp)
    };
    let mut written = Vec::new();
    {
        let (j, _) = Journal::open(&cfg, "gdpr").unwrap();
        for s in 1..=10 {
            let batch = vec![fix(7, s), fix(8, s)];
            written.extend(batch.clone());
            j.append(batch).await.unwrap();
        }
        written.push(admin(1));
        j.append(vec![admin(1)]).await.unwrap();
        // Refused while open.
        assert!(matches!(
            erase_rider(&cfg, "gdpr", 7),
            Err(JournalError::Locked { .. })
        ));
    }
    let before = segments(&tmp.path().join("gdpr"));
    let report = erase_rider(&cfg, "gdpr", 7).unwrap();
    assert_eq!(report.fixes_erased, 10);
    // The last segment holds only the admin entry and is left alone.
    assert_eq!(report.segments_rewritten, before.len() - 1);
    let remaining = all_entries(&cfg, "gdpr");
    let want: Vec<_> = written
        .iter()
        .filter(|e| !matches!(e, JournalEntry::Fix { rider_id: 7, .. }))
        .cloned()
        .collect();
    assert_eq!(remaining, want);
    // The rider's coordinates are gone from the bytes on disk, not just hidden.
    let needle = fix(7, 3);
    let JournalEntry::Fix { record, .. } = needle else {
        unreachable!()
    };
    for p in segments(&tmp.path().join("gdpr")) {
        let bytes = fs::read(p).unwrap();
        assert!(!bytes.windows(32).any(|w| w == record.to_wire()));
    }
    // No temp files left; idempotent; the journal still opens and appends.
    assert!(
        fs::read_dir(tmp.path().join("gdpr")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
    assert_eq!(erase_rider(&cfg, "gdpr", 7).unwrap().fixes_erased, 0);
    let (j, rec) = Journal::open(&cfg, "gdpr").unwrap();
    assert_eq!(rec.entries, want);
    j.append(vec![fix(9, 1)]).await.unwrap();
    assert_eq!(j.stats().entries, 22);
}

#[tokio::test]
async fn export_rider_gpx_is_a_time_ordered_gpx_track() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    {
        let (j, _) = Journal::open(&cfg, "gpx").unwrap();
        // Out of order arrival (backfill) and a duplicate.
        j.append(vec![
            fix(4, 3),
            fix(5, 1),
            fix(4, 1),
            admin(0),
            fix(4, 2),
            fix(4, 1),
        ])
        .await
        .unwrap();
    }
    let text = export_rider_gpx(&cfg, "gpx", 4).unwrap();
    let gpx = gpx::read(text.as_bytes()).expect("valid GPX");
    assert_eq!(gpx.version, gpx::GpxVersion::Gpx11);
    assert_eq!(gpx.tracks.len(), 1);
    let pts = &gpx.tracks[0].segments[0].points;
    assert_eq!(pts.len(), 3);
    for (i, p) in pts.iter().enumerate() {
        let JournalEntry::Fix { record, .. } = fix(4, i as u32 + 1) else {
            unreachable!()
        };
        assert!((p.point().y() - record.lat_deg()).abs() < 1e-7);
        assert!((p.point().x() - record.lon_deg()).abs() < 1e-7);
        assert_eq!(p.elevation, record.elevation_m());
        assert!(p.time.is_some());
    }
    let empty = export_rider_gpx(&cfg, "gpx", 99).unwrap();
    assert_eq!(
        gpx::read(empty.as_bytes()).unwrap().tracks[0].segments[0]
            .points
            .len(),
        0
    );
}

#[test]
fn race_ids_that_could_escape_the_journal_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let long = "x".repeat(65);
    for bad in [
        "",
        "..",
        ".",
        "../etc",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "a\0b",
        "ünï",
        long.as_str(),
    ] {
        assert!(
            matches!(
                Journal::open(&cfg, bad),
                Err(JournalError::InvalidRaceId { .. })
            ),
            "{bad:?} accepted"
        );
        assert!(matches!(
            replay(&cfg, bad, |_| {}),
            Err(JournalError::InvalidRaceId { .. })
        ));
        assert!(matches!(
            erase_rider(&cfg, bad, 1),
            Err(JournalError::InvalidRaceId { .. })
        ));
        assert!(matches!(
            export_rider_gpx(&cfg, bad, 1),
            Err(JournalError::InvalidRaceId { .. })
        ));
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    Journal::open(&cfg, "Tour_2026.stage-3").unwrap();
}

#[tokio::test]
async fn list_races_and_retention_delete_only_old_closed_journals() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    for race in ["old", "new", "open"] {
        let (j, _) = Journal::open(&cfg, race).unwrap();
        j.append(vec![fix(1, 1)]).await.unwrap();
    }
    fs::create_dir(tmp.path().join(".not-a-race")).unwrap();
    assert_eq!(list_races(&cfg).unwrap(), ["new", "old", "open"]);
    let week = Duration::from_secs(7 * 86_400);
    let now = SystemTime::now();
    let long_ago = now - 2 * week;
    for race in ["old", "open"] {
        for seg in segments(&tmp.path().join(race)) {
            OpenOptions::new()
                .write(true)
                .open(seg)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
    }
    let (_held, _) = Journal::open(&cfg, "open").unwrap();
    let removed = apply_retention_at(&cfg, week, now).unwrap();
    assert_eq!(removed, ["old"]);
    assert_eq!(list_races(&cfg).unwrap(), ["new", "open"]);
    assert_eq!(all_entries(&cfg, "new").len(), 1);
}
