//! The processor's run loop.
//!
//! ```text
//! loop:                                       (stage two of batch N overlaps stage one of N+1)
//!   stage one, fetch_and_decide:
//!     batch ← next_batch(count ≤ batch_size_max, bytes ≤ batch_bytes_max, age ≤ flush_interval_ms)
//!     decode each; poison → <topic>.dlq (acknowledged) and skipped
//!     propose a decision per request (rules), claim all keys in one Redis script call
//!     verdict per request: first sight | redelivery (same decision again) | duplicate | conflict
//!   stage two, report (after N-1's stage two):
//!     produce every TransactionDecided (deterministic event_id) and wait for all acks,
//!     while writing the status read model for the batch in one pipeline
//!     commit offsets
//! ```
//! Every dependency failure retries the failed step with capped backoff, forever, without
//! skipping or dead-lettering anything; shutdown during an outage exits without committing, so
//! the batch is redelivered and finished idempotently.

use crate::config::Settings;
use crate::idempotency::{decide, IdempotencyRecord, IdempotencyStore, Verdict};
use crate::metrics::{self, BatchTally};
use crate::rules::Rules;
use ledgerline_contracts::events::{
    self, Decision, Event, TransactionDecided, TransactionRequested, SCHEMA_VERSION,
};
use ledgerline_contracts::ids::EventId;
use ledgerline_contracts::topics;
use ledgerline_runtime::backoff::{Interrupted, Retrier};
use ledgerline_runtime::consume::{next_batch, Committer};
use ledgerline_runtime::health::Readiness;
use ledgerline_runtime::kafka::{decode_message, produce_all, DeadLetterer, Outgoing};
use ledgerline_runtime::partitions::PacedProducer;
use ledgerline_runtime::status::{Attempt, State, StatusStore, StatusUpdate, TransactionFields};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

/// Readiness check names.
pub const REDIS: &str = "redis";
/// Readiness check names.
pub const KAFKA: &str = "kafka";

/// Everything the loop needs.
pub struct Processor {
    pub(crate) settings: Settings,
    pub(crate) consumer: Arc<StreamConsumer>,
    pub(crate) producer: PacedProducer,
    pub(crate) idempotency: IdempotencyStore,
    pub(crate) status: StatusStore,
    pub(crate) rules: Rules,
    pub(crate) readiness: Readiness,
    pub(crate) retrier: Retrier,
    pub(crate) dead_letters: DeadLetterer,
    pub(crate) outcomes_topic: String,
    pub(crate) dlq_topic: String,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("outcomes_topic", &self.outcomes_topic)
            .finish_non_exhaustive()
    }
}

/// A batch whose keys are claimed and decisions taken, not yet reported.
///
/// Everything in it is owned, so the next batch can be fetched and claimed while this one is
/// produced (the two stages of [`Processor::run`]).
struct Decided {
    batch: Vec<OwnedMessage>,
    events: Vec<TransactionDecided>,
    updates: Vec<StatusUpdate>,
    tally: BatchTally,
    started: Instant,
}

enum Item {
    Valid(Box<TransactionRequested>),
    Poison(&'static str),
}

impl Processor {
    /// Processes batches until `shutdown`; commits the last finished batch synchronously.
    ///
    /// Two stages overlap: while batch N's outcomes are produced and its status written,
    /// batch N+1 is fetched and its keys claimed. Claims still happen one batch after another
    /// in offset order, so every decision is the one a strictly sequential loop would take;
    /// and N+1's outcomes are produced only after all of N's are acknowledged, so a produce
    /// retry can never put an account's outcomes out of order. At most one decided batch waits
    /// (the pipeline's bound). Offsets of N are committed as soon as N is reported.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut committer = Committer::default();
        let mut pending = match self.fetch_and_decide(&shutdown).await {
            Ok(Some(decided)) => decided,
            Ok(None) => return self.stop(),
            Err(Interrupted) => {
                tracing::warn!("shutdown during an outage; batch left uncommitted");
                return self.stop();
            }
        };
        loop {
            let report = async {
                // A batch in hand is finished even after shutdown starts, unless a dependency
                // is down: then `retry` gives up at shutdown and the batch is redelivered.
                self.report(&pending, &shutdown).await?;
                committer.commit(&self.consumer, &pending.batch, &shutdown);
                Ok::<_, Interrupted>(())
            };
            let (reported, next) = tokio::join!(report, self.fetch_and_decide(&shutdown));
            if reported.is_err() {
                // `next` (if any) is after this batch and is not committed either.
                tracing::warn!(
                    messages = pending.batch.len(),
                    "shutdown during an outage; batch left uncommitted"
                );
                break;
            }
            metrics::batch_size(pending.batch.len());
            metrics::batch_duration(pending.started.elapsed());
            match next {
                Ok(Some(decided)) => pending = decided,
                Ok(None) => break,
                Err(Interrupted) => {
                    tracing::warn!("shutdown during an outage; batch left uncommitted");
                    break;
                }
            }
        }
        self.stop();
    }

