//! Admission control for new QUIC connections: a token bucket on handshakes with a bounded queue.
//!
//! Owns the decision "handshake now, wait for a token, or refuse" for each connection attempt, so
//! a mass start is worked through at a rate the CPU sustains (short delay) instead of starting
//! every TLS handshake at once (all slow, Initials retransmitted). Generic over the attempt type
//! and clock-free (time is passed in) so it is unit-tested without sockets. Does not refuse.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rate::TokenBucket;

/// What to do with a connection attempt offered to [`Admission::offer`].
#[derive(Debug)]
pub enum Offer<T> {
    /// Start its handshake now.
    Admit(T),
    /// It waits in the queue (now this long); [`Admission::release`] hands it out later.
    Queued(usize),
    /// The queue is full: refuse it (cheaply, at the QUIC level).
    Refuse(T),
}

/// Token bucket + FIFO of waiting attempts.
#[derive(Debug)]
pub struct Admission<T> {
    /// Handshake tokens; `None` = admission control off.
    bucket: Option<TokenBucket>,
    /// Refill rate, for computing when the next token arrives.
    rate: f64,
    /// Attempts waiting for a token, oldest first.
    queue: VecDeque<T>,
    /// Most attempts allowed to wait.
    capacity: usize,
}

impl<T> Admission<T> {
    /// `rate` handshakes per second (≤ 0 = unlimited), `burst` at once, `capacity` waiting.
    pub fn new(rate: f64, burst: f64, capacity: usize, now: Instant) -> Self {
        let enabled = rate > 0.0 && rate.is_finite();
        Admission {
            bucket: enabled.then(|| TokenBucket::new(rate, burst, now)),
            rate,
            queue: VecDeque::new(),
            capacity,
        }
    }

    /// Decides about a new attempt. Waiting attempts keep their turn (FIFO).
    pub fn offer(&mut self, attempt: T, now: Instant) -> Offer<T> {
        let Some(bucket) = self.bucket.as_mut() else {
            return Offer::Admit(attempt);
        };
        if self.queue.is_empty() && bucket.take(1, now) == 1 {
            return Offer::Admit(attempt);
        }
        if self.queue.len() >= self.capacity {
            return Offer::Refuse(attempt);
        }
        self.queue.push_back(attempt);
        Offer::Queued(self.queue.len())
    }

    /// Waiting attempts that have a token now, oldest first.
    pub fn release(&mut self, now: Instant) -> Vec<T> {
        let Some(bucket) = self.bucket.as_mut() else {
            return self.queue.drain(..).collect();
        };
        if self.queue.is_empty() {
            return Vec::new();
        }
        let n = bucket.take(self.queue.len(), now);
        self.queue.drain(..n).collect()
    }

    /// How long until the next waiting attempt can get a token; `None` when nothing waits.
    pub fn next_release(&self, _now: Instant) -> Option<Duration> {
        if self.queue.is_empty() {
            return None;
        }
        // One token's refill time, at least 1 ms so the loop does not spin.
        let per_token = if self.rate > 0.0 {
            1.0 / self.rate
        } else {
            0.0
        };
        Some(Duration::from_secs_f64(per_token.max(0.001)))
    }

    /// Attempts waiting now.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Empties the queue (at shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_queue_then_refuse_then_release_in_order() {
        let t0 = Instant::now();
        let mut a = Admission::new(100.0, 2.0, 3, t0);
        assert!(matches!(a.offer(1, t0), Offer::Admit(1)));
        assert!(matches!(a.offer(2, t0), Offer::Admit(2)));
        assert!(matches!(a.offer(3, t0), Offer::Queued(1)));
        assert!(matches!(a.offer(4, t0), Offer::Queued(2)));
        assert!(matches!(a.offer(5, t0), Offer::Queued(3)));
        assert!(matches!(a.offer(6, t0), Offer::Refuse(6)));
        assert_eq!(a.release(t0), Vec::<i32>::new());
        assert!(a.next_release(t0).is_some());
        // 20 ms at 100/s = 2 tokens: the two oldest go, in order.
        assert_eq!(a.release(t0 + Duration::from_millis(20)), vec![3, 4]);
        // A newcomer does not overtake the one still waiting.
        let t1 = t0 + Duration::from_millis(1000);
        assert!(matches!(a.offer(7, t1), Offer::Queued(2)));
        assert_eq!(a.release(t1), vec![5, 7]);
        assert_eq!(a.waiting(), 0);
        assert_eq!(a.next_release(t1), None);
    }

    #[test]
    fn zero_rate_admits_everything() {
        let t0 = Instant::now();
        let mut a = Admission::new(0.0, 0.0, 0, t0);
        for i in 0..1000 {
            assert!(matches!(a.offer(i, t0), Offer::Admit(_)));
        }
    }
}
