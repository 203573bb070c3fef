//! The sweep report: one JSON document with everything, and a Markdown rendering of it.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

use crate::sweep::knee::{self, KneeRule, StageKnee};
use crate::sweep::stats::StepReport;

/// Everything a sweep measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// When the sweep started (RFC 3339, UTC).
    pub started_at: String,
    /// The command line, secrets left out.
    pub command: String,
    /// The ingress base URL.
    pub target: String,
    /// The merchant that signed.
    pub merchant_id: String,
    /// Logical CPUs of this machine.
    pub cores: usize,
    /// The in-flight cap, requests.
    pub in_flight_requests_max: usize,
    /// The per-request timeout, ms.
    pub request_timeout_ms: u64,
    /// The workload, in words.
    pub workload: String,
    /// The knee rule.
    pub knee_rule: KneeRule,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// Index of the knee step.
    pub knee_index: Option<usize>,
    /// Offered rate of the knee step.
    pub knee_rps: Option<u32>,
    /// What limited the first step past the knee, as the generator saw it.
    pub past_knee_limit: Option<String>,
    /// The downstream stage with the largest lag after the first step past the knee.
    pub past_knee_slowest_stage: Option<String>,
    /// Each downstream stage's knee.
    #[serde(default)]
    pub stage_knees: Vec<StageKnee>,
    /// The stage with the lowest knee (ingress when every other stage kept up).
    #[serde(default)]
    pub bottleneck_stage: Option<String>,
    /// Where the record file is.
    pub record_file: Option<String>,
}

impl SweepReport {
    /// Fills in the knee fields from the steps.
    pub fn conclude(&mut self) {
        for step in &mut self.steps {
            step.meets_knee_rule = self.knee_rule.met_by(step);
        }
        self.knee_index = knee::find(&self.steps, &self.knee_rule);
        self.knee_rps = self.knee_index.map(|i| self.steps[i].offered_rps);
        let past = self
            .steps
            .iter()
            .find(|s| !s.meets_knee_rule && self.knee_rps.is_none_or(|k| s.offered_rps > k));
        self.past_knee_limit = past.map(|s| knee::edge_limit(s, &self.knee_rule).to_string());
        self.past_knee_slowest_stage = past.and_then(|s| {
            s.stages
                .iter()
                .filter_map(|d| d.lag_messages_after.map(|lag| (d.stage.clone(), lag)))
                .filter(|(_, lag)| *lag > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(stage, lag)| format!("{stage} ({lag:.0} messages behind)"))
        });
        self.stage_knees = knee::stage_knees(&self.steps, &self.knee_rule);
        self.bottleneck_stage =
            (!self.steps.is_empty()).then(|| knee::bottleneck(self.knee_rps, &self.stage_knees));
    }

    /// Whether every step's counts add up.
    pub fn is_consistent(&self) -> bool {
        self.steps.iter().all(StepReport::is_consistent)
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "–".into(),
    }
}

fn rate(v: f64) -> String {
    format!("{v:.0}")
}

