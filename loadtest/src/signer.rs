//! Requests signed per request with the scheme of `docs/signing.md`, through
//! `ledgerline_contracts::signing` (the same code ingress verifies with), and the deliberately
//! bad requests of the `bad-auth` scenario.
//!
//! The output is a list of header pairs and the body bytes, so every HTTP client here (goose's,
//! hyper's, reqwest's) sends exactly what was signed.

use ledgerline_contracts::header_names::{
    IDEMPOTENCY_KEY, X_MERCHANT_ID, X_SIGNATURE, X_TIMESTAMP,
};
use ledgerline_contracts::signing::{canonical_string, sign, signature_header};

use crate::config::Merchant;

/// The path every transaction is posted to.
pub const TRANSACTIONS_PATH: &str = "/v1/transactions";

/// A request's headers (`Content-Type` included for POSTs) and body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Header name/value pairs.
    pub headers: Vec<(&'static str, String)>,
    /// The exact body bytes that were signed.
    pub body: String,
}

/// A signed `POST /v1/transactions` of `body` under `idempotency_key`, stamped `now_unix`.
pub fn post(merchant: &Merchant, idempotency_key: &str, body: String, now_unix: i64) -> Signed {
    let timestamp = now_unix.to_string();
    let canonical = canonical_string(
        "POST",
        TRANSACTIONS_PATH,
        &timestamp,
        idempotency_key,
        body.as_bytes(),
    );
    let signature = signature_header(
        merchant.key_id.as_str(),
        &sign(merchant.secret_bytes(), &canonical),
    );
    Signed {
        headers: vec![
            ("Content-Type", "application/json".to_string()),
            (X_MERCHANT_ID, merchant.id.to_string()),
            (X_TIMESTAMP, timestamp),
            (X_SIGNATURE, signature),
            (IDEMPOTENCY_KEY, idempotency_key.to_string()),
        ],
        body,
    }
}

/// A signed `GET` of `path_and_query` (empty body, empty idempotency-key line).
pub fn get(merchant: &Merchant, path_and_query: &str, now_unix: i64) -> Signed {
    let timestamp = now_unix.to_string();
    let canonical = canonical_string("GET", path_and_query, &timestamp, "", b"");
    let signature = signature_header(
        merchant.key_id.as_str(),
        &sign(merchant.secret_bytes(), &canonical),
    );
    Signed {
        headers: vec![
            (X_MERCHANT_ID, merchant.id.to_string()),
            (X_TIMESTAMP, timestamp),
            (X_SIGNATURE, signature),
        ],
        body: String::new(),
    }
}

/// How a `bad-auth` request is wrong. Every one must be refused with 400 or 401 before
/// anything is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAuth {
    /// Signed with a secret the merchant does not have.
    WrongSecret,
    /// A key id the merchant does not have.
    UnknownKeyId,
    /// Timestamped an hour ago (outside the skew window).
    StaleTimestamp,
    /// Timestamped an hour ahead.
    FutureTimestamp,
    /// No `X-Signature` header.
    MissingSignature,
    /// `X-Signature` that does not parse.
    MalformedSignature,
    /// `X-Timestamp` that is not decimal digits.
    MalformedTimestamp,
    /// A body other than the one signed.
    TamperedBody,
    /// An `X-Merchant-Id` outside the id alphabet.
    MalformedMerchantId,
    /// No `Idempotency-Key` on a POST.
    MissingIdempotencyKey,
}

impl BadAuth {
    /// Every variant, in the order the scenario cycles through them.
    pub const ALL: [BadAuth; 10] = [
        BadAuth::WrongSecret,
        BadAuth::UnknownKeyId,
        BadAuth::StaleTimestamp,
        BadAuth::FutureTimestamp,
        BadAuth::MissingSignature,
        BadAuth::MalformedSignature,
        BadAuth::MalformedTimestamp,
        BadAuth::TamperedBody,
        BadAuth::MalformedMerchantId,
        BadAuth::MissingIdempotencyKey,
    ];

