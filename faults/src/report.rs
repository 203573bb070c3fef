//! The suite's results table: one row per scenario over all its runs, as Markdown for
//! `docs/reliability.md` and as JSON for machines.

use std::collections::BTreeMap;

use crate::run::Outcome;
use crate::scenario::Scenario;

/// One scenario's runs summed up.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// Runs, and how many passed.
    pub runs: u32,
    /// Runs without a violation.
    pub passed: u32,
    /// Faults injected over all runs.
    pub faults: u32,
    /// 202s over all runs (originals).
    pub accepted: u64,
    /// Retriable answers the load saw (503, 429, refused or reset connections).
    pub retriable: u64,
    /// Invariants checked per run.
    pub invariants: usize,
    /// Slowest recovery over the runs, seconds.
    pub recovery_max_secs: Option<f64>,
    /// Largest resident memory of any service over the runs, MiB.
    pub rss_max_mib: u64,
    /// The seeds.
    pub seeds: Vec<u64>,
}

/// Sums the outcomes per scenario, in suite order.
pub fn rows(outcomes: &[Outcome]) -> Vec<Row> {
    let mut by: BTreeMap<Scenario, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by.entry(o.scenario).or_default().push(o);
    }
    by.into_iter()
        .map(|(scenario, runs)| Row {
            scenario: scenario.name(),
            runs: u32::try_from(runs.len()).unwrap_or(u32::MAX),
            passed: u32::try_from(runs.iter().filter(|o| o.passed()).count()).unwrap_or(0),
            faults: runs.iter().map(|o| o.faults).sum(),
            accepted: runs.iter().map(|o| o.counts.accepted).sum(),
            retriable: runs
                .iter()
                .map(|o| o.counts.unavailable + o.counts.rate_limited + o.counts.transport)
                .sum(),
            invariants: runs.iter().map(|o| o.invariants.len()).max().unwrap_or(0),
            recovery_max_secs: runs
                .iter()
                .filter_map(|o| o.recovery_secs)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r)))),
            rss_max_mib: runs
                .iter()
                .flat_map(|o| o.rss_peak_kib.values())
                .max()
                .map_or(0, |kib| kib / 1024),
            seeds: runs.iter().map(|o| o.seed).collect(),
        })
        .collect()
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | runs passed | faults injected | requests accepted | retriable answers | \
         invariants checked | recovery (max) | peak RSS of a service |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {}/{} | {} | {} | {} | {} | {} | {} MiB |\n",
            r.scenario,
            r.passed,
            r.runs,
            r.faults,
            r.accepted,
            r.retriable,
            r.invariants,
            r.recovery_max_secs
                .map_or("–".to_string(), |s| format!("{s:.1} s")),
            r.rss_max_mib
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Counts;
    use std::path::PathBuf;

    fn outcome(scenario: Scenario, seed: u64, recovery: Option<f64>, broken: bool) -> Outcome {
        Outcome {
            scenario,
            seed,
            faults: 3,
            counts: Counts {
                accepted: 100,
                unavailable: 2,
                transport: 1,
                ..Counts::default()
            },
            transactions: 100,
            invariants: vec!["a".into(), "b".into()],
            violations: if broken { vec!["x".into()] } else { Vec::new() },
            recovery_secs: recovery,
            rss_peak_kib: [("ingress".to_string(), 40 * 1024)].into(),
            timeline: Vec::new(),
            verify_summary: String::new(),
            duration_secs: 1.0,
            dir: PathBuf::new(),
        }
    }

    #[test]
    fn runs_of_one_scenario_are_summed_into_one_row_with_the_slowest_recovery() {
        let rows = rows(&[
            outcome(Scenario::KillAudit, 1, Some(2.0), false),
            outcome(Scenario::KillAudit, 2, Some(5.5), true),
            outcome(Scenario::Poison, 3, None, false),
        ]);
        assert_eq!(rows.len(), 2);
        let audit = &rows[0];
        assert_eq!(audit.scenario, "kill-audit");
        assert_eq!((audit.runs, audit.passed), (2, 1));
        assert_eq!((audit.faults, audit.accepted, audit.retriable), (6, 200, 6));
        assert_eq!(audit.recovery_max_secs, Some(5.5));
        assert_eq!(audit.seeds, vec![1, 2]);
        assert_eq!(rows[1].recovery_max_secs, None);
        let table = markdown(&rows);
        assert!(table.contains("| `kill-audit` | 1/2 | 6 | 200 | 6 | 2 | 5.5 s | 40 MiB |"));
        assert!(table.contains("| `poison` | 1/1 |"));
    }
}
