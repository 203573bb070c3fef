//! The audit's batch loop.
//!
//! ```text
//! loop:
//!   batch ← next_batch(count, bytes, age bounds)         (six topics, one consumer group)
//!   record ← derive(message) for each                    (pure: document.rs)
//!   poison on a pipeline topic → <topic>.dlq, acknowledged (unless its `poison` document is
//!     already stored: a redelivery); it is recorded here as `poison` and again as
//!     `dead_letter` when the DLQ is read back. A DLQ message is never re-sent.
//!   per source partition, in offset order:
//!     prev ← cached head if it is the offset just before, else the stored link below the
//!            first offset (one indexed query), else GENESIS
//!     link each record: hash = H(prev, content); prev = hash   (chain.rs)
//!   insert_many, unordered; duplicate keys sorted out; any other failure retries the whole
//!     batch with backoff (idempotent)                    (store.rs)
//!   commit offsets (only now: MongoDB has acknowledged the batch, majority + journal)
//! ```
//! The head is always derived from what is stored (the cache only skips the query when the
//! batch continues exactly where this process left off), so a crash between insert and commit
//! needs no repair: the redelivered messages hash to what is stored and are found stored.

use crate::chain::{link_hash, GENESIS};
use crate::config::Settings;
use crate::document::{Kind, Record};
use crate::metrics;
use crate::store::{AuditStore, Pending, Position, StoreError, Stored};
use ledgerline_runtime::backoff::{Interrupted, Retrier};
use ledgerline_runtime::consume::{next_batch, Committer};
use ledgerline_runtime::kafka::DeadLetterer;
use mongodb::bson::DateTime;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Readiness check names.
pub const MONGO: &str = "mongo";
/// Readiness check names.
pub const KAFKA: &str = "kafka";

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchReport {
    /// Messages in the batch.
    pub messages: usize,
    /// Documents inserted (every kind).
    pub inserted: u64,
    /// Of those, events re-sent by their producer, recorded as `duplicate`.
    pub duplicates: u64,
    /// Messages already stored (redelivery, replay).
    pub already_stored: u64,
    /// Poison messages sent to a DLQ.
    pub dead_lettered: usize,
    /// Places where a partition's offsets jumped (linked over; see `docs/audit.md`).
    pub gaps: usize,
}

/// A partition key: (topic, partition).
type Partition = (String, i32);

/// What a successful write left behind.
struct Written {
    stored: Stored,
    /// Each written partition's new head: (offset, hash).
    heads: Vec<(Partition, (i64, String))>,
    gaps: usize,
}

/// Records batches of all six topics.
pub struct Writer {
    settings: Settings,
    store: AuditStore,
    dead_letters: DeadLetterer,
    retrier: Retrier,
    /// The last link this process wrote per partition: spares the head query when the next
    /// batch continues right after it. Never trusted otherwise.
    heads: HashMap<Partition, (i64, String)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("cached_heads", &self.heads.len())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer with an empty head cache.
    pub fn new(
        settings: Settings,
        store: AuditStore,
        producer: FutureProducer,
        retrier: Retrier,
    ) -> Self {
        let dead_letters = DeadLetterer::new(
            producer,
            retrier.clone(),
            KAFKA,
            Duration::from_millis(settings.produce_timeout_ms),
        );
        Self {
            settings,
            store,
            dead_letters,
            retrier,
            heads: HashMap::new(),
        }
    }

    /// The batch bounds it was configured with.
    pub fn batch_settings(&self) -> ledgerline_runtime::consume::BatchSettings {
        self.settings.batch
    }

    /// Consumes until `shutdown`: finishes the batch in hand, commits, leaves the group.
    pub async fn run(&mut self, consumer: &StreamConsumer, shutdown: CancellationToken) {
        let mut committer = Committer::default();
        loop {
            let batch = next_batch(consumer, &self.settings.batch, &shutdown).await;
            if batch.is_empty() {
                break;
            }
            let started = Instant::now();
            let span = tracing::info_span!("batch", messages = batch.len());
            let Ok(report) = self.process(&batch, &shutdown).instrument(span).await else {
                tracing::warn!(
                    messages = batch.len(),
                    "shutdown during an outage; batch left uncommitted"
                );
                break;
            };
            committer.commit(consumer, &batch, &shutdown);
            tracing::debug!(?report, "batch recorded");
            metrics::batch_size(batch.len());
            metrics::batch_duration(started.elapsed());
        }
        consumer.unsubscribe();
        tracing::info!("audit loop stopped");
    }

