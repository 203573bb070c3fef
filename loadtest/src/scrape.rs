//! The services' Prometheus `/metrics`, read before and after each sweep step, turned into
//! per-stage counters: what ingress accepted, what the processor decided, what the ledger
//! wrote, what the audit stored, and each consumer's lag.
//!
//! The metric names are the ones each crate declares in its `metrics.rs`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A stage of the pipeline, with its metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `ingress`, `processor`, `ledger-writer` or `audit`.
    pub stage: String,
    /// `http://host:port/metrics` (plain HTTP, loopback).
    pub url: String,
}

/// The default endpoints of a local deployment (docs/configuration.md).
pub fn default_targets() -> Vec<Target> {
    [
        ("ingress", "http://127.0.0.1:8080/metrics"),
        ("processor", "http://127.0.0.1:9101/metrics"),
        ("ledger-writer", "http://127.0.0.1:9102/metrics"),
        ("audit", "http://127.0.0.1:9103/metrics"),
    ]
    .into_iter()
    .map(|(stage, url)| Target {
        stage: stage.into(),
        url: url.into(),
    })
    .collect()
}

/// Parses `stage=url`.
pub fn parse_target(raw: &str) -> Result<Target, String> {
    let (stage, url) = raw
        .split_once('=')
        .ok_or_else(|| format!("{raw:?}: expected STAGE=URL"))?;
    if !STAGES.contains(&stage) {
        return Err(format!("{stage:?}: stage must be one of {STAGES:?}"));
    }
    if !url.starts_with("http://") {
        return Err(format!("{url:?}: only http:// endpoints are scraped"));
    }
    Ok(Target {
        stage: stage.into(),
        url: url.into(),
    })
}

/// The stages whose metrics are understood.
pub const STAGES: [&str; 4] = ["ingress", "processor", "ledger-writer", "audit"];

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (counts are exact below 2^53).
    pub value: f64,
}

/// Parses the Prometheus text exposition format; comments and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let space = line.find(char::is_whitespace)?;
            (&line[..space], Vec::new(), &line[space..])
        }
    };
    // A timestamp may follow the value; only the value is kept.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(raw: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = raw.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
        // The value ends at the first unescaped quote.
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        labels.push((key, value));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(labels)
}

/// Sum of every sample of `name` whose labels include all of `having`.
pub fn sum(samples: &[Sample], name: &str, having: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            having
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// The counters and gauges of one stage at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageCounters {
    /// The stage's main throughput counter: 2xx POSTs (ingress), decisions (processor),
    /// transactions written (ledger-writer), documents stored (audit).
    pub processed: f64,
    /// Consumer lag in messages summed over partitions (absent for ingress). The services
    /// refresh this gauge every 10 s.
    pub lag_messages: Option<f64>,
}

/// What the counters of a stage mean, by stage name.
pub fn stage_counters(stage: &str, samples: &[Sample]) -> StageCounters {
    let lag = |service: &str| {
        let name = format!("ledgerline_{service}_consumer_lag_messages");
        samples
            .iter()
            .any(|s| s.name == name)
            .then(|| sum(samples, &name, &[]))
    };
    match stage {
        "ingress" => StageCounters {
            processed: sum(
                samples,
                "ledgerline_ingress_requests_total",
                &[("route", "post_transaction"), ("status_class", "2xx")],
            ),
            lag_messages: None,
        },
        "processor" => StageCounters {
            processed: sum(samples, "ledgerline_processor_decisions_total", &[]),
            lag_messages: lag("processor"),
        },
        "ledger-writer" => StageCounters {
            processed: sum(samples, "ledgerline_ledger_writer_transactions_total", &[]),
            lag_messages: lag("ledger_writer"),
        },
        "audit" => StageCounters {
            processed: sum(samples, "ledgerline_audit_documents_total", &[]),
            lag_messages: lag("audit"),
        },
        _ => StageCounters::default(),
    }
}

/// Every target's counters at one moment; a stage that did not answer is absent.
pub type Snapshot = BTreeMap<String, StageCounters>;

