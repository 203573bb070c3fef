//! `loadtest verify`: after a run, proves from the stores that nothing accepted was lost or
//! applied twice.
//!
//! ```text
//! records ← the record file, grouped per transaction (expected.rs)
//! drain (≤ drain_timeout):
//!     until every transaction has a ledger row, or the audit says it was REJECTED
//!     until the audit holds every transaction's requests, decisions and ledger result
//! ledger (ledger.rs): one row per transaction, matching the ORIGINAL body (a duplicate or a
//!     conflict changed nothing); POSTED = two legs summing to zero with the account leg equal
//!     to ±amount, DECLINED = no legs; balance = sum of postings for every account touched and
//!     every clearing shard; the merchant's balances sum to zero per currency
//! audit (audit.rs): ≥ one request per recorded 202, one ACCEPTED decision, a DUPLICATE per
//!     retry, an IDEMPOTENCY_CONFLICT rejection per conflict, and the ledger's result
//! latency: ledger posted_at − the 202's arrival, and − ingress's received_at
//! reconciler (reconciler.rs): run over [since, now] when one is built
//! ```
//!
//! Every problem is a [`Finding`]; the verification passes when there is none.

pub mod audit;
pub mod expected;
pub mod ledger;
pub mod reconciler;

use hdrhistogram::Histogram;
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::postgres::PostgresSettings;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::record::{self, RecordError};
use crate::sweep::stats::Percentiles;
use audit::Tally;
use expected::Expected;
use ledger::LedgerRow;
use reconciler::{Choice, ReconcilerResult};

/// Most findings listed one by one in the report (all are counted by kind).
pub const FINDINGS_LISTED_MAX: usize = 100;

/// How much earlier than `--since` the audit is scanned, for events stamped by a clock that
/// runs slightly behind the generator's.
const AUDIT_SCAN_MARGIN: Duration = Duration::from_secs(60);

/// Everything `verify` needs.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// The record file of the run.
    pub record_file: PathBuf,
    /// The start of the run's window (its first request came after it).
    pub since: OffsetDateTime,
    /// The ledger.
    pub postgres: PostgresSettings,
    /// The audit trail.
    pub mongo: MongoSettings,
    /// Most time to wait for the pipeline to finish every recorded transaction.
    pub drain_timeout: Duration,
    /// Pause between two looks while draining.
    pub poll_interval: Duration,
    /// The reconciler to run.
    pub reconciler: Choice,
    /// Most time the reconciler may take.
    pub reconciler_timeout: Duration,
    /// Variables set on the reconciler's process besides the inherited ones (e.g. the
    /// `LEDGERLINE_*` settings of a pipeline other than the one this process is configured for).
    pub reconciler_env: Vec<(String, String)>,
}

/// Why verification could not be carried out (a failed check is a finding, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The record file.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// MongoDB.
    #[error("mongo: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The record file holds more than one merchant.
    #[error("the record file holds several merchants ({0}); verify one run at a time")]
    SeveralMerchants(String),
}

/// The fewest audit events a complete trail of `expected` holds: a request and a decision per
/// 202, and a ledger result per transaction with a ledger row.
fn audit_documents_min<'a>(
    expected: impl Iterator<Item = &'a Expected>,
    ledger_rows: usize,
) -> u64 {
    let per_202: u64 = expected.map(|e| 2 * u64::from(e.accepted_202s)).sum();
    per_202 + ledger_rows as u64
}

impl VerifyError {
    /// Whether looking again later may succeed (a store busy or restarting).
    fn is_transient(&self) -> bool {
        match self {
            VerifyError::Postgres(e) => ledgerline_runtime::postgres::is_retryable(e),
            VerifyError::Mongo(e) => ledgerline_runtime::mongo::is_retryable(e),
            VerifyError::Record(_) | VerifyError::SeveralMerchants(_) => false,
        }
    }
}

