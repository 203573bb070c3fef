//! Request body parsing, error precedence, and the fingerprint's canonical form.

use proptest::prelude::*;
use serde_json::json;

use super::*;

const VALID: &str = r#"{"account_id":"acc_1","amount":"10.50","currency":"EUR","type":"credit"}"#;

fn parse_json(value: &Value) -> Result<CreateTransaction, RequestError> {
    parse_create_transaction(value.to_string().as_bytes())
}

fn with(field: &str, value: Value) -> Result<CreateTransaction, RequestError> {
    let mut body =
        json!({"account_id": "acc_1", "amount": "10.50", "currency": "EUR", "type": "credit"});
    body[field] = value;
    parse_json(&body)
}

fn fingerprint_of(body: &Value) -> Option<String> {
    parse_json(body).ok().map(|t| t.fingerprint())
}

#[test]
fn minimal_body_parses_into_typed_fields() {
    let parsed = parse_create_transaction(VALID.as_bytes());
    let parsed = parsed.as_ref().ok();
    assert_eq!(parsed.map(|t| t.account_id.as_str()), Some("acc_1"));
    assert_eq!(
        parsed.map(|t| (t.money.minor(), t.money.currency().code())),
        Some((1050, "EUR"))
    );
    assert_eq!(parsed.map(|t| t.txn_type), Some(TxnType::Credit));
    assert_eq!(
        parsed.map(|t| (t.description.is_none(), t.metadata.is_empty())),
        Some((true, true))
    );
}

#[test]
fn full_body_parses_all_optional_fields() {
    let body = json!({
        "account_id": "acc_1", "amount": "5", "currency": "JPY", "type": "debit",
        "description": "Café ☕", "metadata": {"order": "1001", "channel": "web"},
        "callback_url": "https://merchant.example/hooks"
    });
    let parsed = parse_json(&body);
    assert_eq!(parsed.as_ref().map(|t| t.money.minor()), Ok(5));
    assert_eq!(
        parsed.as_ref().ok().and_then(|t| t.description.as_deref()),
        Some("Café ☕")
    );
    assert_eq!(parsed.as_ref().map(|t| t.metadata.len()), Ok(2));
    assert!(parsed.is_ok_and(|t| t.callback_url.is_some()));
}

#[test]
fn non_json_and_non_objects_are_malformed() {
    for body in [
        &b""[..],
        b"not json",
        b"[1,2]",
        b"\"text\"",
        b"{\"a\":",
        b"\xff\xfe",
        b"null",
    ] {
        let error = parse_create_transaction(body);
        assert!(
            matches!(error, Err(RequestError::MalformedJson(_))),
            "{body:?}"
        );
        assert_eq!(error.map_err(|e| e.field().is_none()), Err(true));
    }
}

#[test]
fn malformed_json_message_does_not_echo_the_body() {
    let error = parse_create_transaction(b"{\"account_id\": secret-value}");
    let message = error
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string());
    assert!(!message.contains("secret-value"), "{message}");
}

#[test]
fn duplicated_field_is_malformed() {
    let body =
        br#"{"account_id":"acc_1","amount":"1","amount":"1000","currency":"EUR","type":"credit"}"#;
    assert!(matches!(
        parse_create_transaction(body),
        Err(RequestError::MalformedJson(_))
    ));
}

#[test]
fn unknown_field_is_named_and_truncated() {
    assert_eq!(
        with("amount_minor", json!(1050)),
        Err(RequestError::UnknownField("amount_minor".into()))
    );
    let long = "x".repeat(500);
    assert_eq!(
        with(&long, json!(1)),
        Err(RequestError::UnknownField("x".repeat(64)))
    );
}

#[test]
fn missing_or_null_required_fields_are_missing() {
    for field in ["account_id", "amount", "currency", "type"] {
        let mut body =
            json!({"account_id": "acc_1", "amount": "1", "currency": "EUR", "type": "credit"});
        if let Some(object) = body.as_object_mut() {
            object.remove(field);
        }
        assert_eq!(
            parse_json(&body),
            Err(RequestError::MissingField(field)),
            "{field}"
        );
        assert_eq!(
            with(field, Value::Null),
            Err(RequestError::MissingField(field)),
            "{field}"
        );
    }
}

