//! Golden fixtures: the JSON every service reads and writes. A change that breaks one of these
//! tests changes the wire format, which needs a schema decision, not a fixture update.

use ledgerline_contracts::events::{
    decode, encode, message_headers, Decision, DecodeError, Event, PostingResult,
    TransactionDecided, TransactionPosted, TransactionRequested, TxnType,
};
use serde_json::Value;

const REQUESTED: &str = include_str!("fixtures/transaction_requested.json");
const DECIDED: &str = include_str!("fixtures/transaction_decided.json");
const POSTED: &str = include_str!("fixtures/transaction_posted.json");

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Decodes `fixture`, re-encodes it, and checks the JSON value is unchanged.
fn round_trips<E: Event>(fixture: &str) -> Result<E, DecodeError> {
    let event = decode::<E>(fixture.as_bytes())?;
    let reencoded: Value = serde_json::from_slice(&encode(&event)).unwrap_or(Value::Null);
    assert_eq!(
        reencoded,
        json(fixture),
        "{} changed on re-encoding",
        E::EVENT_TYPE
    );
    Ok(event)
}

/// The fixture with one top-level field replaced (or removed when `value` is `None`).
fn edited(fixture: &str, field: &str, value: Option<Value>) -> Vec<u8> {
    let mut object = json(fixture);
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(value) => map.insert(field.to_owned(), value),
            None => map.remove(field),
        };
    }
    object.to_string().into_bytes()
}

#[test]
fn transaction_requested_fixture_round_trips() {
    let event = round_trips::<TransactionRequested>(REQUESTED);
    let event = event.as_ref().ok();
    assert_eq!(
        event.map(|e| (e.txn_type, e.amount_minor)),
        Some((TxnType::Credit, 150_075))
    );
    assert_eq!(event.map(|e| e.currency.code()), Some("EUR"));
    assert_eq!(event.map(|e| e.metadata.len()), Some(2));
}

#[test]
fn transaction_decided_fixture_round_trips() {
    let event = round_trips::<TransactionDecided>(DECIDED);
    let event = event.as_ref().ok();
    assert_eq!(event.map(|e| e.decision), Some(Decision::Duplicate));
    assert!(event.is_some_and(|e| e.original_request_id.is_some() && e.decided_at > e.received_at));
}

#[test]
fn transaction_posted_fixture_round_trips() {
    let event = round_trips::<TransactionPosted>(POSTED);
    let event = event.as_ref().ok();
    assert_eq!(event.map(|e| e.result), Some(PostingResult::Declined));
    assert_eq!(
        event.and_then(|e| e.reason_code.as_deref()),
        Some("INSUFFICIENT_FUNDS")
    );
    assert_eq!(
        event.map(|e| (e.currency.minor_units(), e.balance_after_minor)),
        Some((0, Some(1000)))
    );
}

#[test]
fn event_type_is_the_struct_name_and_headers_carry_it() {
    assert_eq!(TransactionRequested::EVENT_TYPE, "TransactionRequested");
    assert_eq!(TransactionDecided::EVENT_TYPE, "TransactionDecided");
    assert_eq!(TransactionPosted::EVENT_TYPE, "TransactionPosted");
    let event = decode::<TransactionPosted>(POSTED.as_bytes());
    let headers = event.map(|e| message_headers(&e).map(|(k, v)| format!("{k}={v}")));
    assert_eq!(
        headers,
        Ok([
            "event-type=TransactionPosted".to_owned(),
            "schema-version=1".to_owned(),
            "correlation-id=corr-91c0de".to_owned()
        ])
    );
}

#[test]
fn unknown_fields_are_ignored_for_minor_additions() {
    let body = edited(
        REQUESTED,
        "added_in_a_minor_version",
        Some(Value::from("x")),
    );
    assert!(decode::<TransactionRequested>(&body).is_ok());
}

#[test]
fn other_schema_versions_are_unsupported() {
    for version in [0_u64, 2, 65_536] {
        let body = edited(DECIDED, "schema_version", Some(Value::from(version)));
        let error = decode::<TransactionDecided>(&body);
        assert_eq!(error, Err(DecodeError::UnsupportedSchemaVersion(version)));
        assert_eq!(
            error.map_err(|e| e.reason_code()),
            Err("UNSUPPORTED_SCHEMA_VERSION")
        );
    }
}

#[test]
fn missing_or_non_numeric_schema_version_is_malformed() {
    for value in [
        None,
        Some(Value::from("1")),
        Some(Value::from(-1)),
        Some(Value::from(1.0)),
    ] {
        let body = edited(POSTED, "schema_version", value.clone());
        let error = decode::<TransactionPosted>(&body);
        assert!(
            matches!(error, Err(DecodeError::Malformed(_))),
            "{value:?}: {error:?}"
        );
    }
}

#[test]
fn missing_required_field_is_malformed() {
    for field in [
        "event_id",
        "amount_minor",
        "currency",
        "type",
        "received_at",
        "merchant_id",
    ] {
        let error = decode::<TransactionRequested>(&edited(REQUESTED, field, None));
        assert!(
            matches!(error, Err(DecodeError::Malformed(_))),
            "{field}: {error:?}"
        );
        assert_eq!(error.map_err(|e| e.reason_code()), Err("MALFORMED_EVENT"));
    }
}

#[test]
fn float_amount_is_malformed() {
    for amount in [serde_json::json!(1500.75), serde_json::json!(150075.0)] {
        let error = decode::<TransactionDecided>(&edited(DECIDED, "amount_minor", Some(amount)));
        assert!(matches!(error, Err(DecodeError::Malformed(_))), "{error:?}");
    }
}

#[test]
fn invalid_field_values_are_malformed() {
    let cases = [
        ("currency", Value::from("XAU")),
        ("account_id", Value::from("acc 1")),
        ("event_id", Value::from("not-a-uuid")),
        ("type", Value::from("CREDIT")),
        ("decision", Value::from("accepted")),
        ("decided_at", Value::from("2024-06-01 12:00:00")),
    ];
    for (field, value) in cases {
        let error = decode::<TransactionDecided>(&edited(DECIDED, field, Some(value)));
        assert!(
            matches!(error, Err(DecodeError::Malformed(_))),
            "{field}: {error:?}"
        );
    }
}

#[test]
fn non_positive_amount_is_invalid() {
    for amount in [0_i64, -1] {
        let error =
            decode::<TransactionPosted>(&edited(POSTED, "amount_minor", Some(amount.into())));
        assert!(
            matches!(error, Err(DecodeError::Invalid(_))),
            "{amount}: {error:?}"
        );
        assert_eq!(error.map_err(|e| e.reason_code()), Err("INVALID_EVENT"));
    }
}

#[test]
fn non_json_bytes_are_malformed() {
    for bytes in [
        &b""[..],
        b"\xff",
        b"[]",
        b"{\"schema_version\":1",
        b"{\"schema_version\":1} x",
    ] {
        let error = decode::<TransactionRequested>(bytes);
        assert!(
            matches!(error, Err(DecodeError::Malformed(_))),
            "{bytes:?}: {error:?}"
        );
    }
}

#[test]
fn one_event_type_does_not_decode_as_another() {
    // A message on the wrong topic fails loudly instead of being half-read.
    assert!(decode::<TransactionDecided>(REQUESTED.as_bytes()).is_err());
    assert!(decode::<TransactionRequested>(POSTED.as_bytes()).is_err());
}
