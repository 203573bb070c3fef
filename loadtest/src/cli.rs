//! The command line: `loadtest run|sweep|verify`, parsed by clap and turned into the typed,
//! validated settings of each mode before anything is sent.
//!
//! The signing secret comes from `LOADTEST_SECRET` (preferred: a flag shows in `ps`) or
//! `--secret`; it is never printed, and the command line written into reports leaves it out.

use clap::{Args, Parser, Subcommand};
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::postgres::PostgresSettings;
use ledgerline_runtime::secret::Secret;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{ConfigError, Merchant, SkewKind, Workload, WorkloadSpec};
use crate::scenarios::{self, Mix, ScenarioName, ScenarioSettings};
use crate::scrape::{self, Target};
use crate::sweep::generator::SenderSettings;
use crate::sweep::knee::KneeRule;
use crate::sweep::{self, schedule, SweepSettings, Watched};
use crate::verify::{self, reconciler, VerifySettings};

/// Signed load against Ledgerline, measured honestly.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a goose scenario. goose's own options apply: --host, --users, --run-time,
    /// --iterations, --report-file (.html/.md/.json), --threshold, …
    Run(Box<RunArgs>),
    /// An open-loop saturation sweep: a constant arrival rate per step, past the knee.
    Sweep(Box<SweepArgs>),
    /// After a run: wait for the pipeline, then check the ledger, the audit and the
    /// reconciler against the record file.
    Verify(Box<VerifyArgs>),
}

/// The merchant that signs.
#[derive(Debug, Clone, Args)]
pub struct MerchantArgs {
    /// X-Merchant-Id of every request.
    #[arg(long, env = "LOADTEST_MERCHANT_ID", default_value = "loadtest")]
    pub merchant_id: String,
    /// Signing key id (X-Signature: keyId=…).
    #[arg(long, env = "LOADTEST_KEY_ID", default_value = "k1")]
    pub key_id: String,
    /// Signing secret (≥ 32 bytes). Prefer the LOADTEST_SECRET variable: a flag shows in `ps`.
    #[arg(long, env = "LOADTEST_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

impl MerchantArgs {
    /// Validates the credentials.
    pub fn merchant(&self) -> Result<Merchant, ConfigError> {
        let secret = self.secret.clone().ok_or(ConfigError::Secret)?;
        Merchant::new(&self.merchant_id, &self.key_id, Secret::new(secret))
    }
}

/// The generated transactions.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Distinct accounts (account cardinality).
    #[arg(long, default_value_t = 1_000)]
    pub accounts: u32,
    /// Account id prefix (a zero-padded index follows).
    #[arg(long, default_value = "lt-acc-")]
    pub account_prefix: String,
    /// How accounts are chosen.
    #[arg(long, value_enum, default_value_t = SkewKind::Uniform)]
    pub skew: SkewKind,
    /// Zipf exponent (with --skew zipf): rank k has probability ∝ 1/k^exponent.
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// Share of debits, percent (the rest are credits).
    #[arg(long, default_value_t = 30)]
    pub debit_percent: u8,
    /// Smallest amount, a decimal in the currency's scale.
    #[arg(long, default_value = "1.00")]
    pub amount_min: String,
    /// Largest amount, a decimal in the currency's scale.
    #[arg(long, default_value = "500.00")]
    pub amount_max: String,
    /// ISO-4217 currency of every transaction.
    #[arg(long, default_value = "EUR")]
    pub currency: String,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl WorkloadArgs {
    /// Validates the workload.
    pub fn workload(&self) -> Result<Workload, ConfigError> {
        Workload::from_spec(&WorkloadSpec {
            accounts: self.accounts,
            account_prefix: self.account_prefix.clone(),
            skew: self.skew,
            zipf_exponent: self.zipf_exponent,
            debit_percent: self.debit_percent,
            amount_min: self.amount_min.clone(),
            amount_max: self.amount_max.clone(),
            currency: self.currency.clone(),
            seed: self.seed,
        })
    }
}

/// `loadtest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario.
    #[arg(long, value_enum, default_value_t = ScenarioName::Mixed)]
    pub scenario: ScenarioName,
    /// Merchant credentials.
    #[command(flatten)]
    pub merchant: MerchantArgs,
    /// Workload shape.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// retry-storm: share of transactions re-sent with the same key and body, percent.
    #[arg(long, default_value_t = 30)]
    pub retry_percent: u8,
    /// retry-storm: share re-sent under the same key with another amount, percent.
    #[arg(long, default_value_t = 10)]
    pub conflict_percent: u8,
    /// status-poll: pause before each status read, ms.
    #[arg(long, default_value_t = 200)]
    pub poll_interval_ms: u64,
    /// status-poll: most status reads per transaction.
    #[arg(long, default_value_t = 150)]
    pub polls_max: u32,
    /// mixed: weights, e.g. submit=6,retry-storm=2,bad-auth=1,status-poll=1.
    #[arg(
        long,
        default_value = "submit=6,retry-storm=2,bad-auth=1,status-poll=1"
    )]
    pub mix: String,
    /// Append every 202 to this file (JSON lines) for `loadtest verify`.
    #[arg(long)]
    pub record_file: Option<PathBuf>,
    /// Write the scenario's own counts as JSON here.
    #[arg(long)]
    pub summary_file: Option<PathBuf>,
    /// goose's options.
    #[command(flatten)]
    pub goose: goose::config::GooseConfiguration,
}

