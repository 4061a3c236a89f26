//! Organiser and GDPR tools over closed journals: erase a rider's fixes, export a rider's track
//! as GPX 1.1, list races, delete journals past their retention.
//!
//! Erasure and retention take the race's lock, so they refuse to touch a journal that is open.
//! Does not decide policy (who may erase, how long to keep): the callers do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use flevum_protocol::PositionRecord;

use super::error::JournalError;
use super::format::{self, Decoded};
use super::segment::{self, TEMP_SUFFIX, sync_dir};
use super::{JournalConfig, JournalEntry, lock_race, race_dir, replay, validate_race_id};

/// What [`erase_rider`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EraseReport {
    /// Fixes of the rider replaced by tombstones.
    pub fixes_erased: u64,
    /// Segment files rewritten.
    pub segments_rewritten: usize,
    /// Bytes of a torn tail dropped while rewriting the last segment.
    pub torn_bytes_dropped: u64,
}

/// Removes every fix of `rider_id` from the race's journal (GDPR erasure).
///
/// Each affected segment is rewritten to a temporary file, fsynced and renamed over the original,
/// so every segment is either wholly old or wholly new; erased fixes leave a 9-byte tombstone
/// that keeps entry indexes stable. Re-running after a crash finishes the job. Refuses with
/// [`JournalError::Locked`] while the journal is open.
pub fn erase_rider(
    config: &JournalConfig,
    race_id: &str,
    rider_id: u32,
) -> Result<EraseReport, JournalError> {
    let dir = race_dir(config, race_id)?;
    let mut report = EraseReport::default();
    if !dir.is_dir() {
        return Ok(report);
    }
    let _lock = lock_race(&dir)?;
    remove_temp_files(&dir)?;
    // Pass 1: validate everything and find the segments holding the rider's fixes.
    let mut hits: Vec<u64> = Vec::new();
    let scan = segment::scan_race(&dir, |index, d| {
        if let Decoded::Entry(JournalEntry::Fix { rider_id: r, .. }) = d
            && r == rider_id
        {
            hits.push(index);
        }
    })?;
    let count = scan.segments.len();
    let mut body = Vec::with_capacity(4096);
    for (i, seg) in scan.segments.iter().enumerate() {
        let end = seg.file.first_index + seg.slots;
        let hit = hits.iter().any(|&h| h >= seg.file.first_index && h < end);
        let torn_here = i + 1 == count && scan.torn.is_some();
        if !hit && !torn_here {
            continue;
        }
        if seg.valid_len == 0 {
            // The last segment's header is torn: it holds nothing; drop it.
            fs::remove_file(&seg.file.path)
                .map_err(|e| JournalError::io(&seg.file.path, "remove torn segment", e))?;
            report.torn_bytes_dropped += scan.torn.as_ref().map_or(0, |t| t.bytes);
            report.segments_rewritten += 1;
            continue;
        }
        let tmp = seg.file.path.with_extension(format!("log{TEMP_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| JournalError::io(&tmp, "create", e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut frame = Vec::with_capacity(256);
        let mut write_err: Option<io::Error> = None;
        w.write_all(&format::encode_header(seg.file.first_index))
            .map_err(|e| JournalError::io(&tmp, "write", e))?;
        let s = segment::scan_segment(&seg.file, i + 1 == count, &mut body, &mut |_, d| {
            frame.clear();
            match d {
                Decoded::Entry(JournalEntry::Fix { rider_id: r, .. }) if r == rider_id => {
                    report.fixes_erased += 1;
                    format::encode_erased(&mut frame);
                }
                Decoded::Entry(e) => {
                    // Re-encoding an entry that was decoded from a valid frame cannot exceed
                    // the size limit; fall back to a tombstone rather than panic if it did.
                    if format::encode_entry(&e, &mut frame).is_err() {
                        frame.clear();
                        format::encode_erased(&mut frame);
                    }
                }
                Decoded::Erased => format::encode_erased(&mut frame),
            }
            if write_err.is_none()
                && let Err(e) = w.write_all(&frame)
            {
                write_err = Some(e);
            }
        })?;
        if let Some(e) = write_err {
            return Err(JournalError::io(&tmp, "write", e));
        }
        report.torn_bytes_dropped += s.torn.map_or(0, |t| t.bytes);
        let file = w
            .into_inner()
            .map_err(|e| JournalError::io(&tmp, "write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| JournalError::io(&tmp, "fsync", e))?;
        drop(file);
        fs::rename(&tmp, &seg.file.path)
            .map_err(|e| JournalError::io(&seg.file.path, "rename", e))?;
        sync_dir(&dir)?;
        report.segments_rewritten += 1;
    }
    sync_dir(&dir)?;
    tracing::info!(
        race_id,
        rider_id,
        fixes = report.fixes_erased,
        segments = report.segments_rewritten,
        "journal: rider erased"
    );
    Ok(report)
}

/// Removes leftovers of an interrupted erasure.
fn remove_temp_files(dir: &Path) -> Result<(), JournalError> {
    let rd = fs::read_dir(dir).map_err(|e| JournalError::io(dir, "list directory", e))?;
    for item in rd {
        let item = item.map_err(|e| JournalError::io(dir, "list directory", e))?;
        let name = item.file_name();
        if name.to_string_lossy().ends_with(TEMP_SUFFIX) {
            fs::remove_file(item.path())
                .map_err(|e| JournalError::io(item.path(), "remove temp file", e))?;
        }
    }
    Ok(())
}

/// The rider's fixes as a GPX 1.1 document (one track, one segment, points in time order;
/// duplicates of the same fix appear once). An unknown rider gives an empty track.
pub fn export_rider_gpx(
    config: &JournalConfig,
    race_id: &str,
    rider_id: u32,
) -> Result<String, JournalError> {
    let mut fixes: Vec<PositionRecord> = Vec::new();
    replay(config, race_id, |e| {
        if let JournalEntry::Fix {
            rider_id: r,
            record,
            ..
        } = e
            && r == rider_id
        {
            fixes.push(record);
        }
    })?;
    fixes.sort_by_key(|r| (r.time_ms, r.seq));
    fixes.dedup_by_key(|r| (r.time_ms, r.seq));
    Ok(render_gpx(race_id, rider_id, &fixes))
}

fn render_gpx(race_id: &str, rider_id: u32, fixes: &[PositionRecord]) -> String {
    use std::fmt::Write as _;
    // race_id is validated to [A-Za-z0-9_.-]: nothing to escape.
    let mut s = String::with_capacity(256 + fixes.len() * 110);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(
        "<gpx version=\"1.1\" creator=\"Flevum\" xmlns=\"http://www.topografix.com/GPX/1/1\">\n",
    );
    let _ = writeln!(
        s,
        "  <metadata><name>{race_id} rider {rider_id}</name></metadata>"
    );
    let _ = writeln!(
        s,
        "  <trk>\n    <name>rider {rider_id}</name>\n    <trkseg>"
    );
    for r in fixes {
        let _ = write!(
            s,
            "      <trkpt lat=\"{:.7}\" lon=\"{:.7}\">",
            r.lat_deg(),
            r.lon_deg()
        );
        if let Some(ele) = r.elevation_m() {
            let _ = write!(s, "<ele>{ele:.1}</ele>");
        }
        let _ = writeln!(s, "<time>{}</time></trkpt>", rfc3339_ms(r.time_ms));
    }
    s.push_str("    </trkseg>\n  </trk>\n</gpx>\n");
    s
}

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Races with a journal under `config.dir`, sorted (directories with a valid race id).
pub fn list_races(config: &JournalConfig) -> Result<Vec<String>, JournalError> {
    let rd = match fs::read_dir(&config.dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io(&config.dir, "list directory", e)),
    };
    let mut out = Vec::new();
    for item in rd {
        let item = item.map_err(|e| JournalError::io(&config.dir, "list directory", e))?;
        let is_dir = item
            .file_type()
            .map_err(|e| JournalError::io(item.path(), "stat", e))?
            .is_dir();
        if let Some(name) = item.file_name().to_str()
            && is_dir
            && validate_race_id(name).is_ok()
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes the journals of races whose newest segment was last modified more than `max_age` ago;
/// returns the deleted race ids. Open journals (locked) are skipped.
pub fn apply_retention(
    config: &JournalConfig,
    max_age: Duration,
) -> Result<Vec<String>, JournalError> {
    apply_retention_at(config, max_age, SystemTime::now())
}

/// [`apply_retention`] with an explicit "now" (for tests and dry runs).
pub fn apply_retention_at(
    config: &JournalConfig,
    max_age: Duration,
    now: SystemTime,
) -> Result<Vec<String>, JournalError> {
    let mut removed = Vec::new();
    for race_id in list_races(config)? {
        let dir = config.dir.join(&race_id);
        let newest = newest_segment_mtime(&dir)?;
        let Some(newest) = newest else { continue };
        let age = now.duration_since(newest).unwrap_or(Duration::ZERO);
        if age <= max_age {
            continue;
        }
        let lock = match lock_race(&dir) {
            Ok(l) => l,
            Err(JournalError::Locked { .. }) => {
                tracing::info!(race_id, "retention: journal is open, kept");
                continue;
            }
            Err(e) => return Err(e),
        };
        fs::remove_dir_all(&dir).map_err(|e| JournalError::io(&dir, "remove journal", e))?;
        drop(lock);
        tracing::info!(race_id, age_s = age.as_secs(), "retention: journal deleted");
        removed.push(race_id);
    }
    if !removed.is_empty() {
        sync_dir(&config.dir)?;
    }
    Ok(removed)
}

/// Modification time of the newest segment file, `None` when there is none.
fn newest_segment_mtime(dir: &Path) -> Result<Option<SystemTime>, JournalError> {
    let mut newest: Option<SystemTime> = None;
    for seg in segment::list_segments(dir)? {
        let mtime = File::open(&seg.path)
            .and_then(|f| f.metadata())
            .and_then(|m| m.modified())
            .map_err(|e| JournalError::io(&seg.path, "stat", e))?;
        newest = Some(newest.map_or(mtime, |n| n.max(mtime)));
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_764_082_245_123), "2025-11-25T14:50:45.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn gpx_lists_points_with_optional_elevation() {
        let a = PositionRecord::from_degrees(1, 0, 52.5, 5.25, Some(12.3), None, None, None);
        let b = PositionRecord::from_degrees(2, 1000, -33.0, 151.0, None, None, None, None);
        let g = render_gpx("r1", 4, &[a, b]);
        assert!(g.contains("<trkpt lat=\"52.5000000\" lon=\"5.2500000\"><ele>12.3</ele><time>1970-01-01T00:00:00.000Z</time></trkpt>"));
        assert!(g.contains("<trkpt lat=\"-33.0000000\" lon=\"151.0000000\"><time>1970-01-01T00:00:01.000Z</time></trkpt>"));
        assert!(g.contains("version=\"1.1\""));
    }
}
