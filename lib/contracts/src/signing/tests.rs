//! Signing: the canonical string, header parsing, skew, and end-to-end verification.

use proptest::prelude::*;

use super::*;

const SECRET: &[u8] = b"test-secret-1";
const NOW: i64 = 1_700_000_000;

fn keys() -> KeyRing {
    let mut ring = KeyRing::new();
    let merchant = MerchantId::parse("merchant_1");
    let (k1, k2) = (KeyId::parse("k1"), KeyId::parse("k2"));
    if let (Ok(m), Ok(k1), Ok(k2)) = (merchant, k1, k2) {
        ring.insert(m.clone(), k1, SECRET);
        ring.insert(m, k2, b"test-secret-2".as_slice());
    }
    ring
}

/// A correctly signed POST, as owned parts so tests can tamper with copies.
struct Parts {
    method: String,
    path: String,
    timestamp: String,
    key: String,
    body: Vec<u8>,
    signature: String,
}

fn signed(secret: &[u8], key_id: &str, body: &[u8]) -> Parts {
    let timestamp = NOW.to_string();
    let canonical = canonical_string("POST", "/v1/transactions", &timestamp, "order-1", body);
    Parts {
        method: "POST".into(),
        path: "/v1/transactions".into(),
        timestamp,
        key: "order-1".into(),
        body: body.to_vec(),
        signature: signature_header(key_id, &sign(secret, &canonical)),
    }
}

fn verify(parts: &Parts, merchant: Option<&str>) -> Result<MerchantId, SigningError> {
    let request = SignedRequest {
        method: &parts.method,
        path_and_query: &parts.path,
        merchant_id: merchant,
        timestamp: Some(&parts.timestamp),
        signature: Some(&parts.signature),
        idempotency_key: &parts.key,
        body: &parts.body,
    };
    verify_request(&keys(), &request, NOW, DEFAULT_MAX_SKEW_SECS)
}

