//! Merchant request signing (design §4; the merchant-facing spec is `docs/signing.md`).
//!
//! ```text
//! canonical = METHOD "\n" PATH_AND_QUERY "\n" X-Timestamp "\n" Idempotency-Key "\n" hex(sha256(body))
//! v1        = hex(HMAC-SHA256(secret[keyId], canonical))
//! X-Signature: keyId=<id>,v1=<v1>
//! ```

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::ids::{KeyId, MerchantId};

pub use crate::header_names;

type HmacSha256 = Hmac<Sha256>;

/// The default accepted clock difference between merchant and server, in seconds.
pub const DEFAULT_MAX_SKEW_SECS: u32 = 300;

/// Longest `X-Timestamp` accepted, in digits: unix seconds stay below 12 digits for 30,000 years,
/// and the cap keeps parsing trivially bounded.
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// Why a signed request was refused. Every variant is an HTTP 401 at ingress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// A required header is absent (the header's name).
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but cannot be parsed (the header's name).
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// `X-Timestamp` is outside the accepted skew window.
    #[error("timestamp is outside the accepted window")]
    StaleTimestamp,
    /// No active secret for this merchant and key id.
    #[error("unknown merchant or signing key")]
    UnknownKey,
    /// The signature does not match the request.
    #[error("signature does not match the request")]
    BadSignature,
}

impl SigningError {
    /// A stable machine-readable code for problem responses and metrics labels.
    pub fn reason_code(&self) -> &'static str {
        match self {
            SigningError::MissingHeader(_) => "SIGNATURE_HEADER_MISSING",
            SigningError::MalformedHeader(_) => "SIGNATURE_HEADER_MALFORMED",
            SigningError::StaleTimestamp => "SIGNATURE_TIMESTAMP_STALE",
            // One code for both: telling them apart would let a caller probe which merchant
            // and key ids exist.
            SigningError::UnknownKey | SigningError::BadSignature => "SIGNATURE_INVALID",
        }
    }
}

/// Builds the canonical string: method (ASCII-uppercased), path and query exactly as sent,
/// timestamp header exactly as sent, idempotency key (empty when absent), and the lowercase hex
/// SHA-256 of the raw body bytes, joined by `"\n"` with no trailing newline.
pub fn canonical_string(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    idempotency_key: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "{}\n{path_and_query}\n{timestamp}\n{idempotency_key}\n{body_hash}",
        method.to_ascii_uppercase()
    )
}

fn mac_for(secret: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length (long keys are hashed, short ones padded), and the
    // `hmac` crate never returns `InvalidLength` for it; a proptest covers lengths 0..=200.
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// Lowercase hex HMAC-SHA256 of `canonical` under `secret`.
pub fn sign(secret: &[u8], canonical: &str) -> String {
    let mut mac = mac_for(secret);
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `X-Signature` value: `keyId=<id>,v1=<hex>`.
pub fn signature_header(key_id: &str, signature_hex: &str) -> String {
    format!("keyId={key_id},v1={signature_hex}")
}

/// Whether `expected` is the HMAC-SHA256 of `canonical` under `secret`, compared in constant
/// time so response timing does not reveal how many leading bytes matched.
pub fn verify_signature(secret: &[u8], canonical: &str, expected: &[u8; 32]) -> bool {
    let mut mac = mac_for(secret);
    mac.update(canonical.as_bytes());
    mac.verify_slice(expected).is_ok()
}

/// A parsed `X-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// Which of the merchant's secrets signed the request.
    pub key_id: KeyId,
    /// The HMAC-SHA256 bytes.
    pub v1: [u8; 32],
}

impl SignatureHeader {
    /// Parses exactly `keyId=<id>,v1=<64 hex digits>`; spaces after the comma are tolerated.
    /// Anything else (other order, extra parts, other versions) is `MalformedHeader`, so a
    /// future `v2` is an explicit change rather than something silently ignored.
    pub fn parse(raw: &str) -> Result<SignatureHeader, SigningError> {
        let malformed = SigningError::MalformedHeader(header_names::X_SIGNATURE);
        let (key_part, v1_part) = raw.split_once(',').ok_or(malformed.clone())?;
        let key_id = key_part
            .strip_prefix("keyId=")
            .and_then(|id| KeyId::parse(id).ok())
            .ok_or(malformed.clone())?;
        let hex_part = v1_part
            .trim_start_matches(' ')
            .strip_prefix("v1=")
            .ok_or(malformed.clone())?;
        let mut v1 = [0_u8; 32];
        // decode_to_slice requires exactly 64 hex digits for 32 bytes and rejects anything else.
        hex::decode_to_slice(hex_part, &mut v1).map_err(|_| malformed)?;
        Ok(SignatureHeader { key_id, v1 })
    }
}

/// Parses `X-Timestamp`: 1–12 ASCII digits of unix seconds, no sign.
pub fn parse_timestamp(raw: &str) -> Result<i64, SigningError> {
    let malformed = SigningError::MalformedHeader(header_names::X_TIMESTAMP);
    if raw.is_empty()
        || raw.len() > MAX_TIMESTAMP_DIGITS
        || !raw.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed);
    }
    raw.parse::<i64>().map_err(|_| malformed)
}

