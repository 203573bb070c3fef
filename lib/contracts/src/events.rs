//! The Kafka event values (design §2) and their versioned JSON encoding.
//!
//! Compatibility rules: unknown fields are ignored, so a producer may add an optional field
//! without breaking older consumers (a minor change, same `schema_version`); a breaking change
//! bumps `schema_version`, and [`decode`] refuses any version it does not know, so the message
//! goes to the dead-letter topic instead of being misread. Money is `amount_minor` (an `i64` of
//! minor units) plus `currency`, never a float; timestamps are RFC 3339 as the `time` crate
//! writes them (fraction digits only as needed: `12:00:00.25Z`, `12:00:01Z`). Consumers must
//! parse timestamps, not compare them as strings.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::currency::Currency;
use crate::ids::{AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId};
use crate::topics;

/// The schema (major) version this crate writes and the only one it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// The direction of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnType {
    /// Money into the account.
    Credit,
    /// Money out of the account.
    Debit,
}

impl TxnType {
    /// The wire name: `"credit"` or `"debit"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TxnType::Credit => "credit",
            TxnType::Debit => "debit",
        }
    }

    /// Parses the wire name exactly (lowercase only).
    pub fn parse(value: &str) -> Option<TxnType> {
        match value {
            "credit" => Some(TxnType::Credit),
            "debit" => Some(TxnType::Debit),
            _ => None,
        }
    }
}

/// The processor's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Passed validation and idempotency; goes on to the ledger.
    Accepted,
    /// Refused (see `reason_code`), e.g. `IDEMPOTENCY_CONFLICT`.
    Rejected,
    /// A retry of an already-decided request: no new effect.
    Duplicate,
}

impl Decision {
    /// The wire name, e.g. `"ACCEPTED"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Accepted => "ACCEPTED",
            Decision::Rejected => "REJECTED",
            Decision::Duplicate => "DUPLICATE",
        }
    }
}

/// The ledger's result for an accepted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PostingResult {
    /// Entries written, balance updated.
    Posted,
    /// Refused by the ledger (see `reason_code`), e.g. `INSUFFICIENT_FUNDS`.
    Declined,
}

impl PostingResult {
    /// The wire name, e.g. `"POSTED"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PostingResult::Posted => "POSTED",
            PostingResult::Declined => "DECLINED",
        }
    }
}

/// `txn.requests`: a request accepted at the edge (authenticated and well-formed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRequested {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u16,
    /// This event.
    pub event_id: EventId,
    /// The HTTP attempt that produced it.
    pub request_id: RequestId,
    /// Derived from merchant + idempotency key.
    pub transaction_id: TransactionId,
    /// The authenticated merchant.
    pub merchant_id: MerchantId,
    /// The account (partition key).
    pub account_id: AccountId,
    /// The merchant's idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// Credit or debit.
    #[serde(rename = "type")]
    pub txn_type: TxnType,
    /// Amount in minor units, > 0.
    pub amount_minor: i64,
    /// Currency of the amount.
    pub currency: Currency,
    /// Free text from the merchant.
    pub description: Option<String>,
    /// Merchant metadata (sorted by key).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Where the merchant wants the outcome delivered.
    pub callback_url: Option<String>,
    /// Hex SHA-256 of the canonical request body (design §3).
    pub request_fingerprint: String,
    /// Correlation id from `X-Correlation-Id` or generated at ingress.
    pub correlation_id: String,
    /// When ingress received the request.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// `txn.outcomes`: the processor's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionDecided {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u16,
    /// This event.
    pub event_id: EventId,
    /// The attempt this decision answers.
    pub request_id: RequestId,
    /// The transaction.
    pub transaction_id: TransactionId,
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The account (partition key).
    pub account_id: AccountId,
    /// The merchant's idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// Credit or debit.
    #[serde(rename = "type")]
    pub txn_type: TxnType,
    /// Amount in minor units, > 0.
    pub amount_minor: i64,
    /// Currency of the amount.
    pub currency: Currency,
    /// Accepted, rejected or duplicate.
    pub decision: Decision,
    /// Why, for `REJECTED` (and any other decision that has a reason).
    pub reason_code: Option<String>,
    /// For `DUPLICATE` or an idempotency conflict: the request that owns the key.
    pub original_request_id: Option<RequestId>,
    /// Fingerprint of this attempt's body.
    pub request_fingerprint: String,
    /// Correlation id carried from the request.
    pub correlation_id: String,
    /// When ingress received the request.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// When the processor decided.
    #[serde(with = "time::serde::rfc3339")]
    pub decided_at: OffsetDateTime,
}

/// `txn.postings`: the ledger's result, relayed from the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionPosted {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u16,
    /// This event.
    pub event_id: EventId,
    /// The attempt that was accepted.
    pub request_id: RequestId,
    /// The transaction.
    pub transaction_id: TransactionId,
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The account (partition key).
    pub account_id: AccountId,
    /// Credit or debit.
    #[serde(rename = "type")]
    pub txn_type: TxnType,
    /// Amount in minor units, > 0.
    pub amount_minor: i64,
    /// Currency of the amount.
    pub currency: Currency,
    /// Posted or declined.
    pub result: PostingResult,
    /// Why, for `DECLINED`.
    pub reason_code: Option<String>,
    /// The account's balance after posting, in minor units (may be negative or zero).
    pub balance_after_minor: Option<i64>,
    /// Correlation id carried from the request.
    pub correlation_id: String,
    /// When the ledger committed.
    #[serde(with = "time::serde::rfc3339")]
    pub posted_at: OffsetDateTime,
}

