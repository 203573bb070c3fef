//! Repair: turn a run's discrepancies into a plan (pure), and apply it through the writers'
//! own code paths, rate-limited, then re-check the window.
//!
//! ```text
//! 1. ledger quarantine   rows that contradict the log → ledger_quarantine (kept as evidence)
//! 2. balance rebuild     the accounts they touched, and drifted balances ← sum of postings
//! 3. ledger replay       exact txn.outcomes ranges → ledger-writer's Writer::process
//! 4. audit quarantine    documents that contradict the log → events_quarantine
//! 5. audit replay        exact ranges of each topic → audit's Writer::process
//! 6. re-check            a new run over the same window, recorded as `recheck:<run>`
//! ```
//! Replays are idempotent (the ledger's primary key, the audit's `_id`), so a repair
//! interrupted at any step is finished by running it again.

use crate::app::Context;
use crate::discrepancy::{Discrepancy, Kind, Remedy};
use crate::ledger_side;
use crate::metrics;
use crate::record;
use crate::run::{reconcile, RunError, RunReport, Window};
use ledgerline_runtime::ranges::OffsetRange;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An account: (merchant, account, currency).
pub type Account = (String, String, String);

/// What a repair will do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepairPlan {
    /// The run whose discrepancies it repairs.
    pub run_id: i64,
    /// Ledger transactions to move to `ledger_quarantine`.
    pub ledger_quarantine: Vec<Uuid>,
    /// Balances to set to the sum of their postings (besides those quarantine touches).
    pub rebuild_balances: Vec<Account>,
    /// Merchants and currencies whose clearing shards to rebuild.
    pub rebuild_clearing: Vec<(String, String)>,
    /// `txn.outcomes` ranges to replay into the ledger.
    pub ledger_replay: Vec<OffsetRange>,
    /// Audit documents (`_id`) to move to `events_quarantine`.
    pub audit_quarantine: Vec<String>,
    /// Ranges of any topic to replay into the audit trail.
    pub audit_replay: Vec<OffsetRange>,
    /// Discrepancies left to an operator (stuck work, dead letters).
    pub operator: Vec<Discrepancy>,
}

impl RepairPlan {
    /// Whether applying it would change anything.
    pub fn is_empty(&self) -> bool {
        self.ledger_quarantine.is_empty()
            && self.rebuild_balances.is_empty()
            && self.rebuild_clearing.is_empty()
            && self.ledger_replay.is_empty()
            && self.audit_quarantine.is_empty()
            && self.audit_replay.is_empty()
    }

    /// Messages the replays will read.
    pub fn replay_messages(&self) -> i64 {
        self.ledger_replay
            .iter()
            .chain(&self.audit_replay)
            .map(OffsetRange::len)
            .sum()
    }
}

fn text(value: Option<&serde_json::Value>, field: &str) -> Option<String> {
    value?.get(field)?.as_str().map(str::to_string)
}

/// The plan for a run's discrepancies. Offsets of one partition closer than
/// `merge_gap_offsets` are replayed as one range (a replay of a healthy offset writes
/// nothing, and one range costs one seek instead of many).
pub fn plan(run_id: i64, found: &[Discrepancy], merge_gap_offsets: i64) -> RepairPlan {
    let mut out = RepairPlan {
        run_id,
        ..RepairPlan::default()
    };
    let mut quarantine_ledger = BTreeSet::new();
    let mut quarantine_audit = BTreeSet::new();
    let mut balances = BTreeSet::new();
    let mut clearing = BTreeSet::new();
    let mut ledger_offsets: BTreeMap<(String, i32), BTreeSet<i64>> = BTreeMap::new();
    let mut audit_offsets: BTreeMap<(String, i32), BTreeSet<i64>> = BTreeMap::new();
    for d in found {
        let position = (d.topic.clone(), d.partition);
        match d.kind.remedy() {
            Remedy::ReplayLedger => {
                ledger_offsets.entry(position).or_default().insert(d.offset);
            }
            Remedy::QuarantineLedgerAndReplay => {
                // The row to move is the one found (it may belong to another transaction).
                let row = text(d.found.as_ref(), "transaction_id")
                    .and_then(|t| t.parse::<Uuid>().ok())
                    .or(d.transaction_id);
                quarantine_ledger.extend(row);
                if d.kind != Kind::ExtraInLedger {
                    ledger_offsets.entry(position).or_default().insert(d.offset);
                }
            }
            Remedy::RebuildBalance => {
                let account = (
                    text(d.expected.as_ref(), "merchant_id"),
                    text(d.expected.as_ref(), "account_id"),
                    text(d.expected.as_ref(), "currency"),
                );
                if let (Some(m), Some(a), Some(c)) = account {
                    if a.starts_with("~clearing/") {
                        clearing.insert((m, c));
                    } else {
                        balances.insert((m, a, c));
                    }
                }
            }
            Remedy::ReplayAudit => {
                audit_offsets.entry(position).or_default().insert(d.offset);
            }
            Remedy::QuarantineAuditAndReplay => {
                quarantine_audit.extend(text(d.found.as_ref(), "_id"));
                if d.kind != Kind::ExtraInAudit {
                    audit_offsets.entry(position).or_default().insert(d.offset);
                }
            }
            Remedy::Operator => out.operator.push(d.clone()),
        }
    }
    out.ledger_quarantine = quarantine_ledger.into_iter().collect();
    out.audit_quarantine = quarantine_audit.into_iter().collect();
    out.rebuild_balances = balances.into_iter().collect();
    out.rebuild_clearing = clearing.into_iter().collect();
    out.ledger_replay = merge(&ledger_offsets, merge_gap_offsets);
    out.audit_replay = merge(&audit_offsets, merge_gap_offsets);
    out
}