/// Renders the report as Markdown (for a file or a terminal).
pub fn markdown(r: &SweepReport, chart_file: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Ledgerline open-loop sweep\n");
    let _ = writeln!(md, "- started: {}", r.started_at);
    let _ = writeln!(md, "- target: {} (merchant `{}`)", r.target, r.merchant_id);
    let _ = writeln!(md, "- command: `{}`", r.command);
    let _ = writeln!(
        md,
        "- generator: open loop, constant arrival rate per step, latency from each request's \
         intended send time; in-flight cap {} requests, request timeout {} ms; {} cores on this machine",
        r.in_flight_requests_max, r.request_timeout_ms, r.cores
    );
    let _ = writeln!(md, "- workload: {}", r.workload);
    let _ = writeln!(
        md,
        "- knee rule: ≥ {} % of offered answered 202 and p99 ≤ {} ms",
        r.knee_rule.accepted_percent_min, r.knee_rule.p99_ms_max
    );
    if let Some(file) = &r.record_file {
        let _ = writeln!(md, "- accepted transactions recorded in `{file}`");
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Result\n");
    match (r.knee_rps, r.knee_index) {
        (Some(rps), Some(i)) => {
            let k = &r.steps[i];
            let _ = writeln!(
                md,
                "**Knee: {rps} req/s offered** ({} accepted/s, p99 {} ms).",
                rate(k.accepted_rps),
                ms(k.latency_ms.p99)
            );
        }
        _ => {
            let _ = writeln!(md, "**No step met the knee rule.**");
        }
    }
    if let Some(limit) = &r.past_knee_limit {
        let _ = writeln!(
            md,
            "\nFirst step past the knee, as the generator saw it: {limit}."
        );
    }
    if let Some(stage) = &r.past_knee_slowest_stage {
        let _ = writeln!(
            md,
            "Stage furthest behind at the end of that step (consumer lag): {stage}."
        );
    }
    if !r.stage_knees.is_empty() {
        let _ = writeln!(
            md,
            "\n| stage | knee (offered/s) | peak rate/s |\n|---|---:|---:|\n| ingress (202s) | {} | {} |",
            r.knee_rps.map_or("none".into(), |k| k.to_string()),
            rate(r.steps.iter().map(|s| s.accepted_rps).fold(0.0, f64::max))
        );
        for k in &r.stage_knees {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                k.stage,
                k.knee_rps.map_or("none".into(), |k| k.to_string()),
                rate(k.peak_per_second)
            );
        }
        let _ = writeln!(
            md,
            "\nA stage's knee is the highest offered rate at which it handled ≥ {} % of what \
             ingress accepted over the step (audit: 3 documents per transaction).",
            r.knee_rule.accepted_percent_min
        );
    }
    if let Some(stage) = &r.bottleneck_stage {
        let _ = writeln!(md, "\n**Bottleneck: {stage}.**");
    }
    if r.steps.iter().any(|s| s.generator_limited) {
        let _ = writeln!(
            md,
            "\n⚠ Steps marked *gen* sent more than 1 % of their requests over 5 ms late: the \
             generator (or the machine it shares) could not keep the schedule there."
        );
    }
    if let Some(chart) = chart_file {
        let _ = writeln!(
            md,
            "\n![accepted rate and p99 against offered rate]({chart})"
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Steps\n");
    let _ = writeln!(
        md,
        "| offered/s | offered | sent | unsent (cap) | 202 | 429 | 503 | errors | accepted/s | p50 ms | p99 ms | p99.9 ms | max ms | gen CPU s | gen CPU % | gen µs/req | late sends | knee rule |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--|"
    );
    for s in &r.steps {
        let verdict = match (s.meets_knee_rule, s.generator_limited) {
            (true, false) => "met",
            (true, true) => "met (gen)",
            (false, false) => "missed",
            (false, true) => "missed (gen)",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.0} | {} | {} |",
            s.offered_rps,
            s.offered,
            s.sent,
            s.unsent_in_flight_cap,
            s.accepted,
            s.rate_limited,
            s.unavailable,
            s.errors,
            rate(s.accepted_rps),
            ms(s.latency_ms.p50),
            ms(s.latency_ms.p99),
            ms(s.latency_ms.p999),
            ms(s.latency_ms.max),
            s.generator.cpu_seconds,
            s.generator.cpu_share_percent,
            s.generator.cpu_us_per_request,
            s.generator.late_sends,
            verdict
        );
    }
    let _ = writeln!(md);

    let stages = ["ingress", "processor", "ledger-writer", "audit"];
    if r.steps.iter().any(|s| !s.stages.is_empty()) {
        let _ = writeln!(
            md,
            "## Stages (from each service's /metrics over the step)\n"
        );
        let _ = writeln!(
            md,
            "Throughput per second of the step: ingress = 2xx POSTs, processor = decisions, \
             ledger-writer = transactions written, audit = documents stored (about 3 per \
             transaction: requested, decided, posted). Lag = messages behind at the end of the \
             step (the services refresh it every 10 s).\n"
        );
        let _ = writeln!(
            md,
            "| offered/s | ingress/s | processor/s | ledger/s | audit docs/s | processor lag | ledger lag | audit lag |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &r.steps {
            let cell = |stage: &str| {
                s.stages
                    .iter()
                    .find(|d| d.stage == stage)
                    .map(|d| rate(d.per_second))
                    .unwrap_or_else(|| "–".into())
            };
            let lag = |stage: &str| {
                s.stages
                    .iter()
                    .find(|d| d.stage == stage)
                    .and_then(|d| d.lag_messages_after)
                    .map(|l| format!("{l:.0}"))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.offered_rps,
                cell(stages[0]),
                cell(stages[1]),
                cell(stages[2]),
                cell(stages[3]),
                lag(stages[1]),
                lag(stages[2]),
                lag(stages[3])
            );
        }
        let _ = writeln!(md);
    }

    let watched: Vec<&str> = r
        .steps
        .first()
        .map(|s| s.watched.iter().map(|w| w.name.as_str()).collect())
        .unwrap_or_default();
    if !watched.is_empty() {
        let _ = writeln!(md, "## Process CPU over each step (% of one core)\n");
        let _ = writeln!(md, "| offered/s | generator | {} |", watched.join(" | "));
        let _ = writeln!(md, "|---:|---:|{}", "---:|".repeat(watched.len()));
        for s in &r.steps {
            let cells: Vec<String> = watched
                .iter()
                .map(|name| {
                    s.watched
                        .iter()
                        .find(|w| w.name == *name)
                        .map(|w| format!("{:.0}", w.core_percent))
                        .unwrap_or_else(|| "–".into())
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} |",
                s.offered_rps,
                s.generator.cpu_share_percent * r.cores as f64,
                cells.join(" | ")
            );
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Reading this report\n");
    let _ = writeln!(
        md,
        "- *offered* is what the schedule called for; *sent* what left the generator. The \
         difference is *unsent (cap)*: requests that found the in-flight cap full, which happens \
         when answers slow down (the server's limit, not the generator's).\n\
         - sent = 202 + 429 + 503 + errors in every row; errors are other statuses, transport \
         failures and timeouts.\n\
         - Latency counts from the moment each request was *due*, so a slow server cannot hide \
         queueing by slowing the generator down (no coordinated omission).\n\
         - *gen CPU %* is the generator's share of all cores; *late sends* are requests \
         dispatched more than 5 ms after they were due. A step with many late sends measured the \
         generator, not the server."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::StageDelta;
    use crate::sweep::stats::{GeneratorUse, Percentiles, StepStats};
    use std::time::Duration;

    fn step(rps: u32, accepted: u64, unavailable: u64, p99: f64, lag: f64) -> StepReport {
        let mut s = StepReport::new(
            rps,
            1,
            Duration::from_secs(1),
            &StepStats::default(),
            GeneratorUse::default(),
        );
        s.offered = u64::from(rps);
        s.sent = accepted + unavailable;
        s.unsent_in_flight_cap = s.offered - s.sent;
        s.accepted = accepted;
        s.unavailable = unavailable;
        s.accepted_rps = accepted as f64;
        s.latency_ms = Percentiles {
            p50: Some(p99 / 4.0),
            p99: Some(p99),
            p999: Some(p99 * 1.5),
            max: Some(p99 * 2.0),
        };
        s.stages = vec![
            StageDelta {
                stage: "ingress".into(),
                processed: accepted as f64,
                per_second: accepted as f64,
                lag_messages_after: None,
            },
            StageDelta {
                stage: "processor".into(),
                processed: accepted as f64,
                per_second: accepted as f64,
                lag_messages_after: Some(lag),
            },
        ];
        s
    }

    fn report() -> SweepReport {
        let mut r = SweepReport {
            started_at: "2026-11-23T22:00:00Z".into(),
            command: "loadtest sweep --rates 100,200,400".into(),
            target: "http://127.0.0.1:8080".into(),
            merchant_id: "lt".into(),
            cores: 2,
            in_flight_requests_max: 256,
            request_timeout_ms: 5_000,
            workload: "1000 accounts, uniform".into(),
            knee_rule: KneeRule::default(),
            steps: vec![
                step(100, 100, 0, 10.0, 0.0),
                step(200, 198, 2, 20.0, 5.0),
                step(400, 250, 150, 900.0, 3_000.0),
            ],
            knee_index: None,
            knee_rps: None,
            past_knee_limit: None,
            past_knee_slowest_stage: None,
            stage_knees: Vec::new(),
            bottleneck_stage: None,
            record_file: Some("out/accepted.jsonl".into()),
        };
        r.conclude();
        r
    }

    #[test]
    fn concluding_marks_each_step_and_names_the_knee_and_what_limited_past_it() {
        let r = report();
        assert_eq!(r.knee_rps, Some(200));
        assert_eq!(
            r.steps
                .iter()
                .map(|s| s.meets_knee_rule)
                .collect::<Vec<_>>(),
            vec![true, true, false]
        );
        assert!(r.past_knee_limit.as_deref().unwrap().starts_with("503s"));
        assert_eq!(
            r.past_knee_slowest_stage.as_deref(),
            Some("processor (3000 messages behind)")
        );
        // The processor decided everything accepted at every step: the front door limits.
        assert_eq!(r.stage_knees.len(), 1);
        assert_eq!(r.stage_knees[0].knee_rps, Some(400));
        assert_eq!(r.bottleneck_stage.as_deref(), Some("ingress"));
        assert!(r.is_consistent());
    }

    #[test]
    fn the_markdown_has_a_row_per_step_and_names_the_knee() {
        let md = markdown(&report(), Some("sweep.svg"));
        assert!(md.contains("**Knee: 200 req/s offered**"), "{md}");
        assert!(
            md.contains("| 400 | 400 | 400 | 0 | 250 | 0 | 150 | 0 | 250 |"),
            "{md}"
        );
        assert!(md.contains("![accepted rate and p99 against offered rate](sweep.svg)"));
        assert!(md.contains("| processor | 400 | 250 |"), "{md}");
        assert!(md.contains("**Bottleneck: ingress.**"), "{md}");
        assert!(
            md.contains("| 400 | 250 | 250 | – | – | 3000 | – | – |"),
            "{md}"
        );
    }

    #[test]
    fn the_json_report_round_trips() {
        let r = report();
        let back: SweepReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
