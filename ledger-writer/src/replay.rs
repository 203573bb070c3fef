//! Replay: re-reads `txn.outcomes` from a chosen offset or time and posts it through
//! [`Writer::process`], the normal write path. Already-recorded transactions are skipped by
//! the database, so a replay over a healthy ledger writes nothing, and a replay into an empty
//! ledger rebuilds it. The consumer group's offsets are not touched.

use crate::writer::{BatchReport, Writer};
use ledgerline_runtime::backoff::Interrupted;
use ledgerline_runtime::consume::next_batch;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// This offset in every selected partition (clamped to what the topic still holds).
    Offset(i64),
    /// The first message at or after this time in every selected partition.
    Time(OffsetDateTime),
}

/// One partition's half-open offset range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    /// Partition.
    pub partition: i32,
    /// First offset replayed.
    pub from: i64,
    /// One past the last offset replayed.
    pub to: i64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Kafka metadata, offsets or assignment failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Shutdown arrived before the replay finished (what was posted stays posted).
    #[error("interrupted by shutdown")]
    Interrupted,
}

impl From<Interrupted> for ReplayError {
    fn from(_: Interrupted) -> Self {
        ReplayError::Interrupted
    }
}

/// The ranges to replay: from `from` up to each partition's current end.
pub fn ranges(
    reader: &StreamConsumer,
    topic: &str,
    partitions: Option<&[i32]>,
    from: ReplayFrom,
) -> Result<Vec<PartitionRange>, KafkaError> {
    let timeout = Duration::from_secs(10);
    let all: Vec<i32> = match partitions {
        Some(p) => p.to_vec(),
        None => {
            let metadata = reader.fetch_metadata(Some(topic), timeout)?;
            metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect()
        }
    };
    let mut starts: BTreeMap<i32, i64> = BTreeMap::new();
    if let ReplayFrom::Time(at) = from {
        let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let mut query = TopicPartitionList::new();
        for p in &all {
            query.add_partition_offset(topic, *p, Offset::Offset(ms))?;
        }
        for e in reader.offsets_for_times(query, timeout)?.elements() {
            if let Offset::Offset(o) = e.offset() {
                starts.insert(e.partition(), o);
            }
        }
    }
    let mut out = Vec::with_capacity(all.len());
    for p in all {
        let (low, high) = reader.fetch_watermarks(topic, p, timeout)?;
        let from = match from {
            ReplayFrom::Offset(o) => o.max(low),
            // No message at or after the time: nothing to replay in this partition.
            ReplayFrom::Time(_) => starts.get(&p).copied().unwrap_or(high).max(low),
        };
        out.push(PartitionRange {
            partition: p,
            from,
            to: high,
        });
    }
    Ok(out)
}

/// Posts every message in `ranges` of `topic` through `writer`; returns the summed report.
pub async fn replay(
    writer: &Writer,
    reader: &StreamConsumer,
    topic: &str,
    ranges: &[PartitionRange],
    shutdown: &CancellationToken,
) -> Result<BatchReport, ReplayError> {
    let mut remaining: BTreeMap<i32, i64> = ranges
        .iter()
        .filter(|r| r.from < r.to)
        .map(|r| (r.partition, r.to))
        .collect();
    let mut total = BatchReport::default();
    if remaining.is_empty() {
        return Ok(total);
    }
    let mut assignment = TopicPartitionList::new();
    for r in ranges.iter().filter(|r| r.from < r.to) {
        assignment.add_partition_offset(topic, r.partition, Offset::Offset(r.from))?;
    }
    reader.assign(&assignment)?;
    while !remaining.is_empty() {
        let batch = next_batch(reader, &writer.settings.batch, shutdown).await;
        if batch.is_empty() {
            return Err(ReplayError::Interrupted);
        }
        let mut in_range = Vec::with_capacity(batch.len());
        for m in batch {
            let Some(end) = remaining.get(&m.partition()).copied() else {
                continue;
            };
            if m.offset() + 1 >= end {
                remaining.remove(&m.partition());
            }
            if m.offset() < end {
                in_range.push(m);
            }
        }
        total += writer.process(&in_range, shutdown).await?;
    }
    reader.unassign()?;
    Ok(total)
}