/// Merges each partition's offsets into ranges, joining offsets closer than `gap`.
fn merge(offsets: &BTreeMap<(String, i32), BTreeSet<i64>>, gap: i64) -> Vec<OffsetRange> {
    let mut out: Vec<OffsetRange> = Vec::new();
    for ((topic, partition), set) in offsets {
        for &o in set.iter().filter(|o| **o >= 0) {
            match out.last_mut() {
                Some(r) if r.topic == *topic && r.partition == *partition && o - r.to <= gap => {
                    r.to = o + 1;
                }
                _ => out.push(OffsetRange {
                    topic: topic.clone(),
                    partition: *partition,
                    from: o,
                    to: o + 1,
                }),
            }
        }
    }
    out
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairOutcome {
    /// Its id in `reconciliation_repairs`.
    pub repair_id: i64,
    /// `repaired` when the re-check found nothing a repair can fix, else `drift_remains`.
    pub status: &'static str,
    /// Ledger transactions quarantined.
    pub ledger_quarantined: usize,
    /// Balances changed by the rebuilds.
    pub balances_rebuilt: u64,
    /// Ledger transactions the replay wrote.
    pub ledger_written: u64,
    /// Audit documents quarantined.
    pub audit_quarantined: u64,
    /// Audit documents the replay wrote.
    pub audit_written: u64,
    /// The re-check run.
    pub recheck: Option<RunReport>,
}

/// Why a repair failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The run does not exist.
    #[error("run {0} not found")]
    UnknownRun(i64),
    /// A store or the log failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The ledger's write path could not start or replay.
    #[error("ledger replay: {0}")]
    Ledger(String),
    /// The audit's write path could not start or replay.
    #[error("audit replay: {0}")]
    Audit(String),
}

impl From<sqlx::Error> for RepairError {
    fn from(e: sqlx::Error) -> Self {
        RepairError::Run(RunError::Postgres(e))
    }
}

impl From<mongodb::error::Error> for RepairError {
    fn from(e: mongodb::error::Error) -> Self {
        RepairError::Run(RunError::Mongo(e))
    }
}

/// The plan for a recorded run.
pub async fn plan_for_run(ctx: &Context, run_id: i64) -> Result<RepairPlan, RepairError> {
    if record::run(&ctx.pool, run_id).await?.is_none() {
        return Err(RepairError::UnknownRun(run_id));
    }
    let found = record::discrepancies(&ctx.pool, run_id).await?;
    Ok(plan(run_id, &found, ctx.settings.repair.merge_gap_offsets))
}

/// Applies `plan` and re-checks the run's window. The caller holds the run lock.
pub async fn apply(
    ctx: &Context,
    plan: &RepairPlan,
    shutdown: &CancellationToken,
) -> Result<RepairOutcome, RepairError> {
    let run = record::run(&ctx.pool, plan.run_id)
        .await?
        .ok_or(RepairError::UnknownRun(plan.run_id))?;
    let plan_json = serde_json::to_value(plan).unwrap_or_default();
    let repair_id = record::start_repair(&ctx.pool, plan.run_id, &plan_json).await?;
    let result = apply_steps(ctx, plan, shutdown).await;
    let mut outcome = match result {
        Ok(o) => o,
        Err(error) => {
            let _ = record::finish_repair(
                &ctx.pool,
                repair_id,
                "failed",
                &serde_json::json!({}),
                None,
                Some(&error.to_string()),
            )
            .await;
            metrics::repair_finished("failed");
            return Err(error);
        }
    };
    outcome.repair_id = repair_id;
    let window = Window {
        from: run.window_from,
        to: run.window_to,
    };
    let recheck = reconcile(ctx, window, &format!("recheck:{}", plan.run_id), shutdown).await?;
    let fixable_left = recheck
        .discrepancies
        .iter()
        .any(|d| d.kind.remedy() != Remedy::Operator);
    outcome.status = if fixable_left {
        "drift_remains"
    } else {
        "repaired"
    };
    let recheck_id = recheck.run_id;
    outcome.recheck = Some(recheck);
    record::finish_repair(
        &ctx.pool,
        repair_id,
        outcome.status,
        &serde_json::to_value(&outcome).unwrap_or_default(),
        Some(recheck_id),
        None,
    )
    .await?;
    metrics::repair_finished(outcome.status);
    Ok(outcome)
}

