//! Limits the HTTP edge enforces, and the per-key rate limiter.
//!
//! | limit (`[limits]` key)  | where                                   | over it                         |
//! |-------------------------|-----------------------------------------|---------------------------------|
//! | `max_body_bytes`        | [`crate::request::json_body`]           | 413 `request_entity_too_large`  |
//! | `request_timeout_secs`  | reading a body                          | 408 `request_timeout`           |
//! | `max_header_bytes`      | hyper, while reading the request head   | 431, connection closed          |
//! | `idle_timeout_secs`     | hyper: a connection waiting for a head  | connection closed               |
//! | `rate_limit_per_second` | [`crate::auth`], per API key            | 429 `too_many_requests`         |
//! | `rate_limit_burst`      | the bucket's size                       |                                 |
//!
//! Runs in flight (overall and per key), a run's wall time, workflow steps
//! and iteration sizes are the engine's (`ferrify_engine::limits`).
//! Every error names its limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::ApiError;

/// The edge's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: u64,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Longest time a client may take to send a request's body.
    pub request_timeout: Duration,
    /// Longest time a connection may wait for (the head of) its next request.
    pub idle_timeout: Duration,
    /// Requests per second per API key (a token bucket); `None`: no limit.
    pub rate_limit: Option<Rate>,
}

/// A token bucket's refill rate and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 15 << 20,
            max_header_bytes: 16 << 10,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            rate_limit: None,
        }
    }
}

impl Limits {
    pub fn body_too_large(&self) -> ApiError {
        ApiError::new(
            413,
            "request_entity_too_large",
            format!("The request body exceeds the limit of {} bytes (limits.max_body_bytes).", self.max_body_bytes),
        )
    }

    pub fn body_timeout(&self) -> ApiError {
        ApiError::new(
            408,
            "request_timeout",
            format!(
                "The request body did not arrive within {} s (limits.request_timeout_secs).",
                self.request_timeout.as_secs_f64()
            ),
        )
    }
}

/// Token buckets, one per API key.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket, or refuses naming the limit.
    pub fn check(&self, rate: Rate, key: Uuid) -> Result<(), ApiError> {
        self.check_at(rate, key, Instant::now())
    }

    fn check_at(&self, rate: Rate, key: Uuid, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(key).or_insert(Bucket { tokens: rate.burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_second).min(rate.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        Err(ApiError::new(
            429,
            "too_many_requests",
            format!(
                "Too many requests. Please try again later. This API key may send {} requests per second \
                 (limits.rate_limit_per_second), {} at once (limits.rate_limit_burst).",
                rate.per_second, rate.burst
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket() {
        let limiter = RateLimiter::default();
        let rate = Rate { per_second: 2.0, burst: 3.0 };
        let (k1, k2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(rate, k1, t0).unwrap();
        }
        let e = limiter.check_at(rate, k1, t0).unwrap_err();
        assert_eq!((e.status, e.code), (429, "too_many_requests"));
        assert!(e.message.contains("limits.rate_limit_per_second"));
        limiter.check_at(rate, k2, t0).unwrap();
        limiter.check_at(rate, k1, t0 + Duration::from_millis(500)).unwrap();
        assert!(limiter.check_at(rate, k1, t0 + Duration::from_millis(500)).is_err());
        for _ in 0..3 {
            limiter.check_at(rate, k1, t0 + Duration::from_secs(10)).unwrap();
        }
        assert!(limiter.check_at(rate, k1, t0 + Duration::from_secs(10)).is_err());
    }
}