#[test]
fn numeric_amount_is_a_bad_field() {
    let expected = Err(RequestError::InvalidField {
        field: "amount",
        detail: "amount must be a decimal string".into(),
    });
    assert_eq!(with("amount", json!(10.5)), expected);
    assert_eq!(with("amount", json!(10)), expected);
}

#[test]
fn malformed_amount_is_400_and_unacceptable_amount_is_422() {
    let error = with("amount", json!("1,50"));
    assert!(matches!(
        error,
        Err(RequestError::InvalidField {
            field: "amount",
            ..
        })
    ));
    assert!(error.is_err_and(|e| !e.is_unprocessable()));
    for (amount, reason) in [
        ("0.00", MoneyError::Zero),
        ("-5", MoneyError::Negative),
        ("1.234", MoneyError::TooManyDecimals { max: 2 }),
        ("99999999999999999999", MoneyError::Overflow),
    ] {
        let error = with("amount", json!(amount));
        assert_eq!(
            error,
            Err(RequestError::Unprocessable {
                field: "amount",
                reason
            }),
            "{amount}"
        );
        assert!(error.is_err_and(|e| e.is_unprocessable() && e.field() == Some("amount")));
    }
}

#[test]
fn unknown_currency_is_422_on_the_currency_field() {
    let error = with("currency", json!("XAU"));
    assert_eq!(
        error,
        Err(RequestError::Unprocessable {
            field: "currency",
            reason: MoneyError::UnknownCurrency
        })
    );
    assert_eq!(error.map_err(|e| e.reason_code()), Err("CURRENCY_UNKNOWN"));
    assert!(matches!(
        with("currency", json!(978)),
        Err(RequestError::InvalidField {
            field: "currency",
            ..
        })
    ));
}

#[test]
fn wrong_types_and_values_name_their_field() {
    let cases = [
        ("account_id", json!(42)),
        ("account_id", json!("acc 1")),
        ("account_id", json!("a".repeat(65))),
        ("type", json!("CREDIT")),
        ("type", json!("refund")),
        ("description", json!(5)),
        ("description", json!("d".repeat(257))),
        ("description", json!("nul\u{0}byte")),
        ("metadata", json!(["a"])),
        ("metadata", json!({"k": 1})),
        ("metadata", json!({"": "v"})),
        ("metadata", json!({"k".repeat(65): "v"})),
        ("metadata", json!({"k": "v".repeat(257)})),
        ("callback_url", json!("http://merchant.example/")),
        ("callback_url", json!("https://")),
        ("callback_url", json!(true)),
    ];
    for (field, value) in cases {
        let error = with(field, value.clone());
        assert!(
            matches!(&error, Err(RequestError::InvalidField { field: f, .. }) if *f == field),
            "{field} = {value}: {error:?}"
        );
    }
}

#[test]
fn limits_are_inclusive() {
    assert!(with("description", json!("d".repeat(256))).is_ok());
    assert!(with("description", json!("é".repeat(256))).is_ok());
    let sixteen: Map<String, Value> = (0..16).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert!(with("metadata", Value::Object(sixteen.clone())).is_ok());
    let mut seventeen = sixteen;
    seventeen.insert("k16".into(), json!("v"));
    assert!(with("metadata", Value::Object(seventeen)).is_err());
    assert!(with("metadata", json!({"k".repeat(64): "v".repeat(256)})).is_ok());
}

#[test]
fn null_optionals_are_absent() {
    let explicit = with("description", Value::Null);
    assert_eq!(explicit, parse_create_transaction(VALID.as_bytes()));
}

#[test]
fn same_meaning_gives_the_same_fingerprint() {
    let a = json!({"account_id": "acc_1", "amount": "10.5", "currency": "EUR", "type": "credit",
                   "metadata": {"b": "2", "a": "1"}});
    let b = json!({"metadata": {"a": "1", "b": "2"}, "type": "credit", "currency": "EUR",
                   "amount": "10.50", "account_id": "acc_1", "description": null});
    assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
    assert!(fingerprint_of(&a).is_some());
}

