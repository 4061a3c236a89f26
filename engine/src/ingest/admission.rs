//! Admission control for new QUIC connections: handshakes in flight are capped, their start rate is
//! a token bucket, the rest wait in a bounded, age-limited queue.
//!
//! Owns the decision "handshake now, wait, or refuse" for each connection attempt, so a mass start
//! is worked through at the pace the CPU sustains (short delay) instead of starting every TLS
//! handshake at once (all slow, abandoned by devices, redone). Generic over the attempt type and
//! clock-free (time is passed in) so it is unit-tested without sockets. Does not refuse itself.

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
    /// Attempts waiting for a token or a free slot, oldest first, with their arrival.
    queue: VecDeque<(Instant, T)>,
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

    /// Decides about a new attempt when `free_slots` more handshakes may run now. Waiting
    /// attempts keep their turn (FIFO).
    pub fn offer(&mut self, attempt: T, now: Instant, free_slots: usize) -> Offer<T> {
        if self.queue.is_empty() && free_slots > 0 {
            let token = self.bucket.as_mut().is_none_or(|b| b.take(1, now) == 1);
            if token {
                return Offer::Admit(attempt);
            }
        }
        if self.queue.len() >= self.capacity {
            return Offer::Refuse(attempt);
        }
        self.queue.push_back((now, attempt));
        Offer::Queued(self.queue.len())
    }

    /// Waiting attempts that may start now (a token each, at most `free_slots`), oldest first.
    pub fn release(&mut self, now: Instant, free_slots: usize) -> Vec<T> {
        let n = self.queue.len().min(free_slots);
        if n == 0 {
            return Vec::new();
        }
        let n = match self.bucket.as_mut() {
            None => n,
            Some(bucket) => bucket.take(n, now),
        };
        self.queue.drain(..n).map(|(_, t)| t).collect()
    }

    /// Waiting attempts older than `max_wait`: the device has probably given up on them (or will
    /// soon), so they are refused rather than handshaken late.
    pub fn expire(&mut self, now: Instant, max_wait: Duration) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.front() {
            if now.saturating_duration_since(*at) <= max_wait {
                break;
            }
            if let Some((_, t)) = self.queue.pop_front() {
                out.push(t);
            }
        }
        out
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
        self.queue.drain(..).map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_queue_then_refuse_then_release_in_order() {
        let t0 = Instant::now();
        let mut a = Admission::new(100.0, 2.0, 3, t0);
        assert!(matches!(a.offer(1, t0, 9), Offer::Admit(1)));
        assert!(matches!(a.offer(2, t0, 9), Offer::Admit(2)));
        assert!(matches!(a.offer(3, t0, 9), Offer::Queued(1)));
        assert!(matches!(a.offer(4, t0, 9), Offer::Queued(2)));
        assert!(matches!(a.offer(5, t0, 9), Offer::Queued(3)));
        assert!(matches!(a.offer(6, t0, 9), Offer::Refuse(6)));
        assert_eq!(a.release(t0, 9), Vec::<i32>::new());
        assert!(a.next_release(t0).is_some());
        // 20 ms at 100/s = 2 tokens: the two oldest go, in order.
        assert_eq!(a.release(t0 + Duration::from_millis(20), 9), vec![3, 4]);
        // A newcomer does not overtake the one still waiting.
        let t1 = t0 + Duration::from_millis(1000);
        assert!(matches!(a.offer(7, t1, 9), Offer::Queued(2)));
        // Tokens, but only one free handshake slot.
        assert_eq!(a.release(t1, 1), vec![5]);
        assert_eq!(a.release(t1, 0), Vec::<i32>::new());
        assert_eq!(a.release(t1, 5), vec![7]);
        assert_eq!(a.waiting(), 0);
        assert_eq!(a.next_release(t1), None);
    }

    #[test]
    fn zero_rate_admits_everything() {
        let t0 = Instant::now();
        let mut a = Admission::new(0.0, 0.0, 0, t0);
        for i in 0..1000 {
            assert!(matches!(a.offer(i, t0, 1), Offer::Admit(_)));
        }
        // No free slot: even without a rate limit, attempts wait.
        assert!(matches!(a.offer(1, t0, 0), Offer::Refuse(1)));
    }

    #[test]
    fn old_waiters_expire_first() {
        let t0 = Instant::now();
        let mut a = Admission::new(1.0, 1.0, 10, t0);
        assert!(matches!(a.offer(1, t0, 0), Offer::Queued(1)));
        assert!(matches!(
            a.offer(2, t0 + Duration::from_secs(2), 0),
            Offer::Queued(2)
        ));
        assert_eq!(
            a.expire(t0 + Duration::from_secs(3), Duration::from_secs(2)),
            vec![1]
        );
        assert_eq!(a.waiting(), 1);
    }
}
