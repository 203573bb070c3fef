//! The knee: the highest offered rate the system still keeps up with. A step meets the rule
//! when at least `accepted_percent_min` % of what was offered got a 202 and the p99 latency
//! (from the intended send time) stays within `p99_ms_max`.
//!
//! Each downstream stage has a knee of its own: the highest offered rate at which it handled,
//! over the step, at least the same share of what ingress accepted. The stage with the lowest
//! knee is the pipeline's bottleneck; when every stage keeps up wherever ingress does, the
//! front door is.

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
    // A late dispatch adds at most its lag to a latency: the generator is to blame only when
    // nothing was lost and the p99 would have met the bound without the worst lag.
    let late = step.generator.dispatch_lag_max_ms;
    let slow_anyway = step
        .latency_ms
        .p99
        .is_some_and(|p| p - late > rule.p99_ms_max);
    if step.generator_limited && lost == 0 && !slow_anyway {
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

/// Messages a stage handles for each accepted transaction. The audit stores one document per
/// event: requested, decided and the ledger's result.
pub fn per_transaction(stage: &str) -> f64 {
    match stage {
        "audit" => 3.0,
        _ => 1.0,
    }
}

/// Whether `stage` kept pace with ingress over `step`: it handled at least
/// `accepted_percent_min` % of the step's 202s (times [`per_transaction`]). `None` when the
/// stage was not scraped in that step.
pub fn stage_kept_up(step: &StepReport, stage: &str, rule: &KneeRule) -> Option<bool> {
    let delta = step.stages.iter().find(|d| d.stage == stage)?;
    let expected = step.accepted as f64 * per_transaction(stage);
    Some(delta.processed * 100.0 >= expected * f64::from(rule.accepted_percent_min))
}

/// One stage's knee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageKnee {
    /// The stage.
    pub stage: String,
    /// Highest offered rate at which the stage kept pace (`None`: at none).
    pub knee_rps: Option<u32>,
    /// Its highest rate over any step, per second.
    pub peak_per_second: f64,
}

/// The knee of every scraped downstream stage (ingress's is the sweep's own knee).
pub fn stage_knees(steps: &[StepReport], rule: &KneeRule) -> Vec<StageKnee> {
    crate::scrape::STAGES
        .iter()
        .filter(|stage| **stage != "ingress")
        .filter(|stage| {
            steps
                .iter()
                .any(|s| stage_kept_up(s, stage, rule).is_some())
        })
        .map(|stage| StageKnee {
            stage: (*stage).to_string(),
            knee_rps: steps
                .iter()
                .filter(|s| s.accepted > 0 && stage_kept_up(s, stage, rule) == Some(true))
                .map(|s| s.offered_rps)
                .max(),
            peak_per_second: steps
                .iter()
                .flat_map(|s| s.stages.iter().filter(|d| d.stage == *stage))
                .map(|d| d.per_second)
                .fold(0.0, f64::max),
        })
        .collect()
}

/// The stage that limits the pipeline: the downstream stage with the lowest knee when it is
/// below the front door's (`knee_rps`), otherwise ingress.
pub fn bottleneck(knee_rps: Option<u32>, stages: &[StageKnee]) -> String {
    // `None` (kept up at no step) orders below every rate.
    match stages.iter().min_by_key(|k| k.knee_rps) {
        Some(k) if k.knee_rps < knee_rps || (k.knee_rps.is_none() && knee_rps.is_none()) => {
            k.stage.clone()
        }
        _ => "ingress".to_string(),
    }
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

    fn with_stages(mut s: StepReport, processed: &[(&str, f64)]) -> StepReport {
        s.stages = processed
            .iter()
            .map(|(stage, n)| crate::scrape::StageDelta {
                stage: (*stage).into(),
                processed: *n,
                per_second: *n,
                lag_messages_after: None,
            })
            .collect();
        s
    }

    #[test]
    fn a_stage_keeps_up_when_it_handles_the_share_of_what_was_accepted() {
        let rule = KneeRule::default();
        let s = with_stages(
            step(100, 100, Some(1.0)),
            &[
                ("processor", 95.0),
                ("ledger-writer", 94.0),
                ("audit", 290.0),
            ],
        );
        assert_eq!(stage_kept_up(&s, "processor", &rule), Some(true));
        assert_eq!(stage_kept_up(&s, "ledger-writer", &rule), Some(false));
        assert_eq!(stage_kept_up(&s, "audit", &rule), Some(true));
        assert_eq!(stage_kept_up(&s, "ingress", &rule), None);
    }

    #[test]
    fn the_slowest_stage_below_the_front_door_is_the_bottleneck() {
        let rule = KneeRule::default();
        let steps = vec![
            with_stages(
                step(100, 100, Some(1.0)),
                &[("processor", 100.0), ("ledger-writer", 100.0)],
            ),
            with_stages(
                step(200, 200, Some(1.0)),
                &[("processor", 200.0), ("ledger-writer", 120.0)],
            ),
            with_stages(
                step(400, 300, Some(900.0)),
                &[("processor", 300.0), ("ledger-writer", 120.0)],
            ),
        ];
        let knees = stage_knees(&steps, &rule);
        assert_eq!(knees.len(), 2);
        assert_eq!(knees[0].knee_rps, Some(400));
        assert_eq!(knees[1].knee_rps, Some(100));
        assert_eq!(knees[1].peak_per_second, 120.0);
        let front = find(&steps, &rule).map(|i| steps[i].offered_rps);
        assert_eq!(front, Some(200));
        assert_eq!(bottleneck(front, &knees), "ledger-writer");
    }

    #[test]
    fn when_every_stage_keeps_up_the_front_door_is_the_bottleneck() {
        let knees = vec![StageKnee {
            stage: "processor".into(),
            knee_rps: Some(400),
            peak_per_second: 400.0,
        }];
        assert_eq!(bottleneck(Some(400), &knees), "ingress");
        assert_eq!(bottleneck(None, &[]), "ingress");
        let behind = vec![StageKnee {
            knee_rps: None,
            ..knees[0].clone()
        }];
        assert_eq!(bottleneck(Some(100), &behind), "processor");
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

    #[test]
    fn a_late_generator_is_blamed_only_when_its_lag_explains_the_miss() {
        let rule = KneeRule::default();
        let mut s = step(1_000, 1_000, Some(600.0));
        s.generator_limited = true;
        s.generator.dispatch_lag_max_ms = 120.0;
        assert!(edge_limit(&s, &rule).starts_with("the generator"));
        s.latency_ms.p99 = Some(700.0);
        assert!(edge_limit(&s, &rule).starts_with("latency"));
        let mut losing = step(1_000, 600, Some(600.0));
        losing.generator_limited = true;
        losing.generator.dispatch_lag_max_ms = 120.0;
        assert!(edge_limit(&losing, &rule).starts_with("503s"));
    }
}
