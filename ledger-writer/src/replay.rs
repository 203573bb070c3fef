//! Replay: re-reads `txn.outcomes` from a chosen offset or time (or exact offset ranges, for
//! the reconciler's repairs) and posts it through [`Writer::process`], the normal write path.
//! Already-recorded transactions are skipped by the database, so a replay over a healthy
//! ledger writes nothing, and a replay into an empty ledger rebuilds it. The consumer group's
//! offsets are not touched.

use crate::writer::{BatchReport, Writer};
use ledgerline_runtime::backoff::Interrupted;
use ledgerline_runtime::ranges::{self, OffsetRange, Position, RangeReader};
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
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

impl From<ReplayFrom> for Position {
    fn from(from: ReplayFrom) -> Self {
        match from {
            ReplayFrom::Offset(o) => Position::Offset(o),
            ReplayFrom::Time(t) => Position::Time(t),
        }
    }
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
) -> Result<Vec<OffsetRange>, KafkaError> {
    ranges::between(reader, topic, partitions, from.into(), Position::End)
}

/// Posts every message in `ranges` through `writer`; returns the summed report.
pub async fn replay(
    writer: &Writer,
    reader: &StreamConsumer,
    ranges: &[OffsetRange],
    shutdown: &CancellationToken,
) -> Result<BatchReport, ReplayError> {
    let mut total = BatchReport::default();
    let mut messages = RangeReader::start(reader, ranges)?;
    while let Some(batch) = messages.next(&writer.settings.batch, shutdown).await? {
        total += writer.process(&batch, shutdown).await?;
    }
    Ok(total)
}
