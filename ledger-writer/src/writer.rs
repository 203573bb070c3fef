//! The ledger-writer's batch loop.
//!
//! ```text
//! loop:
//!   batch ← next_batch(count, bytes, age bounds)
//!   decode each; poison → txn.outcomes.dlq (acknowledged) and skipped
//!   keep ACCEPTED decisions (others are not the ledger's business), in offset order
//!   post them in one database transaction (store.rs), retrying while PostgreSQL is down
//!   wake the outbox relay
//!   commit offsets (only now: the database has the batch)
//! ```
//! The same [`Writer::process`] serves the replay mode, so a replay goes through exactly the
//! code path (and the idempotency) of normal operation.

use crate::config::Settings;
use crate::metrics;
use crate::plan::{Accepted, Plan, Source};
use crate::store::LedgerStore;
use ledgerline_contracts::events::{Decision, PostingResult, TransactionDecided};
use ledgerline_runtime::backoff::{Interrupted, Retrier};
use ledgerline_runtime::consume::{next_batch, Committer};
use ledgerline_runtime::kafka::{decode_message, DeadLetterer};
use ledgerline_runtime::status::StatusStore;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Readiness check names.
pub const POSTGRES: &str = "postgres";
/// Readiness check names.
pub const KAFKA: &str = "kafka";

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchReport {
    /// Transactions posted.
    pub posted: usize,
    /// Transactions declined.
    pub declined: usize,
    /// Accepted decisions already in the ledger.
    pub already_recorded: usize,
    /// Decisions other than ACCEPTED.
    pub not_accepted: usize,
    /// Poison messages sent to the DLQ.
    pub dead_lettered: usize,
}

impl std::ops::AddAssign for BatchReport {
    fn add_assign(&mut self, other: Self) {
        self.posted += other.posted;
        self.declined += other.declined;
        self.already_recorded += other.already_recorded;
        self.not_accepted += other.not_accepted;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Posts batches of `txn.outcomes`.
pub struct Writer {
    pub(crate) settings: Settings,
    pub(crate) store: LedgerStore,
    pub(crate) dead_letters: DeadLetterer,
    pub(crate) retrier: Retrier,
    pub(crate) status: StatusStore,
    pub(crate) dlq_topic: String,
    pub(crate) relay_wake: Arc<Notify>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dlq_topic", &self.dlq_topic)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Consumes until `shutdown`: finishes the batch in hand, commits, leaves the group.
    ///
    /// The next batch is fetched while the current one is written, so the broker fetch and the
    /// database transaction overlap; batches are still written strictly one after another, in
    /// offset order, and a batch's offsets are committed only after its own commit.
    pub async fn run(&self, consumer: &StreamConsumer, shutdown: CancellationToken) {
        let mut committer = Committer::default();
        let mut batch = next_batch(consumer, &self.settings.batch, &shutdown).await;
        while !batch.is_empty() {
            let started = Instant::now();
            let written = async {
                let report = self.process(&batch, &shutdown).await?;
                // Committed here, not after the join: with no next message the join would
                // hold this commit back until one arrives.
                committer.commit(consumer, &batch, &shutdown);
                Ok::<_, Interrupted>(report)
            };
            let (written, next) = tokio::join!(
                written,
                next_batch(consumer, &self.settings.batch, &shutdown),
            );
            if written.is_err() {
                // `next` was fetched but not written: it is redelivered with this batch.
                tracing::warn!(
                    messages = batch.len(),
                    "shutdown during an outage; batch left uncommitted"
                );
                break;
            }
            metrics::batch_size(batch.len());
            metrics::batch_duration(started.elapsed());
            batch = next;
        }
        consumer.unsubscribe();
        tracing::info!("ledger-writer loop stopped");
    }

    /// Decodes, dead-letters poison, and posts the accepted decisions of `batch`.
    pub async fn process(
        &self,
        batch: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<BatchReport, Interrupted> {
        let mut report = BatchReport::default();
        let mut accepted = Vec::with_capacity(batch.len());
        for message in batch {
            match decode_message::<TransactionDecided, _>(message) {
                Err(reason) => {
                    self.dead_letter(message, reason, shutdown).await?;
                    report.dead_lettered += 1;
                }
                Ok(decided) if decided.decision != Decision::Accepted => report.not_accepted += 1,
                Ok(decided) => accepted.push(Accepted {
                    decided,
                    source: Source {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                    },
                }),
            }
        }
        metrics::skipped("not_accepted", report.not_accepted as u64);
        if accepted.is_empty() {
            return Ok(report);
        }
        let plan = self
            .retrier
            .run("postgres", POSTGRES, shutdown, || async {
                let started = Instant::now();
                let result = self.store.post(&accepted).await;
                metrics::db_duration(started.elapsed());
                result
            })
            .await?;
        if self.settings.faults.crash_after_commit {
            tracing::error!("fault injection: aborting after the database commit");
            std::process::abort();
        }
        self.relay_wake.notify_one();
        if !plan.restated.is_empty() {
            // Idempotent (HSETNX): a no-op when the read model still has the result.
            let updates: Vec<_> = plan.restated.iter().map(crate::relay::restated).collect();
            self.retrier
                .run("redis", crate::relay::REDIS, shutdown, || {
                    self.status.apply(&updates)
                })
                .await?;
        }
        record(&plan, &mut report);
        Ok(report)
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &'static str,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        self.dead_letters
            .send(&self.dlq_topic, message, reason, shutdown)
            .await?;
        metrics::dead_lettered(reason);
        Ok(())
    }
}

fn record(plan: &Plan, report: &mut BatchReport) {
    let mut by_reason: BTreeMap<(&'static str, &str), u64> = BTreeMap::new();
    for t in &plan.transactions {
        let result = t.posted.result;
        *by_reason
            .entry((
                result.as_str(),
                t.posted.reason_code.as_deref().unwrap_or(""),
            ))
            .or_default() += 1;
        match result {
            PostingResult::Posted => report.posted += 1,
            PostingResult::Declined => report.declined += 1,
        }
    }
    for ((result, reason), n) in by_reason {
        metrics::written(result, reason, n);
    }
    report.already_recorded += plan.already_recorded;
    metrics::skipped("already_recorded", plan.already_recorded as u64);
}