#[test]
fn canonical_string_joins_the_parts_with_newlines() {
    let canonical = canonical_string("post", "/v1/transactions?a=1", "1700000000", "k", b"");
    assert_eq!(
        canonical,
        "POST\n/v1/transactions?a=1\n1700000000\nk\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn signature_matches_the_rfc_4231_test_case_2() {
    // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        sign(b"Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn signature_header_parses_with_and_without_space() {
    let hex = "ab".repeat(32);
    for raw in [format!("keyId=k1,v1={hex}"), format!("keyId=k1, v1={hex}")] {
        let parsed = SignatureHeader::parse(&raw);
        assert_eq!(
            parsed.as_ref().map(|h| h.key_id.as_str()),
            Ok("k1"),
            "{raw}"
        );
        assert_eq!(parsed.map(|h| h.v1), Ok([0xab; 32]));
    }
}

#[test]
fn malformed_signature_headers_are_rejected() {
    let hex = "ab".repeat(32);
    let bad = [
        String::new(),
        format!("v1={hex},keyId=k1"),
        format!("keyId=k1;v1={hex}"),
        format!("keyId=,v1={hex}"),
        format!("keyId=k:1,v1={hex}"),
        format!("keyId=k1,v1={}", "ab".repeat(31)),
        format!("keyId=k1,v1={hex}00"),
        format!("keyId=k1,v1={}", "zz".repeat(32)),
        format!("keyId=k1,v1={hex},v2={hex}"),
        format!("keyId=k1,v2={hex}"),
        format!(" keyId=k1,v1={hex}"),
        format!("keyId=k1,\tv1={hex}"),
    ];
    for raw in bad {
        assert_eq!(
            SignatureHeader::parse(&raw),
            Err(SigningError::MalformedHeader("X-Signature")),
            "{raw}"
        );
    }
}

#[test]
fn timestamps_are_unsigned_decimal_seconds() {
    assert_eq!(parse_timestamp("1700000000"), Ok(1_700_000_000));
    assert_eq!(parse_timestamp("999999999999"), Ok(999_999_999_999));
    for raw in ["", "-1", "+1", "1.5", " 1", "1e9", "1000000000000", "１"] {
        assert_eq!(
            parse_timestamp(raw),
            Err(SigningError::MalformedHeader("X-Timestamp")),
            "{raw:?}"
        );
    }
}

#[test]
fn skew_window_is_inclusive_and_overflow_free() {
    assert_eq!(check_skew(NOW, NOW + 300, 300), Ok(()));
    assert_eq!(check_skew(NOW, NOW - 300, 300), Ok(()));
    assert_eq!(
        check_skew(NOW, NOW + 301, 300),
        Err(SigningError::StaleTimestamp)
    );
    assert_eq!(
        check_skew(NOW, NOW - 301, 300),
        Err(SigningError::StaleTimestamp)
    );
    assert_eq!(
        check_skew(i64::MIN, i64::MAX, u32::MAX),
        Err(SigningError::StaleTimestamp)
    );
    assert_eq!(check_skew(i64::MAX, i64::MAX, 0), Ok(()));
}

#[test]
fn correctly_signed_request_is_accepted_with_either_active_key() {
    let first = signed(SECRET, "k1", b"{}");
    assert_eq!(
        verify(&first, Some("merchant_1")).map(|m| m.to_string()),
        Ok("merchant_1".into())
    );
    let rotated = signed(b"test-secret-2", "k2", b"{}");
    assert!(verify(&rotated, Some("merchant_1")).is_ok());
}

#[test]
fn each_failure_is_reported_precisely() {
    let good = signed(SECRET, "k1", b"{}");
    assert_eq!(
        verify(&good, None),
        Err(SigningError::MissingHeader("X-Merchant-Id"))
    );
    assert_eq!(
        verify(&good, Some("m/1")),
        Err(SigningError::MalformedHeader("X-Merchant-Id"))
    );
    assert_eq!(
        verify(&good, Some("merchant_2")),
        Err(SigningError::UnknownKey)
    );

    let unknown_key = signed(SECRET, "k9", b"{}");
    assert_eq!(
        verify(&unknown_key, Some("merchant_1")),
        Err(SigningError::UnknownKey)
    );

    let wrong_secret = signed(b"test-secret-2", "k1", b"{}");
    assert_eq!(
        verify(&wrong_secret, Some("merchant_1")),
        Err(SigningError::BadSignature)
    );

    let mut stale = signed(SECRET, "k1", b"{}");
    stale.timestamp = (NOW - 301).to_string();
    assert_eq!(
        verify(&stale, Some("merchant_1")),
        Err(SigningError::StaleTimestamp)
    );

    let mut bad_ts = signed(SECRET, "k1", b"{}");
    bad_ts.timestamp = "soon".into();
    assert_eq!(
        verify(&bad_ts, Some("merchant_1")),
        Err(SigningError::MalformedHeader("X-Timestamp"))
    );

    let request = SignedRequest {
        method: "POST",
        path_and_query: "/v1/transactions",
        merchant_id: Some("merchant_1"),
        timestamp: Some("1700000000"),
        signature: None,
        idempotency_key: "order-1",
        body: b"{}",
    };
    assert_eq!(
        verify_request(&keys(), &request, NOW, 300),
        Err(SigningError::MissingHeader("X-Signature"))
    );
    let request = SignedRequest {
        timestamp: None,
        ..request
    };
    assert_eq!(
        verify_request(&keys(), &request, NOW, 300),
        Err(SigningError::MissingHeader("X-Timestamp"))
    );
}

#[test]
fn key_ring_debug_never_prints_secrets() {
    let debug = format!("{:?}", keys());
    assert!(debug.contains("merchant_1/k1"));
    assert!(!debug.contains("test-secret"));
}

fn flip(bytes: &mut [u8], index: usize, bit: u8) {
    if let Some(byte) = bytes.get_mut(index % bytes.len().max(1)) {
        *byte ^= 1 << (bit % 8);
    }
}

proptest! {
    #[test]
    fn signing_then_verifying_round_trips(
        secret in prop::collection::vec(any::<u8>(), 0..200),
        canonical in "\\PC{0,200}",
    ) {
        let hex = sign(&secret, &canonical);
        let mut bytes = [0_u8; 32];
        prop_assert!(hex::decode_to_slice(&hex, &mut bytes).is_ok());
        prop_assert!(verify_signature(&secret, &canonical, &bytes));
    }

    #[test]
    fn any_flipped_body_bit_fails(body in prop::collection::vec(any::<u8>(), 1..300), index in any::<usize>(), bit in any::<u8>()) {
        let mut parts = signed(SECRET, "k1", &body);
        flip(&mut parts.body, index, bit);
        prop_assert_eq!(verify(&parts, Some("merchant_1")), Err(SigningError::BadSignature));
    }

    #[test]
    fn any_changed_timestamp_or_path_fails(delta in 1_i64..=300, index in any::<usize>(), bit in 0_u8..7) {
        let mut parts = signed(SECRET, "k1", b"{}");
        parts.timestamp = (NOW - delta).to_string();
        prop_assert_eq!(verify(&parts, Some("merchant_1")), Err(SigningError::BadSignature));

        // Flip one of the low 7 bits of one path byte: the path stays ASCII, so still a &str.
        let mut parts = signed(SECRET, "k1", b"{}");
        let mut path = parts.path.clone().into_bytes();
        flip(&mut path, index, bit);
        parts.path = String::from_utf8(path).unwrap_or_default();
        prop_assert_eq!(verify(&parts, Some("merchant_1")), Err(SigningError::BadSignature));
    }

    #[test]
    fn parsing_arbitrary_headers_never_panics(raw in "\\PC{0,200}") {
        let _ = SignatureHeader::parse(&raw);
        let _ = parse_timestamp(&raw);
    }

    #[test]
    fn parsing_near_miss_headers_never_panics(raw in "(keyId=)?[a-z0-9 ,=]{0,10}(,v1=)?[0-9a-fA-Fz ]{0,70}") {
        if let Ok(header) = SignatureHeader::parse(&raw) {
            prop_assert!(raw.starts_with("keyId="));
            prop_assert_eq!(header.key_id.as_str().is_empty(), false);
        }
    }

    #[test]
    fn skew_check_never_panics(now in any::<i64>(), ts in any::<i64>(), max in any::<u32>()) {
        let within = (i128::from(now) - i128::from(ts)).abs() <= i128::from(max);
        prop_assert_eq!(check_skew(now, ts, max).is_ok(), within);
    }
}
