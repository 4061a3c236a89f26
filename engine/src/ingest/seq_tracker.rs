//! Contiguous acknowledgement tracking for one device's sequence numbers.
//!
//! Owns the rule "ack = highest n such that every sequence 1..=n has been handled", with gaps and
//! reordering. Does not know what "handled" means (durable or skipped as invalid): callers decide.

use std::collections::BTreeSet;

/// How a sequence number relates to what was already handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqStatus {
    /// Not handled yet and inside the window: process it.
    New,
    /// Already handled (at or below the ack, or seen above a gap): skip it.
    Duplicate,
    /// Too far above the ack to track (or 0): refuse it without marking it handled.
    OutOfWindow,
}

/// Most sequences a device may have handled above a gap. A device that keeps leaving holes (or
/// sends gapped invalid records, which are handled at once) is then refused anything new
/// above the ack until it fills them, so its tracker's memory stays small; nothing is lost,
/// the device keeps what is not acknowledged. A phone backfilling a two-hour dropout (7,200
/// fixes at 1 Hz, drained at the default 20 records/s per device in about 360 s) while it
/// reports live holds about 360 above its gap.
pub const MAX_PENDING_ABOVE_GAP: usize = 4096;

/// Tracks handled sequence numbers of one device and the contiguous ack.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Every sequence `1..=contiguous` is handled.
    contiguous: u32,
    /// Handled sequences above a gap, all `> contiguous + 1`.
    above: BTreeSet<u32>,
    /// Largest distance above `contiguous` that is tracked; bounds `above`'s memory.
    window: u32,
}

impl SeqTracker {
    /// A tracker for which `1..=base` is already handled, tracking at most `window` above it.
    pub fn new(base: u32, window: u32) -> Self {
        SeqTracker {
            contiguous: base,
            above: BTreeSet::new(),
            window: window.max(1),
        }
    }

    /// The highest contiguous handled sequence (the ack to send).
    pub fn acked(&self) -> u32 {
        self.contiguous
    }

    /// Number of handled sequences waiting above a gap.
    pub fn gaps_pending(&self) -> usize {
        self.above.len()
    }

    /// Classifies `seq` without changing anything.
    pub fn status(&self, seq: u32) -> SeqStatus {
        if seq == 0 || u64::from(seq) > u64::from(self.contiguous) + u64::from(self.window) {
            SeqStatus::OutOfWindow
        } else if seq <= self.contiguous || self.above.contains(&seq) {
            SeqStatus::Duplicate
        } else if seq > self.contiguous + 1 && self.above.len() >= MAX_PENDING_ABOVE_GAP {
            SeqStatus::OutOfWindow
        } else {
            SeqStatus::New
        }
    }

    /// Marks `seq` handled; returns its status before marking (only `New` changes anything).
    pub fn mark(&mut self, seq: u32) -> SeqStatus {
        let status = self.status(seq);
        if status == SeqStatus::New {
            if seq == self.contiguous + 1 {
                self.contiguous = seq;
                self.advance();
            } else {
                self.above.insert(seq);
            }
        }
        status
    }

    /// Raises the base (something else made `1..=base` durable); never lowers it.
    pub fn raise_base(&mut self, base: u32) {
        if base > self.contiguous {
            self.contiguous = base;
            self.above = self.above.split_off(&base.saturating_add(1));
            self.advance();
        }
    }

    fn advance(&mut self) {
        while let Some(&first) = self.above.first() {
            if first == self.contiguous.saturating_add(1) {
                self.contiguous = first;
                self.above.pop_first();
            } else if first <= self.contiguous {
                self.above.pop_first();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_advances() {
        let mut t = SeqTracker::new(0, 100);
        for s in 1..=5 {
            assert_eq!(t.mark(s), SeqStatus::New);
            assert_eq!(t.acked(), s);
        }
    }

    #[test]
    fn gap_holds_ack_until_filled() {
        let mut t = SeqTracker::new(0, 100);
        t.mark(1);
        t.mark(2);
        t.mark(4);
        t.mark(5);
        assert_eq!(t.acked(), 2);
        assert_eq!(t.gaps_pending(), 2);
        t.mark(3);
        assert_eq!(t.acked(), 5);
        assert_eq!(t.gaps_pending(), 0);
    }

    #[test]
    fn reordering_and_duplicates() {
        let mut t = SeqTracker::new(0, 100);
        for s in [3, 1, 5, 2, 2, 4, 3] {
            t.mark(s);
        }
        assert_eq!(t.acked(), 5);
        assert_eq!(t.mark(4), SeqStatus::Duplicate);
        assert_eq!(t.mark(7), SeqStatus::New);
        assert_eq!(t.mark(7), SeqStatus::Duplicate);
        assert_eq!(t.acked(), 5);
    }

    #[test]
    fn too_many_handled_above_a_gap_refuses_more_until_it_is_filled() {
        let mut t = SeqTracker::new(0, 1 << 20);
        // Every other sequence, never the first: the gaps never close.
        for k in 0..MAX_PENDING_ABOVE_GAP as u32 {
            assert_eq!(t.mark(2 + 2 * k), SeqStatus::New);
        }
        assert_eq!(t.gaps_pending(), MAX_PENDING_ABOVE_GAP);
        let next = 2 + 2 * MAX_PENDING_ABOVE_GAP as u32;
        assert_eq!(t.mark(next), SeqStatus::OutOfWindow);
        assert_eq!(t.gaps_pending(), MAX_PENDING_ABOVE_GAP, "nothing was added");
        // The sequence right after the ack is always taken, and filling a hole frees room.
        assert_eq!(t.mark(1), SeqStatus::New);
        assert_eq!(t.acked(), 2);
        assert_eq!(t.mark(next), SeqStatus::New);
    }

    #[test]
    fn window_and_zero_refused() {
        let mut t = SeqTracker::new(10, 5);
        assert_eq!(t.mark(0), SeqStatus::OutOfWindow);
        assert_eq!(t.mark(16), SeqStatus::OutOfWindow);
        assert_eq!(t.mark(15), SeqStatus::New);
        assert_eq!(t.acked(), 10);
        assert_eq!(t.status(u32::MAX), SeqStatus::OutOfWindow);
    }

    #[test]
    fn raise_base_drops_covered_and_advances() {
        let mut t = SeqTracker::new(0, 100);
        t.mark(3);
        t.mark(6);
        t.mark(7);
        t.raise_base(5);
        assert_eq!(t.acked(), 7);
        assert_eq!(t.gaps_pending(), 0);
        t.raise_base(2);
        assert_eq!(t.acked(), 7);
        assert_eq!(t.mark(1), SeqStatus::Duplicate);
    }
}
