//! The goose scenarios. Every request is signed when it is built, with the merchant's key, so
//! timestamps are always fresh; goose's own flags (users, run time, iterations, reports,
//! thresholds) work as goose users expect.
//!
//! | scenario | one iteration of a user |
//! |---|---|
//! | `submit` | POST a new transaction; expect 202 |
//! | `retry-storm` | POST a new transaction; then, by chance, re-send it (same key and body, expect 202 with the same id: a DUPLICATE) or send a conflicting body under the same key (expect 202 with the same id; the processor rejects it with IDEMPOTENCY_CONFLICT, as docs/api.md says) |
//! | `bad-auth` | POST with one of ten authentication mistakes; every answer must be 400 or 401 |
//! | `status-poll` | POST a new transaction, then poll its status until it is terminal (bounded) |
//! | `mixed` | the four above as weighted transactions of one scenario |
//!
//! Every 202 is appended to the record file for `loadtest verify`.

mod transactions;

use goose::config::{GooseDefault, GooseDefaultType};
use goose::goose::{Scenario, Transaction, TransactionFunction};
use goose::metrics::GooseMetrics;
use goose::{GooseAttack, GooseError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, Merchant, Workload};
use crate::record::{RecordError, Recorder};

/// The scenarios, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// New transactions.
    Submit,
    /// New transactions, retried and conflicted.
    RetryStorm,
    /// Badly authenticated requests.
    BadAuth,
    /// New transactions followed to a terminal state.
    StatusPoll,
    /// All four, weighted (`--mix`).
    Mixed,
}

impl ScenarioName {
    /// The command-line name, e.g. `retry-storm`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScenarioName::Submit => "submit",
            ScenarioName::RetryStorm => "retry-storm",
            ScenarioName::BadAuth => "bad-auth",
            ScenarioName::StatusPoll => "status-poll",
            ScenarioName::Mixed => "mixed",
        }
    }
}

/// Weights of the `mixed` scenario's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// `submit`.
    pub submit: usize,
    /// `retry-storm`.
    pub retry_storm: usize,
    /// `bad-auth`.
    pub bad_auth: usize,
    /// `status-poll`.
    pub status_poll: usize,
}

/// Largest weight of one transaction in the mix (goose repeats a transaction `weight` times
/// per iteration, so weights stay small).
pub const MIX_WEIGHT_MAX: usize = 100;

impl Default for Mix {
    fn default() -> Self {
        Mix {
            submit: 6,
            retry_storm: 2,
            bad_auth: 1,
            status_poll: 1,
        }
    }
}

impl Mix {
    /// Parses `submit=6,retry-storm=2,bad-auth=1,status-poll=1` (absent names weigh 0; at
    /// least one must be positive).
    pub fn parse(raw: &str) -> Result<Mix, ConfigError> {
        let bad = |detail: String| ConfigError::Range {
            flag: "--mix",
            detail,
        };
        let mut mix = Mix {
            submit: 0,
            retry_storm: 0,
            bad_auth: 0,
            status_poll: 0,
        };
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?}: expected NAME=WEIGHT")))?;
            let weight: usize = weight
                .parse()
                .map_err(|_| bad(format!("{weight:?} is not a weight")))?;
            if weight > MIX_WEIGHT_MAX {
                return Err(bad(format!("weights are at most {MIX_WEIGHT_MAX}")));
            }
            let slot = match name {
                "submit" => &mut mix.submit,
                "retry-storm" => &mut mix.retry_storm,
                "bad-auth" => &mut mix.bad_auth,
                "status-poll" => &mut mix.status_poll,
                other => return Err(bad(format!("unknown scenario {other:?} in the mix"))),
            };
            *slot = weight;
        }
        if mix.submit + mix.retry_storm + mix.bad_auth + mix.status_poll == 0 {
            return Err(bad("at least one weight must be positive".into()));
        }
        Ok(mix)
    }
}

/// Everything the scenarios need besides goose's own configuration.
#[derive(Debug, Clone)]
pub struct ScenarioSettings {
    /// Who signs.
    pub merchant: Merchant,
    /// What to send.
    pub workload: Arc<Workload>,
    /// `retry-storm`: share of transactions re-sent with the same body, percent.
    pub retry_percent: u8,
    /// `retry-storm`: share re-sent with a changed body, percent.
    pub conflict_percent: u8,
    /// `status-poll`: pause before each status read.
    pub poll_interval: Duration,
    /// `status-poll`: most status reads per transaction before giving up.
    pub polls_max: u32,
    /// `mixed`: weights.
    pub mix: Mix,
    /// Where 202s are recorded (`None`: not recorded).
    pub record_file: Option<PathBuf>,
}

