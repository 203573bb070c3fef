//! The arrival schedule: which rates a sweep offers, and when each request of a step is due.
//!
//! Request `i` of a step at `r` requests per second is due at `i / r` seconds after the step
//! starts, computed in integer nanoseconds from the step start (never by adding periods), so
//! the schedule does not drift however long the step.

use std::time::Duration;

/// Highest offered rate a step may have, in requests per second.
pub const RATE_RPS_MAX: u32 = 1_000_000;

/// Most steps in one sweep.
pub const STEPS_MAX: usize = 64;

/// Why a rate plan is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// No steps, or more than [`STEPS_MAX`].
    #[error("a sweep has 1..={STEPS_MAX} steps, got {0}")]
    Steps(usize),
    /// A rate of zero or above [`RATE_RPS_MAX`].
    #[error("rates must be within 1..={RATE_RPS_MAX} requests per second, got {0}")]
    Rate(u64),
    /// The factor does not make every step faster than the one before.
    #[error("--factor {0} must be > 1 and make each step at least 1 req/s faster")]
    Factor(f64),
    /// An explicit list that does not increase.
    #[error("--rates must be strictly increasing")]
    NotIncreasing,
}

/// Rates `start × factor^i` for `i` in `0..steps`, rounded to whole requests per second.
pub fn geometric(start_rps: u32, factor: f64, steps: usize) -> Result<Vec<u32>, ScheduleError> {
    if steps == 0 || steps > STEPS_MAX {
        return Err(ScheduleError::Steps(steps));
    }
    if !factor.is_finite() || factor <= 1.0 {
        return Err(ScheduleError::Factor(factor));
    }
    let mut rates = Vec::with_capacity(steps);
    let mut rate = f64::from(start_rps);
    for _ in 0..steps {
        let rounded = rate.round();
        if !(1.0..=f64::from(RATE_RPS_MAX)).contains(&rounded) {
            return Err(ScheduleError::Rate(rounded as u64));
        }
        rates.push(rounded as u32);
        rate *= factor;
    }
    if rates.windows(2).any(|w| w[1] <= w[0]) {
        return Err(ScheduleError::Factor(factor));
    }
    Ok(rates)
}

/// An explicit list of rates, checked.
pub fn explicit(rates: &[u32]) -> Result<Vec<u32>, ScheduleError> {
    if rates.is_empty() || rates.len() > STEPS_MAX {
        return Err(ScheduleError::Steps(rates.len()));
    }
    if let Some(bad) = rates.iter().find(|r| **r == 0 || **r > RATE_RPS_MAX) {
        return Err(ScheduleError::Rate(u64::from(*bad)));
    }
    if rates.windows(2).any(|w| w[1] <= w[0]) {
        return Err(ScheduleError::NotIncreasing);
    }
    Ok(rates.to_vec())
}

/// How many requests a step of `rate_rps` for `duration_secs` offers.
pub fn offered(rate_rps: u32, duration_secs: u32) -> u64 {
    u64::from(rate_rps) * u64::from(duration_secs)
}

/// When request `index` of a step at `rate_rps` is due, after the step's start.
pub fn due_after_start(index: u64, rate_rps: u32) -> Duration {
    debug_assert!(rate_rps > 0);
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate_rps);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_geometric_plan_multiplies_the_rate_each_step() {
        assert_eq!(
            geometric(500, 2.0, 4).unwrap(),
            vec![500, 1_000, 2_000, 4_000]
        );
        assert_eq!(geometric(100, 1.5, 3).unwrap(), vec![100, 150, 225]);
    }

    #[test]
    fn a_factor_that_does_not_increase_the_rate_is_refused() {
        assert_eq!(geometric(1, 1.2, 3), Err(ScheduleError::Factor(1.2)));
        assert!(geometric(100, 1.0, 2).is_err());
        assert!(geometric(100, f64::NAN, 2).is_err());
        assert_eq!(geometric(100, 2.0, 0), Err(ScheduleError::Steps(0)));
    }

    #[test]
    fn an_explicit_list_must_be_positive_and_increasing() {
        assert_eq!(explicit(&[10, 20, 40]).unwrap(), vec![10, 20, 40]);
        assert_eq!(explicit(&[10, 10]), Err(ScheduleError::NotIncreasing));
        assert_eq!(explicit(&[0, 10]), Err(ScheduleError::Rate(0)));
        assert_eq!(explicit(&[]), Err(ScheduleError::Steps(0)));
    }

    #[test]
    fn requests_are_spread_evenly_over_each_second() {
        assert_eq!(due_after_start(0, 4), Duration::ZERO);
        assert_eq!(due_after_start(1, 4), Duration::from_millis(250));
        assert_eq!(due_after_start(4, 4), Duration::from_secs(1));
        assert_eq!(due_after_start(3, 3_000), Duration::from_millis(1));
    }

    #[test]
    fn the_schedule_does_not_drift_over_a_long_step() {
        // 7 req/s has no exact period in nanoseconds; request 7·3600 is still due at 3600 s.
        assert_eq!(due_after_start(7 * 3_600, 7), Duration::from_secs(3_600));
        assert_eq!(offered(7, 3_600), 25_200);
    }
}