    /// A stable name, used as the goose request name.
    pub fn name(&self) -> &'static str {
        match self {
            BadAuth::WrongSecret => "wrong-secret",
            BadAuth::UnknownKeyId => "unknown-key-id",
            BadAuth::StaleTimestamp => "stale-timestamp",
            BadAuth::FutureTimestamp => "future-timestamp",
            BadAuth::MissingSignature => "missing-signature",
            BadAuth::MalformedSignature => "malformed-signature",
            BadAuth::MalformedTimestamp => "malformed-timestamp",
            BadAuth::TamperedBody => "tampered-body",
            BadAuth::MalformedMerchantId => "malformed-merchant-id",
            BadAuth::MissingIdempotencyKey => "missing-idempotency-key",
        }
    }

    /// The statuses the API documents for this mistake (docs/api.md).
    pub fn expected_statuses(&self) -> &'static [u16] {
        match self {
            BadAuth::MissingIdempotencyKey => &[400],
            _ => &[401],
        }
    }

    /// Builds the bad request from a valid `body` and `idempotency_key`.
    pub fn request(
        &self,
        merchant: &Merchant,
        idempotency_key: &str,
        body: String,
        now_unix: i64,
    ) -> Signed {
        /// An hour: far outside the default 300 s skew window, and any sane configuration.
        const SKEW_SECS: i64 = 3_600;
        let set = |signed: &mut Signed, name: &'static str, value: String| {
            if let Some(h) = signed.headers.iter_mut().find(|(n, _)| *n == name) {
                h.1 = value;
            }
        };
        match self {
            BadAuth::WrongSecret => {
                // Same key id, another secret: the signature cannot match.
                let mut other_secret = merchant.secret_bytes().to_vec();
                other_secret.reverse();
                other_secret.push(b'!');
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                let canonical = canonical_string(
                    "POST",
                    TRANSACTIONS_PATH,
                    &now_unix.to_string(),
                    idempotency_key,
                    signed.body.as_bytes(),
                );
                let bad =
                    signature_header(merchant.key_id.as_str(), &sign(&other_secret, &canonical));
                set(&mut signed, X_SIGNATURE, bad);
                signed
            }
            BadAuth::UnknownKeyId => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                let value = signed
                    .headers
                    .iter()
                    .find(|(n, _)| *n == X_SIGNATURE)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let v1 = value.split_once(",v1=").map(|(_, v)| v).unwrap_or_default();
                set(
                    &mut signed,
                    X_SIGNATURE,
                    format!("keyId=no-such-key-{},v1={v1}", merchant.key_id),
                );
                signed
            }
            BadAuth::StaleTimestamp => post(merchant, idempotency_key, body, now_unix - SKEW_SECS),
            BadAuth::FutureTimestamp => post(merchant, idempotency_key, body, now_unix + SKEW_SECS),
            BadAuth::MissingSignature => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                signed.headers.retain(|(n, _)| *n != X_SIGNATURE);
                signed
            }
            BadAuth::MalformedSignature => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                set(
                    &mut signed,
                    X_SIGNATURE,
                    format!("v1=zz,keyId={}", merchant.key_id),
                );
                signed
            }
            BadAuth::MalformedTimestamp => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                set(&mut signed, X_TIMESTAMP, format!("{now_unix}.5"));
                signed
            }
            BadAuth::TamperedBody => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                // Another amount, same length: only the signature can tell.
                signed.body = signed.body.replacen("\"amount\":\"", "\"amount\":\"9", 1);
                signed
            }
            BadAuth::MalformedMerchantId => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                set(&mut signed, X_MERCHANT_ID, format!("{} x", merchant.id));
                signed
            }
            BadAuth::MissingIdempotencyKey => {
                let mut signed = post(merchant, idempotency_key, body, now_unix);
                signed.headers.retain(|(n, _)| *n != IDEMPOTENCY_KEY);
                signed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerline_contracts::signing::{verify_request, KeyRing, SignedRequest};
    use ledgerline_contracts::{KeyId, MerchantId};
    use ledgerline_runtime::secret::Secret;

    const SECRET: &str = "loadtest-secret-0123456789abcdef0123";
    const NOW: i64 = 1_800_000_000;

    fn merchant() -> Merchant {
        Merchant::new("lt-merchant", "k1", Secret::new(SECRET.into())).unwrap()
    }

    fn keys() -> KeyRing {
        let mut ring = KeyRing::new();
        ring.insert(
            MerchantId::parse("lt-merchant").unwrap(),
            KeyId::parse("k1").unwrap(),
            SECRET.as_bytes().to_vec(),
        );
        ring
    }

    fn header<'a>(signed: &'a Signed, name: &str) -> Option<&'a str> {
        signed
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What ingress's verifier says about `signed` as a POST.
    fn verify(signed: &Signed, method: &str, path: &str) -> Result<(), String> {
        let request = SignedRequest {
            method,
            path_and_query: path,
            merchant_id: header(signed, X_MERCHANT_ID),
            timestamp: header(signed, X_TIMESTAMP),
            signature: header(signed, X_SIGNATURE),
            idempotency_key: header(signed, IDEMPOTENCY_KEY).unwrap_or(""),
            body: signed.body.as_bytes(),
        };
        verify_request(&keys(), &request, NOW, 300)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    const BODY: &str = r#"{"account_id":"a1","amount":"1.00","currency":"EUR","type":"credit"}"#;

    #[test]
    fn a_signed_post_verifies_with_the_contracts_verifier() {
        let signed = post(&merchant(), "key-1", BODY.into(), NOW);
        assert_eq!(verify(&signed, "POST", TRANSACTIONS_PATH), Ok(()));
        assert_eq!(header(&signed, IDEMPOTENCY_KEY), Some("key-1"));
    }

    #[test]
    fn a_signed_get_verifies_with_the_contracts_verifier() {
        let path = "/v1/transactions/5b3e1c4a-9d2f-5e6a-8b7c-0d1e2f3a4b5c";
        let signed = get(&merchant(), path, NOW);
        assert_eq!(verify(&signed, "GET", path), Ok(()));
        assert!(signed.body.is_empty());
    }

    #[test]
    fn every_bad_auth_request_is_refused_by_the_verifier_or_lacks_an_idempotency_key() {
        for variant in BadAuth::ALL {
            let signed = variant.request(&merchant(), "key-2", BODY.into(), NOW);
            match variant {
                BadAuth::MissingIdempotencyKey => {
                    assert_eq!(header(&signed, IDEMPOTENCY_KEY), None);
                    assert_eq!(variant.expected_statuses(), &[400]);
                }
                _ => {
                    assert!(
                        verify(&signed, "POST", TRANSACTIONS_PATH).is_err(),
                        "{} verified",
                        variant.name()
                    );
                    assert_eq!(variant.expected_statuses(), &[401]);
                }
            }
        }
    }

    #[test]
    fn the_tampered_body_differs_from_the_signed_one_only_in_the_amount() {
        let signed = BadAuth::TamperedBody.request(&merchant(), "key-3", BODY.into(), NOW);
        assert_ne!(signed.body, BODY);
        assert!(signed.body.contains("\"amount\":\"91.00\""));
    }
}
