//! Exact offset ranges of a topic: where a time or an offset falls in each partition, and a
//! reader that yields every message of a set of half-open ranges `[from, to)` once, then stops.
//!
//! Replays (ledger-writer, audit) and the reconciler's scans all read the log this way: by
//! `assign`, never through a consumer group, so no group's committed offsets move.

use crate::backoff::Interrupted;
use crate::consume::{next_batch, BatchSettings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// How long a metadata or offsets query may take.
pub const QUERY_TIMEOUT_MS: u64 = 10_000;

/// One partition's half-open offset range `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    /// Full topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub from: i64,
    /// One past the last offset.
    pub to: i64,
}

impl OffsetRange {
    /// Number of offsets in the range.
    pub fn len(&self) -> i64 {
        (self.to - self.from).max(0)
    }

    /// Whether the range holds no offset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits the range into consecutive pieces of at most `size` offsets.
    pub fn chunks(&self, size: i64) -> Vec<OffsetRange> {
        let size = size.max(1);
        let mut out = Vec::new();
        let mut from = self.from;
        while from < self.to {
            let to = (from + size).min(self.to);
            out.push(OffsetRange {
                topic: self.topic.clone(),
                partition: self.partition,
                from,
                to,
            });
            from = to;
        }
        out
    }
}

/// A position in every partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// This offset (clamped to what the partition holds).
    Offset(i64),
    /// The first message at or after this time (the partition's end when there is none).
    Time(OffsetDateTime),
    /// The partition's current end (high watermark).
    End,
}

/// The partitions of `topic`.
pub fn partitions(reader: &StreamConsumer, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let metadata = reader.fetch_metadata(Some(topic), timeout())?;
    let mut out: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Where `position` falls in each partition (all, or those given): `partition → offset`,
/// always within the partition's `[low, high]` watermarks.
pub fn offsets_at(
    reader: &StreamConsumer,
    topic: &str,
    partitions_wanted: Option<&[i32]>,
    position: Position,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let all = match partitions_wanted {
        Some(p) => p.to_vec(),
        None => partitions(reader, topic)?,
    };
    let mut out = BTreeMap::new();
    match position {
        Position::Offset(o) => {
            for p in all {
                let (low, high) = reader.fetch_watermarks(topic, p, timeout())?;
                out.insert(p, o.clamp(low, high));
            }
        }
        Position::Time(_) | Position::End => {
            // One ListOffsets round trip for every partition: a time asks for the first
            // offset at or after it, `End` (timestamp -1) for the log end offset.
            let query_value = match position {
                Position::Time(at) => Offset::Offset(
                    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                ),
                _ => Offset::End,
            };
            let mut query = TopicPartitionList::new();
            for p in &all {
                query.add_partition_offset(topic, *p, query_value)?;
            }
            let mut found: BTreeMap<i32, i64> = BTreeMap::new();
            for e in reader.offsets_for_times(query, timeout())?.elements() {
                if let Offset::Offset(o) = e.offset() {
                    found.insert(e.partition(), o);
                }
            }
            for p in all {
                let offset = match found.get(&p) {
                    Some(o) => *o,
                    // No message at or after the time (or no answer): the partition's end.
                    None => reader.fetch_watermarks(topic, p, timeout())?.1,
                };
                out.insert(p, offset);
            }
        }
    }
    Ok(out)
}

/// The ranges of `topic` between two positions, per partition (empty ranges included, so a
/// caller sees every partition it asked about).
pub fn between(
    reader: &StreamConsumer,
    topic: &str,
    partitions_wanted: Option<&[i32]>,
    from: Position,
    to: Position,
) -> Result<Vec<OffsetRange>, KafkaError> {
    let all = match partitions_wanted {
        Some(p) => p.to_vec(),
        None => partitions(reader, topic)?,
    };
    let starts = offsets_at(reader, topic, Some(&all), from)?;
    let ends = offsets_at(reader, topic, Some(&all), to)?;
    Ok(starts
        .into_iter()
        .map(|(partition, from)| {
            let to = ends.get(&partition).copied().unwrap_or(from).max(from);
            OffsetRange {
                topic: topic.to_string(),
                partition,
                from,
                to,
            }
        })
        .collect())
}

/// Reads every message of a set of ranges, in batches, then stops.
pub struct RangeReader<'a> {
    reader: &'a StreamConsumer,
    /// `(topic, partition) → end` of the ranges not yet read to their end.
    remaining: BTreeMap<(String, i32), i64>,
}

impl std::fmt::Debug for RangeReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<'a> RangeReader<'a> {
    /// Assigns `reader` to the start of every non-empty range. Ranges of one partition must
    /// not overlap; give one range per partition.
    pub fn start(reader: &'a StreamConsumer, ranges: &[OffsetRange]) -> Result<Self, KafkaError> {
        let mut assignment = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for r in ranges.iter().filter(|r| !r.is_empty()) {
            assignment.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.from))?;
            remaining.insert((r.topic.clone(), r.partition), r.to);
        }
        if remaining.is_empty() {
            reader.unassign()?;
        } else {
            reader.assign(&assignment)?;
        }
        Ok(Self { reader, remaining })
    }

    /// The next batch of in-range messages; `Ok(None)` once every range was read to its end.
    /// The ranges must end at or below the partitions' high watermarks, or this waits for
    /// messages that were not written yet (until `shutdown`).
    pub async fn next(
        &mut self,
        batch: &BatchSettings,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<Vec<OwnedMessage>>, Interrupted> {
        loop {
            if self.remaining.is_empty() {
                let _ = self.reader.unassign();
                return Ok(None);
            }
            let messages = next_batch(self.reader, batch, shutdown).await;
            if messages.is_empty() {
                return Err(Interrupted);
            }
            let mut in_range = Vec::with_capacity(messages.len());
            for m in messages {
                let key = (m.topic().to_string(), m.partition());
                let Some(end) = self.remaining.get(&key).copied() else {
                    continue;
                };
                if m.offset() + 1 >= end {
                    self.remaining.remove(&key);
                }
                if m.offset() < end {
                    in_range.push(m);
                }
            }
            if !in_range.is_empty() {
                return Ok(Some(in_range));
            }
        }
    }
}

fn timeout() -> Duration {
    Duration::from_millis(QUERY_TIMEOUT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: i64, to: i64) -> OffsetRange {
        OffsetRange {
            topic: "t".into(),
            partition: 3,
            from,
            to,
        }
    }

    #[test]
    fn chunks_cover_the_range_exactly_once() {
        let pieces = range(5, 27).chunks(10);
        let bounds: Vec<(i64, i64)> = pieces.iter().map(|r| (r.from, r.to)).collect();
        assert_eq!(bounds, vec![(5, 15), (15, 25), (25, 27)]);
        assert!(pieces.iter().all(|r| r.partition == 3));
    }

    #[test]
    fn an_empty_range_has_no_chunks() {
        assert!(range(4, 4).chunks(10).is_empty());
        assert!(range(4, 2).is_empty());
        assert_eq!(range(4, 2).len(), 0);
    }
}
