//! The log side of a run: one pass over the window's messages (by `assign`, no consumer
//! group), computing what the ledger and the audit trail must hold.
//!
//! ```text
//! txn.requests      [from, to)           audit digests; requests that must get a decision
//! txn.outcomes      [from, to + settle)  audit digests (window part); ledger digests of the
//!                                        ACCEPTED decisions in the window; which requests
//!                                        were decided
//! txn.postings      [from, to + settle)  audit digests (window part); each transaction's
//!                                        announced result (POSTED / DECLINED)
//! *.dlq             [from, to)           audit digests; dead letters
//! ```
//! The audit chain of each partition is recomputed from the log, starting from the link the
//! audit stored just before the window, so the hash every document must carry is known
//! without reading the documents.

use crate::digest::{decision_fingerprint, Bucket, Digests};
use audit::chain::{hash_fingerprint, link_hash};
use audit::document::Record;
use ledgerline_contracts::events::{
    Decision, PostingResult, TransactionDecided, TransactionPosted, TransactionRequested,
};
use ledgerline_contracts::topics::headers;
use ledgerline_runtime::backoff::Interrupted;
use ledgerline_runtime::consume::BatchSettings;
use ledgerline_runtime::kafka::{decode_message, header_str};
use ledgerline_runtime::ranges::{OffsetRange, RangeReader};
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The topics of a deployment (with its prefix).
#[derive(Debug, Clone)]
pub struct Topics {
    /// `txn.requests`.
    pub requests: String,
    /// `txn.outcomes`.
    pub outcomes: String,
    /// `txn.postings`.
    pub postings: String,
    /// The three dead-letter topics.
    pub dlqs: Vec<String>,
}

impl Topics {
    /// The topics of a deployment's settings.
    pub fn of(kafka: &ledgerline_runtime::kafka::KafkaSettings) -> Self {
        use ledgerline_contracts::topics;
        Self {
            requests: kafka.topic(topics::REQUESTS),
            outcomes: kafka.topic(topics::OUTCOMES),
            postings: kafka.topic(topics::POSTINGS),
            dlqs: topics::ALL.iter().map(|t| kafka.dlq(t)).collect(),
        }
    }

    /// Every audited topic: the three pipeline topics and their dead-letter topics.
    pub fn all(&self) -> Vec<String> {
        let mut out = vec![
            self.requests.clone(),
            self.outcomes.clone(),
            self.postings.clone(),
        ];
        out.extend(self.dlqs.iter().cloned());
        out
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ScanRanges {
    /// Per (topic, partition): the window's range, which the audit must hold in full.
    pub window: Vec<OffsetRange>,
    /// Per (topic, partition): the range actually read (the window, extended past its end
    /// for outcomes and postings so late decisions and results are seen).
    pub read: Vec<OffsetRange>,
}

impl ScanRanges {
    /// The window's range of a partition.
    pub fn window_of(&self, topic: &str, partition: i32) -> Option<&OffsetRange> {
        self.window
            .iter()
            .find(|r| r.topic == topic && r.partition == partition)
    }
}

/// A request in the window, to be matched with its decision.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// Where it is in the log.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its transaction.
    pub transaction_id: Uuid,
    /// When ingress received it.
    pub received_at: OffsetDateTime,
}

/// A message on a dead-letter topic.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Dead-letter topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// `dlq-reason`.
    pub reason: Option<String>,
    /// `dlq-source-topic`.
    pub source_topic: Option<String>,
    /// `dlq-source-partition`.
    pub source_partition: Option<i32>,
    /// `dlq-source-offset`.
    pub source_offset: Option<i64>,
    /// `dlq-failed-at`.
    pub failed_at: Option<String>,
}

impl DeadLetter {
    /// Reads the `dlq-*` headers of a dead-lettered message.
    pub fn of(message: &OwnedMessage) -> Self {
        let get = |name| header_str(message, name).map(str::to_string);
        Self {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            reason: get(headers::DLQ_REASON),
            source_topic: get(headers::DLQ_SOURCE_TOPIC),
            source_partition: get(headers::DLQ_SOURCE_PARTITION).and_then(|v| v.parse().ok()),
            source_offset: get(headers::DLQ_SOURCE_OFFSET).and_then(|v| v.parse().ok()),
            failed_at: get(headers::DLQ_FAILED_AT),
        }
    }
}

/// An accepted decision the ledger must hold.
#[derive(Debug, Clone, Copy)]
struct Expected {
    partition: i32,
    offset: i64,
    transaction_id: Uuid,
    amount_minor: i64,
    fingerprint: i64,
}