async fn apply_steps(
    ctx: &Context,
    plan: &RepairPlan,
    shutdown: &CancellationToken,
) -> Result<RepairOutcome, RepairError> {
    let mut outcome = RepairOutcome::default();
    let mut accounts: Vec<Account> = plan.rebuild_balances.clone();
    if !plan.ledger_quarantine.is_empty() {
        accounts.extend(
            ledger_side::quarantine(&ctx.pool, plan.run_id, &plan.ledger_quarantine).await?,
        );
        outcome.ledger_quarantined = plan.ledger_quarantine.len();
    }
    for (merchant, currency) in &plan.rebuild_clearing {
        accounts.extend(ledger_side::clearing_shards(&ctx.pool, merchant, currency).await?);
    }
    outcome.balances_rebuilt += ledger_side::rebuild_balances(&ctx.pool, &accounts).await?;

    let mut pacer = Pacer::new(ctx.settings.repair.messages_per_sec_max);
    let chunk = ctx.settings.repair.chunk_offsets;
    if !plan.ledger_replay.is_empty() {
        let app = ledger_writer::Application::build(ctx.settings.ledger_writer())
            .await
            .map_err(|e| RepairError::Ledger(e.to_string()))?;
        let replayer = app
            .replayer(shutdown)
            .await
            .map_err(|e| RepairError::Ledger(e.to_string()))?;
        let mut result = Ok(());
        'ranges: for range in &plan.ledger_replay {
            for piece in range.chunks(chunk) {
                match replayer
                    .replay(std::slice::from_ref(&piece), shutdown)
                    .await
                {
                    Ok(report) => {
                        outcome.ledger_written +=
                            u64::try_from(report.posted + report.declined).unwrap_or(0);
                        metrics::replayed("ledger", u64::try_from(piece.len()).unwrap_or(0));
                    }
                    Err(e) => {
                        result = Err(RepairError::Ledger(e.to_string()));
                        break 'ranges;
                    }
                }
                pacer.pace(piece.len()).await;
            }
        }
        replayer.finish().await;
        result?;
    }
    if !plan.audit_quarantine.is_empty() {
        outcome.audit_quarantined = crate::audit_side::quarantine(
            &ctx.audit,
            &ctx.quarantine,
            plan.run_id,
            &plan.audit_quarantine,
        )
        .await?;
    }
    if !plan.audit_replay.is_empty() {
        let mut replayer = audit::app::replayer(ctx.settings.audit(), shutdown)
            .await
            .map_err(|e| RepairError::Audit(e.to_string()))?;
        for range in &plan.audit_replay {
            for piece in range.chunks(chunk) {
                let report = replayer
                    .replay(std::slice::from_ref(&piece), shutdown)
                    .await
                    .map_err(|e| RepairError::Audit(e.to_string()))?;
                outcome.audit_written += report.inserted;
                metrics::replayed("audit", u64::try_from(piece.len()).unwrap_or(0));
                pacer.pace(piece.len()).await;
            }
        }
    }
    // The replays may have re-posted quarantined transactions onto rebuilt balances; a last
    // rebuild of the same accounts is a no-op unless something drifted meanwhile.
    outcome.balances_rebuilt += ledger_side::rebuild_balances(&ctx.pool, &accounts).await?;
    Ok(outcome)
}

/// Keeps replays at or below a message rate: after each step, sleeps until the step's
/// messages fit the rate since the repair began.
#[derive(Debug)]
struct Pacer {
    started: Instant,
    messages: u64,
    per_sec: u32,
}

impl Pacer {
    fn new(per_sec: u32) -> Self {
        Self {
            started: Instant::now(),
            messages: 0,
            per_sec: per_sec.max(1),
        }
    }

