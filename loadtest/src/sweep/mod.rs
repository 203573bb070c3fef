//! `loadtest sweep`: an open-loop saturation sweep.
//!
//! ```text
//! for each offered rate (ascending):
//!     scrape every stage's /metrics, read CPU times
//!     run the step (generator.rs): constant arrival rate for step_secs
//!     scrape again, read CPU times → per-stage throughput and lag, CPU shares
//!     pause pause_secs (the pipeline drains a little; nothing is sent)
//! find the knee (knee.rs); write sweep.json, sweep.md and sweep.svg into the out directory
//! ```
//!
//! - [`schedule`]: rates and due times.
//! - [`generator`]: one step, open loop, bounded in flight.
//! - [`stats`]: counts, histograms, the per-step summary.
//! - [`knee`]: the knee rule.
//! - [`report`]: JSON and Markdown.
//! - [`chart`]: the SVG chart.

pub mod chart;
pub mod generator;
pub mod knee;
pub mod report;
pub mod schedule;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Merchant, Workload};
use crate::cpu;
use crate::record::{RecordError, Recorder};
use crate::scrape::{self, Target};
use crate::workload::{Generator, KeyMinter};
use generator::{Sender, SenderError, SenderSettings};
use knee::KneeRule;
use report::SweepReport;
use stats::{GeneratorUse, StepReport, WatchedUse};

/// A process whose CPU each step reports (`--watch NAME=PID[,PID…]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Display name.
    pub name: String,
    /// Its processes (their CPU is summed).
    pub pids: Vec<u32>,
}

impl Watched {
    /// Parses `NAME=PID[,PID…]`.
    pub fn parse(raw: &str) -> Result<Watched, String> {
        let (name, pids) = raw
            .split_once('=')
            .ok_or_else(|| format!("{raw:?}: expected NAME=PID[,PID…]"))?;
        let pids = pids
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{p:?} is not a pid"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if name.is_empty() || pids.is_empty() {
            return Err(format!("{raw:?}: expected NAME=PID[,PID…]"));
        }
        Ok(Watched {
            name: name.to_string(),
            pids,
        })
    }

    fn cpu(&self) -> Duration {
        self.pids.iter().filter_map(|p| cpu::process_cpu(*p)).sum()
    }
}

/// Everything a sweep needs, validated.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Where to send.
    pub sender: SenderSettings,
    /// Who signs.
    pub merchant: Merchant,
    /// What to send.
    pub workload: Arc<Workload>,
    /// Offered rates, ascending, requests per second.
    pub rates_rps: Vec<u32>,
    /// Length of each step.
    pub step_secs: u32,
    /// Quiet time between steps.
    pub pause_secs: u32,
    /// What counts as keeping up.
    pub knee_rule: KneeRule,
    /// Endpoints to scrape (may be empty).
    pub scrape_targets: Vec<Target>,
    /// Processes whose CPU to report.
    pub watched: Vec<Watched>,
    /// Where the reports go (created if absent).
    pub out_dir: PathBuf,
    /// Where 202s are recorded (default: `<out>/accepted.jsonl`).
    pub record_file: PathBuf,
    /// The command line as typed, secrets left out, for the report.
    pub command: String,
}

