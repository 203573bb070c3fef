//! Replay: re-records exact offset ranges of any audited topic through [`Writer::process`],
//! the normal write path. Documents already stored are skipped (their `_id` and source
//! position are unique), so a replay over a complete trail writes nothing, and a replay over
//! a hole (a deleted or quarantined document) restores it with the very same hash: the chain
//! is a pure function of the log. No consumer group's offsets move.

use crate::writer::{BatchReport, Writer};
use ledgerline_runtime::backoff::Interrupted;
use ledgerline_runtime::ranges::{OffsetRange, RangeReader};
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Kafka assignment failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Shutdown arrived before the replay finished (what was stored stays stored).
    #[error("interrupted by shutdown")]
    Interrupted,
}

impl From<Interrupted> for ReplayError {
    fn from(_: Interrupted) -> Self {
        ReplayError::Interrupted
    }
}

/// Records every message of `ranges` through `writer`; returns the summed report.
pub async fn replay(
    writer: &mut Writer,
    reader: &StreamConsumer,
    ranges: &[OffsetRange],
    shutdown: &CancellationToken,
) -> Result<BatchReport, ReplayError> {
    let batch_settings = writer.batch_settings();
    let mut total = BatchReport::default();
    let mut messages = RangeReader::start(reader, ranges)?;
    while let Some(batch) = messages.next(&batch_settings, shutdown).await? {
        let report = writer.process(&batch, shutdown).await?;
        total.messages += report.messages;
        total.inserted += report.inserted;
        total.duplicates += report.duplicates;
        total.already_stored += report.already_stored;
        total.dead_lettered += report.dead_lettered;
        total.gaps += report.gaps;
    }
    Ok(total)
}
