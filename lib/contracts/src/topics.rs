//! Topic names, Kafka header names and the dead-letter conventions of design §2.

/// Requests accepted at the edge (`TransactionRequested`), keyed by `account_id`.
pub const REQUESTS: &str = "txn.requests";
/// Decisions taken by the processor (`TransactionDecided`), keyed by `account_id`.
pub const OUTCOMES: &str = "txn.outcomes";
/// Ledger results relayed from the outbox (`TransactionPosted`), keyed by `account_id`.
pub const POSTINGS: &str = "txn.postings";
/// Every pipeline topic, in flow order.
pub const ALL: [&str; 3] = [REQUESTS, OUTCOMES, POSTINGS];

/// Suffix of a topic's dead-letter topic: `txn.requests` → `txn.requests.dlq`.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The dead-letter topic of `topic`.
pub fn dlq_of(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// Header names carried by every pipeline message.
pub mod headers {
    /// The event's type name, e.g. `TransactionRequested`.
    pub const EVENT_TYPE: &str = "event-type";
    /// The event's schema version (major), e.g. `1`.
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// The correlation id first seen (or generated) at ingress.
    pub const CORRELATION_ID: &str = "correlation-id";

    /// Why a message was dead-lettered: a stable reason code.
    pub const DLQ_REASON: &str = "dlq-reason";
    /// The topic the dead-lettered message was read from.
    pub const DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
    /// The partition the dead-lettered message was read from.
    pub const DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
    /// The offset the dead-lettered message was read from.
    pub const DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";
    /// When it was dead-lettered (RFC 3339, UTC).
    pub const DLQ_FAILED_AT: &str = "dlq-failed-at";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_topic_appends_the_suffix() {
        assert_eq!(dlq_of(REQUESTS), "txn.requests.dlq");
    }
}