/// Reads every target once (each bounded by `timeout`); unreachable ones are left out.
pub async fn snapshot(client: &reqwest::Client, targets: &[Target], timeout: Duration) -> Snapshot {
    let reads = targets.iter().map(|t| async move {
        let text = async {
            let response = client.get(&t.url).timeout(timeout).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.text().await.ok()
        }
        .await;
        text.map(|text| (t.stage.clone(), stage_counters(&t.stage, &parse(&text))))
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One stage's progress between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDelta {
    /// The stage.
    pub stage: String,
    /// Counter increase.
    pub processed: f64,
    /// Increase per second over the interval.
    pub per_second: f64,
    /// Lag at the end of the interval.
    pub lag_messages_after: Option<f64>,
}

/// The per-stage progress from `before` to `after` over `elapsed`; a stage missing from either
/// snapshot is left out.
pub fn deltas(before: &Snapshot, after: &Snapshot, elapsed: Duration) -> Vec<StageDelta> {
    let secs = elapsed.as_secs_f64();
    STAGES
        .iter()
        .filter_map(|stage| {
            let (b, a) = (before.get(*stage)?, after.get(*stage)?);
            // A restarted service resets its counters; count from zero then.
            let processed = if a.processed >= b.processed {
                a.processed - b.processed
            } else {
                a.processed
            };
            Some(StageDelta {
                stage: stage.to_string(),
                processed,
                per_second: if secs > 0.0 { processed / secs } else { 0.0 },
                lag_messages_after: a.lag_messages,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INGRESS: &str = r#"
# HELP ledgerline_ingress_requests_total requests
# TYPE ledgerline_ingress_requests_total counter
ledgerline_ingress_requests_total{route="post_transaction",status_class="2xx"} 1200
ledgerline_ingress_requests_total{route="post_transaction",status_class="4xx"} 30
ledgerline_ingress_requests_total{route="get_transaction",status_class="2xx"} 77
ledgerline_ingress_request_duration_seconds_bucket{route="post_transaction",le="+Inf"} 1230
"#;

    const PROCESSOR: &str = r#"
ledgerline_processor_decisions_total{decision="ACCEPTED",reason=""} 900
ledgerline_processor_decisions_total{decision="DUPLICATE",reason=""} 50
ledgerline_processor_consumer_lag_messages{topic="txn.requests",partition="0"} 10
ledgerline_processor_consumer_lag_messages{topic="txn.requests",partition="1"} 5
"#;

    #[test]
    fn ingress_counts_only_successful_posts() {
        let c = stage_counters("ingress", &parse(INGRESS));
        assert_eq!(c.processed, 1_200.0);
        assert_eq!(c.lag_messages, None);
    }

    #[test]
    fn processor_sums_decisions_and_lag_over_labels() {
        let c = stage_counters("processor", &parse(PROCESSOR));
        assert_eq!(c.processed, 950.0);
        assert_eq!(c.lag_messages, Some(15.0));
    }

    #[test]
    fn labels_with_escaped_quotes_and_commas_parse() {
        let s = parse(r#"m{a="x\"y,z",b="2"} 3 1700000000000"#);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels[0], ("a".into(), "x\"y,z".into()));
        assert_eq!(s[0].labels[1], ("b".into(), "2".into()));
        assert_eq!(s[0].value, 3.0);
    }

    #[test]
    fn infinite_values_and_plain_samples_parse() {
        let s = parse("up 1\nx{le=\"+Inf\"} +Inf\n");
        assert_eq!(s[0].name, "up");
        assert!(s[1].value.is_infinite());
    }

    #[test]
    fn deltas_are_per_second_and_survive_a_counter_reset() {
        let mut before = Snapshot::new();
        let mut after = Snapshot::new();
        before.insert(
            "processor".into(),
            StageCounters {
                processed: 100.0,
                lag_messages: Some(1.0),
            },
        );
        after.insert(
            "processor".into(),
            StageCounters {
                processed: 300.0,
                lag_messages: Some(7.0),
            },
        );
        before.insert("audit".into(), StageCounters::default());
        after.insert(
            "audit".into(),
            StageCounters {
                processed: 10.0,
                lag_messages: None,
            },
        );
        let d = deltas(&before, &after, Duration::from_secs(2));
        assert_eq!(d[0].stage, "processor");
        assert_eq!(d[0].per_second, 100.0);
        assert_eq!(d[0].lag_messages_after, Some(7.0));

        let mut restarted = after.clone();
        restarted.get_mut("processor").unwrap().processed = 40.0;
        let d = deltas(&after, &restarted, Duration::from_secs(1));
        assert_eq!(d[0].processed, 40.0);
    }

    #[test]
    fn a_target_is_stage_equals_url() {
        assert_eq!(
            parse_target("audit=http://127.0.0.1:9103/metrics")
                .unwrap()
                .stage,
            "audit"
        );
        assert!(parse_target("nope=http://x").is_err());
        assert!(parse_target("audit=https://x").is_err());
    }
}