/// Accepts `timestamp` when `|now_unix - timestamp| <= max_skew_secs`.
pub fn check_skew(now_unix: i64, timestamp: i64, max_skew_secs: u32) -> Result<(), SigningError> {
    // abs_diff is exact over the whole i64 range, so no input can overflow.
    if now_unix.abs_diff(timestamp) <= u64::from(max_skew_secs) {
        Ok(())
    } else {
        Err(SigningError::StaleTimestamp)
    }
}

/// Where ingress finds a merchant's active signing secrets. Several key ids may be active for
/// one merchant at once, which is how secrets rotate without downtime.
pub trait KeyLookup {
    /// The secret for `key_id` of `merchant`, if that key is active.
    fn secret(&self, merchant: &MerchantId, key_id: &KeyId) -> Option<&[u8]>;
}

/// A fixed in-memory [`KeyLookup`] (configuration-loaded keys, tests). Its `Debug` output lists
/// key ids only, never secrets.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<(MerchantId, KeyId), Vec<u8>>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Adds (or replaces) an active secret.
    pub fn insert(&mut self, merchant: MerchantId, key_id: KeyId, secret: impl Into<Vec<u8>>) {
        self.keys.insert((merchant, key_id), secret.into());
    }
}

impl KeyLookup for KeyRing {
    fn secret(&self, merchant: &MerchantId, key_id: &KeyId) -> Option<&[u8]> {
        self.keys
            .get(&(merchant.clone(), key_id.clone()))
            .map(Vec::as_slice)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.keys().map(|(m, k)| format!("{m}/{k}")))
            .finish()
    }
}

/// The parts of an HTTP request that the signature covers, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The request method, e.g. `POST`.
    pub method: &'a str,
    /// The request target exactly as on the request line, e.g. `/v1/transactions?x=1`.
    pub path_and_query: &'a str,
    /// `X-Merchant-Id`, if present.
    pub merchant_id: Option<&'a str>,
    /// `X-Timestamp`, if present.
    pub timestamp: Option<&'a str>,
    /// `X-Signature`, if present.
    pub signature: Option<&'a str>,
    /// `Idempotency-Key`, or `""` when absent (GET).
    pub idempotency_key: &'a str,
    /// The raw body bytes, before any decoding.
    pub body: &'a [u8],
}

/// Authenticates a request: headers present and well-formed, timestamp within
/// `max_skew_secs` of `now_unix`, key known, signature matching. Returns the merchant.
///
/// The checks run in that order, so the cheapest rejections come first and the HMAC is only
/// computed for a fresh request with a known key.
pub fn verify_request(
    keys: &impl KeyLookup,
    req: &SignedRequest<'_>,
    now_unix: i64,
    max_skew_secs: u32,
) -> Result<MerchantId, SigningError> {
    use header_names::{X_MERCHANT_ID, X_SIGNATURE, X_TIMESTAMP};

    let merchant_raw = req
        .merchant_id
        .ok_or(SigningError::MissingHeader(X_MERCHANT_ID))?;
    let merchant = MerchantId::parse(merchant_raw)
        .map_err(|_| SigningError::MalformedHeader(X_MERCHANT_ID))?;
    let timestamp_raw = req
        .timestamp
        .ok_or(SigningError::MissingHeader(X_TIMESTAMP))?;
    let timestamp = parse_timestamp(timestamp_raw)?;
    let signature = SignatureHeader::parse(
        req.signature
            .ok_or(SigningError::MissingHeader(X_SIGNATURE))?,
    )?;

    check_skew(now_unix, timestamp, max_skew_secs)?;
    let secret = keys
        .secret(&merchant, &signature.key_id)
        .ok_or(SigningError::UnknownKey)?;

    let canonical = canonical_string(
        req.method,
        req.path_and_query,
        timestamp_raw,
        req.idempotency_key,
        req.body,
    );
    if verify_signature(secret, &canonical, &signature.v1) {
        Ok(merchant)
    } else {
        Err(SigningError::BadSignature)
    }
}

#[cfg(test)]
mod tests;
