//! Money: a positive amount of minor units in one currency (design §6). Never a float.
//!
//! The API carries amounts as decimal strings (`"1500.75"`) in the currency's own scale; inside
//! the pipeline an amount is an `i64` of minor units (`150075`) plus the currency. Parsing is
//! strict on purpose: an amount a human could read two ways (`"1,5"`, `"1e3"`, `".5"`, `"007"`)
//! is refused rather than guessed at.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::currency::Currency;

/// Longest amount string looked at. A valid amount is at most 19 integer digits, a point and 4
/// fraction digits, so anything longer overflows anyway; the cap bounds the work per request.
pub const MAX_AMOUNT_LEN: usize = 40;

/// Why an amount (or its currency) was refused. Each variant has a stable
/// [`reason_code`](MoneyError::reason_code) that APIs and events report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MoneyError {
    /// The amount string is empty.
    #[error("amount is empty")]
    Empty,
    /// Not a plain decimal: only digits and at most one '.' with digits on both sides, no sign,
    /// no whitespace, no exponent, no leading zeros.
    #[error("amount must be a plain decimal string such as \"10.50\"")]
    InvalidFormat,
    /// The amount is negative; a transaction's direction is given by its type instead.
    #[error("amount must not be negative")]
    Negative,
    /// The amount is zero.
    #[error("amount must be greater than zero")]
    Zero,
    /// More fraction digits than the currency's minor unit allows.
    #[error("amount has more than {max} decimal places for its currency")]
    TooManyDecimals {
        /// The currency's minor-unit exponent.
        max: u8,
    },
    /// The amount does not fit in an `i64` of minor units.
    #[error("amount is too large")]
    Overflow,
    /// The currency is not an active ISO-4217 code with a minor unit.
    #[error("currency is not a supported ISO-4217 code")]
    UnknownCurrency,
}

impl MoneyError {
    /// A stable machine-readable code for APIs, events and metrics labels.
    pub fn reason_code(&self) -> &'static str {
        match self {
            MoneyError::Empty => "AMOUNT_MISSING",
            MoneyError::InvalidFormat => "AMOUNT_INVALID",
            MoneyError::Negative => "AMOUNT_NEGATIVE",
            MoneyError::Zero => "AMOUNT_ZERO",
            MoneyError::TooManyDecimals { .. } => "AMOUNT_TOO_PRECISE",
            MoneyError::Overflow => "AMOUNT_OVERFLOW",
            MoneyError::UnknownCurrency => "CURRENCY_UNKNOWN",
        }
    }
}

/// A positive amount of minor units in one currency: `Money` for 1500.75 EUR holds `150075`.
///
/// Only [`Money::parse`], [`Money::from_minor`] and validated deserialization build one, so a
/// `Money` is never zero or negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// Parses an API decimal string in `currency`'s scale (see the module docs for the grammar).
    ///
    /// A leading `-` on an otherwise well-formed amount is [`MoneyError::Negative`]; every other
    /// shape error is [`MoneyError::InvalidFormat`].
    pub fn parse(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        if amount.is_empty() {
            return Err(MoneyError::Empty);
        }
        if let Some(magnitude) = amount.strip_prefix('-') {
            // Report "negative" only when the rest is a number; "-abc" is just malformed.
            return match parse_unsigned(magnitude, currency) {
                Err(MoneyError::Empty | MoneyError::InvalidFormat | MoneyError::Negative) => {
                    Err(MoneyError::InvalidFormat)
                }
                _ => Err(MoneyError::Negative),
            };
        }
        let minor = parse_unsigned(amount, currency)?;
        Money::from_minor(minor, currency)
    }

    /// Wraps a count of minor units; it must be greater than zero.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        match minor {
            m if m > 0 => Ok(Money { minor, currency }),
            0 => Err(MoneyError::Zero),
            _ => Err(MoneyError::Negative),
        }
    }

    /// The amount in minor units (always > 0).
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount at the currency's full scale: EUR 150075 → `"1500.75"`, EUR 100 → `"1.00"`,
    /// JPY 5 → `"5"`, BHD 1 → `"0.001"`. [`Money::parse`] reads it back to the same value.
    pub fn to_decimal_string(&self) -> String {
        format_minor(self.minor, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            minor: i64,
            currency: Currency,
        }
        let raw = Raw::deserialize(deserializer)?;
        Money::from_minor(raw.minor, raw.currency).map_err(serde::de::Error::custom)
    }
}

/// Formats any count of minor units (zero and negative included, e.g. a balance) at the
/// currency's full scale: `-1250` EUR → `"-12.50"`, `0` EUR → `"0.00"`.
pub fn format_minor(minor: i64, currency: Currency) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    // unsigned_abs: i64::MIN has no positive i64 counterpart.
    let magnitude = minor.unsigned_abs();
    let exponent = u32::from(currency.minor_units());
    if exponent == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10_u64.pow(exponent);
    let width = usize::from(currency.minor_units());
    format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
}

/// Parses an unsigned decimal into minor units without judging zero.
fn parse_unsigned(amount: &str, currency: Currency) -> Result<i64, MoneyError> {
    if amount.is_empty() {
        return Err(MoneyError::Empty);
    }
    if amount.len() > MAX_AMOUNT_LEN {
        let numeric = amount.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        return Err(if numeric {
            MoneyError::Overflow
        } else {
            MoneyError::InvalidFormat
        });
    }
    let (integer, fraction) = match amount.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (amount, None),
    };
    if !is_digits(integer) || (integer.len() > 1 && integer.starts_with('0')) {
        return Err(MoneyError::InvalidFormat);
    }
    let fraction = fraction.unwrap_or("");
    if amount.contains('.') && !is_digits(fraction) {
        // Covers "5.", "5.x" and a second '.'.
        return Err(MoneyError::InvalidFormat);
    }
    let max = currency.minor_units();
    if fraction.len() > usize::from(max) {
        return Err(MoneyError::TooManyDecimals { max });
    }

    let scale = 10_i64.pow(u32::from(max));
    let whole = digits_value(integer)?
        .checked_mul(scale)
        .ok_or(MoneyError::Overflow)?;
    // Right-pad the fraction to full scale: "5" at exponent 2 is 50 minor units.
    // Cannot underflow (the length was checked against `max` above); checked all the same.
    let padding = u32::try_from(fraction.len())
        .ok()
        .and_then(|len| u32::from(max).checked_sub(len))
        .ok_or(MoneyError::Overflow)?;
    let part = digits_value(fraction)?
        .checked_mul(10_i64.pow(padding))
        .ok_or(MoneyError::Overflow)?;
    whole.checked_add(part).ok_or(MoneyError::Overflow)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The value of a run of ASCII digits (the empty run is 0), with checked arithmetic.
fn digits_value(digits: &str) -> Result<i64, MoneyError> {
    digits.bytes().try_fold(0_i64, |acc, b| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(i64::from(b - b'0')))
            .ok_or(MoneyError::Overflow)
    })
}

#[cfg(test)]
mod tests;