impl ScenarioSettings {
    /// Checks the cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if u16::from(self.retry_percent) + u16::from(self.conflict_percent) > 100 {
            return Err(ConfigError::Range {
                flag: "--retry-percent",
                detail: "--retry-percent + --conflict-percent must not exceed 100".into(),
            });
        }
        if self.polls_max == 0 {
            return Err(ConfigError::Range {
                flag: "--polls-max",
                detail: "must be > 0".into(),
            });
        }
        Ok(())
    }
}

/// What the scenarios counted beyond goose's request metrics.
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    rate_limited: AtomicU64,
    unavailable: AtomicU64,
    other_status: AtomicU64,
    transport_errors: AtomicU64,
    retries_sent: AtomicU64,
    conflicts_sent: AtomicU64,
    retry_other_transaction: AtomicU64,
    bad_auth_refused: AtomicU64,
    bad_auth_not_refused: AtomicU64,
    bad_auth_accepted: AtomicU64,
    polled_terminal: AtomicU64,
    polled_posted: AtomicU64,
    polled_declined: AtomicU64,
    polled_rejected: AtomicU64,
    polled_gave_up: AtomicU64,
    status_reads: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counted {
    /// 202s to POSTs (originals, retries and conflicts).
    pub accepted: u64,
    /// 429s to POSTs.
    pub rate_limited: u64,
    /// 503s to POSTs.
    pub unavailable: u64,
    /// Other unexpected statuses to valid POSTs.
    pub other_status: u64,
    /// POSTs without an answer.
    pub transport_errors: u64,
    /// Retries sent with the same key and body (and answered 202).
    pub retries_sent: u64,
    /// Conflicting bodies sent under a used key (and answered 202).
    pub conflicts_sent: u64,
    /// Retries answered with another transaction id (must be 0).
    pub retry_other_transaction: u64,
    /// Bad-auth requests refused with 400 or 401.
    pub bad_auth_refused: u64,
    /// Bad-auth requests answered anything else (must be 0).
    pub bad_auth_not_refused: u64,
    /// Bad-auth requests answered 202 (must be 0: they would have reached Kafka).
    pub bad_auth_accepted: u64,
    /// Polled transactions that reached a terminal state.
    pub polled_terminal: u64,
    /// … POSTED.
    pub polled_posted: u64,
    /// … DECLINED.
    pub polled_declined: u64,
    /// … REJECTED.
    pub polled_rejected: u64,
    /// Polled transactions still not terminal after `--polls-max` reads.
    pub polled_gave_up: u64,
    /// Status reads made.
    pub status_reads: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> Counted {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counted {
            accepted: r(&self.accepted),
            rate_limited: r(&self.rate_limited),
            unavailable: r(&self.unavailable),
            other_status: r(&self.other_status),
            transport_errors: r(&self.transport_errors),
            retries_sent: r(&self.retries_sent),
            conflicts_sent: r(&self.conflicts_sent),
            retry_other_transaction: r(&self.retry_other_transaction),
            bad_auth_refused: r(&self.bad_auth_refused),
            bad_auth_not_refused: r(&self.bad_auth_not_refused),
            bad_auth_accepted: r(&self.bad_auth_accepted),
            polled_terminal: r(&self.polled_terminal),
            polled_posted: r(&self.polled_posted),
            polled_declined: r(&self.polled_declined),
            polled_rejected: r(&self.polled_rejected),
            polled_gave_up: r(&self.polled_gave_up),
            status_reads: r(&self.status_reads),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the scenarios share: settings, the recorder, the counters.
#[derive(Debug)]
pub struct Context {
    settings: ScenarioSettings,
    recorder: Option<Recorder>,
    counters: Counters,
    run_id: String,
}

/// Why a scenario run could not complete (failed requests are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Invalid settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The record file.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// goose refused the configuration or failed.
    #[error("goose: {0}")]
    Goose(Box<GooseError>),
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutcome {
    /// goose's metrics (also in its reports).
    pub metrics: GooseMetrics,
    /// The scenarios' own counts.
    pub counted: Counted,
    /// The `--threshold` rules that failed, if any.
    pub thresholds_failed: Vec<String>,
    /// Records written to the record file.
    pub recorded: u64,
}

impl RunOutcome {
    /// Whether an invariant broke: a bad-auth request not refused, or a retry answered with
    /// another transaction id.
    pub fn invariant_broken(&self) -> bool {
        self.counted.bad_auth_not_refused > 0 || self.counted.retry_other_transaction > 0
    }
}

/// The default target when `--host` is not given.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:8080";

/// Builds the attack for `scenario` on top of goose's `configuration` and runs it.
pub async fn run(
    settings: ScenarioSettings,
    scenario: ScenarioName,
    configuration: goose::config::GooseConfiguration,
) -> Result<RunOutcome, ScenarioError> {
    settings.validate()?;
    let recorder = match &settings.record_file {
        Some(path) => Some(Recorder::open(path)?),
        None => None,
    };
    let ctx = Arc::new(Context {
        settings,
        recorder,
        counters: Counters::default(),
        run_id: crate::workload::new_run_id(),
    });
    let goose_error = |e: GooseError| ScenarioError::Goose(Box::new(e));
    let attack = GooseAttack::initialize_with_config(configuration)
        .map_err(goose_error)?
        .set_default(GooseDefault::Host, DEFAULT_HOST)
        .map_err(goose_error)?
        .register_scenario(build(&ctx, scenario).map_err(goose_error)?);
    let result = attack.execute().await;
    if let Some(recorder) = &ctx.recorder {
        recorder.flush()?;
    }
    let (metrics, thresholds_failed) = match result {
        Ok(metrics) => (metrics, Vec::new()),
        Err(GooseError::ThresholdsFailed { failed, metrics }) => (
            *metrics.0,
            failed
                .iter()
                .map(|f| format!("{} (observed {})", f.rule, f.observed))
                .collect(),
        ),
        Err(other) => return Err(goose_error(other)),
    };
    Ok(RunOutcome {
        metrics,
        counted: ctx.counters.snapshot(),
        thresholds_failed,
        recorded: ctx.recorder.as_ref().map_or(0, Recorder::written),
    })
}

/// One goose transaction running `op` with the shared context.
fn transaction(ctx: &Arc<Context>, op: transactions::Op) -> Transaction {
    let ctx = ctx.clone();
    let function: TransactionFunction = Arc::new(move |user| {
        let ctx = ctx.clone();
        Box::pin(async move { transactions::run(&ctx, op, user).await })
    });
    Transaction::new(function).set_name(op.name())
}

/// The goose scenario for `name`.
pub fn build(ctx: &Arc<Context>, name: ScenarioName) -> Result<Scenario, GooseError> {
    use transactions::Op;
    let scenario = Scenario::new(name.as_str());
    Ok(match name {
        ScenarioName::Submit => scenario.register_transaction(transaction(ctx, Op::Submit)),
        ScenarioName::RetryStorm => scenario.register_transaction(transaction(ctx, Op::RetryStorm)),
        ScenarioName::BadAuth => scenario.register_transaction(transaction(ctx, Op::BadAuth)),
        ScenarioName::StatusPoll => scenario.register_transaction(transaction(ctx, Op::StatusPoll)),
        ScenarioName::Mixed => {
            let mix = ctx.settings.mix;
            let mut scenario = scenario;
            for (op, weight) in [
                (Op::Submit, mix.submit),
                (Op::RetryStorm, mix.retry_storm),
                (Op::BadAuth, mix.bad_auth),
                (Op::StatusPoll, mix.status_poll),
            ] {
                if weight > 0 {
                    scenario =
                        scenario.register_transaction(transaction(ctx, op).set_weight(weight)?);
                }
            }
            scenario
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_names_weights_and_leaves_the_rest_at_zero() {
        assert_eq!(
            Mix::parse("submit=3, bad-auth=1").unwrap(),
            Mix {
                submit: 3,
                retry_storm: 0,
                bad_auth: 1,
                status_poll: 0
            }
        );
        assert!(Mix::parse("submit=0").is_err());
        assert!(Mix::parse("nope=1").is_err());
        assert!(Mix::parse("submit=x").is_err());
        assert!(Mix::parse("submit=101").is_err());
    }

    #[test]
    fn scenario_names_are_the_documented_command_line_names() {
        use clap::ValueEnum;
        let names: Vec<String> = ScenarioName::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(
            names,
            ["submit", "retry-storm", "bad-auth", "status-poll", "mixed"]
        );
        for v in ScenarioName::value_variants() {
            assert_eq!(v.to_possible_value().unwrap().get_name(), v.as_str());
        }
    }
}
