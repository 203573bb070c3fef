//! Money parsing and formatting: examples for each rule, then properties over all inputs.

use proptest::prelude::*;

use super::*;

fn eur(amount: &str) -> Result<i64, MoneyError> {
    Money::parse(amount, Currency::EUR).map(|m| m.minor())
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap_or(Currency::EUR)
}

#[test]
fn well_formed_amounts_become_minor_units() {
    assert_eq!(eur("1500.75"), Ok(150_075));
    assert_eq!(eur("10.5"), Ok(1050));
    assert_eq!(eur("10"), Ok(1000));
    assert_eq!(eur("0.50"), Ok(50));
    assert_eq!(eur("0.01"), Ok(1));
    assert_eq!(Money::parse("5", Currency::JPY).map(|m| m.minor()), Ok(5));
    assert_eq!(
        Money::parse("0.001", Currency::BHD).map(|m| m.minor()),
        Ok(1)
    );
    assert_eq!(
        Money::parse("1.2345", Currency::CLF).map(|m| m.minor()),
        Ok(12_345)
    );
}

#[test]
fn empty_amount_is_missing() {
    assert_eq!(eur(""), Err(MoneyError::Empty));
}

#[test]
fn negative_amount_is_named_negative() {
    assert_eq!(eur("-5"), Err(MoneyError::Negative));
    assert_eq!(eur("-0.001"), Err(MoneyError::Negative));
    assert_eq!(eur("-0"), Err(MoneyError::Negative));
}

#[test]
fn malformed_amounts_are_invalid_format() {
    // Each of these could be read more than one way, or is not a decimal at all.
    for amount in [
        "+5", " 5", "5 ", "5\n", "1e3", "1E3", ".5", "5.", "007", "00.50", "1,50", "1_000",
        "5.5.5", "-", "--5", "-abc", "abc", "0x10", "١٢", "5.0a", "NaN", "inf", "-.5",
    ] {
        assert_eq!(eur(amount), Err(MoneyError::InvalidFormat), "{amount:?}");
    }
}

#[test]
fn over_scale_amount_is_rejected() {
    assert_eq!(eur("1.234"), Err(MoneyError::TooManyDecimals { max: 2 }));
    assert_eq!(eur("1.000"), Err(MoneyError::TooManyDecimals { max: 2 }));
    assert_eq!(
        Money::parse("5.0", Currency::JPY),
        Err(MoneyError::TooManyDecimals { max: 0 })
    );
    assert_eq!(
        Money::parse("0.0001", Currency::BHD),
        Err(MoneyError::TooManyDecimals { max: 3 })
    );
}

#[test]
fn zero_amount_is_rejected() {
    for amount in ["0", "0.0", "0.00"] {
        assert_eq!(eur(amount), Err(MoneyError::Zero), "{amount:?}");
    }
    assert_eq!(Money::parse("0", Currency::JPY), Err(MoneyError::Zero));
}

#[test]
fn amounts_beyond_i64_overflow() {
    // i64::MAX is 9223372036854775807 minor units = 92233720368547758.07 EUR.
    assert_eq!(eur("92233720368547758.07"), Ok(i64::MAX));
    assert_eq!(eur("92233720368547758.08"), Err(MoneyError::Overflow));
    assert_eq!(eur("92233720368547759"), Err(MoneyError::Overflow));
    assert_eq!(eur("99999999999999999999999"), Err(MoneyError::Overflow));
    assert_eq!(
        Money::parse("9223372036854775807", Currency::JPY).map(|m| m.minor()),
        Ok(i64::MAX)
    );
    assert_eq!(
        Money::parse("9223372036854775808", Currency::JPY),
        Err(MoneyError::Overflow)
    );
    assert_eq!(eur(&"9".repeat(1000)), Err(MoneyError::Overflow));
    assert_eq!(eur(&"x".repeat(1000)), Err(MoneyError::InvalidFormat));
}

#[test]
fn from_minor_requires_a_positive_amount() {
    assert_eq!(Money::from_minor(0, Currency::EUR), Err(MoneyError::Zero));
    assert_eq!(
        Money::from_minor(-1, Currency::EUR),
        Err(MoneyError::Negative)
    );
    assert_eq!(
        Money::from_minor(1, Currency::EUR).map(|m| m.minor()),
        Ok(1)
    );
}