/// Runs `read` until it succeeds, retrying transient errors after `pause` while the deadline
/// allows another try; any other error, or one at the deadline, is returned.
async fn patiently<T, F, Fut>(
    deadline: tokio::time::Instant,
    pause: Duration,
    mut read: F,
) -> Result<T, VerifyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, VerifyError>>,
{
    loop {
        match read().await {
            Err(error)
                if error.is_transient() && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(%error, "a store did not answer; looking again");
                tokio::time::sleep(pause).await;
            }
            done => return done,
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// A stable kind, e.g. `not_terminal`, `ledger_mismatch`.
    pub kind: String,
    /// The transaction, when the finding concerns one.
    pub transaction_id: Option<String>,
    /// What was expected and what was found.
    pub detail: String,
}

/// The verification's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The record file.
    pub record_file: String,
    /// The window's start.
    pub since: String,
    /// When the checks ended.
    pub checked_at: String,
    /// Every 202 recorded.
    pub recorded_202s: u64,
    /// Distinct transactions.
    pub transactions: u64,
    /// Recorded retries (same key and body).
    pub duplicates_sent: u64,
    /// Recorded conflicts (same key, another body).
    pub conflicts_sent: u64,
    /// Transactions POSTED.
    pub posted: u64,
    /// Transactions DECLINED.
    pub declined: u64,
    /// Transactions REJECTED by the processor's rules (no ledger row expected).
    pub rejected: u64,
    /// Transactions with no terminal state when the drain ended.
    pub not_terminal: u64,
    /// Ledger rows of the recorded transactions.
    pub ledger_rows: u64,
    /// Ledger rows of the merchant decided in the window that no record names (a 503 that
    /// landed anyway, or another client of the same merchant).
    pub unrecorded_ledger_rows: u64,
    /// Transactions whose audit events are all there.
    pub audited: u64,
    /// DUPLICATE decisions in the audit for the recorded transactions.
    pub duplicates_decided: u64,
    /// IDEMPOTENCY_CONFLICT rejections in the audit for the recorded transactions.
    pub conflicts_rejected: u64,
    /// Accounts (and clearing shards) whose balance was compared with their postings.
    pub balances_checked: u64,
    /// 202 → ledger commit, from the generator's clock to `posted_at`.
    pub latency_202_to_ledger_ms: Percentiles,
    /// Ingress `received_at` → ledger `posted_at` (server clocks only).
    pub latency_received_to_ledger_ms: Percentiles,
    /// Whether everything was terminal and audited before the drain deadline.
    pub drained: bool,
    /// Seconds spent waiting for the pipeline.
    pub drain_secs: f64,
    /// The reconciler's verdict.
    pub reconciler: ReconcilerResult,
    /// Findings by kind.
    pub findings_by_kind: BTreeMap<String, u64>,
    /// The first findings, one by one.
    pub findings: Vec<Finding>,
    /// No findings.
    pub passed: bool,
}

impl VerifyReport {
    /// A short human summary.
    pub fn summary(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        let mut out = format!(
            "verify {}: {} transactions from {} recorded 202s ({} duplicates and {} conflicts sent)\n\
             ledger: {} posted, {} declined, {} rejected by rules, {} not terminal; {} ledger rows; {} balances checked\n\
             audit: {} transactions complete; {} DUPLICATE and {} IDEMPOTENCY_CONFLICT decisions\n\
             202 → ledger: p50 {} ms, p99 {} ms, max {} ms (received → ledger p99 {} ms)\n\
             reconciler: {} ({})\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.transactions,
            self.recorded_202s,
            self.duplicates_sent,
            self.conflicts_sent,
            self.posted,
            self.declined,
            self.rejected,
            self.not_terminal,
            self.ledger_rows,
            self.balances_checked,
            self.audited,
            self.duplicates_decided,
            self.conflicts_rejected,
            ms(self.latency_202_to_ledger_ms.p50),
            ms(self.latency_202_to_ledger_ms.p99),
            ms(self.latency_202_to_ledger_ms.max),
            ms(self.latency_received_to_ledger_ms.p99),
            self.reconciler.status,
            self.reconciler.detail,
        );
        if self.unrecorded_ledger_rows > 0 {
            out.push_str(&format!(
                "note: {} ledger rows of this merchant in the window are in no record (503s that landed, or other clients)\n",
                self.unrecorded_ledger_rows
            ));
        }
        for (kind, n) in &self.findings_by_kind {
            out.push_str(&format!("finding {kind}: {n}\n"));
        }
        for f in self.findings.iter().take(10) {
            out.push_str(&format!(
                "  {} {}: {}\n",
                f.kind,
                f.transaction_id.as_deref().unwrap_or("-"),
                f.detail
            ));
        }
        out
    }
}