    fn stop(&self) {
        self.consumer.unsubscribe();
        tracing::info!("processor loop stopped");
    }

    /// Stage one: the next batch (`None` on shutdown), its poison dead-lettered, its keys
    /// claimed in one script call and a verdict taken per request.
    async fn fetch_and_decide(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Decided>, Interrupted> {
        let batch = next_batch(&self.consumer, &self.settings.batch, shutdown).await;
        if batch.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let items: Vec<(&OwnedMessage, Item)> = batch.iter().map(|m| (m, decode(m))).collect();
        for (message, item) in &items {
            if let Item::Poison(reason) = item {
                self.dead_letter(message, reason, shutdown).await?;
            }
        }
        let requests: Vec<&TransactionRequested> = items
            .iter()
            .filter_map(|(_, item)| match item {
                Item::Valid(r) => Some(r.as_ref()),
                Item::Poison(_) => None,
            })
            .collect();

        let now = ledgerline_runtime::time::now();
        let decided_at = now.format(&Rfc3339).unwrap_or_default();
        let proposals: Vec<(&TransactionRequested, IdempotencyRecord)> = requests
            .iter()
            .map(|r| {
                let rejected = self.rules.check(r);
                let record = IdempotencyRecord {
                    request_id: r.request_id.to_string(),
                    transaction_id: r.transaction_id.to_string(),
                    fingerprint: r.request_fingerprint.clone(),
                    decision: if rejected.is_some() {
                        Decision::Rejected
                    } else {
                        Decision::Accepted
                    },
                    reason_code: rejected.map(str::to_string),
                    decided_at: decided_at.clone(),
                };
                (*r, record)
            })
            .collect();

        let found = self
            .retrier
            .run("redis", REDIS, shutdown, || async {
                let started = Instant::now();
                let result = self.idempotency.claim(&proposals).await;
                metrics::redis_duration("claim", started.elapsed());
                result
            })
            .await?;
        if self.settings.faults.crash_after_claim && !proposals.is_empty() {
            tracing::error!("fault injection: aborting after claiming idempotency keys");
            std::process::abort();
        }

        let mut tally = BatchTally::default();
        let mut redeliveries = 0;
        let mut events = Vec::with_capacity(proposals.len());
        let mut updates = Vec::with_capacity(proposals.len() * 2);
        for ((request, proposed), found) in proposals.iter().zip(found.iter()) {
            let verdict = decide(request, found.as_ref(), proposed);
            tally.add(verdict.decision, verdict.reason_code.as_deref());
            redeliveries += u64::from(verdict.redelivery);
            let event = decided_event(request, &verdict);
            push_status_updates(&mut updates, &event, request, &verdict);
            events.push(event);
        }
        metrics::redelivered(redeliveries);
        Ok(Some(Decided {
            batch,
            events,
            updates,
            tally,
            started,
        }))
    }

    /// Stage two: produces every outcome (waiting for all acks) and writes the status read
    /// model, concurrently. The status may show a decision a moment before its outcome is
    /// acknowledged; that decision is already fixed in the idempotency record, and a crash
    /// here re-emits exactly it on redelivery, so the read model never shows a decision that
    /// will not happen.
    async fn report(
        &self,
        decided: &Decided,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let status = self.retrier.run("redis", REDIS, shutdown, || async {
            let started = Instant::now();
            let result = self.status.apply(&decided.updates).await;
            metrics::redis_duration("status", started.elapsed());
            result
        });
        let (produced, written) = tokio::join!(self.produce_all(&decided.events, shutdown), status);
        produced?;
        written?;
        decided.tally.emit();
        Ok(())
    }

    /// Produces every outcome and waits for all acknowledgements; retries the failed ones.
    async fn produce_all(
        &self,
        events: &[TransactionDecided],
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let payloads: Vec<Vec<u8>> = events.iter().map(events::encode).collect();
        let messages: Vec<Outgoing<'_>> = events
            .iter()
            .zip(&payloads)
            .map(|(event, payload)| Outgoing {
                topic: &self.outcomes_topic,
                key: event.account_id.as_str(),
                payload,
                event_type: TransactionDecided::EVENT_TYPE,
                correlation_id: &event.correlation_id,
            })
            .collect();
        let timeout = Duration::from_millis(self.settings.produce_timeout_ms);
        produce_all(
            &self.producer,
            &messages,
            timeout,
            self.settings.backoff,
            shutdown,
            |ok| {
                self.readiness.set(KAFKA, ok);
                if !ok {
                    metrics::retry("kafka");
                }
            },
        )
        .await
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

fn decode(message: &OwnedMessage) -> Item {
    match decode_message::<TransactionRequested, _>(message) {
        Ok(event) => Item::Valid(Box::new(event)),
        Err(reason) => Item::Poison(reason),
    }
}

fn decided_event(request: &TransactionRequested, verdict: &Verdict) -> TransactionDecided {
    // Deterministic: a re-emission after a crash carries the same event_id, so every
    // downstream store deduplicates it.
    let received_ms =
        u64::try_from(request.received_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut seed = b"decided:".to_vec();
    seed.extend_from_slice(request.request_id.as_uuid().as_bytes());
    TransactionDecided {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::derive(received_ms, &seed),
        request_id: request.request_id,
        transaction_id: request.transaction_id,
        merchant_id: request.merchant_id.clone(),
        account_id: request.account_id.clone(),
        idempotency_key: request.idempotency_key.clone(),
        txn_type: request.txn_type,
        amount_minor: request.amount_minor,
        currency: request.currency,
        decision: verdict.decision,
        reason_code: verdict.reason_code.clone(),
        original_request_id: verdict
            .original_request_id
            .as_deref()
            .and_then(|r| r.parse().ok()),
        request_fingerprint: request.request_fingerprint.clone(),
        correlation_id: request.correlation_id.clone(),
        received_at: request.received_at,
        decided_at: time::OffsetDateTime::parse(&verdict.decided_at, &Rfc3339)
            .unwrap_or(request.received_at),
    }
}

fn state_of(decision: Decision) -> State {
    match decision {
        Decision::Accepted => State::Accepted,
        Decision::Rejected => State::Rejected,
        Decision::Duplicate => State::Duplicate,
    }
}

fn push_status_updates(
    updates: &mut Vec<StatusUpdate>,
    event: &TransactionDecided,
    request: &TransactionRequested,
    verdict: &Verdict,
) {
    let transaction_id = event.transaction_id.to_string();
    if verdict.owner {
        updates.push(StatusUpdate::Decided {
            transaction_id: transaction_id.clone(),
            merchant_id: event.merchant_id.to_string(),
            fields: TransactionFields::from_requested(request),
            state: state_of(event.decision),
            reason_code: event.reason_code.clone(),
            at: verdict.decided_at.clone(),
        });
    }
    updates.push(StatusUpdate::Attempt {
        transaction_id,
        attempt: Attempt {
            request_id: event.request_id.to_string(),
            decision: state_of(event.decision),
            reason_code: event.reason_code.clone(),
            at: verdict.decided_at.clone(),
        },
    });
}

/// The DLQ topic name of this deployment's request topic.
pub fn requests_dlq(settings: &Settings) -> String {
    settings.kafka.dlq(topics::REQUESTS)
}