    /// How long to wait after `messages` more, given the time elapsed so far.
    fn delay(&mut self, messages: i64, elapsed: Duration) -> Duration {
        self.messages += u64::try_from(messages).unwrap_or(0);
        let due = Duration::from_secs_f64(self.messages as f64 / f64::from(self.per_sec));
        due.saturating_sub(elapsed)
    }

    async fn pace(&mut self, messages: i64) {
        let wait = self.delay(messages, self.started.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn found(kind: Kind, topic: &str, partition: i32, offset: i64) -> Discrepancy {
        Discrepancy {
            kind,
            transaction_id: Some(Uuid::from_u128(offset as u128)),
            topic: topic.into(),
            partition,
            offset,
            expected: None,
            found: None,
            detail: String::new(),
        }
    }

    #[test]
    fn a_missing_ledger_row_is_replayed_and_nothing_is_quarantined() {
        let p = plan(1, &[found(Kind::MissingInLedger, "o", 2, 40)], 10);
        assert_eq!(p.ledger_replay.len(), 1);
        assert_eq!((p.ledger_replay[0].from, p.ledger_replay[0].to), (40, 41));
        assert!(p.ledger_quarantine.is_empty());
        assert!(p.audit_replay.is_empty());
    }

    #[test]
    fn close_offsets_merge_into_one_range_and_far_ones_do_not() {
        let p = plan(
            1,
            &[
                found(Kind::MissingInLedger, "o", 0, 10),
                found(Kind::MissingInLedger, "o", 0, 15),
                found(Kind::MissingInLedger, "o", 0, 100),
                found(Kind::MissingInLedger, "o", 1, 11),
            ],
            10,
        );
        let ranges: Vec<(i32, i64, i64)> = p
            .ledger_replay
            .iter()
            .map(|r| (r.partition, r.from, r.to))
            .collect();
        assert_eq!(ranges, vec![(0, 10, 16), (0, 100, 101), (1, 11, 12)]);
    }

    #[test]
    fn an_edited_row_is_quarantined_by_the_id_found_and_replayed() {
        let mut d = found(Kind::LedgerMismatch, "o", 0, 7);
        let other = Uuid::from_u128(99);
        d.found = Some(json!({ "transaction_id": other }));
        let p = plan(1, &[d], 0);
        assert_eq!(p.ledger_quarantine, vec![other]);
        assert_eq!(p.ledger_replay.len(), 1);
    }

    #[test]
    fn an_extra_row_is_quarantined_without_a_replay() {
        let p = plan(1, &[found(Kind::ExtraInLedger, "o", 0, 7)], 0);
        assert_eq!(p.ledger_quarantine.len(), 1);
        assert!(p.ledger_replay.is_empty());
    }

    #[test]
    fn a_drifted_balance_is_rebuilt_and_a_clearing_drift_rebuilds_the_shards() {
        let mut account = found(Kind::BalanceMismatch, "o", -1, -1);
        account.expected =
            Some(json!({ "merchant_id": "m", "account_id": "a", "currency": "EUR" }));
        let mut clearing = account.clone();
        clearing.expected =
            Some(json!({ "merchant_id": "m", "account_id": "~clearing/*", "currency": "EUR" }));
        let p = plan(1, &[account, clearing], 0);
        assert_eq!(
            p.rebuild_balances,
            vec![("m".into(), "a".into(), "EUR".into())]
        );
        assert_eq!(p.rebuild_clearing, vec![("m".into(), "EUR".into())]);
        assert!(p.ledger_replay.is_empty());
    }

    #[test]
    fn a_broken_audit_link_is_quarantined_and_replayed() {
        let mut d = found(Kind::ChainBreak, "r", 1, 3);
        d.found = Some(json!({ "_id": "evt-1" }));
        let p = plan(1, &[d], 0);
        assert_eq!(p.audit_quarantine, vec!["evt-1".to_string()]);
        assert_eq!(p.audit_replay.len(), 1);
    }

    #[test]
    fn stuck_work_and_dead_letters_are_left_to_an_operator() {
        let p = plan(
            1,
            &[
                found(Kind::StuckInFlight, "r", 0, 1),
                found(Kind::DeadLettered, "r.dlq", 0, 2),
            ],
            0,
        );
        assert!(p.is_empty());
        assert_eq!(p.operator.len(), 2);
    }

    #[test]
    fn the_pacer_waits_until_the_messages_fit_the_rate() {
        let mut pacer = Pacer::new(100);
        assert_eq!(pacer.delay(50, Duration::ZERO), Duration::from_millis(500));
        assert_eq!(
            pacer.delay(50, Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(pacer.delay(0, Duration::from_secs(5)), Duration::ZERO);
    }
}
