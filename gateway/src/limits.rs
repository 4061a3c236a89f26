//! Per-IP rate limiting (token buckets) and the caps on long-lived fan connections.
//!
//! Owns the bucket table (a `DashMap` keyed by client IP) and the RAII guards that count open
//! WebSockets and SSE alert streams in total and per IP. Does not know about routes: the middleware in `router`
//! applies the limiter to every request.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;

use crate::metrics as m;

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// Token buckets per client IP.
#[derive(Debug)]
pub struct RateLimiter {
    /// Refill rate, tokens per second.
    per_second: f64,
    /// Bucket size.
    burst: f64,
    /// Buckets by IP.
    buckets: DashMap<IpAddr, Bucket>,
}

/// Largest WebSocket message, and frame, a fan may send (fans send a few small commands).
/// The frame limit matters most: tungstenite buffers a whole frame before it checks the
/// message size, and its default frame limit is 16 MiB.
pub const FAN_MESSAGE_MAX_BYTES: usize = 64 * 1024;

/// Bucket count above which idle, full buckets are pruned.
const PRUNE_ABOVE: usize = 100_000;

impl RateLimiter {
    /// A limiter refilling `per_minute` tokens per minute into buckets of `burst`.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
        }
    }

    /// Takes one token for `ip` at `now`; false means "429".
    pub fn check(&self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() > PRUNE_ABOVE {
            let full_after = self.burst / self.per_second;
            self.buckets
                .retain(|_, b| now.duration_since(b.updated).as_secs_f64() < full_after);
        }
        let mut b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            metrics::counter!(m::RATE_LIMITED).increment(1);
            false
        }
    }
}

/// Counters of the long-lived fan connections: WebSockets and SSE alert streams.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// Cap in total.
    max_total: usize,
    /// Cap per IP.
    max_per_ip: usize,
    /// Open in total.
    total: AtomicUsize,
    /// Open per IP.
    per_ip: DashMap<IpAddr, usize>,
}

/// Holds one connection slot (a WebSocket or an SSE stream); dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    /// The counters to decrement.
    limits: Arc<ConnectionLimits>,
    /// Whose slot.
    ip: IpAddr,
}

impl ConnectionLimits {
    /// Caps of `max_total` connections and `max_per_ip` per IP.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: DashMap::new(),
        })
    }

    /// Takes a slot for `ip`, or None at either cap.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let prev = self.total.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(m::WS_REFUSED).increment(1);
            return None;
        }
        {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                metrics::counter!(m::WS_REFUSED).increment(1);
                return None;
            }
            *n += 1;
        }
        metrics::gauge!(m::WS_CONNECTIONS).increment(1.0);
        Some(ConnectionGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
        self.limits.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
        metrics::gauge!(m::WS_CONNECTIONS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let rl = RateLimiter::new(60, 3); // one token per second
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(rl.check(ip, t0) && rl.check(ip, t0) && rl.check(ip, t0));
        assert!(!rl.check(ip, t0));
        assert!(rl.check(other, t0), "buckets are per IP");
        assert!(rl.check(ip, t0 + Duration::from_millis(1100)));
        assert!(!rl.check(ip, t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn connection_caps() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = limits.acquire(a).unwrap();
        let _g2 = limits.acquire(a).unwrap();
        assert!(limits.acquire(a).is_none(), "per-IP cap");
        let _g3 = limits.acquire(b).unwrap();
        assert!(limits.acquire(b).is_none(), "total cap");
        drop(g1);
        assert_eq!(limits.open(), 2);
        assert!(limits.acquire(a).is_some());
    }
}
