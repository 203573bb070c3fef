//! The consumer side shared by every stage: bounded batches, commits only after the store has
//! the batch, monotonic offsets, lag metrics and the broker's readiness check.

use crate::health::{spawn_broker_probe, Readiness, KAFKA_BROKER, PROBE_TIMEOUT};
use crate::settings::ensure;
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bounds of one batch: whichever is reached first closes it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// Most messages per batch.
    pub batch_size_max: usize,
    /// Most payload bytes per batch.
    pub batch_bytes_max: usize,
    /// Most time between the first message of a batch and its processing.
    pub flush_interval_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            batch_size_max: 1_000,
            batch_bytes_max: 4 * 1024 * 1024,
            flush_interval_ms: 20,
        }
    }
}

impl BatchSettings {
    /// Checks that every bound is positive.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        ensure(
            self.batch_size_max >= 1 && self.batch_bytes_max >= 1 && self.flush_interval_ms >= 1,
            name,
            "batch_size_max, batch_bytes_max and flush_interval_ms must be >= 1",
        )
    }
}

/// Waits for the first message (or shutdown), then gathers more until a bound is reached.
/// Returns an empty batch only on shutdown. Transient consumer errors are logged and skipped:
/// librdkafka reconnects by itself and no offset moves without a message.
pub async fn next_batch(
    consumer: &StreamConsumer,
    settings: &BatchSettings,
    shutdown: &CancellationToken,
) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut stream = consumer.stream();
    let first = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return batch,
            next = stream.next() => match next {
                Some(Ok(m)) => break m.detach(),
                Some(Err(error)) => log_consumer_error(&error),
                None => return batch,
            },
        }
    };
    bytes += first.payload().map_or(0, <[u8]>::len);
    batch.push(first);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(settings.flush_interval_ms);
    while batch.len() < settings.batch_size_max && bytes < settings.batch_bytes_max {
        // Shutdown does not cut a batch short: what was read is processed and committed.
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(error))) => log_consumer_error(&error),
            Ok(Some(Ok(m))) => {
                bytes += m.payload().map_or(0, <[u8]>::len);
                batch.push(m.detach());
            }
        }
    }
    debug_assert!(batch.len() <= settings.batch_size_max);
    batch
}

fn log_consumer_error(error: &KafkaError) {
    tracing::warn!(%error, "consumer error; librdkafka retries by itself");
}

/// The next offsets to commit for `batch`: per (topic, partition), the highest offset + 1.
pub fn offsets_to_commit(batch: &[OwnedMessage]) -> BTreeMap<(String, i32), i64> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = next
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(m.offset() + 1);
        *entry = (*entry).max(m.offset() + 1);
    }
    next
}

/// Remembers committed offsets to assert they only grow (a regression would mean reprocessing
/// is being hidden, or a logic error in batching).
#[derive(Debug, Default)]
pub struct Committer {
    committed: BTreeMap<(String, i32), i64>,
}

impl Committer {
    /// Commits the offsets of a batch its store already has: synchronously once `shutdown` has
    /// begun (the process is about to leave the group), asynchronously otherwise. A failure is
    /// only logged, because the store has the batch and a lost commit means an idempotent
    /// redelivery, not a loss.
    pub fn commit(
        &mut self,
        consumer: &StreamConsumer,
        batch: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) {
        let mode = if shutdown.is_cancelled() {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(error) = self.try_commit(consumer, batch, mode) {
            tracing::warn!(%error, "offset commit failed; the batch may be redelivered");
        }
    }

    fn try_commit(
        &mut self,
        consumer: &StreamConsumer,
        batch: &[OwnedMessage],
        mode: CommitMode,
    ) -> Result<(), KafkaError> {
        let next = offsets_to_commit(batch);
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            if let Some(previous) = self.committed.get(&(topic.clone(), *partition)) {
                // After a rebalance the partition may come back at an older committed offset
                // and be reprocessed; that is allowed, so this is a log, not an assertion.
                if offset < previous {
                    tracing::debug!(
                        topic,
                        partition,
                        offset,
                        previous,
                        "offset moved back (rebalance)"
                    );
                }
            }
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        consumer.commit(&list, mode)?;
        self.committed.extend(next);
        Ok(())
    }
}

/// Keeps the `kafka_broker` readiness check true while the broker answers the consumer's
/// metadata requests for `topic` (a topic it subscribes to).
pub fn spawn_broker_check(
    consumer: Arc<StreamConsumer>,
    topic: String,
    readiness: Readiness,
    stop: CancellationToken,
) {
    spawn_broker_probe(
        move || consumer.fetch_metadata(Some(&topic), PROBE_TIMEOUT).is_ok(),
        readiness,
        KAFKA_BROKER,
        stop,
    );
}

/// Every 10 s, publishes `ledgerline_<service>_consumer_lag_messages{topic,partition}` for the
/// assigned partitions (high watermark − position), and
/// `ledgerline_<service>_consumer_lag_refreshed_timestamp_seconds` when every assigned
/// partition was read. A gauge keeps its last value when the broker stops answering, so the
/// lag alone would look flat through an outage; the timestamp's age says how stale it is.
pub fn spawn_lag_reporter(
    consumer: Arc<StreamConsumer>,
    service: &'static str,
    shutdown: CancellationToken,
) {
    let name = format!("ledgerline_{service}_consumer_lag_messages");
    let refreshed = format!("ledgerline_{service}_consumer_lag_refreshed_timestamp_seconds");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            let consumer = consumer.clone();
            let Ok(Some(lags)) =
                tokio::task::spawn_blocking(move || partition_lags(&consumer)).await
            else {
                continue;
            };
            for ((topic, partition), lag) in lags {
                metrics::gauge!(name.clone(), "topic" => topic, "partition" => partition.to_string())
                    .set(u32::try_from(lag.max(0)).unwrap_or(u32::MAX));
            }
            metrics::gauge!(refreshed.clone()).set(crate::time::now_unix() as f64);
        }
    });
}

/// Each assigned partition's lag (high watermark − position), or `None` when the position or
/// any assigned partition's watermark could not be read (the broker is away): a partial answer
/// would refresh some gauges and not others. A partition with no position yet (nothing
/// consumed from it) has no lag to report, but its watermark is still asked for, so that an
/// idle consumer's answer also proves the broker answered. Blocking: up to 2 s per partition.
pub fn partition_lags(consumer: &StreamConsumer) -> Option<Vec<((String, i32), i64)>> {
    let position = consumer.position().ok()?;
    let mut lags = Vec::new();
    for e in position.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
            .ok()?;
        if let Offset::Offset(pos) = e.offset() {
            lags.push(((e.topic().to_string(), e.partition()), high - pos));
        }
    }
    Some(lags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;

    fn msg(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn the_commit_offset_is_one_past_the_highest_offset_per_partition() {
        let batch = [msg(0, 5), msg(1, 9), msg(0, 7), msg(0, 6)];
        let next = offsets_to_commit(&batch);
        assert_eq!(next[&("t".to_string(), 0)], 8);
        assert_eq!(next[&("t".to_string(), 1)], 10);
    }
}
