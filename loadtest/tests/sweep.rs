//! A tiny open-loop sweep against the real ingress: the report files appear and every step's
//! counts add up. No latency or throughput figure is asserted.

mod support;

use loadtest::scrape::Target;
use loadtest::sweep::generator::SenderSettings;
use loadtest::sweep::knee::KneeRule;
use loadtest::sweep::{self, SweepSettings};
use std::time::Duration;
use support::*;

// Two one-second steps at low rates: sweep.json, sweep.md and sweep.svg are written, each
// step offered rate × seconds requests, sent = 202 + 429 + 503 + errors, and the record file
// holds one line per 202.
#[tokio::test]
async fn a_tiny_sweep_writes_reports_whose_counts_add_up() {
    let stack = Stack::ingress().await;
    let out = stack.dir.join("sweep");

    let output = sweep::run(SweepSettings {
        sender: SenderSettings {
            base_url: stack.url(),
            in_flight_requests_max: 64,
            request_timeout: Duration::from_secs(30),
        },
        merchant: merchant(),
        workload: workload(),
        rates_rps: vec![5, 10],
        step_secs: 1,
        pause_secs: 0,
        knee_rule: KneeRule::default(),
        scrape_targets: vec![Target {
            stage: "ingress".into(),
            url: format!("{}/metrics", stack.url()),
        }],
        watched: Vec::new(),
        out_dir: out.clone(),
        record_file: out.join("accepted.jsonl"),
        command: "loadtest sweep (test)".into(),
    })
    .await
    .unwrap();

    for file in [&output.json, &output.markdown, &output.chart] {
        assert!(file.is_file(), "{} written", file.display());
    }
    let report: sweep::report::SweepReport =
        serde_json::from_str(&std::fs::read_to_string(&output.json).unwrap()).unwrap();
    assert_eq!(report.steps.len(), 2);
    assert_eq!(
        report.steps.iter().map(|s| s.offered).collect::<Vec<_>>(),
        vec![5, 10]
    );
    for step in &report.steps {
        assert_eq!(
            step.sent,
            step.accepted + step.rate_limited + step.unavailable + step.errors,
            "{step:?}"
        );
        assert_eq!(step.offered, step.sent + step.unsent_in_flight_cap);
        assert!(step.generator.cpu_seconds >= 0.0);
    }
    assert!(report.is_consistent());
    let accepted: u64 = report.steps.iter().map(|s| s.accepted).sum();
    let records = loadtest::record::read(&out.join("accepted.jsonl")).unwrap();
    assert_eq!(records.len() as u64, accepted);
    // The ingress stage was scraped around each step and saw the 202s.
    let seen: f64 = report
        .steps
        .iter()
        .flat_map(|s| s.stages.iter())
        .filter(|d| d.stage == "ingress")
        .map(|d| d.processed)
        .sum();
    assert_eq!(seen as u64, accepted);
    let svg = std::fs::read_to_string(&output.chart).unwrap();
    assert!(svg.starts_with("<svg"));
    let md = std::fs::read_to_string(&output.markdown).unwrap();
    assert!(md.contains("| 10 | 10 |"), "{md}");
    stack.stop().await;
}
