//! Segment files of one race: naming, listing and the streaming scan used by recovery, replay and
//! the organiser tools.
//!
//! The scan verifies every checksum and the continuity of entry indexes across segments; it never
//! modifies files (recovery applies the truncation it reports). Does not write segments.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::{CorruptionKind, JournalError};
use super::format::{self, Decoded, FRAME_PREFIX_LEN, HEADER_LEN};

/// File name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".log";
/// File name suffix of temporary files (erasure rewrites); ignored by scans.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Name of the lock file that keeps a race's journal single-writer.
pub const LOCK_FILE: &str = "LOCK";
/// Read buffer size of scans.
const READ_BUFFER: usize = 1 << 20;

/// A segment file found in a race directory.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    /// Full path of the file.
    pub path: PathBuf,
    /// First entry index, from the file name.
    pub first_index: u64,
}

/// File name of the segment whose first entry has `first_index`.
pub fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// Segment files of `race_dir`, sorted by first index. Missing directory = no segments.
pub fn list_segments(race_dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let rd = match fs::read_dir(race_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io(race_dir, "list directory", e)),
    };
    let mut out = Vec::new();
    for item in rd {
        let item = item.map_err(|e| JournalError::io(race_dir, "list directory", e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        let path = item.path();
        let first_index = (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
            .then(|| stem.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| JournalError::StrayFile { file: path.clone() })?;
        out.push(SegmentFile { path, first_index });
    }
    out.sort_by_key(|s| s.first_index);
    Ok(out)
}

/// Where and why a scan stopped early in the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub file: PathBuf,
    /// Offset of the first byte that is not part of a valid entry (0 = the header is torn).
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub bytes: u64,
    /// What was found at `offset`.
    pub kind: CorruptionKind,
    /// Offset of a checksum-valid frame found after the damage, if any: the damage was not just
    /// an interrupted final write, and entries after it are lost with the truncation (they may
    /// belong to the last, never acknowledged batch, or be bit rot of acknowledged data).
    pub later_valid_frame_at: Option<u64>,
}

/// Largest tail searched for valid frames after damage.
const MAX_TAIL_SEARCH: u64 = 64 * 1024 * 1024;

/// Looks for a checksum-valid frame starting after `offset` in `path` (first `MAX_TAIL_SEARCH`
/// bytes of the tail only).
fn find_valid_frame_after(path: &Path, offset: u64) -> Result<Option<u64>, JournalError> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| JournalError::io(path, "open", e))?;
    f.seek(SeekFrom::Start(offset + 1))
        .map_err(|e| JournalError::io(path, "seek", e))?;
    let mut tail = Vec::new();
    f.take(MAX_TAIL_SEARCH)
        .read_to_end(&mut tail)
        .map_err(|e| JournalError::io(path, "read", e))?;
    for p in 0..tail.len() {
        let Some(prefix) = tail.get(p..p + FRAME_PREFIX_LEN) else {
            break;
        };
        let mut pre = [0u8; FRAME_PREFIX_LEN];
        pre.copy_from_slice(prefix);
        let Ok((len, crc)) = format::decode_prefix(&pre) else {
            continue;
        };
        let Some(body) = tail.get(p + FRAME_PREFIX_LEN..p + FRAME_PREFIX_LEN + len) else {
            continue;
        };
        if format::decode_body(body, crc).is_ok() {
            return Ok(Some(offset + 1 + p as u64));
        }
    }
    Ok(None)
}

/// Summary of one segment after a scan.
#[derive(Debug, Clone)]
pub struct ScannedSegment {
    /// The file.
    pub file: SegmentFile,
    /// Entry slots (entries and tombstones) in the valid part.
    pub slots: u64,
    /// Length of the valid part (header + whole valid frames).
    pub valid_len: u64,
}

/// Result of scanning all segments of a race.
#[derive(Debug, Clone, Default)]
pub struct RaceScan {
    /// Every segment, in order, with its valid length.
    pub segments: Vec<ScannedSegment>,
    /// Damage at the end of the last segment, if any (the caller truncates or ignores it).
    pub torn: Option<TornTail>,
    /// Index the next appended entry gets.
    pub next_index: u64,
    /// Entries delivered (tombstones not counted).
    pub entries: u64,
    /// Tombstones skipped.
    pub erased: u64,
    /// Valid bytes over all segments.
    pub bytes: u64,
}

/// Reads exactly `buf.len()` bytes; `Ok(n < len)` when the file ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Result of scanning one segment.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// Entry slots (entries and tombstones) in the valid part.
    pub slots: u64,
    /// Length of the valid part (header + whole valid frames); 0 when the header is torn.
    pub valid_len: u64,
    /// Entries delivered (tombstones not counted).
    pub entries: u64,
    /// Tombstones delivered.
    pub erased: u64,
    /// Damage that ended the scan (only returned when `is_last`; otherwise it is an error).
    pub torn: Option<TornTail>,
}

