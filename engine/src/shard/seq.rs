//! Per-device durable sequence tracking: the highest sequence number below which every number
//! has been made durable, which is what acks and `Welcome.acked_seq` may promise.
//! Does not decide what to journal; the shard marks what the journal confirmed.

use std::collections::BTreeSet;

/// Contiguous-prefix tracker over sequence numbers starting at 1.
#[derive(Debug, Clone, Default)]
pub struct ContiguousSeq {
    /// Every sequence number up to and including this one is durable.
    contiguous: u32,
    /// Durable numbers beyond a gap (a datagram lost, or backfill still on its way).
    above: BTreeSet<u32>,
}

impl ContiguousSeq {
    /// Records that `seq` is durable.
    pub fn mark(&mut self, seq: u32) {
        if seq <= self.contiguous {
            return;
        }
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            while self.above.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
        } else if self.above.len() < 1 << 16 {
            // Bounded: a device that skips numbers forever cannot grow this without limit.
            self.above.insert(seq);
        }
    }

    /// Whether `seq` is already durable (so journaling it again would only duplicate it).
    pub fn contains(&self, seq: u32) -> bool {
        seq <= self.contiguous || self.above.contains(&seq)
    }

    /// The highest contiguous durable sequence (0 before the first).
    pub fn contiguous(&self) -> u32 {
        self.contiguous
    }
}

#[cfg(test)]
mod tests {
    use super::ContiguousSeq;

    #[test]
    fn gaps_hold_the_ack_back_until_filled() {
        let mut s = ContiguousSeq::default();
        for seq in [1, 2, 4, 5, 7] {
            s.mark(seq);
        }
        assert_eq!(s.contiguous(), 2);
        s.mark(3);
        assert_eq!(s.contiguous(), 5);
        s.mark(6);
        assert_eq!(s.contiguous(), 7);
        s.mark(2);
        assert_eq!(s.contiguous(), 7);
        s.mark(9);
        assert!(s.contains(7) && s.contains(9) && !s.contains(8) && !s.contains(10));
    }
}
