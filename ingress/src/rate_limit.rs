//! Per-merchant token buckets in integer milli-tokens (no floats, no drift).

use crate::config::RateLimitSettings;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    milli_tokens: u64,
    last: Instant,
}

/// Token buckets keyed by merchant id. One short mutex section per request: the map is small
/// (one entry per configured merchant) and the critical section is a few integer operations.
#[derive(Debug)]
pub struct RateLimiter {
    default: RateLimitSettings,
    overrides: HashMap<String, RateLimitSettings>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Over the limit; a token will be available after this long.
    Limited { retry_after: Duration },
}

impl RateLimiter {
    /// A limiter with a default and per-merchant overrides.
    pub fn new(default: RateLimitSettings, overrides: HashMap<String, RateLimitSettings>) -> Self {
        Self {
            default,
            overrides,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `merchant` at `now`.
    pub fn check(&self, merchant: &str, now: Instant) -> Admission {
        let limit = self
            .overrides
            .get(merchant)
            .copied()
            .unwrap_or(self.default);
        if limit.per_second == 0 {
            return Admission::Allowed;
        }
        let capacity = u64::from(limit.burst.max(1)) * 1_000;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(merchant.to_string()).or_insert(Bucket {
            milli_tokens: capacity,
            last: now,
        });
        let elapsed_us = u64::try_from(now.saturating_duration_since(bucket.last).as_micros())
            .unwrap_or(u64::MAX);
        // per_second tokens per second = per_second milli-tokens per millisecond.
        let refill = elapsed_us.saturating_mul(u64::from(limit.per_second)) / 1_000;
        if refill > 0 {
            bucket.milli_tokens = bucket.milli_tokens.saturating_add(refill).min(capacity);
            bucket.last = now;
        }
        if bucket.milli_tokens >= 1_000 {
            bucket.milli_tokens -= 1_000;
            Admission::Allowed
        } else {
            let missing = 1_000 - bucket.milli_tokens;
            let wait_us = missing.saturating_mul(1_000) / u64::from(limit.per_second);
            Admission::Limited {
                retry_after: Duration::from_micros(wait_us.max(1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let rl = RateLimiter::new(
            RateLimitSettings {
                per_second: 10,
                burst: 3,
            },
            HashMap::new(),
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rl.check("m", t0), Admission::Allowed);
        }
        assert!(matches!(rl.check("m", t0), Admission::Limited { .. }));
        // 100 ms later one token (10/s) is back.
        assert_eq!(
            rl.check("m", t0 + Duration::from_millis(100)),
            Admission::Allowed
        );
        assert!(matches!(
            rl.check("m", t0 + Duration::from_millis(100)),
            Admission::Limited { .. }
        ));
    }

    #[test]
    fn merchants_have_separate_buckets_and_overrides() {
        let overrides = HashMap::from([(
            "vip".to_string(),
            RateLimitSettings {
                per_second: 0,
                burst: 0,
            },
        )]);
        let rl = RateLimiter::new(
            RateLimitSettings {
                per_second: 1,
                burst: 1,
            },
            overrides,
        );
        let t0 = Instant::now();
        assert_eq!(rl.check("a", t0), Admission::Allowed);
        assert_eq!(rl.check("b", t0), Admission::Allowed);
        assert!(matches!(rl.check("a", t0), Admission::Limited { .. }));
        for _ in 0..100 {
            assert_eq!(rl.check("vip", t0), Admission::Allowed);
        }
    }
}