#[derive(Default)]
struct Findings {
    by_kind: BTreeMap<String, u64>,
    listed: Vec<Finding>,
}

impl Findings {
    fn add(&mut self, kind: &str, transaction_id: Option<Uuid>, detail: String) {
        *self.by_kind.entry(kind.to_string()).or_default() += 1;
        if self.listed.len() < FINDINGS_LISTED_MAX {
            self.listed.push(Finding {
                kind: kind.to_string(),
                transaction_id: transaction_id.map(|id| id.to_string()),
                detail,
            });
        }
    }
}

/// Runs the verification.
pub async fn run(settings: &VerifySettings) -> Result<VerifyReport, VerifyError> {
    let records = record::read(&settings.record_file)?;
    let grouped = expected::group(&records);
    let merchants: BTreeSet<&str> = grouped
        .transactions
        .values()
        .map(|e| e.merchant_id.as_str())
        .collect();
    if merchants.len() > 1 {
        return Err(VerifyError::SeveralMerchants(
            merchants.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    let merchant = merchants.into_iter().next().unwrap_or_default().to_string();
    let expected = &grouped.transactions;
    let ids: Vec<Uuid> = expected.keys().copied().collect();
    let wanted: BTreeSet<Uuid> = expected.keys().copied().collect();
    let mut findings = Findings::default();
    if grouped.malformed_ids > 0 {
        findings.add(
            "malformed_record",
            None,
            format!(
                "{} records have no valid transaction id",
                grouped.malformed_ids
            ),
        );
    }

    let pool = settings.postgres.pool()?;
    let db = settings.mongo.database().await?;
    let audit_since = settings.since - AUDIT_SCAN_MARGIN;

    // Drain: every transaction in the ledger or rejected, then the audit complete. The stores
    // are still busy catching up while we look, so a transient error is a reason to look again
    // (until the deadline), not to give up.
    let drain_started = tokio::time::Instant::now();
    let deadline = drain_started + settings.drain_timeout;
    let pause = settings.poll_interval;
    let mut pending: BTreeSet<Uuid> = wanted.clone();
    let mut rejected: BTreeSet<Uuid> = BTreeSet::new();
    let mut tallies: HashMap<Uuid, Tally>;
    loop {
        let before = pending.len();
        let look: Vec<Uuid> = pending.iter().copied().collect();
        let present = patiently(deadline, pause, || async {
            Ok(ledger::present(&pool, &look).await?)
        })
        .await?;
        for id in present {
            pending.remove(&id);
        }
        if !pending.is_empty() && pending.len() == before {
            // No progress: transactions the processor rejected never reach the ledger; the
            // audit says which.
            tallies = patiently(deadline, pause, || async {
                Ok(audit::tallies(&db, &merchant, audit_since, &wanted).await?)
            })
            .await?;
            pending.retain(|id| {
                let t = tallies.get(id).copied().unwrap_or_default();
                let is_rejected = t.accepted == 0 && t.rejected > 0;
                if is_rejected {
                    rejected.insert(*id);
                }
                !is_rejected
            });
        }
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let rows = patiently(deadline, pause, || async {
        Ok(ledger::rows(&pool, &ids).await?)
    })
    .await?;
    let by_id: HashMap<Uuid, &LedgerRow> = rows.iter().map(|r| (r.transaction_id, r)).collect();
    let audit_incomplete = |tallies: &HashMap<Uuid, Tally>| {
        expected
            .values()
            .filter(|e| {
                !audit_complete(
                    e,
                    tallies.get(&e.transaction_id),
                    by_id.get(&e.transaction_id).copied(),
                    rejected.contains(&e.transaction_id),
                )
            })
            .count()
    };
    // A tally reads every document of the window; until the audit holds at least as many as
    // a complete trail needs, a cheap count says to wait.
    let documents_min = audit_documents_min(expected.values(), by_id.len());
    let audit_pause = pause.max(Duration::from_secs(1));
    loop {
        let stored = patiently(deadline, pause, || async {
            Ok(audit::count(&db, &merchant, audit_since).await?)
        })
        .await?;
        if stored >= documents_min || tokio::time::Instant::now() >= deadline {
            tallies = patiently(deadline, pause, || async {
                Ok(audit::tallies(&db, &merchant, audit_since, &wanted).await?)
            })
            .await?;
            if audit_incomplete(&tallies) == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        tokio::time::sleep(audit_pause).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let drained = pending.is_empty() && audit_incomplete(&tallies) == 0;

    // Ledger checks.
    let latency_hist = || {
        Histogram::<u64>::new_with_bounds(1, 24 * 3_600 * 1_000, 3)
            .expect("1 ms .. 24 h at 3 significant digits is a valid histogram")
    };
    let mut from_202 = latency_hist();
    let mut from_received = latency_hist();
    let (mut posted, mut declined) = (0_u64, 0_u64);
    for e in expected.values() {
        let id = e.transaction_id;
        let Some(row) = by_id.get(&id) else {
            if !rejected.contains(&id) {
                findings.add(
                    "not_terminal",
                    Some(id),
                    "no ledger row and no rejection after the drain".into(),
                );
            }
            continue;
        };
        check_row(e, row, &mut findings);
        match row.result.as_str() {
            "POSTED" => posted += 1,
            _ => declined += 1,
        }
        let posted_ms =
            i64::try_from(row.posted_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let latency = posted_ms.saturating_sub(e.first_accepted_at_ms).max(1);
        from_202.saturating_record(u64::try_from(latency).unwrap_or(1));
        let server = (row.posted_at - row.received_at)
            .whole_milliseconds()
            .max(1);
        from_received.saturating_record(u64::try_from(server).unwrap_or(1));
    }
    let ledger_rows = u64::try_from(ledger::row_count(&pool, &ids).await?).unwrap_or(0);
    if ledger_rows != by_id.len() as u64 {
        findings.add(
            "ledger_row_count",
            None,
            format!("{ledger_rows} rows for {} transactions found", by_id.len()),
        );
    }

    let accounts: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.account_id.clone(), r.currency.clone()))
        .collect();
    let accounts: Vec<(String, String)> = accounts.into_iter().collect();
    let balances = if merchant.is_empty() {
        Vec::new()
    } else {
        ledger::balances(&pool, &merchant, &accounts).await?
    };
    for b in balances.iter().filter(|b| !b.holds()) {
        findings.add(
            "balance_mismatch",
            None,
            format!(
                "{} {}: balance {:?} over {:?} postings, postings sum {} over {}",
                b.account_id,
                b.currency,
                b.balance_minor,
                b.postings_count,
                b.postings_sum_minor,
                b.postings
            ),
        );
    }
    if !merchant.is_empty() {
        for (currency, total) in ledger::merchant_totals(&pool, &merchant).await? {
            if total != 0 {
                findings.add(
                    "merchant_not_zero_sum",
                    None,
                    format!("the merchant's {currency} balances sum to {total}, not 0"),
                );
            }
        }
    }
    let unrecorded = if merchant.is_empty() {
        0
    } else {
        ledger::decided_since(&pool, &merchant, settings.since)
            .await?
            .into_iter()
            .filter(|id| !wanted.contains(id))
            .count() as u64
    };

    // Audit checks.
    let mut audited = 0;
    let (mut duplicates_decided, mut conflicts_rejected) = (0_u64, 0_u64);
    for e in expected.values() {
        let id = e.transaction_id;
        let t = tallies.get(&id).copied().unwrap_or_default();
        duplicates_decided += u64::from(t.duplicate);
        conflicts_rejected += u64::from(t.conflict);
        let row = by_id.get(&id).copied();
        if audit_complete(e, Some(&t), row, rejected.contains(&id)) {
            audited += 1;
        } else {
            check_audit(e, &t, row, rejected.contains(&id), &mut findings);
        }
        if t.accepted > 1 {
            findings.add(
                "decided_twice",
                Some(id),
                format!("{} ACCEPTED decisions", t.accepted),
            );
        }
    }

    // The reconciler over the window.
    let now = OffsetDateTime::now_utc();
    let reconciler = reconciler::run(
        &settings.reconciler,
        &settings.reconciler_env,
        settings.since,
        now,
        settings.reconciler_timeout,
    )
    .await;
    if reconciler.fails() {
        findings.add(
            "reconciler",
            None,
            format!("reconciler {}: {}", reconciler.status, reconciler.detail),
        );
    }

    let passed = findings.by_kind.is_empty();
    Ok(VerifyReport {
        record_file: settings.record_file.display().to_string(),
        since: settings.since.format(&Rfc3339).unwrap_or_default(),
        checked_at: now.format(&Rfc3339).unwrap_or_default(),
        recorded_202s: records.len() as u64,
        transactions: expected.len() as u64,
        duplicates_sent: expected.values().map(|e| u64::from(e.retries)).sum(),
        conflicts_sent: expected.values().map(|e| u64::from(e.conflicts)).sum(),
        posted,
        declined,
        rejected: rejected.len() as u64,
        not_terminal: findings.by_kind.get("not_terminal").copied().unwrap_or(0),
        ledger_rows,
        unrecorded_ledger_rows: unrecorded,
        audited,
        duplicates_decided,
        conflicts_rejected,
        balances_checked: balances.len() as u64,
        latency_202_to_ledger_ms: ms_percentiles(&from_202),
        latency_received_to_ledger_ms: ms_percentiles(&from_received),
        drained,
        drain_secs,
        reconciler,
        findings_by_kind: findings.by_kind,
        findings: findings.listed,
        passed,
    })
}

fn ms_percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let v = |q: f64| Some(h.value_at_quantile(q) as f64);
    Percentiles {
        p50: v(0.5),
        p99: v(0.99),
        p999: v(0.999),
        max: Some(h.max() as f64),
    }
}

/// The ledger row agrees with the original request, and its postings balance.
fn check_row(e: &Expected, row: &LedgerRow, findings: &mut Findings) {
    let id = Some(e.transaction_id);
    match &e.original {
        Some(o) => {
            let same = row.merchant_id == e.merchant_id
                && row.account_id == o.account_id
                && row.amount_minor == o.amount_minor
                && row.currency == o.currency
                && row.txn_type == o.txn_type.as_str();
            if !same {
                findings.add(
                    "ledger_mismatch",
                    id,
                    format!(
                        "ledger has {} {} {} {} on {}, the original request was {} {} {} on {}",
                        row.txn_type,
                        row.amount_minor,
                        row.currency,
                        row.result,
                        row.account_id,
                        o.txn_type.as_str(),
                        o.amount_minor,
                        o.currency,
                        o.account_id
                    ),
                );
            }
        }
        None => findings.add(
            "no_original_recorded",
            id,
            "only retries or conflicts were recorded for this transaction".into(),
        ),
    }
    match row.result.as_str() {
        "POSTED" => {
            let signed_amount = if row.txn_type == "debit" {
                -row.amount_minor
            } else {
                row.amount_minor
            };
            if row.legs != 2 || row.legs_sum_minor != 0 || row.account_leg_minor != signed_amount {
                findings.add(
                    "postings_unbalanced",
                    id,
                    format!(
                        "{} legs summing to {}, account leg {} (expected 2 legs, 0, {signed_amount})",
                        row.legs, row.legs_sum_minor, row.account_leg_minor
                    ),
                );
            }
        }
        "DECLINED" => {
            if row.legs != 0 {
                findings.add(
                    "declined_with_postings",
                    id,
                    format!("a DECLINED transaction has {} postings", row.legs),
                );
            }
        }
        other => findings.add("ledger_result", id, format!("unknown result {other:?}")),
    }
}

/// Whether the audit holds everything the run implies for `e`.
fn audit_complete(
    e: &Expected,
    t: Option<&Tally>,
    row: Option<&LedgerRow>,
    rejected: bool,
) -> bool {
    let Some(t) = t else { return false };
    let results = t.posted + t.declined;
    t.requested >= e.accepted_202s
        && t.decided() >= e.accepted_202s
        && t.duplicate >= e.retries
        && t.conflict >= e.conflicts
        && (rejected || t.accepted >= 1)
        && match row {
            Some(row) => results == 1 && (row.result == "POSTED") == (t.posted == 1),
            None => results == 0,
        }
}

/// Names what the audit is missing for `e`.
fn check_audit(
    e: &Expected,
    t: &Tally,
    row: Option<&LedgerRow>,
    rejected: bool,
    findings: &mut Findings,
) {
    let id = Some(e.transaction_id);
    if t.requested < e.accepted_202s {
        findings.add(
            "audit_missing_requested",
            id,
            format!(
                "{} requests audited for {} recorded 202s",
                t.requested, e.accepted_202s
            ),
        );
    }
    if t.decided() < e.accepted_202s || (!rejected && t.accepted == 0) {
        findings.add(
            "audit_missing_decision",
            id,
            format!(
                "{} decisions audited ({} accepted) for {} recorded 202s",
                t.decided(),
                t.accepted,
                e.accepted_202s
            ),
        );
    }
    if t.duplicate < e.retries {
        findings.add(
            "duplicate_not_decided",
            id,
            format!(
                "{} DUPLICATE decisions for {} retries sent",
                t.duplicate, e.retries
            ),
        );
    }
    if t.conflict < e.conflicts {
        findings.add(
            "conflict_not_rejected",
            id,
            format!(
                "{} IDEMPOTENCY_CONFLICT rejections for {} conflicts sent",
                t.conflict, e.conflicts
            ),
        );
    }
    let results = t.posted + t.declined;
    match row {
        Some(row) if results != 1 || (row.result == "POSTED") != (t.posted == 1) => findings.add(
            "audit_result_mismatch",
            id,
            format!(
                "ledger says {}, the audit holds {} POSTED and {} DECLINED",
                row.result, t.posted, t.declined
            ),
        ),
        None if results != 0 => findings.add(
            "audit_result_without_ledger_row",
            id,
            format!("the audit holds {results} ledger results but the ledger has no row"),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::TxnSpec;
    use ledgerline_contracts::events::TxnType;

    fn expected(retries: u32, conflicts: u32) -> Expected {
        Expected {
            transaction_id: Uuid::nil(),
            merchant_id: "m".into(),
            original: Some(TxnSpec {
                account_id: "a".into(),
                amount_minor: 500,
                txn_type: TxnType::Debit,
                currency: "EUR".into(),
            }),
            first_accepted_at_ms: 0,
            accepted_202s: 1 + retries + conflicts,
            retries,
            conflicts,
        }
    }

    #[test]
    fn a_complete_trail_holds_a_request_and_a_decision_per_202_and_a_result_per_ledger_row() {
        let runs = [expected(0, 0), expected(2, 1)];
        // (1 + 4) 202s × 2 events, and one ledger result for each of the two.
        assert_eq!(audit_documents_min(runs.iter(), 2), 12);
        // A transaction the rules rejected has no ledger row and no result.
        assert_eq!(audit_documents_min(runs.iter(), 1), 11);
    }

    fn row(result: &str, amount: i64, legs: i64, account_leg: i64) -> LedgerRow {
        LedgerRow {
            transaction_id: Uuid::nil(),
            merchant_id: "m".into(),
            account_id: "a".into(),
            txn_type: "debit".into(),
            amount_minor: amount,
            currency: "EUR".into(),
            result: result.into(),
            reason_code: None,
            received_at: OffsetDateTime::UNIX_EPOCH,
            posted_at: OffsetDateTime::UNIX_EPOCH,
            legs,
            legs_sum_minor: 0,
            account_leg_minor: account_leg,
        }
    }

    #[test]
    fn a_ledger_row_matching_the_original_with_balanced_legs_has_no_finding() {
        let mut f = Findings::default();
        check_row(&expected(1, 1), &row("POSTED", 500, 2, -500), &mut f);
        assert!(f.by_kind.is_empty(), "{:?}", f.listed);
    }

    #[test]
    fn a_row_with_the_conflicting_amount_is_a_ledger_mismatch() {
        let mut f = Findings::default();
        check_row(&expected(0, 1), &row("POSTED", 501, 2, -501), &mut f);
        assert_eq!(f.by_kind.get("ledger_mismatch"), Some(&1));
    }

    #[test]
    fn a_posted_row_with_one_leg_or_a_declined_row_with_legs_is_reported() {
        let mut f = Findings::default();
        check_row(&expected(0, 0), &row("POSTED", 500, 1, -500), &mut f);
        check_row(&expected(0, 0), &row("DECLINED", 500, 2, -500), &mut f);
        assert_eq!(f.by_kind.get("postings_unbalanced"), Some(&1));
        assert_eq!(f.by_kind.get("declined_with_postings"), Some(&1));
    }

    #[test]
    fn the_audit_is_complete_only_with_a_decision_per_attempt_and_the_ledger_result() {
        let e = expected(1, 1);
        let r = row("POSTED", 500, 2, -500);
        let full = Tally {
            requested: 3,
            accepted: 1,
            duplicate: 1,
            conflict: 1,
            posted: 1,
            ..Tally::default()
        };
        assert!(audit_complete(&e, Some(&full), Some(&r), false));
        let no_dup = Tally {
            duplicate: 0,
            ..full
        };
        assert!(!audit_complete(&e, Some(&no_dup), Some(&r), false));
        let mut f = Findings::default();
        check_audit(&e, &no_dup, Some(&r), false, &mut f);
        assert_eq!(f.by_kind.get("duplicate_not_decided"), Some(&1));
        assert!(!audit_complete(&e, None, Some(&r), false));
    }

    #[test]
    fn a_rejected_transaction_needs_no_ledger_result() {
        let e = expected(0, 0);
        let t = Tally {
            requested: 1,
            rejected: 1,
            ..Tally::default()
        };
        assert!(audit_complete(&e, Some(&t), None, true));
        assert!(!audit_complete(&e, Some(&t), None, false));
    }

    #[test]
    fn findings_are_counted_by_kind_and_listed_up_to_the_cap() {
        let mut f = Findings::default();
        for _ in 0..(FINDINGS_LISTED_MAX + 5) {
            f.add("x", None, String::new());
        }
        assert_eq!(f.by_kind["x"], (FINDINGS_LISTED_MAX + 5) as u64);
        assert_eq!(f.listed.len(), FINDINGS_LISTED_MAX);
    }
}
