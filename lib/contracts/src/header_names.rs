//! HTTP header names of the public API (design §4). Re-exported as `signing::header_names`.
//!
//! HTTP header names are case-insensitive; these are the canonical spellings used in docs and
//! in error messages (`MissingHeader("X-Signature")`).

/// The merchant making the request.
pub const X_MERCHANT_ID: &str = "X-Merchant-Id";
/// Unix seconds at which the request was signed.
pub const X_TIMESTAMP: &str = "X-Timestamp";
/// `keyId=<id>,v1=<hex HMAC-SHA256>`.
pub const X_SIGNATURE: &str = "X-Signature";
/// The merchant's idempotency key (required on POST).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Optional correlation id; generated when absent and echoed back.
pub const X_CORRELATION_ID: &str = "X-Correlation-Id";
