//! Identifier validation and derivation.

use proptest::prelude::*;

use super::*;

fn merchant(value: &str) -> MerchantId {
    MerchantId::parse(value).unwrap_or_else(|e| panic!("test merchant {value:?}: {e}"))
}

fn key(value: &str) -> IdempotencyKey {
    IdempotencyKey::parse(value).unwrap_or_else(|e| panic!("test key {value:?}: {e}"))
}

#[test]
fn each_identifier_accepts_its_own_alphabet() {
    assert!(MerchantId::parse("merchant_42-EU").is_ok());
    assert!(AccountId::parse("acc.eu:42_main-1").is_ok());
    assert!(IdempotencyKey::parse("order-1001.retry:2_a").is_ok());
    assert!(KeyId::parse("k1.2024_05-a").is_ok());
}

#[test]
fn characters_outside_the_alphabet_are_rejected() {
    let invalid = |what| IdError::InvalidChar { what };
    assert_eq!(MerchantId::parse("m.1").err(), Some(invalid("merchant_id")));
    assert_eq!(MerchantId::parse("m:1").err(), Some(invalid("merchant_id")));
    assert_eq!(AccountId::parse("acc 1").err(), Some(invalid("account_id")));
    assert_eq!(AccountId::parse("acc/1").err(), Some(invalid("account_id")));
    assert_eq!(
        IdempotencyKey::parse("key\n").err(),
        Some(invalid("idempotency_key"))
    );
    assert_eq!(
        IdempotencyKey::parse("clé").err(),
        Some(invalid("idempotency_key"))
    );
    assert_eq!(KeyId::parse("k:1").err(), Some(invalid("key_id")));
    assert_eq!(KeyId::parse("k,1").err(), Some(invalid("key_id")));
}

#[test]
fn empty_and_over_long_identifiers_are_rejected() {
    assert_eq!(
        MerchantId::parse(""),
        Err(IdError::Empty {
            what: "merchant_id"
        })
    );
    assert!(AccountId::parse(&"a".repeat(64)).is_ok());
    assert_eq!(
        AccountId::parse(&"a".repeat(65)),
        Err(IdError::TooLong {
            what: "account_id",
            max: 64
        })
    );
    assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    assert_eq!(
        IdempotencyKey::parse(&"k".repeat(256)),
        Err(IdError::TooLong {
            what: "idempotency_key",
            max: 255
        })
    );
}

#[test]
fn id_errors_name_the_identifier() {
    let message = AccountId::parse("a b").map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        message,
        "account_id contains a character that is not allowed"
    );
    let message = KeyId::parse(&"k".repeat(65))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(message, "key_id is longer than 64 characters");
}

#[test]
fn deserializing_an_invalid_identifier_fails() {
    assert!(serde_json::from_str::<MerchantId>("\"m 1\"").is_err());
    assert!(serde_json::from_str::<AccountId>("\"\"").is_err());
    assert!(serde_json::from_str::<AccountId>("42").is_err());
    let ok = serde_json::from_str::<AccountId>("\"acc_1\"").map(|a| a.to_string());
    assert_eq!(ok.ok().as_deref(), Some("acc_1"));
}

#[test]
fn transaction_id_is_uuid_v5_of_merchant_newline_key() {
    let id = TransactionId::derive(DEFAULT_NAMESPACE, &merchant("m1"), &key("k1"));
    let expected = Uuid::new_v5(&DEFAULT_NAMESPACE, b"m1\nk1");
    assert_eq!(*id.as_uuid(), expected);
    assert_eq!(id.as_uuid().get_version_num(), 5);
    // The same pair always maps to the same id; another pair does not.
    assert_eq!(
        id,
        TransactionId::derive(DEFAULT_NAMESPACE, &merchant("m1"), &key("k1"))
    );
    assert_ne!(
        id,
        TransactionId::derive(DEFAULT_NAMESPACE, &merchant("m1"), &key("k2"))
    );
    assert_ne!(
        id,
        TransactionId::derive(Uuid::nil(), &merchant("m1"), &key("k1"))
    );
}

#[test]
fn default_namespace_is_the_documented_value() {
    assert_eq!(
        DEFAULT_NAMESPACE.to_string(),
        "6f1c2a4e-8b3d-4c5e-9a7f-1d2e3f405162"
    );
}

#[test]
fn fresh_request_and_event_ids_are_version_7_and_distinct() {
    let (a, b) = (RequestId::new_v7(), RequestId::new_v7());
    assert_eq!(a.as_uuid().get_version_num(), 7);
    assert_ne!(a, b);
    let (c, d) = (EventId::new_v7(), EventId::new_v7());
    assert_eq!(c.as_uuid().get_version_num(), 7);
    assert_ne!(c, d);
}

#[test]
fn derived_event_id_is_stable_version_7_and_differs_per_seed() {
    let first = EventId::derive(1_700_000_000_123, b"request-1/TransactionDecided");
    let again = EventId::derive(1_700_000_000_123, b"request-1/TransactionDecided");
    let other = EventId::derive(1_700_000_000_123, b"request-2/TransactionDecided");
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert_eq!(first.as_uuid().get_version_num(), 7);
    assert_eq!(first.as_uuid().get_variant(), uuid::Variant::RFC4122);
    // The timestamp is readable back, so ids still sort by time.
    let millis = first
        .as_uuid()
        .get_timestamp()
        .map(|ts| ts.to_unix())
        .map(|(s, n)| u64::from(n / 1_000_000) + s * 1000);
    assert_eq!(millis, Some(1_700_000_000_123));
}

#[test]
fn uuid_ids_display_and_serialize_hyphenated_lowercase() {
    let id: Result<EventId, _> = "0190C7E2-4F6A-7B3C-8D1E-2F3A4B5C6D7E".parse();
    let id = id.map(|id| (id.to_string(), serde_json::to_string(&id).ok()));
    assert_eq!(
        id.ok(),
        Some((
            "0190c7e2-4f6a-7b3c-8d1e-2f3a4b5c6d7e".to_owned(),
            Some("\"0190c7e2-4f6a-7b3c-8d1e-2f3a4b5c6d7e\"".to_owned())
        ))
    );
    assert!("not-a-uuid".parse::<TransactionId>().is_err());
    assert!(serde_json::from_str::<RequestId>("\"nope\"").is_err());
}

proptest! {
    #[test]
    fn parsing_arbitrary_strings_never_panics(value in "\\PC{0,300}") {
        let _ = MerchantId::parse(&value);
        let _ = AccountId::parse(&value);
        let _ = KeyId::parse(&value);
        if let Ok(key) = IdempotencyKey::parse(&value) {
            prop_assert_eq!(key.as_str(), value.as_str());
        }
    }

    #[test]
    fn valid_keys_round_trip_through_json(value in "[A-Za-z0-9._:-]{1,255}") {
        let key = IdempotencyKey::parse(&value);
        prop_assert!(key.is_ok());
        let json = serde_json::to_string(&key.ok());
        let back = json.ok().and_then(|j| serde_json::from_str::<Option<IdempotencyKey>>(&j).ok());
        prop_assert_eq!(back.flatten().map(|k| k.to_string()), Some(value));
    }
}
