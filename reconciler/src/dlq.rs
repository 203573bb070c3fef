//! Dead letters: list them (with whether they were redriven), and redrive them to the topic
//! they came from with their original key, payload and headers (the `dlq-*` headers are
//! dropped). A redrive is recorded in `dlq_redrives`, so a dead letter is sent back once and
//! later runs stop reporting it; a crash between the send and the record can only re-send it,
//! which consumers deduplicate by `event_id`.

use crate::app::Context;
pub use crate::dead_letters::FirstCopy;
use crate::dead_letters::{first_copies, position, DlqPosition, Source};
use crate::metrics;
use crate::record;
use crate::run::RunError;
use crate::scan::DeadLetter;
use ledgerline_contracts::topics::{headers, DLQ_SUFFIX};
use ledgerline_runtime::ranges::{self, Position, RangeReader};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most time to wait for a redriven message's acknowledgement.
pub const REDRIVE_TIMEOUT_MS: u64 = 10_000;

/// A dead letter and whether it was sent back.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Where it is and why it is there.
    #[serde(flatten)]
    pub dead_letter: DeadLetter,
    /// Already redriven.
    pub redriven: bool,
    /// Set when this is a later copy of a source message dead-lettered more than once: the
    /// partition and offset, on the same DLQ, of its first copy, which runs report. Redriving
    /// either copy sends the same message back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_copy: Option<FirstCopy>,
}

/// Each letter as an entry, later copies marked with their first copy.
fn entries(letters: Vec<DeadLetter>, redriven: &HashSet<DlqPosition>) -> Vec<Entry> {
    let firsts = first_copies(&letters);
    letters
        .into_iter()
        .map(|dead_letter| {
            let at = position(&dead_letter);
            Entry {
                redriven: redriven.contains(&at),
                first_copy: firsts.get(&at).copied(),
                dead_letter,
            }
        })
        .collect()
}

/// Which dead letters to redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// One message.
    One {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Every message not redriven yet.
    All,
}

/// The dead-letter topics to look at: the one given (a pipeline topic's DLQ by its base name,
/// e.g. `txn.outcomes.dlq`, or the full name), or all three.
pub fn topics(ctx: &Context, topic: Option<&str>) -> Vec<String> {
    match topic {
        None => ctx.topics.dlqs.clone(),
        Some(t) => {
            let prefixed = format!("{}{t}", ctx.settings.kafka.topic_prefix);
            if ctx.topics.dlqs.contains(&prefixed) {
                vec![prefixed]
            } else {
                vec![t.to_string()]
            }
        }
    }
}

async fn read_all(
    ctx: &Context,
    topic: &str,
    shutdown: &CancellationToken,
) -> Result<Vec<OwnedMessage>, RunError> {
    let all = ranges::between(&ctx.reader, topic, None, Position::Offset(0), Position::End)?;
    let mut out = Vec::new();
    let mut reader = RangeReader::start(&ctx.reader, &all)?;
    while let Some(batch) = reader
        .next(&ctx.settings.reconcile.read_batch, shutdown)
        .await?
    {
        out.extend(batch);
    }
    Ok(out)
}

/// Every dead letter on `dlq_topics`, oldest first per partition.
pub async fn list(
    ctx: &Context,
    dlq_topics: &[String],
    shutdown: &CancellationToken,
) -> Result<Vec<Entry>, RunError> {
    let redriven: HashSet<DlqPosition> = record::redriven(&ctx.pool).await?.into_iter().collect();
    let mut out = Vec::new();
    for topic in dlq_topics {
        let letters = read_all(ctx, topic, shutdown).await?;
        out.extend(entries(
            letters.iter().map(DeadLetter::of).collect(),
            &redriven,
        ));
    }
    Ok(out)
}