/// What the log says the stores must hold.
#[derive(Debug, Default)]
pub struct LogView {
    /// Ledger digests per `txn.outcomes` bucket (ACCEPTED decisions, first of each
    /// transaction in the window).
    pub ledger: Digests,
    /// Audit digests per bucket of every topic (one document per message).
    pub audit: Digests,
    /// The chain hash just before each audit bucket's first offset in the window.
    pub chain_before: HashMap<Bucket, String>,
    /// Each transaction's result as announced on `txn.postings`: `true` for POSTED.
    pub announced: HashMap<Uuid, bool>,
    /// Requests that got a decision (by request id).
    pub decided: HashSet<Uuid>,
    /// Requests in the window, by request id.
    pub requests: HashMap<Uuid, PendingRequest>,
    /// Dead letters in the window.
    pub dead_letters: Vec<DeadLetter>,
    /// Messages read per topic.
    pub messages: BTreeMap<String, u64>,
}

/// Reads `ranges` once and computes the [`LogView`]. `anchors` gives, per (topic,
/// partition), the audit's link just before the window (genesis when there is none).
pub async fn scan(
    reader: &StreamConsumer,
    topics: &Topics,
    ranges: &ScanRanges,
    anchors: &HashMap<(String, i32), String>,
    bucket_offsets: i64,
    batch: &BatchSettings,
    shutdown: &CancellationToken,
) -> Result<LogView, ScanError> {
    let mut view = LogView::default();
    let mut chain: HashMap<(String, i32), String> = anchors.clone();
    let mut expected: Vec<Expected> = Vec::new();
    let mut seen_transactions: HashSet<Uuid> = HashSet::new();
    let mut messages = RangeReader::start(reader, &ranges.read)?;
    while let Some(batch) = messages.next(batch, shutdown).await? {
        for m in &batch {
            let topic = m.topic();
            *view.messages.entry(topic.to_string()).or_default() += 1;
            let in_window = ranges
                .window_of(topic, m.partition())
                .is_some_and(|w| m.offset() >= w.from && m.offset() < w.to);
            if in_window {
                audit_expect(&mut view, &mut chain, m, bucket_offsets);
            }
            if topic == topics.outcomes {
                if let Ok(d) = decode_message::<TransactionDecided, _>(m) {
                    view.decided.insert(*d.request_id.as_uuid());
                    let first = seen_transactions.insert(*d.transaction_id.as_uuid());
                    if in_window && d.decision == Decision::Accepted && first {
                        expected.push(Expected {
                            partition: m.partition(),
                            offset: m.offset(),
                            transaction_id: *d.transaction_id.as_uuid(),
                            amount_minor: d.amount_minor,
                            fingerprint: decision_fingerprint(&d),
                        });
                    }
                }
            } else if topic == topics.postings {
                if let Ok(p) = decode_message::<TransactionPosted, _>(m) {
                    view.announced.insert(
                        *p.transaction_id.as_uuid(),
                        p.result == PostingResult::Posted,
                    );
                }
            } else if topic == topics.requests && in_window {
                if let Ok(r) = decode_message::<TransactionRequested, _>(m) {
                    view.requests.insert(
                        *r.request_id.as_uuid(),
                        PendingRequest {
                            partition: m.partition(),
                            offset: m.offset(),
                            transaction_id: *r.transaction_id.as_uuid(),
                            received_at: r.received_at,
                        },
                    );
                }
            } else if topics.dlqs.iter().any(|t| t == topic) && in_window {
                view.dead_letters.push(DeadLetter::of(m));
            }
        }
    }
    for e in expected {
        let bucket = Bucket::of(&topics.outcomes, e.partition, e.offset, bucket_offsets);
        let posted = view
            .announced
            .get(&e.transaction_id)
            .copied()
            .unwrap_or(false);
        view.ledger
            .entry(bucket)
            .or_default()
            .add(e.amount_minor, e.fingerprint, posted);
    }
    Ok(view)
}

/// Adds a window message to the audit digests and advances its partition's chain.
fn audit_expect(
    view: &mut LogView,
    chain: &mut HashMap<(String, i32), String>,
    m: &OwnedMessage,
    bucket_offsets: i64,
) {
    let record = Record::from_message(m);
    let key = (m.topic().to_string(), m.partition());
    let prev = chain
        .get(&key)
        .cloned()
        .unwrap_or_else(|| audit::chain::GENESIS.to_string());
    let hash = link_hash(&prev, &record.content);
    let bucket = Bucket::of(m.topic(), m.partition(), m.offset(), bucket_offsets);
    view.chain_before.entry(bucket.clone()).or_insert(prev);
    view.audit.entry(bucket).or_default().add(
        record.amount_minor().unwrap_or(0),
        hash_fingerprint(&hash).unwrap_or(0),
        false,
    );
    chain.insert(key, hash);
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Kafka metadata, offsets or assignment failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Shutdown arrived first.
    #[error("interrupted by shutdown")]
    Interrupted,
}

impl From<Interrupted> for ScanError {
    fn from(_: Interrupted) -> Self {
        ScanError::Interrupted
    }
}
