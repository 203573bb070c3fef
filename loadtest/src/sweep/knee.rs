//! The knee: the highest offered rate the system still keeps up with. A step meets the rule
//! when at least `accepted_percent_min` % of what was offered got a 202 and the p99 latency
//! (from the intended send time) stays within `p99_ms_max`.

use serde::{Deserialize, Serialize};

use crate::sweep::stats::StepReport;

/// What "keeping up" means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KneeRule {
    /// Least share of offered requests answered 202, percent.
    pub accepted_percent_min: u8,
    /// Largest p99 of answered requests, milliseconds.
    pub p99_ms_max: f64,
}

impl Default for KneeRule {
    fn default() -> Self {
        KneeRule {
            accepted_percent_min: 95,
            p99_ms_max: 500.0,
        }
    }
}

impl KneeRule {
    /// Whether `step` meets the rule. A step that answered nothing does not.
    pub fn met_by(&self, step: &StepReport) -> bool {
        let enough = u128::from(step.accepted) * 100
            >= u128::from(step.offered) * u128::from(self.accepted_percent_min);
        let bounded = step
            .latency_ms
            .p99
            .is_some_and(|p99| p99 <= self.p99_ms_max);
        step.offered > 0 && enough && bounded
    }
}

/// The index of the knee step: the highest offered rate that meets the rule (`None` when no
/// step does).
pub fn find(steps: &[StepReport], rule: &KneeRule) -> Option<usize> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| rule.met_by(s))
        .max_by_key(|(_, s)| s.offered_rps)
        .map(|(i, _)| i)
}

/// What limited the first step past the knee, in one phrase, from what the generator saw.
/// (The per-stage figures say which downstream stage fell behind.)
pub fn edge_limit(step: &StepReport, rule: &KneeRule) -> &'static str {
    let lost = step.offered.saturating_sub(step.accepted);
    if step.generator_limited {
        return "the generator fell behind its schedule (its own CPU or the machine's)";
    }
    let slow = step.latency_ms.p99.is_some_and(|p| p > rule.p99_ms_max);
    if lost == 0 || (slow && lost * 20 <= step.offered) {
        return "latency: answers slower than the p99 bound while still accepting";
    }
    let causes = [
        (
            step.unavailable,
            "503s: Kafka did not acknowledge in time or too many waited",
        ),
        (step.rate_limited, "429s: the merchant's rate limit"),
        (
            step.unsent_in_flight_cap,
            "the in-flight cap: answers too slow to free connections (Little's law)",
        ),
        (
            step.timeouts,
            "timeouts: no answer within the request timeout",
        ),
        (
            step.errors.saturating_sub(step.timeouts),
            "errors: other statuses or transport failures",
        ),
    ];
    causes
        .iter()
        .max_by_key(|(n, _)| *n)
        .map(|(_, why)| *why)
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::stats::{GeneratorUse, Percentiles, StepStats};
    use std::time::Duration;

    fn step(rps: u32, accepted: u64, p99: Option<f64>) -> StepReport {
        let stats = StepStats::default();
        let mut r = StepReport::new(
            rps,
            1,
            Duration::from_secs(1),
            &stats,
            GeneratorUse::default(),
        );
        r.offered = u64::from(rps);
        r.sent = u64::from(rps);
        r.accepted = accepted;
        r.unavailable = u64::from(rps) - accepted;
        r.latency_ms = Percentiles {
            p99,
            ..Percentiles::default()
        };
        r
    }

    #[test]
    fn the_knee_is_the_highest_rate_that_accepts_enough_with_bounded_p99() {
        let steps = vec![
            step(100, 100, Some(5.0)),
            step(200, 199, Some(9.0)),
            step(400, 300, Some(900.0)),
            step(800, 310, Some(2_000.0)),
        ];
        assert_eq!(find(&steps, &KneeRule::default()), Some(1));
    }

    #[test]
    fn exactly_the_minimum_share_meets_the_rule() {
        let rule = KneeRule::default();
        assert!(rule.met_by(&step(100, 95, Some(1.0))));
        assert!(!rule.met_by(&step(100, 94, Some(1.0))));
    }

    #[test]
    fn an_unbounded_p99_or_no_answer_at_all_misses_the_rule() {
        let rule = KneeRule::default();
        assert!(!rule.met_by(&step(100, 100, Some(501.0))));
        assert!(!rule.met_by(&step(100, 100, None)));
        assert_eq!(find(&[step(100, 10, Some(1.0))], &rule), None);
    }

    #[test]
    fn a_noisy_step_above_a_failing_one_still_counts_as_the_highest() {
        let steps = vec![
            step(100, 100, Some(5.0)),
            step(200, 150, Some(5.0)),
            step(400, 400, Some(5.0)),
        ];
        assert_eq!(find(&steps, &KneeRule::default()), Some(2));
    }

    #[test]
    fn the_edge_limit_names_the_dominant_loss() {
        let rule = KneeRule::default();
        let s = step(1_000, 600, Some(3_000.0));
        assert!(edge_limit(&s, &rule).starts_with("503s"));
        let mut capped = step(1_000, 1_000, Some(3_000.0));
        capped.unavailable = 0;
        capped.accepted = 500;
        capped.sent = 500;
        capped.unsent_in_flight_cap = 500;
        assert!(edge_limit(&capped, &rule).starts_with("the in-flight cap"));
        let slow = step(1_000, 1_000, Some(3_000.0));
        assert!(edge_limit(&slow, &rule).starts_with("latency"));
    }
}