/// Why a sweep could not run (a failing step is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The target URL is unusable.
    #[error(transparent)]
    Sender(#[from] SenderError),
    /// The record file could not be opened or flushed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A report file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The files a sweep wrote.
#[derive(Debug, Clone)]
pub struct SweepOutput {
    /// The report.
    pub report: SweepReport,
    /// `sweep.json`.
    pub json: PathBuf,
    /// `sweep.md`.
    pub markdown: PathBuf,
    /// `sweep.svg`.
    pub chart: PathBuf,
}

/// Timeout of one `/metrics` read.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the sweep and writes its reports.
pub async fn run(settings: SweepSettings) -> Result<SweepOutput, SweepError> {
    let write = |path: &Path, contents: &str| {
        std::fs::write(path, contents).map_err(|source| SweepError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(&settings.out_dir).map_err(|source| SweepError::Write {
        path: settings.out_dir.clone(),
        source,
    })?;
    let recorder = Arc::new(Recorder::open(&settings.record_file)?);
    let sender = Sender::new(
        settings.sender.clone(),
        settings.merchant.clone(),
        Some(recorder.clone()),
    )?;
    let scraper = reqwest::Client::new();
    let mut generator = Generator::new(settings.workload.clone(), 0);
    let run_id = crate::workload::new_run_id();
    let mut keys = KeyMinter::new(&run_id, 0);
    let cores = cpu::cores();
    let started_at = ledgerline_runtime::time::now_rfc3339();

    let mut steps = Vec::with_capacity(settings.rates_rps.len());
    for (i, &rate) in settings.rates_rps.iter().enumerate() {
        if i > 0 && settings.pause_secs > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(settings.pause_secs))).await;
        }
        tracing::info!(rate_rps = rate, secs = settings.step_secs, "step starting");
        let before = scrape::snapshot(&scraper, &settings.scrape_targets, SCRAPE_TIMEOUT).await;
        let watched_before: Vec<Duration> = settings.watched.iter().map(Watched::cpu).collect();
        let cpu_before = cpu::self_cpu().unwrap_or_default();
        let started = tokio::time::Instant::now();

        let stats = sender
            .run_step(&mut generator, &mut keys, rate, settings.step_secs)
            .await;

        let elapsed = started.elapsed();
        let cpu_used = cpu::self_cpu()
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        let after = scrape::snapshot(&scraper, &settings.scrape_targets, SCRAPE_TIMEOUT).await;
        let scrape_elapsed = started.elapsed();
        let generator_use = GeneratorUse {
            cpu_seconds: cpu_used.as_secs_f64(),
            cpu_share_percent: cpu::share_percent(cpu_used, elapsed, cores),
            cpu_us_per_request: if stats.sent == 0 {
                0.0
            } else {
                cpu_used.as_secs_f64() * 1e6 / stats.sent as f64
            },
            late_sends: stats.late_sends,
            dispatch_lag_max_ms: stats.dispatch_lag_max.as_secs_f64() * 1e3,
        };
        let mut step = StepReport::new(rate, settings.step_secs, elapsed, &stats, generator_use);
        step.stages = scrape::deltas(&before, &after, scrape_elapsed);
        step.watched = settings
            .watched
            .iter()
            .zip(watched_before)
            .map(|(w, before)| {
                let used = w.cpu().saturating_sub(before);
                WatchedUse {
                    name: w.name.clone(),
                    cpu_seconds: used.as_secs_f64(),
                    core_percent: cpu::share_percent(used, elapsed, 1),
                }
            })
            .collect();
        debug_assert!(step.is_consistent(), "{step:?}");
        tracing::info!(
            rate_rps = rate,
            sent = step.sent,
            accepted = step.accepted,
            unavailable = step.unavailable,
            rate_limited = step.rate_limited,
            errors = step.errors,
            unsent = step.unsent_in_flight_cap,
            p99_ms = step.latency_ms.p99,
            "step finished"
        );
        steps.push(step);
    }
    recorder.flush()?;

    let mut report = SweepReport {
        started_at,
        command: settings.command.clone(),
        target: settings.sender.base_url.clone(),
        merchant_id: settings.merchant.id.to_string(),
        cores,
        in_flight_requests_max: settings.sender.in_flight_requests_max,
        request_timeout_ms: u64::try_from(settings.sender.request_timeout.as_millis())
            .unwrap_or(u64::MAX),
        workload: describe(&settings.workload),
        knee_rule: settings.knee_rule,
        steps,
        knee_index: None,
        knee_rps: None,
        past_knee_limit: None,
        past_knee_slowest_stage: None,
        stage_knees: Vec::new(),
        bottleneck_stage: None,
        record_file: Some(settings.record_file.display().to_string()),
    };
    report.conclude();

    let json = settings.out_dir.join("sweep.json");
    let markdown = settings.out_dir.join("sweep.md");
    let chart_path = settings.out_dir.join("sweep.svg");
    let rendered_json =
        serde_json::to_string_pretty(&report).expect("the report is plain data and serializes");
    write(&json, &rendered_json)?;
    write(&markdown, &report::markdown(&report, Some("sweep.svg")))?;
    write(
        &chart_path,
        &chart::render(
            "Ledgerline: accepted rate and p99 vs offered rate",
            &report.steps,
            report.knee_index,
        ),
    )?;
    Ok(SweepOutput {
        report,
        json,
        markdown,
        chart: chart_path,
    })
}

/// The workload in words, for the report.
pub fn describe(w: &Workload) -> String {
    let skew = match w.skew {
        crate::config::Skew::Uniform => "uniform".to_string(),
        crate::config::Skew::Zipf { exponent } => format!("zipf (exponent {exponent})"),
    };
    format!(
        "{} accounts ({skew}), {} % debits, amounts {}..={} {} minor units, seed {}",
        w.accounts,
        w.debit_percent,
        w.amount_min_minor,
        w.amount_max_minor,
        w.currency.code(),
        w.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_flag_names_one_or_more_pids() {
        assert_eq!(
            Watched::parse("postgres=10,11").unwrap(),
            Watched {
                name: "postgres".into(),
                pids: vec![10, 11]
            }
        );
        assert!(Watched::parse("x").is_err());
        assert!(Watched::parse("x=a").is_err());
        assert!(Watched::parse("=1").is_err());
    }
}