/// What every topic value has in common.
pub trait Event: Serialize + DeserializeOwned {
    /// The type name carried in the `event-type` header (the struct's name).
    const EVENT_TYPE: &'static str;
    /// This event's id.
    fn event_id(&self) -> EventId;
    /// The transaction it concerns.
    fn transaction_id(&self) -> TransactionId;
    /// The account (the Kafka message key).
    fn account_id(&self) -> &AccountId;
    /// The correlation id (the `correlation-id` header).
    fn correlation_id(&self) -> &str;
    /// Invariants the types alone cannot express; [`decode`] refuses events that break them.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

fn positive_amount(amount_minor: i64) -> Result<(), String> {
    if amount_minor > 0 {
        Ok(())
    } else {
        Err(format!("amount_minor must be > 0, got {amount_minor}"))
    }
}

macro_rules! impl_event {
    ($name:ident) => {
        impl Event for $name {
            const EVENT_TYPE: &'static str = stringify!($name);
            fn event_id(&self) -> EventId {
                self.event_id
            }
            fn transaction_id(&self) -> TransactionId {
                self.transaction_id
            }
            fn account_id(&self) -> &AccountId {
                &self.account_id
            }
            fn correlation_id(&self) -> &str {
                &self.correlation_id
            }
            fn validate(&self) -> Result<(), String> {
                positive_amount(self.amount_minor)
            }
        }
    };
}

impl_event!(TransactionRequested);
impl_event!(TransactionDecided);
impl_event!(TransactionPosted);

/// Why a message could not be decoded. The [`reason_code`](DecodeError::reason_code) becomes
/// the `dlq-reason` header when the message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// `schema_version` is not one this crate reads.
    #[error("unsupported schema_version {0}")]
    UnsupportedSchemaVersion(u64),
    /// Not JSON, or not the expected shape (missing field, wrong type, float amount, ...).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Well-formed but breaks an invariant (e.g. a non-positive amount).
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// A stable code for the `dlq-reason` header.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::UnsupportedSchemaVersion(_) => "UNSUPPORTED_SCHEMA_VERSION",
            DecodeError::Malformed(_) => "MALFORMED_EVENT",
            DecodeError::Invalid(_) => "INVALID_EVENT",
        }
    }
}

/// Why an event could not be encoded: only a timestamp RFC 3339 cannot express (a year outside
/// 0000–9999 or an offset with seconds), which no clock in the pipeline produces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event cannot be encoded: {0}")]
pub struct EncodeError(String);

/// Encodes an event as JSON, reporting the one impossible-in-practice failure instead of
/// panicking.
pub fn try_encode<E: Event>(event: &E) -> Result<Vec<u8>, EncodeError> {
    debug_assert!(
        event.validate().is_ok(),
        "encoding an invalid {}",
        E::EVENT_TYPE
    );
    serde_json::to_vec(event).map_err(|e| EncodeError(e.to_string()))
}

/// Encodes an event as JSON.
///
/// # Panics
/// Only if a timestamp cannot be written as RFC 3339 (year outside 0000–9999, or an offset with
/// seconds). Timestamps from `OffsetDateTime::now_utc()` or from [`decode`] always can; use
/// [`try_encode`] for values built any other way.
pub fn encode<E: Event>(event: &E) -> Vec<u8> {
    match try_encode(event) {
        Ok(bytes) => bytes,
        Err(error) => panic!("{error}"),
    }
}

/// Decodes an event: checks `schema_version` first (so a future version is reported as such,
/// not as a shape mismatch), then the shape, then the invariants.
pub fn decode<E: Event>(bytes: &[u8]) -> Result<E, DecodeError> {
    #[derive(Deserialize)]
    struct Version {
        schema_version: Option<serde_json::Value>,
    }
    let version = serde_json::from_slice::<Version>(bytes)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?
        .schema_version
        .ok_or_else(|| DecodeError::Malformed("missing field `schema_version`".to_owned()))?;
    match version.as_u64() {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => return Err(DecodeError::UnsupportedSchemaVersion(v)),
        None => {
            return Err(DecodeError::Malformed(
                "schema_version must be a non-negative integer".to_owned(),
            ))
        }
    }
    let event: E =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    event.validate().map_err(DecodeError::Invalid)?;
    Ok(event)
}

/// The Kafka headers every message carries (design §2): `event-type`, `schema-version`,
/// `correlation-id`.
pub fn message_headers<E: Event>(event: &E) -> [(&'static str, String); 3] {
    [
        (topics::headers::EVENT_TYPE, E::EVENT_TYPE.to_owned()),
        (topics::headers::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
        (
            topics::headers::CORRELATION_ID,
            event.correlation_id().to_owned(),
        ),
    ]
}
