//! Ledgerline's shared contracts. This crate does no I/O: every function is a pure transformation
//! of bytes and values, so every service (and every test) agrees on one definition of each rule.
//!
//! Module map:
//! - [`currency`]: ISO-4217 currencies and their minor-unit exponents.
//! - [`money`]: `Money` (positive `i64` minor units + currency), decimal parsing and formatting.
//! - [`ids`]: identifier newtypes that cannot hold an invalid value; `transaction_id` and
//!   `event_id` derivation (design §3).
//! - [`signing`]: the merchant request-signing scheme (design §4) and its verification.
//! - [`header_names`]: the HTTP header names of the public API.
//! - [`events`]: the Kafka event values (`TransactionRequested`, `TransactionDecided`,
//!   `TransactionPosted`), their encoding and their versioned decoding.
//! - [`request`]: the body of `POST /v1/transactions`, parsed into a `CreateTransaction`, and its
//!   idempotency fingerprint.
//! - [`topics`]: topic names, Kafka header names and dead-letter conventions (design §2).
#![deny(clippy::float_arithmetic)]

pub mod currency;
pub mod events;
pub mod header_names;
pub mod ids;
pub mod money;
pub mod request;
pub mod signing;
pub mod topics;

mod callback_url;
mod strict_json;

pub use currency::Currency;
pub use events::{
    decode, encode, Decision, DecodeError, Event, PostingResult, TransactionDecided,
    TransactionPosted, TransactionRequested, TxnType, SCHEMA_VERSION,
};
pub use ids::{
    AccountId, EventId, IdError, IdempotencyKey, KeyId, MerchantId, RequestId, TransactionId,
    DEFAULT_NAMESPACE,
};
pub use money::{format_minor, Money, MoneyError};
pub use request::{parse_create_transaction, CreateTransaction, RequestError};
pub use signing::{
    canonical_string, check_skew, parse_timestamp, sign, signature_header, verify_request,
    verify_signature, KeyLookup, SignatureHeader, SignedRequest, SigningError,
};