#[test]
fn canonical_json_is_the_documented_form() {
    let body = json!({"account_id": "acc_1", "amount": "10.5", "currency": "EUR", "type": "credit",
                      "description": "a\"b\\c\n\u{1}é", "metadata": {"b": "2", "a": "1"}});
    let canonical = parse_json(&body).map(|t| t.canonical_json());
    assert_eq!(
        canonical.as_deref(),
        Ok(
            r#"{"account_id":"acc_1","amount":"10.50","currency":"EUR","type":"credit","description":"a\"b\\c\u000a\u0001é","metadata":{"a":"1","b":"2"},"callback_url":null}"#
        )
    );
    // It is valid JSON that reads back to the same values.
    let reread = canonical
        .ok()
        .and_then(|c| serde_json::from_str::<Value>(&c).ok());
    assert_eq!(
        reread.map(|v| v["description"].clone()),
        Some(json!("a\"b\\c\n\u{1}é"))
    );
}

#[test]
fn fingerprint_is_lowercase_hex_sha256() {
    let fingerprint = fingerprint_of(&serde_json::from_str(VALID).unwrap_or_default());
    assert!(fingerprint.is_some_and(|f| f.len() == 64
        && f.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
}

#[test]
fn any_semantic_change_changes_the_fingerprint() {
    let base =
        json!({"account_id": "acc_1", "amount": "10.50", "currency": "EUR", "type": "credit"});
    let original = fingerprint_of(&base);
    for (field, value) in [
        ("account_id", json!("acc_2")),
        ("amount", json!("10.51")),
        ("currency", json!("USD")),
        ("type", json!("debit")),
        ("description", json!("")),
        ("metadata", json!({"a": ""})),
        ("callback_url", json!("https://merchant.example/")),
    ] {
        let mut changed = base.clone();
        changed[field] = value;
        let other = fingerprint_of(&changed);
        assert!(other.is_some(), "{field}");
        assert_ne!(other, original, "{field}");
    }
}

/// Text of `len` characters, any but NUL (mapped, not filtered, so no case is rejected).
fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), len).prop_map(|chars| {
        chars
            .into_iter()
            .map(|c| if c == '\0' { ' ' } else { c })
            .collect()
    })
}

prop_compose! {
    fn valid_body()(
        account in "[A-Za-z0-9._:-]{1,64}",
        minor in 1_i64..=i64::MAX,
        code in prop::sample::select(vec!["EUR", "JPY", "BHD", "CLF", "USD"]),
        credit in any::<bool>(),
        description in prop::option::of(text(0..257)),
        metadata in prop::collection::btree_map(text(1..65), text(0..257), 0..17),
        callback in prop::option::of("https://[a-z]{1,20}\\.example(:[1-9][0-9]{0,3})?/[a-z0-9/?=&%-]{0,40}"),
    ) -> (Value, i64, &'static str) {
        let currency = Currency::parse(code).unwrap_or(Currency::EUR);
        let body = json!({
            "account_id": account,
            "amount": crate::money::format_minor(minor, currency),
            "currency": code,
            "type": if credit { "credit" } else { "debit" },
            "description": description,
            "metadata": metadata,
            "callback_url": callback,
        });
        (body, minor, code)
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_create_transaction(&body);
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        fields in prop::collection::btree_map(
            prop::sample::select(FIELDS.to_vec()).prop_map(String::from),
            prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,40}".prop_map(Value::from),
                "[-0-9.]{0,25}".prop_map(Value::from),
            ],
            0..7,
        )
    ) {
        let body = Value::Object(fields.into_iter().collect());
        let _ = parse_json(&body);
    }

    #[test]
    fn valid_generated_bodies_round_trip((body, minor, code) in valid_body()) {
        let parsed = parse_json(&body);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        if let Ok(parsed) = parsed {
            prop_assert_eq!(parsed.money.minor(), minor);
            prop_assert_eq!(parsed.money.currency().code(), code);
            prop_assert_eq!(parsed.account_id.as_str(), body["account_id"].as_str().unwrap_or(""));
            prop_assert_eq!(parsed.description.as_deref(), body["description"].as_str());
            prop_assert_eq!(parsed.metadata.len(), body["metadata"].as_object().map_or(0, Map::len));
            prop_assert_eq!(parsed.callback_url.as_deref(), body["callback_url"].as_str());
            // The canonical form is itself a valid body with the same fingerprint.
            let again = parse_create_transaction(parsed.canonical_json().as_bytes());
            prop_assert_eq!(again.map(|t| t.fingerprint()), Ok(parsed.fingerprint()));
        }
    }
}
