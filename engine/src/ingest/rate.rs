//! Per-device token bucket limiting how many records a device may submit per second.
//!
//! Owns the refill arithmetic only; time is passed in so the unit tests need no clock. Does not
//! decide what happens to records over the limit (the connection drops them unacknowledged).

use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Refill per second.
    rate: f64,
    /// Capacity.
    burst: f64,
    /// Tokens available now.
    tokens: f64,
    /// When `tokens` was last refilled.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes up to `n` tokens at `now`; returns how many were granted.
    pub fn take(&mut self, n: usize, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let granted = (self.tokens.floor() as usize).min(n);
        self.tokens -= granted as f64;
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, t0);
        assert_eq!(b.take(25, t0), 20);
        assert_eq!(b.take(1, t0), 0);
        assert_eq!(b.take(100, t0 + Duration::from_millis(500)), 5);
        assert_eq!(b.take(100, t0 + Duration::from_secs(100)), 20);
    }
}
