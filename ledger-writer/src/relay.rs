//! The outbox relay: publishes each POSTED/DECLINED outcome to `txn.postings` and records it in
//! the status read model, then deletes the row.
//!
//! ```text
//! round (one database transaction):
//!   pg_try_advisory_xact_lock(relay)        -- one relay at a time keeps per-account order
//!   SELECT rows ORDER BY id LIMIT n, each joined to its ledger row (the event's fields)
//!   produce all, wait for every ack (retry the failed ones)
//!   status read model: POSTED / DECLINED with balance after (HSETNX, so a repeat is harmless)
//!   DELETE those rows
//! COMMIT
//! ```
//! A crash anywhere before the commit leaves the rows in place, so they are sent again: the
//! relay is at-least-once and consumers deduplicate on `event_id` (deterministic per
//! transaction). The outbox therefore holds only what is still to be sent; what was sent is on
//! `txn.postings` and in the audit trail.
//!
//! The rows are not locked (`FOR UPDATE`): writers only insert, and the advisory lock already
//! makes this relay the only one that reads or deletes them, so a row lock would be one more
//! write per row for nothing. The one other deleter, a repair's quarantine, takes the same lock
//! ([`RELAY_LOCK_KEY`]), so it never removes a ledger row between this round's read and send.

use crate::config::RelaySettings;
use crate::metrics;
use crate::outbox::{self, Waiting};
use crate::plan::Restated;
use ledgerline_contracts::events::{self, Event, PostingResult, TransactionPosted};
use ledgerline_contracts::money::format_minor;
use ledgerline_runtime::backoff::{BackoffSettings, Interrupted, Retrier};
use ledgerline_runtime::health::Readiness;
use ledgerline_runtime::kafka::{produce_all, Outgoing};
use ledgerline_runtime::partitions::PacedProducer;
use ledgerline_runtime::status::{State, StatusStore, StatusUpdate};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The advisory lock key that makes the relay a singleton across writer processes (and that a
/// quarantine takes too).
pub const RELAY_LOCK_KEY: i64 = 0x4c65_6467_6572_5231; // "LedgerR1"

/// How often the relay samples the rows waiting in the outbox (a `count(*)`, so not per round).
const WAITING_SAMPLE_INTERVAL_S: u64 = 10;

/// Readiness flag of the status store.
pub const REDIS: &str = "redis";

/// Publishes the outbox.
pub struct Relay {
    pub(crate) pool: PgPool,
    pub(crate) producer: PacedProducer,
    pub(crate) status: StatusStore,
    pub(crate) topic: String,
    pub(crate) settings: RelaySettings,
    pub(crate) produce_timeout: Duration,
    pub(crate) retrier: Retrier,
    pub(crate) readiness: Readiness,
    pub(crate) backoff: BackoffSettings,
    pub(crate) wake: Arc<Notify>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Relays until `stop`, then makes one last round to send what the final batches wrote,
    /// giving up at `hard_stop`.
    pub async fn run(self, stop: CancellationToken, hard_stop: CancellationToken) {
        let mut last_sample = Instant::now();
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            let sent = match self.round(&hard_stop).await {
                Ok(sent) => sent,
                Err(Interrupted) => return,
            };
            if stop.is_cancelled() && sent == 0 {
                break;
            }
            if last_sample.elapsed() >= Duration::from_secs(WAITING_SAMPLE_INTERVAL_S) {
                last_sample = Instant::now();
                self.sample_waiting().await;
            }
            // A full round means more are waiting: go again at once.
            if sent as i64 >= self.settings.batch_size_max || stop.is_cancelled() {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Sends one round of outbox rows; returns how many were sent (0 if another relay holds
    /// the lock or nothing is waiting).
    pub async fn round(&self, shutdown: &CancellationToken) -> Result<usize, Interrupted> {
        self.retrier
            .run("postgres", crate::writer::POSTGRES, shutdown, || async {
                self.try_round(shutdown).await
            })
            .await?
    }

    async fn try_round(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Result<usize, Interrupted>, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Ok(0));
        }
        let waiting = outbox::waiting(&mut tx, self.settings.batch_size_max).await?;
        if waiting.is_empty() {
            return Ok(Ok(0));
        }
        let posted = sendable(&waiting);
        let selected = Instant::now();
        metrics::relay_phase("select", selected - started);
        if let Err(interrupted) = self.publish(&posted, shutdown).await {
            return Ok(Err(interrupted));
        }
        let produced = Instant::now();
        metrics::relay_phase("produce", produced - selected);
        if let Err(interrupted) = self.record_status(&posted, shutdown).await {
            return Ok(Err(interrupted));
        }
        let recorded = Instant::now();
        metrics::relay_phase("status", recorded - produced);
        let ids: Vec<i64> = waiting.iter().map(|w| w.id).collect();
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1::int8[])")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics::relay_phase("delete", recorded.elapsed());
        metrics::relayed(posted.len());
        Ok(Ok(waiting.len()))
    }

    /// Produces every event and waits for all acknowledgements; re-sends only what failed.
    async fn publish(
        &self,
        posted: &[&TransactionPosted],
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let payloads: Vec<Vec<u8>> = posted.iter().map(|e| events::encode(*e)).collect();
        let messages: Vec<Outgoing<'_>> = posted
            .iter()
            .zip(&payloads)
            .map(|(e, payload)| Outgoing {
                topic: &self.topic,
                key: e.account_id.as_str(),
                payload,
                event_type: TransactionPosted::EVENT_TYPE,
                correlation_id: &e.correlation_id,
            })
            .collect();
        produce_all(
            &self.producer,
            &messages,
            self.produce_timeout,
            self.backoff,
            shutdown,
            |ok| {
                self.readiness.set(crate::writer::KAFKA, ok);
                if !ok {
                    metrics::retry("kafka");
                }
            },
        )
        .await
    }

    /// POSTED / DECLINED (with the balance after) in the status read model.
    async fn record_status(
        &self,
        posted: &[&TransactionPosted],
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let updates: Vec<StatusUpdate> = posted.iter().map(|e| settled(e)).collect();
        self.retrier
            .run("redis", REDIS, shutdown, || self.status.apply(&updates))
            .await
    }

    /// Samples how many rows wait to be sent. A failure is logged: sampling never blocks
    /// relaying.
    async fn sample_waiting(&self) {
        match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
        {
            Ok(n) => metrics::outbox_unsent(n),
            Err(error) => tracing::warn!(%error, "outbox count failed"),
        }
    }
}

/// The events of a round's rows, in their order. A row with none is reported here and deleted
/// with the others (see [`outbox::Unsendable`]).
fn sendable(waiting: &[Waiting]) -> Vec<&TransactionPosted> {
    waiting
        .iter()
        .filter_map(|w| match &w.event {
            Ok(event) => Some(event),
            Err(why) => {
                match why {
                    outbox::Unsendable::NotInLedger => tracing::warn!(
                        transaction_id = %w.transaction_id,
                        "outbox row names a transaction the ledger no longer holds \
                         (quarantined); dropped, its re-posting announces it"
                    ),
                    outbox::Unsendable::Unreadable(column) => tracing::error!(
                        transaction_id = %w.transaction_id,
                        %column,
                        "ledger row holds a value no writer writes; not announced, dropped \
                         from the outbox (the reconciler reports it)"
                    ),
                }
                metrics::outbox_dropped(why.reason());
                None
            }
        })
        .collect()
}

/// The read-model update for a ledger result.
fn settled(posted: &TransactionPosted) -> StatusUpdate {
    settlement(
        posted.transaction_id.to_string(),
        posted.result == PostingResult::Posted,
        posted.reason_code.clone(),
        posted
            .balance_after_minor
            .map(|b| format_minor(b, posted.currency)),
        posted.posted_at,
    )
}

/// The read-model update restating a result the ledger already had (the read model may have
/// lost it: a Redis restart or expiry while the decision was re-sent).
pub(crate) fn restated(r: &Restated) -> StatusUpdate {
    settlement(
        r.decided.transaction_id.to_string(),
        r.recorded.posted,
        r.recorded.reason_code.clone(),
        r.recorded
            .balance_after_minor
            .map(|b| format_minor(b, r.decided.currency)),
        r.recorded.posted_at,
    )
}

fn settlement(
    transaction_id: String,
    posted: bool,
    reason_code: Option<String>,
    balance_after: Option<String>,
    at: time::OffsetDateTime,
) -> StatusUpdate {
    StatusUpdate::Settled {
        transaction_id,
        state: if posted {
            State::Posted
        } else {
            State::Declined
        },
        reason_code,
        balance_after,
        at: at.format(&Rfc3339).unwrap_or_default(),
    }
}
