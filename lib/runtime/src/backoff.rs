//! Capped exponential backoff with jitter, for retrying dependency outages.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Retry pacing for one dependency. Outages are retried without limit on *count* (a payment
/// pipeline must not drop work because a database restarted) but with a capped delay, and every
/// attempt is logged and counted so a stuck loop is visible.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffSettings {
    /// First delay after a failure.
    pub initial_ms: u64,
    /// Largest delay between attempts.
    pub max_ms: u64,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self {
            initial_ms: 50,
            max_ms: 5_000,
        }
    }
}

impl BackoffSettings {
    /// Checks `initial_ms <= max_ms` and both > 0.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        crate::settings::ensure(
            self.initial_ms > 0 && self.initial_ms <= self.max_ms,
            name,
            "requires 0 < initial_ms <= max_ms",
        )
    }
}

/// The state of one retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: BackoffSettings,
    attempt: u32,
}

impl Backoff {
    /// A fresh sequence.
    pub fn new(settings: BackoffSettings) -> Self {
        Self {
            settings,
            attempt: 0,
        }
    }

    /// How many failures this sequence has seen.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt: `initial * 2^attempt`, capped, with ±25 % jitter so
    /// many consumers recovering together do not retry in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let shift = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let base = self
            .settings
            .initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.settings.max_ms);
        let jitter_span = base / 4;
        let jitter = if jitter_span == 0 {
            0
        } else {
            rand::random_range(0..=2 * jitter_span)
        };
        Duration::from_millis(base - jitter_span + jitter)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A retry loop gave up because shutdown began; the caller leaves its work uncommitted so it is
/// redelivered and finished idempotently by the next owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

/// Runs `op` until it succeeds, sleeping with capped backoff between failures; gives up only
/// when `shutdown` is cancelled. `observe` sees every outcome (`None` on success, the error on
/// failure) so callers can flip readiness and count retries under their own metric names.
pub async fn retry<T, E, F, Fut>(
    settings: BackoffSettings,
    dependency: &'static str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut observe: impl FnMut(Option<&E>),
    mut op: F,
) -> Result<T, Interrupted>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(settings);
    loop {
        match op().await {
            Ok(value) => {
                observe(None);
                return Ok(value);
            }
            Err(error) => {
                observe(Some(&error));
                let delay = backoff.next_delay();
                tracing::warn!(%error, dependency, attempt = backoff.attempts(), ?delay, "dependency failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Interrupted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// [`retry`] bound to one service's readiness flags and retry counter, so each stage's loop
/// says only what it retries.
#[derive(Debug, Clone)]
pub struct Retrier {
    settings: BackoffSettings,
    readiness: crate::health::Readiness,
    counter: &'static str,
}

impl Retrier {
    /// Counts retries in `counter` (labelled `dependency`) and flips `readiness` flags.
    pub fn new(
        settings: BackoffSettings,
        readiness: crate::health::Readiness,
        counter: &'static str,
    ) -> Self {
        Self {
            settings,
            readiness,
            counter,
        }
    }

    /// Runs `op` until it succeeds or shutdown; readiness flag `check` is false while it fails.
    pub async fn run<T, E, F, Fut>(
        &self,
        dependency: &'static str,
        check: &'static str,
        shutdown: &tokio_util::sync::CancellationToken,
        op: F,
    ) -> Result<T, Interrupted>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let observe = |error: Option<&E>| {
            self.readiness.set(check, error.is_none());
            if error.is_some() {
                metrics::counter!(self.counter, "dependency" => dependency).increment(1);
            }
        };
        retry(self.settings, dependency, shutdown, observe, op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_under_the_cap() {
        let mut b = Backoff::new(BackoffSettings {
            initial_ms: 100,
            max_ms: 1_000,
        });
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_millis(1_250));
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
    }
}