/// The original headers of a dead letter (without the `dlq-*` ones).
pub fn original_headers(message: &OwnedMessage) -> OwnedHeaders {
    let dlq = [
        headers::DLQ_REASON,
        headers::DLQ_SOURCE_TOPIC,
        headers::DLQ_SOURCE_PARTITION,
        headers::DLQ_SOURCE_OFFSET,
        headers::DLQ_FAILED_AT,
    ];
    let mut out = OwnedHeaders::new();
    if let Some(hs) = message.headers() {
        for h in hs.iter().filter(|h| !dlq.contains(&h.key)) {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    out
}

/// The topic a dead letter came from: its `dlq-source-topic` header, else the DLQ's name
/// without its suffix.
pub fn source_topic(message: &OwnedMessage) -> String {
    ledgerline_runtime::kafka::header_str(message, headers::DLQ_SOURCE_TOPIC)
        .map(str::to_string)
        .unwrap_or_else(|| {
            message
                .topic()
                .strip_suffix(DLQ_SUFFIX)
                .unwrap_or(message.topic())
                .to_string()
        })
}

/// Sends the selected dead letters of `dlq_topic` back to their source topics. Returns the
/// ones sent. Those redriven before are skipped, and so, with [`Selection::All`], are the
/// other copies of a source message one of whose copies was redriven (before or in this call):
/// sending it back once is enough, as a run's findings say. One named message is sent unless
/// that very message was redriven before.
pub async fn redrive(
    ctx: &Context,
    dlq_topic: &str,
    selection: Selection,
    shutdown: &CancellationToken,
) -> Result<Vec<Entry>, RunError> {
    let redriven: HashSet<DlqPosition> = record::redriven(&ctx.pool).await?.into_iter().collect();
    let producer = ctx.settings.kafka.producer("ledgerline-reconciler")?;
    let letters: Vec<(OwnedMessage, DeadLetter)> = read_all(ctx, dlq_topic, shutdown)
        .await?
        .into_iter()
        .map(|m| {
            let dead_letter = DeadLetter::of(&m);
            (m, dead_letter)
        })
        .collect();
    let firsts = first_copies(letters.iter().map(|(_, d)| d));
    let mut settled: HashSet<Source> = letters
        .iter()
        .filter(|(_, d)| redriven.contains(&position(d)))
        .map(|(_, d)| Source::of(d))
        .collect();
    let mut sent = Vec::new();
    for (m, dead_letter) in letters {
        let chosen = match selection {
            Selection::All => !settled.contains(&Source::of(&dead_letter)),
            Selection::One { partition, offset } => {
                m.partition() == partition && m.offset() == offset
            }
        };
        let key = position(&dead_letter);
        if !chosen || redriven.contains(&key) {
            continue;
        }
        let target = source_topic(&m);
        let mut out: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&target).headers(original_headers(&m));
        if let Some(k) = m.key() {
            out = out.key(k);
        }
        if let Some(p) = m.payload() {
            out = out.payload(p);
        }
        producer
            .send(out, Duration::from_millis(REDRIVE_TIMEOUT_MS))
            .await
            .map_err(|(e, _)| RunError::Kafka(e))?;
        record::record_redrive(&ctx.pool, (&key.0, key.1, key.2), &target).await?;
        metrics::redriven(1);
        settled.insert(Source::of(&dead_letter));
        sent.push(Entry {
            first_copy: firsts.get(&key).copied(),
            dead_letter,
            redriven: true,
        });
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;

    fn dead_letter(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut hs = OwnedHeaders::new();
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"acc".to_vec()),
            "p.txn.outcomes.dlq".into(),
            Timestamp::CreateTime(1),
            0,
            3,
            Some(hs),
        )
    }

    #[test]
    fn a_redrive_keeps_the_original_headers_and_drops_the_dead_letter_ones() {
        let m = dead_letter(&[
            ("event-type", "TransactionDecided"),
            ("correlation-id", "c-1"),
            (headers::DLQ_REASON, "SCHEMA"),
            (headers::DLQ_SOURCE_TOPIC, "p.txn.outcomes"),
            (headers::DLQ_SOURCE_OFFSET, "9"),
        ]);
        let kept: Vec<String> = original_headers(&m)
            .iter()
            .map(|h| h.key.to_string())
            .collect();
        assert_eq!(kept, vec!["event-type", "correlation-id"]);
        assert_eq!(source_topic(&m), "p.txn.outcomes");
    }

    #[test]
    fn without_a_source_header_the_source_is_the_topic_without_its_suffix() {
        assert_eq!(source_topic(&dead_letter(&[])), "p.txn.outcomes");
    }
}
