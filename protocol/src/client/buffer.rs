//! The device's offline buffer: every fix stays here until the engine has acknowledged it.
//!
//! Owns the bounded in-memory queue and its optional file: records are appended as they are
//! pushed, acks are appended as markers, and the file is compacted (rewritten through a temporary
//! file and a rename) once acknowledged records dominate. A torn tail (crash mid-write) is ignored
//! on load. Does not talk to the network.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ClientError;
use crate::codec::RECORD_BYTES;
use crate::record::PositionRecord;

/// Bytes of one file frame: kind (1), padding (3), payload (32), FNV-1a checksum (4).
const FRAME_BYTES: usize = 40;
/// Frame kind: a buffered record (payload = the 32-byte wire layout).
const KIND_RECORD: u8 = 1;
/// Frame kind: an ack marker (payload starts with the acked sequence, u32 LE).
const KIND_ACK: u8 = 2;
/// Compact the file when at least this many acknowledged records are still in it...
const COMPACT_MIN_DEAD: usize = 256;

/// One buffered record and when it was last sent.
#[derive(Debug, Clone)]
struct Entry {
    /// The record as pushed.
    record: PositionRecord,
    /// Last time it went out (datagram or backlog stream); `None` = must be (re)sent.
    sent_at: Option<Instant>,
    /// Times it went out: an ack of a record sent more than once cannot tell which send it
    /// answers (Karn's rule), so it gives no round-trip sample.
    sends: u32,
    /// Last sent as a datagram, which the network may drop. A record sent on a backlog stream
    /// is retransmitted by QUIC itself while the connection lives; it is resent only after the
    /// full `ceiling` (the engine may have refused it, e.g. over its rate limit), never early.
    via_datagram: bool,
}

impl Entry {
    fn new(record: PositionRecord) -> Entry {
        Entry {
            record,
            sent_at: None,
            sends: 0,
            via_datagram: false,
        }
    }

    fn mark_sent(&mut self, now: Instant, via_datagram: bool) {
        self.sends = self.sends.saturating_add(1);
        self.sent_at = Some(now);
        self.via_datagram = via_datagram;
    }
}

/// When unacknowledged records are sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResendPolicy {
    /// Shortest resend timeout, whatever the measured ack round trip.
    pub floor: Duration,
    /// Longest resend timeout, also the cap of the per-record back-off.
    pub ceiling: Duration,
}

impl ResendPolicy {
    /// The same timeout whatever the round trip (`floor == ceiling`).
    #[cfg(test)]
    pub fn fixed(after: Duration) -> ResendPolicy {
        ResendPolicy {
            floor: after,
            ceiling: after,
        }
    }
}

/// Smoothed time from sending a record to its ack (RFC 6298's estimator): the ack round trip
/// includes the engine's durable write, which is what a resend has to wait for.
#[derive(Debug, Clone, Copy, Default)]
struct AckRtt {
    /// Smoothed round trip, seconds (0 until the first sample).
    srtt: f64,
    /// Smoothed deviation, seconds.
    rttvar: f64,
    /// Samples taken.
    samples: u64,
}

impl AckRtt {
    /// Timeout before the first sample (RFC 6298 §2.1).
    const INITIAL: Duration = Duration::from_secs(1);

    fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64();
        if self.samples == 0 {
            self.srtt = r;
            self.rttvar = r / 2.0;
        } else {
            self.rttvar = 0.75 * self.rttvar + 0.25 * (self.srtt - r).abs();
            self.srtt = 0.875 * self.srtt + 0.125 * r;
        }
        self.samples += 1;
    }

    fn timeout(&self, policy: ResendPolicy) -> Duration {
        let rto = if self.samples == 0 {
            Self::INITIAL
        } else {
            Duration::from_secs_f64(self.srtt + 4.0 * self.rttvar)
        };
        rto.clamp(policy.floor, policy.ceiling.max(policy.floor))
    }
}

/// What [`OfflineBuffer::take_due`] found.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// Records to send now, oldest first (marked sent).
    pub records: Vec<PositionRecord>,
    /// When the next record inside the window becomes due, if any is waiting for an ack.
    pub next: Option<Instant>,
}

