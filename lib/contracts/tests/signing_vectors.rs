//! The published test vectors (docs/signing-vectors.json) against this implementation, so the
//! document merchants code against can never drift from what ingress verifies.

use ledgerline_contracts::ids::{KeyId, MerchantId};
use ledgerline_contracts::signing::{
    canonical_string, sign, signature_header, verify_request, verify_signature, KeyRing,
    SignatureHeader, SignedRequest, SigningError,
};
use serde::Deserialize;

const VECTORS: &str = include_str!("../../../docs/signing-vectors.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    secret: String,
    key_id: String,
    method: String,
    path: String,
    timestamp: String,
    idempotency_key: String,
    body: String,
    canonical: String,
    signature_header: String,
    valid: bool,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(VECTORS).unwrap_or_else(|e| panic!("signing-vectors.json: {e}"))
}

fn canonical_of(v: &Vector) -> String {
    canonical_string(
        &v.method,
        &v.path,
        &v.timestamp,
        &v.idempotency_key,
        v.body.as_bytes(),
    )
}

#[test]
fn vectors_cover_the_documented_cases() {
    // docs/signing.md promises at least these; removing one should be a deliberate change.
    let names: Vec<String> = vectors().into_iter().map(|v| v.name).collect();
    for expected in [
        "post_create_transaction",
        "get_with_empty_body",
        "post_non_ascii_utf8_body",
        "get_path_with_query_string",
        "post_rotated_second_key",
        "tampered_body_fails",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing vector {expected}"
        );
    }
}

#[test]
fn every_canonical_string_matches() {
    for v in vectors() {
        assert_eq!(canonical_of(&v), v.canonical, "{}", v.name);
    }
}

#[test]
fn signature_verifies_exactly_when_the_vector_is_valid() {
    for v in vectors() {
        let header = SignatureHeader::parse(&v.signature_header);
        assert_eq!(
            header.as_ref().map(|h| h.key_id.as_str()),
            Ok(v.key_id.as_str()),
            "{}",
            v.name
        );
        let verified =
            header.is_ok_and(|h| verify_signature(v.secret.as_bytes(), &v.canonical, &h.v1));
        assert_eq!(verified, v.valid, "{}", v.name);
    }
}

#[test]
fn valid_vectors_are_reproduced_by_the_signer() {
    for v in vectors().into_iter().filter(|v| v.valid) {
        let signature = sign(v.secret.as_bytes(), &v.canonical);
        assert_eq!(
            signature_header(&v.key_id, &signature),
            v.signature_header,
            "{}",
            v.name
        );
    }
}

#[test]
fn full_request_verification_agrees_with_the_vectors() {
    // One key ring holding every vector's key, as a merchant mid-rotation would have.
    let merchant = MerchantId::parse("merchant_42").unwrap_or_else(|e| panic!("{e}"));
    let mut keys = KeyRing::new();
    for v in vectors() {
        let key_id = KeyId::parse(&v.key_id).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        keys.insert(merchant.clone(), key_id, v.secret.as_bytes());
    }
    for v in vectors() {
        let now = v
            .timestamp
            .parse::<i64>()
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let request = SignedRequest {
            method: &v.method,
            path_and_query: &v.path,
            merchant_id: Some("merchant_42"),
            timestamp: Some(&v.timestamp),
            signature: Some(&v.signature_header),
            idempotency_key: &v.idempotency_key,
            body: v.body.as_bytes(),
        };
        let outcome = verify_request(&keys, &request, now + 10, 300);
        let expected = if v.valid {
            Ok(merchant.clone())
        } else {
            Err(SigningError::BadSignature)
        };
        assert_eq!(outcome, expected, "{}", v.name);
    }
}
