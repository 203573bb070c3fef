//! Fixtures for the unit tests: events and the Kafka messages that carry them.

use ledgerline_contracts::events::{self, Event, PostingResult, TransactionPosted, TxnType};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::Currency;
use ledgerline_runtime::kafka::event_headers;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use time::OffsetDateTime;

/// A declined posting of `amount_minor` on `acc-1` (a fresh `event_id` each call).
pub(crate) fn posted(amount_minor: i64, balance_after_minor: Option<i64>) -> TransactionPosted {
    let merchant_id = MerchantId::parse("m1").unwrap();
    let key = IdempotencyKey::parse("k1").unwrap();
    TransactionPosted {
        schema_version: events::SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id: RequestId::new_v7(),
        transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant_id, &key),
        merchant_id,
        account_id: AccountId::parse("acc-1").unwrap(),
        txn_type: TxnType::Debit,
        amount_minor,
        currency: Currency::EUR,
        result: PostingResult::Declined,
        reason_code: Some("INSUFFICIENT_FUNDS".into()),
        balance_after_minor,
        correlation_id: "corr-1".into(),
        posted_at: OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(),
    }
}

/// A message on partition 1 keyed `acc-1`.
pub(crate) fn message(
    topic: &str,
    offset: i64,
    payload: &[u8],
    headers: OwnedHeaders,
) -> OwnedMessage {
    OwnedMessage::new(
        Some(payload.to_vec()),
        Some(b"acc-1".to_vec()),
        topic.into(),
        Timestamp::CreateTime(1),
        1,
        offset,
        Some(headers),
    )
}

/// `e` on `p.txn.postings` at `offset`, with the standard headers.
pub(crate) fn event_message(e: &TransactionPosted, offset: i64) -> OwnedMessage {
    message(
        "p.txn.postings",
        offset,
        &events::encode(e),
        event_headers(TransactionPosted::EVENT_TYPE, &e.correlation_id),
    )
}