/// The file behind a persistent buffer.
#[derive(Debug)]
struct BufferFile {
    /// Where the buffer lives.
    path: PathBuf,
    /// Open for appending.
    file: File,
    /// Record frames in the file that are already acknowledged (garbage until compaction).
    dead: usize,
}

/// Bounded buffer of unacknowledged records, ordered by sequence number.
#[derive(Debug)]
pub struct OfflineBuffer {
    /// Unacknowledged records, increasing `seq`.
    entries: VecDeque<Entry>,
    /// Most records held; pushing beyond fails rather than dropping an unacknowledged fix.
    capacity: usize,
    /// Highest sequence acknowledged by the engine.
    acked: u32,
    /// Highest sequence ever pushed (or loaded), so sequence numbers keep increasing.
    last_seq: u32,
    /// The backing file, when persistent.
    file: Option<BufferFile>,
    /// Ack round trip, for resend timeouts that follow the network instead of a fixed guess.
    rtt: AckRtt,
    /// Records marked for an early resend because an ack came back without them.
    fast_resends: u64,
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn frame(kind: u8, payload: &[u8; RECORD_BYTES]) -> [u8; FRAME_BYTES] {
    let mut f = [0u8; FRAME_BYTES];
    f[0] = kind;
    f[4..36].copy_from_slice(payload);
    let sum = fnv1a(&f[..36]);
    f[36..40].copy_from_slice(&sum.to_le_bytes());
    f
}

fn ack_frame(seq: u32) -> [u8; FRAME_BYTES] {
    let mut payload = [0u8; RECORD_BYTES];
    payload[..4].copy_from_slice(&seq.to_le_bytes());
    frame(KIND_ACK, &payload)
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> ClientError {
    ClientError::Buffer(format!("{what} {}: {e}", path.display()))
}

impl OfflineBuffer {
    /// A buffer that lives only in memory.
    pub fn in_memory(capacity: usize) -> OfflineBuffer {
        OfflineBuffer {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            acked: 0,
            last_seq: 0,
            file: None,
            rtt: AckRtt::default(),
            fast_resends: 0,
        }
    }

    /// Opens (or creates) a persistent buffer at `path`, reloading unacknowledged records and
    /// ignoring a torn or corrupt tail; the file is compacted right away.
    pub fn open(path: &Path, capacity: usize) -> Result<OfflineBuffer, ClientError> {
        let mut buf = OfflineBuffer::in_memory(capacity);
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| io_err(path, "reading", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path, "opening", e)),
        }
        let mut records = Vec::new();
        for chunk in bytes.chunks_exact(FRAME_BYTES) {
            let sum = u32::from_le_bytes([chunk[36], chunk[37], chunk[38], chunk[39]]);
            if fnv1a(&chunk[..36]) != sum {
                break; // torn or corrupt: everything after it is untrusted
            }
            let mut payload = [0u8; RECORD_BYTES];
            payload.copy_from_slice(&chunk[4..36]);
            match chunk[0] {
                KIND_RECORD => records.push(PositionRecord::from_wire(&payload)),
                KIND_ACK => {
                    let seq = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    buf.acked = buf.acked.max(seq);
                }
                _ => break,
            }
        }
        records.sort_by_key(|r| r.seq);
        records.dedup_by_key(|r| r.seq);
        for r in records {
            buf.last_seq = buf.last_seq.max(r.seq);
            if r.seq > buf.acked {
                buf.entries.push_back(Entry::new(r));
            }
        }
        buf.last_seq = buf.last_seq.max(buf.acked);
        // Keep the newest records if the capacity shrank (never silently: they stay on file
        // until the rewrite below, which is the documented bound).
        while buf.entries.len() > buf.capacity {
            buf.entries.pop_front();
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, "opening", e))?;
        buf.file = Some(BufferFile {
            path: path.to_path_buf(),
            file,
            dead: 0,
        });
        buf.compact()?;
        Ok(buf)
    }

    /// Number of unacknowledged records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether everything pushed has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Highest acknowledged sequence.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// Highest sequence pushed so far (or acknowledged, whichever is larger).
    pub fn last_seq(&self) -> u32 {
        self.last_seq
    }

    /// The unacknowledged records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &PositionRecord> {
        self.entries.iter().map(|e| &e.record)
    }

    /// Appends a record; its `seq` must be above every sequence pushed or acknowledged before.
    pub fn push(&mut self, record: PositionRecord) -> Result<(), ClientError> {
        if record.seq <= self.last_seq {
            return Err(ClientError::SeqNotIncreasing {
                seq: record.seq,
                last: self.last_seq,
            });
        }
        if self.entries.len() >= self.capacity {
            return Err(ClientError::BufferFull {
                capacity: self.capacity,
            });
        }
        if let Some(f) = &mut self.file {
            f.file
                .write_all(&frame(KIND_RECORD, &record.to_wire()))
                .map_err(|e| io_err(&f.path, "appending to", e))?;
        }
        self.last_seq = record.seq;
        self.entries.push_back(Entry::new(record));
        Ok(())
    }

    /// Records that every sequence `<= seq` is durable on the engine and drops them; returns how
    /// many were dropped. Lower or equal acks are ignored.
    pub fn ack(&mut self, seq: u32) -> Result<usize, ClientError> {
        if seq <= self.acked {
            return Ok(0);
        }
        self.acked = seq;
        self.last_seq = self.last_seq.max(seq);
        let mut dropped = 0;
        while self.entries.front().is_some_and(|e| e.record.seq <= seq) {
            self.entries.pop_front();
            dropped += 1;
        }
        if let Some(f) = &mut self.file {
            f.file
                .write_all(&ack_frame(seq))
                .map_err(|e| io_err(&f.path, "appending to", e))?;
            f.dead += dropped;
            if f.dead >= COMPACT_MIN_DEAD.max(self.entries.len()) {
                self.compact()?;
            }
        }
        Ok(dropped)
    }

    /// Rewrites the file with only the unacknowledged records (temporary file + rename).
    pub fn compact(&mut self) -> Result<(), ClientError> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let tmp = f.path.with_extension("compact");
        let mut out = Vec::with_capacity((self.entries.len() + 1) * FRAME_BYTES);
        out.extend_from_slice(&ack_frame(self.acked));
        for e in &self.entries {
            out.extend_from_slice(&frame(KIND_RECORD, &e.record.to_wire()));
        }
        {
            let mut t = File::create(&tmp).map_err(|e| io_err(&tmp, "creating", e))?;
            t.write_all(&out).map_err(|e| io_err(&tmp, "writing", e))?;
            t.sync_data().map_err(|e| io_err(&tmp, "syncing", e))?;
        }
        std::fs::rename(&tmp, &f.path).map_err(|e| io_err(&f.path, "replacing", e))?;
        f.file = OpenOptions::new()
            .append(true)
            .open(&f.path)
            .map_err(|e| io_err(&f.path, "reopening", e))?;
        f.dead = 0;
        Ok(())
    }

    /// Marks `seq` as sent now (it went out as a datagram).
    pub(crate) fn mark_sent(&mut self, seq: u32, now: Instant) {
        if let Some(e) = self.entries.iter_mut().rev().find(|e| e.record.seq == seq) {
            e.mark_sent(now, true);
        }
    }

    /// Forgets every send time (after a reconnect everything unacknowledged is backfilled).
    pub(crate) fn reset_sent(&mut self) {
        for e in &mut self.entries {
            e.sent_at = None;
        }
    }

    /// Learns from an ack that arrived at `now`, before [`OfflineBuffer::ack`] applies it; returns
    /// whether a record became due at once.
    ///
    /// An ack that moves gives a round-trip sample from the newest record it covers that was sent
    /// once, as a datagram. An ack that does not move (the engine sends one when records arrive
    /// above a gap) means the oldest unacknowledged record is missing there: if it went out as a
    /// datagram longer than one smoothed round trip ago, it was lost and is due now instead of
    /// after the resend timeout.
    pub(crate) fn observe_ack(&mut self, seq: u32, now: Instant) -> bool {
        if seq > self.acked {
            let newest_clean = self
                .entries
                .iter()
                .take_while(|e| e.record.seq <= seq)
                .filter(|e| e.sends == 1 && e.via_datagram)
                .filter_map(|e| e.sent_at)
                .last();
            if let Some(sent) = newest_clean {
                self.rtt.sample(now.saturating_duration_since(sent));
            }
            return false;
        }
        if seq < self.acked {
            return false;
        }
        let in_flight_for = Duration::from_secs_f64(self.rtt.srtt);
        match self.entries.front_mut() {
            Some(e)
                if e.via_datagram
                    && e.sent_at
                        .is_some_and(|t| now.saturating_duration_since(t) > in_flight_for) =>
            {
                e.sent_at = None;
                self.fast_resends += 1;
                true
            }
            _ => false,
        }
    }

    /// The resend timeout for a record sent once: smoothed ack round trip plus four deviations
    /// (one second before any sample), within `policy`.
    pub(crate) fn resend_timeout(&self, policy: ResendPolicy) -> Duration {
        self.rtt.timeout(policy)
    }

    /// Records marked for an early resend because an ack came back without them.
    pub(crate) fn fast_resends(&self) -> u64 {
        self.fast_resends
    }

    /// Up to `max` records never sent or waiting longer than their resend timeout, oldest first,
    /// among the `window` oldest unacknowledged ones (a sliding window: acks are contiguous, so a
    /// rate-limited engine is not flooded with the whole backlog again at every resend); marks
    /// them sent on a backlog stream at `now`. A record last sent as a datagram waits the
    /// round-trip timeout; one sent on a stream waits `policy.ceiling`.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        policy: ResendPolicy,
        max: usize,
        window: usize,
    ) -> Due {
        let rto = self.rtt.timeout(policy);
        let ceiling = policy.ceiling.max(rto);
        let mut due = Due::default();
        for e in self.entries.iter_mut().take(window) {
            let at = e
                .sent_at
                .map(|t| t + if e.via_datagram { rto } else { ceiling });
            match at {
                Some(at) if at > now => {
                    due.next = Some(due.next.map_or(at, |n: Instant| n.min(at)));
                }
                _ if due.records.len() < max => {
                    e.mark_sent(now, false);
                    due.records.push(e.record);
                }
                _ => {}
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u32) -> PositionRecord {
        PositionRecord::from_degrees(
            seq,
            1_700_000_000_000 + i64::from(seq),
            52.0,
            5.0,
            None,
            None,
            None,
            None,
        )
    }

    fn seqs(b: &OfflineBuffer) -> Vec<u32> {
        b.records().map(|r| r.seq).collect()
    }

    #[test]
    fn bounded_and_increasing() {
        let mut b = OfflineBuffer::in_memory(2);
        b.push(rec(1)).unwrap();
        assert!(matches!(
            b.push(rec(1)),
            Err(ClientError::SeqNotIncreasing { .. })
        ));
        b.push(rec(2)).unwrap();
        assert!(matches!(
            b.push(rec(3)),
            Err(ClientError::BufferFull { .. })
        ));
        assert_eq!(b.ack(1).unwrap(), 1);
        b.push(rec(3)).unwrap();
        assert_eq!(seqs(&b), vec![2, 3]);
        assert_eq!(b.ack(1).unwrap(), 0);
    }

    #[test]
    fn persists_and_reloads_unacked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buf.bin");
        {
            let mut b = OfflineBuffer::open(&path, 100).unwrap();
            for s in 1..=10 {
                b.push(rec(s)).unwrap();
            }
            b.ack(4).unwrap();
        }
        let b = OfflineBuffer::open(&path, 100).unwrap();
        assert_eq!(seqs(&b), (5..=10).collect::<Vec<_>>());
        assert_eq!(b.acked(), 4);
        assert_eq!(b.last_seq(), 10);
        assert_eq!(b.records().next(), Some(&rec(5)));
    }

    #[test]
    fn compaction_shrinks_file_and_keeps_unacked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buf.bin");
        let mut b = OfflineBuffer::open(&path, 10_000).unwrap();
        for s in 1..=1000 {
            b.push(rec(s)).unwrap();
        }
        b.ack(990).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len <= (12 * FRAME_BYTES) as u64,
            "file not compacted: {len}"
        );
        drop(b);
        let b = OfflineBuffer::open(&path, 10_000).unwrap();
        assert_eq!(seqs(&b), (991..=1000).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tail_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buf.bin");
        {
            let mut b = OfflineBuffer::open(&path, 100).unwrap();
            for s in 1..=5 {
                b.push(rec(s)).unwrap();
            }
        }
        // A crash in the middle of appending record 6: half a frame.
        let torn = frame(KIND_RECORD, &rec(6).to_wire());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn[..17]).unwrap();
        drop(f);
        let mut b = OfflineBuffer::open(&path, 100).unwrap();
        assert_eq!(seqs(&b), vec![1, 2, 3, 4, 5]);
        // The tail was cut at load, so new appends are readable again.
        b.push(rec(6)).unwrap();
        drop(b);
        let b = OfflineBuffer::open(&path, 100).unwrap();
        assert_eq!(seqs(&b), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn corrupt_frame_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buf.bin");
        {
            let mut b = OfflineBuffer::open(&path, 100).unwrap();
            for s in 1..=3 {
                b.push(rec(s)).unwrap();
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let b = OfflineBuffer::open(&path, 100).unwrap();
        assert_eq!(seqs(&b), vec![1, 2]);
    }

    #[test]
    fn take_due_resends_after_timeout() {
        let mut b = OfflineBuffer::in_memory(10);
        for s in 1..=3 {
            b.push(rec(s)).unwrap();
        }
        let t0 = Instant::now();
        b.mark_sent(2, t0);
        let five = ResendPolicy::fixed(Duration::from_secs(5));
        let due: Vec<u32> = seqs_of(&b.take_due(t0, five, 10, 100));
        assert_eq!(due, vec![1, 3]);
        let idle = b.take_due(t0, five, 10, 100);
        assert!(idle.records.is_empty());
        assert_eq!(idle.next, Some(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(6);
        assert_eq!(b.take_due(later, five, 2, 100).records.len(), 2);
        b.reset_sent();
        // Only the oldest two are inside the window.
        let windowed: Vec<u32> = seqs_of(&b.take_due(later, five, 10, 2));
        assert_eq!(windowed, vec![1, 2]);
        assert_eq!(b.take_due(later, five, 10, 100).records.len(), 1);
    }

    fn seqs_of(due: &Due) -> Vec<u32> {
        due.records.iter().map(|r| r.seq).collect()
    }

    const POLICY: ResendPolicy = ResendPolicy {
        floor: Duration::from_millis(50),
        ceiling: Duration::from_secs(5),
    };

    #[test]
    fn resend_timeout_follows_the_ack_round_trip() {
        let mut b = OfflineBuffer::in_memory(100);
        let t0 = Instant::now();
        // Before any ack: RFC 6298's one second.
        assert_eq!(b.resend_timeout(POLICY), Duration::from_secs(1));
        for s in 1..=20u32 {
            let sent = t0 + Duration::from_millis(u64::from(s) * 100);
            b.push(rec(s)).unwrap();
            b.mark_sent(s, sent);
            let at = sent + Duration::from_millis(20);
            assert!(!b.observe_ack(s, at));
            b.ack(s).unwrap();
        }
        // A steady 20 ms round trip: the floor wins over 20 ms + 4 × (vanishing deviation).
        assert_eq!(b.resend_timeout(POLICY), Duration::from_millis(50));
        // Slow acks raise the timeout, within the ceiling.
        for s in 21..=40u32 {
            let sent = t0 + Duration::from_millis(u64::from(s) * 100);
            b.push(rec(s)).unwrap();
            b.mark_sent(s, sent);
            b.observe_ack(s, sent + Duration::from_secs(2));
            b.ack(s).unwrap();
        }
        let slow = b.resend_timeout(POLICY);
        assert!(
            slow > Duration::from_secs(1) && slow <= Duration::from_secs(5),
            "{slow:?}"
        );
    }

    #[test]
    fn resent_records_give_no_round_trip_sample() {
        let mut b = OfflineBuffer::in_memory(100);
        let t0 = Instant::now();
        b.push(rec(1)).unwrap();
        b.mark_sent(1, t0);
        b.mark_sent(1, t0 + Duration::from_secs(3));
        b.observe_ack(1, t0 + Duration::from_secs(3) + Duration::from_millis(5));
        b.ack(1).unwrap();
        assert_eq!(b.resend_timeout(POLICY), Duration::from_secs(1));
        // The same after a reconnect forgot the send times.
        b.push(rec(2)).unwrap();
        b.mark_sent(2, t0);
        b.reset_sent();
        b.mark_sent(2, t0 + Duration::from_secs(4));
        b.observe_ack(2, t0 + Duration::from_secs(4) + Duration::from_millis(5));
        assert_eq!(b.resend_timeout(POLICY), Duration::from_secs(1));
    }

    #[test]
    fn an_ack_that_does_not_move_makes_the_missing_record_due() {
        let mut b = OfflineBuffer::in_memory(100);
        let t0 = Instant::now();
        for s in 1..=3 {
            b.push(rec(s)).unwrap();
        }
        b.mark_sent(1, t0);
        b.observe_ack(1, t0 + Duration::from_millis(10));
        b.ack(1).unwrap();
        // 2 is lost, 3 arrives: the engine answers with the same ack (1).
        b.mark_sent(2, t0 + Duration::from_millis(100));
        b.mark_sent(3, t0 + Duration::from_millis(200));
        let dup_at = t0 + Duration::from_millis(210);
        // Far sooner than the resend timeout, 2 is due, 3 is not.
        assert!(b.observe_ack(1, dup_at));
        assert_eq!(b.fast_resends(), 1);
        assert_eq!(seqs_of(&b.take_due(dup_at, POLICY, 10, 100)), vec![2]);
        // A duplicate ack for a record still in flight (sent within a round trip) changes nothing.
        let mut c = OfflineBuffer::in_memory(100);
        c.push(rec(1)).unwrap();
        c.mark_sent(1, t0);
        c.observe_ack(1, t0 + Duration::from_millis(10));
        c.ack(1).unwrap();
        c.push(rec(2)).unwrap();
        c.mark_sent(2, t0 + Duration::from_millis(100));
        assert!(!c.observe_ack(1, t0 + Duration::from_millis(101)));
        assert!(
            c.take_due(t0 + Duration::from_millis(101), POLICY, 10, 100)
                .records
                .is_empty()
        );
        // A record on a backlog stream is QUIC's to retransmit: a duplicate ack leaves it alone.
        let mut d = OfflineBuffer::in_memory(100);
        d.push(rec(1)).unwrap();
        assert_eq!(seqs_of(&d.take_due(t0, POLICY, 10, 10)), vec![1]);
        assert!(!d.observe_ack(0, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_lost_datagram_waits_the_round_trip_timeout_a_stream_the_ceiling() {
        let mut b = OfflineBuffer::in_memory(10);
        let t0 = Instant::now();
        b.push(rec(1)).unwrap();
        b.push(rec(2)).unwrap();
        b.mark_sent(1, t0);
        // 2 goes out on a backlog stream at t0.
        assert_eq!(seqs_of(&b.take_due(t0, POLICY, 10, 10)), vec![2]);
        // Before any ack the round-trip timeout is one second: 1 (datagram) is due then, as a
        // stream resend; 2 only after the five-second ceiling.
        let due = b.take_due(t0, POLICY, 10, 10);
        assert_eq!(due.next, Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(seqs_of(&b.take_due(t1, POLICY, 10, 10)), vec![1]);
        assert_eq!(
            b.take_due(t1, POLICY, 10, 10).next,
            Some(t0 + Duration::from_secs(5))
        );
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(seqs_of(&b.take_due(t5, POLICY, 10, 10)), vec![2]);
        assert_eq!(
            b.take_due(t5, POLICY, 10, 10).next,
            Some(t1 + Duration::from_secs(5))
        );
    }
}