#[test]
fn decimal_string_is_always_full_scale() {
    let cases = [
        (150_075, "EUR", "1500.75"),
        (100, "EUR", "1.00"),
        (1, "EUR", "0.01"),
        (5, "JPY", "5"),
        (1, "BHD", "0.001"),
        (1000, "KWD", "1.000"),
        (12_345, "CLF", "1.2345"),
    ];
    for (minor, code, expected) in cases {
        let money = Money::from_minor(minor, currency(code));
        assert_eq!(
            money.map(|m| m.to_decimal_string()),
            Ok(expected.to_owned())
        );
    }
}

#[test]
fn balances_format_with_sign_and_zero() {
    assert_eq!(format_minor(-1250, Currency::EUR), "-12.50");
    assert_eq!(format_minor(0, Currency::EUR), "0.00");
    assert_eq!(format_minor(-5, Currency::JPY), "-5");
    assert_eq!(
        format_minor(i64::MIN, Currency::EUR),
        "-92233720368547758.08"
    );
    assert_eq!(
        format_minor(i64::MAX, Currency::BHD),
        "9223372036854775.807"
    );
}

#[test]
fn reason_codes_are_stable() {
    let codes = [
        (MoneyError::Empty, "AMOUNT_MISSING"),
        (MoneyError::InvalidFormat, "AMOUNT_INVALID"),
        (MoneyError::Negative, "AMOUNT_NEGATIVE"),
        (MoneyError::Zero, "AMOUNT_ZERO"),
        (MoneyError::TooManyDecimals { max: 2 }, "AMOUNT_TOO_PRECISE"),
        (MoneyError::Overflow, "AMOUNT_OVERFLOW"),
        (MoneyError::UnknownCurrency, "CURRENCY_UNKNOWN"),
    ];
    for (error, code) in codes {
        assert_eq!(error.reason_code(), code);
    }
}

#[test]
fn money_serializes_as_minor_and_currency() {
    let money = Money::from_minor(150_075, Currency::EUR);
    let json = money.ok().and_then(|m| serde_json::to_string(&m).ok());
    assert_eq!(
        json.as_deref(),
        Some(r#"{"minor":150075,"currency":"EUR"}"#)
    );
    let back: Result<Money, _> = serde_json::from_str(r#"{"minor":150075,"currency":"EUR"}"#);
    assert_eq!(back.ok(), money.ok());
    assert!(serde_json::from_str::<Money>(r#"{"minor":0,"currency":"EUR"}"#).is_err());
    assert!(serde_json::from_str::<Money>(r#"{"minor":1.5,"currency":"EUR"}"#).is_err());
}

fn any_currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec![
        "EUR", "USD", "JPY", "KRW", "BHD", "KWD", "CLF", "UYW", "ISK",
    ])
    .prop_map(currency)
}

proptest! {
    #[test]
    fn decimal_string_parses_back_to_the_same_money(minor in 1..=i64::MAX, cur in any_currency()) {
        let money = Money::from_minor(minor, cur);
        prop_assert!(money.is_ok());
        if let Ok(money) = money {
            prop_assert_eq!(Money::parse(&money.to_decimal_string(), cur), Ok(money));
        }
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics(amount in "\\PC{0,64}", cur in any_currency()) {
        let _ = Money::parse(&amount, cur);
    }

    #[test]
    fn parsing_numeric_looking_strings_never_panics(amount in "[-+0-9.eE ]{0,48}", cur in any_currency()) {
        if let Ok(money) = Money::parse(&amount, cur) {
            prop_assert!(money.minor() > 0);
        }
    }

    #[test]
    fn more_decimals_than_allowed_always_fail(
        integer in 0_u32..1_000_000,
        extra in 1_usize..6,
        cur in any_currency(),
    ) {
        let digits = usize::from(cur.minor_units()) + extra;
        let amount = format!("{integer}.{}", "1".repeat(digits));
        prop_assert_eq!(
            Money::parse(&amount, cur),
            Err(MoneyError::TooManyDecimals { max: cur.minor_units() })
        );
    }

    #[test]
    fn trailing_zeros_within_scale_do_not_change_the_value(minor in 1_i64..1_000_000_000) {
        let short = format_minor(minor * 10, Currency::EUR);
        let trimmed = short.trim_end_matches('0');
        prop_assert_eq!(
            Money::parse(trimmed.trim_end_matches('.'), Currency::EUR).map(|m| m.minor()),
            Ok(minor * 10)
        );
    }

    #[test]
    fn leading_minus_on_a_valid_amount_is_negative(minor in 1..=i64::MAX, cur in any_currency()) {
        let text = format!("-{}", format_minor(minor, cur));
        prop_assert_eq!(Money::parse(&text, cur), Err(MoneyError::Negative));
    }
}