/// Scans one segment whose first entry must be `seg.first_index`, calling `f(index, decoded)`
/// for every valid frame. Damage is an error unless `is_last`, where it ends the scan and is
/// returned as [`SegmentScan::torn`] (a header too short to be complete included; a complete but
/// wrong header is always an error).
pub fn scan_segment(
    seg: &SegmentFile,
    is_last: bool,
    body: &mut Vec<u8>,
    f: &mut impl FnMut(u64, Decoded),
) -> Result<SegmentScan, JournalError> {
    let path = &seg.path;
    let file = File::open(path).map_err(|e| JournalError::io(path, "open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| JournalError::io(path, "stat", e))?
        .len();
    let mut r = BufReader::with_capacity(READ_BUFFER, file);
    let mut out = SegmentScan {
        slots: 0,
        valid_len: 0,
        entries: 0,
        erased: 0,
        torn: None,
    };
    let corrupt = |offset, kind| JournalError::Corrupt {
        file: path.clone(),
        offset,
        kind,
    };
    let mut header = [0u8; HEADER_LEN as usize];
    let got = read_full(&mut r, &mut header).map_err(|e| JournalError::io(path, "read", e))?;
    if got < header.len() {
        if !is_last {
            return Err(corrupt(0, CorruptionKind::TornHeader));
        }
        out.torn = Some(TornTail {
            file: path.clone(),
            offset: 0,
            bytes: file_len,
            kind: CorruptionKind::TornHeader,
            later_valid_frame_at: None,
        });
        return Ok(out);
    }
    if format::decode_header(&header) != Some(seg.first_index) {
        return Err(corrupt(0, CorruptionKind::BadHeader));
    }
    let mut offset = HEADER_LEN;
    let mut index = seg.first_index;
    let stop: Option<CorruptionKind> = loop {
        let mut prefix = [0u8; FRAME_PREFIX_LEN];
        let got = read_full(&mut r, &mut prefix).map_err(|e| JournalError::io(path, "read", e))?;
        if got == 0 {
            break None;
        }
        if got < FRAME_PREFIX_LEN {
            break Some(CorruptionKind::TornEntry);
        }
        let (len, crc) = match format::decode_prefix(&prefix) {
            Ok(v) => v,
            Err(k) => break Some(k),
        };
        if offset + (FRAME_PREFIX_LEN + len) as u64 > file_len {
            break Some(CorruptionKind::TornEntry);
        }
        body.resize(len, 0);
        let got = read_full(&mut r, body).map_err(|e| JournalError::io(path, "read", e))?;
        if got < len {
            break Some(CorruptionKind::TornEntry);
        }
        match format::decode_body(body, crc) {
            Ok(d) => {
                match d {
                    Decoded::Erased => out.erased += 1,
                    Decoded::Entry(_) => out.entries += 1,
                }
                f(index, d);
            }
            Err(k) => break Some(k),
        }
        index += 1;
        out.slots += 1;
        offset += (FRAME_PREFIX_LEN + len) as u64;
    };
    out.valid_len = offset;
    if let Some(kind) = stop {
        if !is_last {
            return Err(corrupt(offset, kind));
        }
        out.torn = Some(TornTail {
            file: path.clone(),
            offset,
            bytes: file_len.saturating_sub(offset),
            kind,
            later_valid_frame_at: find_valid_frame_after(path, offset)?,
        });
    }
    Ok(out)
}

/// Scans every segment of `race_dir` in order, calling `f(index, decoded)` for every valid frame.
///
/// Damage in a segment that is not the last, a bad header anywhere, or a gap between segments is
/// an error; damage in the last segment (including a header too short to be complete) ends the
/// scan and is reported as [`RaceScan::torn`].
pub fn scan_race(
    race_dir: &Path,
    mut f: impl FnMut(u64, Decoded),
) -> Result<RaceScan, JournalError> {
    let files = list_segments(race_dir)?;
    let mut scan = RaceScan::default();
    let count = files.len();
    let mut body = Vec::with_capacity(4096);
    for (i, seg) in files.into_iter().enumerate() {
        let expected = scan.next_index;
        if seg.first_index != expected {
            return Err(JournalError::SegmentGap {
                file: seg.path,
                expected,
                found: seg.first_index,
            });
        }
        let s = scan_segment(&seg, i + 1 == count, &mut body, &mut f)?;
        scan.next_index += s.slots;
        scan.entries += s.entries;
        scan.erased += s.erased;
        scan.bytes += s.valid_len;
        scan.torn = s.torn;
        scan.segments.push(ScannedSegment {
            file: seg,
            slots: s.slots,
            valid_len: s.valid_len,
        });
    }
    Ok(scan)
}

/// Fsyncs a directory so that created, renamed or removed entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, "fsync directory", e))
}