/// `loadtest sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Ingress base URL (plain HTTP; load only against 127.0.0.1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Merchant credentials.
    #[command(flatten)]
    pub merchant: MerchantArgs,
    /// Workload shape.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Explicit offered rates, requests per second, ascending (instead of --start-rps…).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["start_rps", "factor", "steps"])]
    pub rates: Vec<u32>,
    /// First offered rate, requests per second.
    #[arg(long, default_value_t = 500)]
    pub start_rps: u32,
    /// Each step offers this many times the previous rate.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Number of steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Length of each step, seconds.
    #[arg(long, default_value_t = 20)]
    pub step_secs: u32,
    /// Quiet time between steps, seconds.
    #[arg(long, default_value_t = 5)]
    pub pause_secs: u32,
    /// Most requests in flight at once; a request due while the cap is full is counted as
    /// unsent (never queued, never delayed).
    #[arg(long, default_value_t = 4_096)]
    pub in_flight_requests_max: usize,
    /// Most time one request may take, ms (then it counts as a timeout).
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Knee rule: least share of offered requests answered 202, percent.
    #[arg(long, default_value_t = 95)]
    pub knee_accepted_percent_min: u8,
    /// Knee rule: largest p99 latency, ms.
    #[arg(long, default_value_t = 500.0)]
    pub knee_p99_ms_max: f64,
    /// A stage's metrics endpoint, STAGE=URL (repeatable; default: the four local services).
    #[arg(long = "metrics", value_parser = scrape::parse_target)]
    pub metrics: Vec<Target>,
    /// Do not scrape any /metrics.
    #[arg(long, conflicts_with = "metrics")]
    pub no_scrape: bool,
    /// Report the CPU of processes too: NAME=PID[,PID…] (repeatable).
    #[arg(long = "watch", value_parser = Watched::parse)]
    pub watch: Vec<Watched>,
    /// Directory for sweep.json, sweep.md, sweep.svg and the record file.
    #[arg(long, default_value = "target/loadtest/sweep")]
    pub out: PathBuf,
    /// Record file (default: <out>/accepted.jsonl).
    #[arg(long)]
    pub record_file: Option<PathBuf>,
}

