//! The ledger-writer's batch loop.
//!
//! ```text
//! loop:
//!   batch ← next_batch(count, bytes, age bounds), fetched while earlier lanes are written
//!   split it into lanes of whole partitions (lanes.rs)
//!   for each lane, once none of its partitions is in a lane still being written and fewer
//!   than db_transactions_in_flight_max lanes are: write it, side by side with the others:
//!     decode each; poison → txn.outcomes.dlq (acknowledged) and skipped
//!     keep ACCEPTED decisions (others are not the ledger's business), in offset order
//!     post them in one database transaction (store.rs), retrying while PostgreSQL is down
//!     wake the outbox relay
//!     commit the lane's offsets (only now: the database has the lane)
//! ```
//! The same [`Writer::process`] serves the replay mode, so a replay goes through exactly the
//! code path (and the idempotency) of normal operation.

use crate::config::Settings;
use crate::lanes::{self, Partition};
use crate::metrics;
use crate::plan::{Accepted, Plan, Source};
use crate::store::LedgerStore;
use futures::stream::{FuturesUnordered, StreamExt};
use ledgerline_contracts::events::{Decision, PostingResult, TransactionDecided};
use ledgerline_runtime::backoff::{Interrupted, Retrier};
use ledgerline_runtime::consume::{next_batch, Committer};
use ledgerline_runtime::kafka::{decode_message, DeadLetterer};
use ledgerline_runtime::status::StatusStore;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
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
    /// Consumes until `shutdown`: finishes the lanes in hand, commits, leaves the group.
    ///
    /// The next batch is fetched while lanes are written, so the broker fetch and the database
    /// overlap. Lanes of disjoint partitions are written side by side, up to
    /// `db_transactions_in_flight_max`; a lane whose partition is still being written waits
    /// for it, so each partition's messages are written one lane after another, in offset
    /// order, and each lane's offsets are committed only after its own database commit.
    pub async fn run(&self, consumer: &StreamConsumer, shutdown: CancellationToken) {
        let committer = Mutex::new(Committer::default());
        let in_flight_max = self.settings.db_transactions_in_flight_max;
        let mut in_flight = FuturesUnordered::new();
        let mut busy: HashSet<Partition> = HashSet::new();
        let mut interrupted = false;
        let mut batch = next_batch(consumer, &self.settings.batch, &shutdown).await;
        while !batch.is_empty() && !interrupted {
            metrics::batch_size(batch.len());
            for lane in lanes::split(batch, in_flight_max, partition_of) {
                let partitions = lanes::partitions(&lane, partition_of);
                while !interrupted
                    && (in_flight.len() >= in_flight_max || !busy.is_disjoint(&partitions))
                {
                    let Some(done) = in_flight.next().await else {
                        break;
                    };
                    interrupted |= finished(done, &mut busy);
                }
                if interrupted {
                    break;
                }
                busy.extend(partitions.iter().cloned());
                let (committer, shutdown) = (&committer, &shutdown);
                in_flight.push(async move {
                    let started = Instant::now();
                    let report = self.process(&lane, shutdown).await;
                    if report.is_ok() {
                        // Committed here, as soon as the lane is in the database: waiting for
                        // the next batch would hold it back until a message arrives.
                        let mut committer = committer.lock().unwrap_or_else(|e| e.into_inner());
                        committer.commit(consumer, &lane, shutdown);
                        metrics::lane_duration(started.elapsed());
                    } else {
                        // Left uncommitted: redelivered, and skipped where already recorded.
                        tracing::warn!(
                            messages = lane.len(),
                            "shutdown during an outage; lane left uncommitted"
                        );
                    }
                    (partitions, report.is_err())
                });
            }
            if interrupted {
                break;
            }
            // Fetch the next batch while the lanes are written.
            let next = next_batch(consumer, &self.settings.batch, &shutdown);
            tokio::pin!(next);
            batch = loop {
                tokio::select! {
                    next = &mut next => break next,
                    Some(done) = in_flight.next() => interrupted |= finished(done, &mut busy),
                }
            };
        }
        // Drain: every lane started is finished (or interrupted) before the group is left.
        while let Some(done) = in_flight.next().await {
            finished(done, &mut busy);
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

/// Frees a finished lane's partitions; true when it was interrupted by shutdown.
fn finished(
    (partitions, interrupted): (HashSet<Partition>, bool),
    busy: &mut HashSet<Partition>,
) -> bool {
    for partition in &partitions {
        busy.remove(partition);
    }
    interrupted
}

fn partition_of(message: &OwnedMessage) -> Partition {
    (message.topic().to_string(), message.partition())
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