    /// Dead-letters poison, links the batch into its partitions' chains and stores it.
    pub async fn process(
        &mut self,
        batch: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<BatchReport, Interrupted> {
        let mut report = BatchReport {
            messages: batch.len(),
            ..BatchReport::default()
        };
        let records: Vec<Record> = batch.iter().map(Record::from_message).collect();
        let poison: Vec<&str> = records
            .iter()
            .filter(|r| r.dead_letter.is_some())
            .map(|r| r.id.as_str())
            .collect();
        // Poison is dead-lettered before its document is written, so a stored poison document
        // means its dead letter was acknowledged already: a redelivery does not send it twice.
        let recorded = if poison.is_empty() {
            HashSet::new()
        } else {
            self.retrier
                .run("mongo", MONGO, shutdown, || {
                    self.store.existing_ids(&poison)
                })
                .await?
        };
        for (message, record) in batch.iter().zip(&records) {
            let Some((dlq_topic, reason)) = &record.dead_letter else {
                continue;
            };
            if !recorded.contains(&record.id) {
                self.dead_letter(message, dlq_topic, reason, shutdown)
                    .await?;
                report.dead_lettered += 1;
            }
        }
        let partitions = by_partition(records);
        let recorded_at = DateTime::now();
        let written = self
            .retrier
            .run("mongo", MONGO, shutdown, || {
                self.write(&partitions, recorded_at)
            })
            .await?;
        if self.settings.faults.crash_after_insert {
            tracing::error!("fault injection: aborting after the insert, before the commit");
            std::process::abort();
        }
        for (partition, head) in written.heads {
            self.heads.insert(partition, head);
        }
        for conflict in &written.stored.conflicts {
            // The stored chain differs from what this process computed: re-read its head.
            self.heads
                .remove(&(conflict.topic.clone(), conflict.partition));
        }
        for (kind, n) in &written.stored.inserted {
            metrics::documents(kind.as_str(), *n);
            report.inserted += n;
        }
        report.duplicates = written
            .stored
            .inserted
            .get(&Kind::Duplicate)
            .copied()
            .unwrap_or(0);
        report.already_stored = written.stored.already_stored;
        report.gaps = written.gaps;
        metrics::already_stored(written.stored.already_stored);
        metrics::chain_gaps(written.gaps);
        metrics::chain_conflicts(written.stored.conflicts.len());
        Ok(report)
    }

    /// Links every partition's records from its head and inserts them. Pure but for the head
    /// look-ups and the insert, so the retrier can run it again from scratch.
    async fn write(
        &self,
        partitions: &BTreeMap<Partition, Vec<Record>>,
        recorded_at: DateTime,
    ) -> Result<Written, StoreError> {
        let mut pending = Vec::with_capacity(partitions.values().map(Vec::len).sum());
        let mut heads = Vec::with_capacity(partitions.len());
        let mut gaps = 0;
        for ((topic, partition), records) in partitions {
            let first = records[0].offset;
            let (mut previous, mut prev) = match self.heads.get(&(topic.clone(), *partition)) {
                Some((offset, hash)) if offset + 1 == first => (Some(*offset), hash.clone()),
                _ => match self.store.link_before(topic, *partition, first).await? {
                    Some((offset, hash)) => (Some(offset), hash),
                    None => (None, GENESIS.to_string()),
                },
            };
            for record in records {
                if let Some(previous) = previous.filter(|p| p + 1 != record.offset) {
                    // The log has no messages there (retention, compaction, a group reset
                    // past them): link over the hole, and let `verify` report it as a gap.
                    tracing::warn!(
                        topic,
                        partition,
                        from = previous + 1,
                        to = record.offset - 1,
                        "offsets missing from the log; linking over them"
                    );
                    gaps += 1;
                }
                let hash = link_hash(&prev, &record.content);
                pending.push(Pending {
                    position: Position {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: record.offset,
                    },
                    kind: record.kind,
                    document: record.document(&prev, &hash, recorded_at),
                    hash: hash.clone(),
                });
                previous = Some(record.offset);
                prev = hash;
            }
            let last = records[records.len() - 1].offset;
            heads.push(((topic.clone(), *partition), (last, prev)));
        }
        let started = Instant::now();
        let stored = self.store.insert(pending).await?;
        metrics::insert_duration(started.elapsed());
        Ok(Written {
            stored,
            heads,
            gaps,
        })
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        dlq_topic: &str,
        reason: &'static str,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        self.dead_letters
            .send(dlq_topic, message, reason, shutdown)
            .await?;
        metrics::dead_lettered(reason);
        Ok(())
    }
}

/// Groups records by source partition in offset order, drops a repeated offset (a batch can
/// hold one twice around a rebalance), and re-keys an event whose `event_id` appeared earlier
/// in the batch as a duplicate, so the first occurrence in log order keeps the `event_id`.
fn by_partition(records: Vec<Record>) -> BTreeMap<Partition, Vec<Record>> {
    let mut partitions: BTreeMap<Partition, Vec<Record>> = BTreeMap::new();
    for record in records {
        partitions
            .entry((record.topic.clone(), record.partition))
            .or_default()
            .push(record);
    }
    let mut seen: HashSet<String> = HashSet::new();
    for records in partitions.values_mut() {
        records.sort_by_key(|r| r.offset);
        records.dedup_by_key(|r| r.offset);
        for record in records.iter_mut() {
            if record.kind != Kind::Event {
                continue;
            }
            if let Some(event_id) = &record.event_id {
                if !seen.insert(event_id.clone()) {
                    record.mark_duplicate();
                }
            }
        }
        debug_assert!(records.windows(2).all(|w| w[0].offset < w[1].offset));
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event_message, posted};
    use rdkafka::message::Timestamp;

    fn record(topic: &str, partition: i32, offset: i64, payload: &[u8]) -> Record {
        Record::from_message(&OwnedMessage::new(
            Some(payload.to_vec()),
            None,
            topic.into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        ))
    }

    #[test]
    fn records_are_grouped_per_partition_in_offset_order_without_repeats() {
        let grouped = by_partition(vec![
            record("txn.requests", 1, 5, b"a"),
            record("txn.requests", 0, 9, b"b"),
            record("txn.requests", 1, 4, b"c"),
            record("txn.requests", 1, 5, b"a"),
            record("txn.requests.dlq", 1, 0, b"d"),
        ]);
        let offsets: Vec<(Partition, Vec<i64>)> = grouped
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|r| r.offset).collect()))
            .collect();
        assert_eq!(
            offsets,
            vec![
                (("txn.requests".into(), 0), vec![9]),
                (("txn.requests".into(), 1), vec![4, 5]),
                (("txn.requests.dlq".into(), 1), vec![0]),
            ]
        );
    }

    #[test]
    fn an_event_id_seen_earlier_in_the_batch_is_kept_as_a_positional_duplicate() {
        let e = posted(5, None);
        let other = posted(6, None);
        let grouped = by_partition(vec![
            Record::from_message(&event_message(&e, 12)),
            Record::from_message(&event_message(&other, 11)),
            Record::from_message(&event_message(&e, 10)),
        ]);
        let records = &grouped[&("p.txn.postings".to_string(), 1)];
        let ids: Vec<(i64, Kind, &str)> = records
            .iter()
            .map(|r| (r.offset, r.kind, r.id.as_str()))
            .collect();
        let first = e.event_id.to_string();
        let second = other.event_id.to_string();
        assert_eq!(
            ids,
            vec![
                (10, Kind::Event, first.as_str()),
                (11, Kind::Event, second.as_str()),
                (12, Kind::Duplicate, "dup:p.txn.postings:1:12"),
            ],
            "the first occurrence in log order keeps the event_id"
        );
    }
}