/// `loadtest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The run's start (RFC 3339): its first request came after it.
    #[arg(long)]
    pub since: String,
    /// The run's record file.
    #[arg(long)]
    pub record_file: PathBuf,
    /// The ledger database (may hold a password: never printed).
    #[arg(
        long,
        env = "LEDGERLINE_POSTGRES__URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/ledgerline"
    )]
    pub postgres_url: String,
    /// The audit database server (may hold credentials: never printed).
    #[arg(
        long,
        env = "LEDGERLINE_MONGO__URI",
        hide_env_values = true,
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    pub mongo_uri: String,
    /// The audit database.
    #[arg(long, env = "LEDGERLINE_MONGO__DATABASE", default_value = "ledgerline")]
    pub mongo_database: String,
    /// Most time to wait for every recorded transaction to finish, seconds.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout_secs: u64,
    /// Pause between two looks while waiting, ms.
    #[arg(long, default_value_t = 500)]
    pub poll_interval_ms: u64,
    /// The reconciler: `auto` (use a built one if any), `off`, or a path to the binary.
    #[arg(long, default_value = "auto")]
    pub reconciler: String,
    /// Most time the reconciler may take, seconds.
    #[arg(long, default_value_t = 300)]
    pub reconciler_timeout_secs: u64,
    /// Write the full report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rate plan is invalid.
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    /// `--since` is not RFC 3339.
    #[error("--since {0:?} is not an RFC 3339 time (e.g. 2026-11-23T18:00:00Z)")]
    Since(String),
    /// The scenario run failed.
    #[error(transparent)]
    Scenario(#[from] scenarios::ScenarioError),
    /// The sweep failed.
    #[error(transparent)]
    Sweep(#[from] sweep::SweepError),
    /// Verification could not be carried out.
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    /// An output file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn range(flag: &'static str, detail: &str) -> ConfigError {
    ConfigError::Range {
        flag,
        detail: detail.into(),
    }
}

/// The command line as typed, with the values of secret-bearing flags replaced.
pub fn redacted_command_line() -> String {
    const SECRET_FLAGS: [&str; 3] = ["--secret", "--postgres-url", "--mongo-uri"];
    let mut out = Vec::new();
    let mut hide_next = false;
    for (i, arg) in std::env::args().enumerate() {
        let shown = if i == 0 {
            "loadtest".to_string()
        } else if hide_next {
            hide_next = false;
            "[redacted]".to_string()
        } else if SECRET_FLAGS.contains(&arg.as_str()) {
            hide_next = true;
            arg
        } else if let Some(flag) = SECRET_FLAGS
            .iter()
            .find(|f| arg.starts_with(&format!("{f}=")))
        {
            format!("{flag}=[redacted]")
        } else {
            arg
        };
        out.push(shown);
    }
    out.join(" ")
}

impl SweepArgs {
    /// The validated sweep settings.
    pub fn settings(&self) -> Result<SweepSettings, CliError> {
        let rates_rps = if self.rates.is_empty() {
            schedule::geometric(self.start_rps, self.factor, self.steps)?
        } else {
            schedule::explicit(&self.rates)?
        };
        if !self.target.starts_with("http://") {
            return Err(range("--target", "must be an http:// URL").into());
        }
        if self.step_secs == 0 {
            return Err(range("--step-secs", "must be > 0").into());
        }
        if self.in_flight_requests_max == 0 || self.in_flight_requests_max > 100_000 {
            return Err(range("--in-flight-requests-max", "must be within 1..=100000").into());
        }
        if self.request_timeout_ms == 0 {
            return Err(range("--request-timeout-ms", "must be > 0").into());
        }
        if self.knee_accepted_percent_min > 100 {
            return Err(range("--knee-accepted-percent-min", "must be within 0..=100").into());
        }
        if !(self.knee_p99_ms_max.is_finite() && self.knee_p99_ms_max > 0.0) {
            return Err(range("--knee-p99-ms-max", "must be > 0").into());
        }
        let record_file = self
            .record_file
            .clone()
            .unwrap_or_else(|| self.out.join("accepted.jsonl"));
        Ok(SweepSettings {
            sender: SenderSettings {
                base_url: self.target.trim_end_matches('/').to_string(),
                in_flight_requests_max: self.in_flight_requests_max,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
            },
            merchant: self.merchant.merchant()?,
            workload: Arc::new(self.workload.workload()?),
            rates_rps,
            step_secs: self.step_secs,
            pause_secs: self.pause_secs,
            knee_rule: KneeRule {
                accepted_percent_min: self.knee_accepted_percent_min,
                p99_ms_max: self.knee_p99_ms_max,
            },
            scrape_targets: if self.no_scrape {
                Vec::new()
            } else if self.metrics.is_empty() {
                scrape::default_targets()
            } else {
                self.metrics.clone()
            },
            watched: self.watch.clone(),
            out_dir: self.out.clone(),
            record_file,
            command: redacted_command_line(),
        })
    }
}

impl RunArgs {
    /// The validated scenario settings.
    pub fn settings(&self) -> Result<ScenarioSettings, CliError> {
        let settings = ScenarioSettings {
            merchant: self.merchant.merchant()?,
            workload: Arc::new(self.workload.workload()?),
            retry_percent: self.retry_percent,
            conflict_percent: self.conflict_percent,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            polls_max: self.polls_max,
            mix: Mix::parse(&self.mix)?,
            record_file: self.record_file.clone(),
        };
        settings.validate()?;
        Ok(settings)
    }
}

impl VerifyArgs {
    /// The validated verification settings.
    pub fn settings(&self) -> Result<VerifySettings, CliError> {
        let since = OffsetDateTime::parse(&self.since, &Rfc3339)
            .map_err(|_| CliError::Since(self.since.clone()))?;
        let postgres = PostgresSettings {
            url: Secret::new(self.postgres_url.clone()),
            pool_size_max: 2,
            migrate: false,
            ..PostgresSettings::default()
        };
        let mongo = MongoSettings {
            uri: Secret::new(self.mongo_uri.clone()),
            database: self.mongo_database.clone(),
            pool_size_max: 2,
            ..MongoSettings::default()
        };
        let reconciler = match self.reconciler.as_str() {
            "auto" => reconciler::Choice::Auto,
            "off" => reconciler::Choice::Off,
            path => reconciler::Choice::Binary(PathBuf::from(path)),
        };
        if self.poll_interval_ms == 0 {
            return Err(range("--poll-interval-ms", "must be > 0").into());
        }
        Ok(VerifySettings {
            record_file: self.record_file.clone(),
            since,
            postgres,
            mongo,
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            reconciler,
            reconciler_timeout: Duration::from_secs(self.reconciler_timeout_secs),
            reconciler_env: Vec::new(),
        })
    }
}

fn write(path: &PathBuf, contents: &str) -> Result<(), CliError> {
    std::fs::write(path, contents).map_err(|source| CliError::Write {
        path: path.clone(),
        source,
    })
}

/// Runs a parsed command line; the exit code says whether it passed.
pub async fn execute(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run(args) => {
            let settings = args.settings()?;
            let outcome = scenarios::run(settings, args.scenario, args.goose.clone()).await?;
            let summary = serde_json::json!({
                "scenario": args.scenario.as_str(),
                "counted": outcome.counted,
                "recorded": outcome.recorded,
                "record_file": args.record_file,
                "thresholds_failed": outcome.thresholds_failed,
            });
            println!("loadtest: {summary}");
            if let Some(path) = &args.summary_file {
                write(
                    path,
                    &serde_json::to_string_pretty(&summary).unwrap_or_default(),
                )?;
            }
            if outcome.invariant_broken() {
                eprintln!(
                    "loadtest: FAILED: a bad-auth request was not refused or a retry changed transaction"
                );
                return Ok(ExitCode::FAILURE);
            }
            if !outcome.thresholds_failed.is_empty() {
                eprintln!(
                    "loadtest: thresholds failed: {}",
                    outcome.thresholds_failed.join("; ")
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep(args) => {
            let settings = args.settings()?;
            let output = sweep::run(settings).await?;
            let r = &output.report;
            match (r.knee_rps, r.knee_index) {
                (Some(rps), Some(i)) => println!(
                    "knee: {rps} req/s offered ({:.0} accepted/s, p99 {:.1} ms)",
                    r.steps[i].accepted_rps,
                    r.steps[i].latency_ms.p99.unwrap_or_default()
                ),
                _ => println!("knee: no step met the knee rule"),
            }
            println!(
                "reports: {} {} {}",
                output.markdown.display(),
                output.json.display(),
                output.chart.display()
            );
            if !r.is_consistent() {
                eprintln!("loadtest: the step counts do not add up (a bug): see sweep.json");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let settings = args.settings()?;
            let report = verify::run(&settings).await?;
            print!("{}", report.summary());
            if let Some(path) = &args.json {
                write(
                    path,
                    &serde_json::to_string_pretty(&report).unwrap_or_default(),
                )?;
            }
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn goose_options_parse_next_to_the_scenario_options() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "run",
            "--scenario",
            "retry-storm",
            "--users",
            "4",
            "--iterations",
            "10",
            "--report-file",
            "r.html",
            "--threshold",
            "p95<500ms",
            "--accounts",
            "50",
            "--secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.scenario, ScenarioName::RetryStorm);
        assert_eq!(run.goose.users, Some(4));
        assert_eq!(run.goose.iterations, Some(10));
        assert_eq!(run.goose.report_file, vec!["r.html".to_string()]);
        assert_eq!(run.workload.accounts, 50);
        assert!(run.settings().is_ok());
    }

    #[test]
    fn a_sweep_takes_a_geometric_plan_or_an_explicit_list_but_not_both() {
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "loadtest",
                "sweep",
                "--secret",
                "0123456789abcdef0123456789abcdef",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let Command::Sweep(s) = parse(&["--rates", "100,200,400"]).unwrap().command else {
            panic!()
        };
        assert_eq!(s.settings().unwrap().rates_rps, vec![100, 200, 400]);
        let Command::Sweep(s) = parse(&["--start-rps", "250", "--steps", "3"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(s.settings().unwrap().rates_rps, vec![250, 500, 1_000]);
        assert!(parse(&["--rates", "1,2", "--steps", "3"]).is_err());
    }

    #[test]
    fn a_missing_secret_is_refused_before_anything_is_sent() {
        let cli = Cli::try_parse_from(["loadtest", "sweep", "--rates", "10"]).unwrap();
        let Command::Sweep(s) = cli.command else {
            panic!()
        };
        if std::env::var_os("LOADTEST_SECRET").is_none() {
            assert!(matches!(
                s.settings(),
                Err(CliError::Config(ConfigError::Secret))
            ));
        }
    }

    #[test]
    fn verify_needs_an_rfc3339_since() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "verify",
            "--since",
            "yesterday",
            "--record-file",
            "x",
        ])
        .unwrap();
        let Command::Verify(v) = cli.command else {
            panic!()
        };
        assert!(matches!(v.settings(), Err(CliError::Since(_))));
    }
}
