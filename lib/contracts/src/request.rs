//! The body of `POST /v1/transactions`, parsed into a [`CreateTransaction`] (parse, don't
//! validate): once this returns `Ok`, every field holds a valid value.
//!
//! ```json
//! {"account_id": "acc_1", "amount": "10.50", "currency": "EUR", "type": "credit",
//!  "description": "optional", "metadata": {"order": "1001"}, "callback_url": "https://…"}
//! ```
//!
//! Fields are checked in the order `account_id`, `currency`, `amount`, `type`, `description`,
//! `metadata`, `callback_url` (after refusing unknown fields), and the first problem is
//! reported; `currency` comes before `amount` because the amount's scale depends on it.
//! `null` counts as absent: a required field that is `null` is missing.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::callback_url;
use crate::currency::Currency;
use crate::events::TxnType;
use crate::ids::AccountId;
use crate::money::{Money, MoneyError};
use crate::strict_json;

/// Longest `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// Most `metadata` entries.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest `metadata` key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest `metadata` value, in characters.
pub const MAX_METADATA_VALUE_CHARS: usize = 256;
/// Longest `callback_url`, in characters.
pub const MAX_CALLBACK_URL_CHARS: usize = callback_url::MAX_CALLBACK_URL_LEN;

const FIELDS: [&str; 7] = [
    "account_id",
    "amount",
    "currency",
    "type",
    "description",
    "metadata",
    "callback_url",
];

/// Why a request body was refused. All are HTTP 400 except [`RequestError::Unprocessable`],
/// which is 422: the body is well-formed but the amount or currency cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a JSON object, or an object with a duplicated key. The message never
    /// echoes the body.
    #[error("request body is malformed: {0}")]
    MalformedJson(String),
    /// A required field is absent or `null`.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field this API does not define (name cut to 64 characters).
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// Wrong JSON type, bad characters, too long, bad URL, bad `type` value, malformed amount.
    #[error("invalid field `{field}`: {detail}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong, for the API response.
        detail: String,
    },
    /// Zero, negative, over-scale or overflowing amount, or unknown currency.
    #[error("unprocessable field `{field}`: {reason}")]
    Unprocessable {
        /// `amount` or `currency`.
        field: &'static str,
        /// The money rule that failed.
        reason: MoneyError,
    },
}

impl RequestError {
    /// Whether this is HTTP 422 (semantically unacceptable) rather than 400 (malformed).
    pub fn is_unprocessable(&self) -> bool {
        matches!(self, RequestError::Unprocessable { .. })
    }

    /// The field at fault, if the error concerns one.
    pub fn field(&self) -> Option<&str> {
        match self {
            RequestError::MalformedJson(_) => None,
            RequestError::MissingField(field) => Some(field),
            RequestError::UnknownField(field) => Some(field),
            RequestError::InvalidField { field, .. } => Some(field),
            RequestError::Unprocessable { field, .. } => Some(field),
        }
    }

    /// A stable machine-readable code: the money reason code for 422s (e.g. `AMOUNT_ZERO`),
    /// otherwise `MALFORMED_JSON`, `MISSING_FIELD`, `UNKNOWN_FIELD` or `INVALID_FIELD`.
    pub fn reason_code(&self) -> &'static str {
        match self {
            RequestError::MalformedJson(_) => "MALFORMED_JSON",
            RequestError::MissingField(_) => "MISSING_FIELD",
            RequestError::UnknownField(_) => "UNKNOWN_FIELD",
            RequestError::InvalidField { .. } => "INVALID_FIELD",
            RequestError::Unprocessable { reason, .. } => reason.reason_code(),
        }
    }
}

/// A validated `POST /v1/transactions` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTransaction {
    /// The account to credit or debit.
    pub account_id: AccountId,
    /// The amount (positive, in scale) and currency.
    pub money: Money,
    /// Credit or debit.
    pub txn_type: TxnType,
    /// Free text, at most 256 characters.
    pub description: Option<String>,
    /// At most 16 string pairs.
    pub metadata: BTreeMap<String, String>,
    /// An `https://` URL for the outcome.
    pub callback_url: Option<String>,
}

impl CreateTransaction {
    /// The canonical JSON encoding that [`fingerprint`](Self::fingerprint) hashes:
    ///
    /// ```text
    /// {"account_id":"acc_1","amount":"10.50","currency":"EUR","type":"credit",
    ///  "description":null,"metadata":{"a":"1","b":"2"},"callback_url":null}
    /// ```
    /// (one line, no whitespace). Keys always in this order; `amount` at the currency's full
    /// scale; metadata keys sorted by their UTF-8 bytes; an absent optional is `null`. Strings
    /// escape only `"` as `\"`, `\` as `\\` and U+0000–U+001F as `\u00xx` (lowercase hex);
    /// everything else is literal UTF-8. Written by hand rather than by a serializer so the
    /// bytes (and so every stored fingerprint) cannot change with a dependency's formatting.
    pub fn canonical_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        push_key(&mut out, "account_id");
        push_string(&mut out, self.account_id.as_str());
        out.push(',');
        push_key(&mut out, "amount");
        push_string(&mut out, &self.money.to_decimal_string());
        out.push(',');
        push_key(&mut out, "currency");
        push_string(&mut out, self.money.currency().code());
        out.push(',');
        push_key(&mut out, "type");
        push_string(&mut out, self.txn_type.as_str());
        out.push(',');
        push_key(&mut out, "description");
        push_optional(&mut out, self.description.as_deref());
        out.push(',');
        push_key(&mut out, "metadata");
        out.push('{');
        for (index, (key, value)) in self.metadata.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_key(&mut out, key);
            push_string(&mut out, value);
        }
        out.push('}');
        out.push(',');
        push_key(&mut out, "callback_url");
        push_optional(&mut out, self.callback_url.as_deref());
        out.push('}');
        out
    }

    /// Lowercase hex SHA-256 of [`canonical_json`](Self::canonical_json) (design §3): equal for
    /// requests that mean the same (`"10.5"` and `"10.50"` EUR), different for any semantic
    /// change.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

fn push_key(out: &mut String, key: &str) {
    push_string(out, key);
    out.push(':');
}

fn push_optional(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => push_string(out, value),
        None => out.push_str("null"),
    }
}

fn push_string(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{0}'..='\u{1f}' => {
                let byte = c as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[byte >> 4]));
                out.push(char::from(HEX[byte & 0xf]));
            }
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Parses and validates a `POST /v1/transactions` body.
pub fn parse_create_transaction(body: &[u8]) -> Result<CreateTransaction, RequestError> {
    let value = strict_json::from_slice(body).map_err(json_error)?;
    let Value::Object(object) = value else {
        return Err(RequestError::MalformedJson(
            "body must be a JSON object".to_owned(),
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RequestError::UnknownField(strict_json::truncated(unknown)));
    }

    let account_id = AccountId::parse(required_string(&object, "account_id")?)
        .map_err(|e| invalid("account_id", e.to_string()))?;
    let currency = Currency::parse(required_string(&object, "currency")?).map_err(|reason| {
        RequestError::Unprocessable {
            field: "currency",
            reason,
        }
    })?;
    let amount = match present(&object, "amount") {
        None => return Err(RequestError::MissingField("amount")),
        Some(Value::String(amount)) => amount,
        Some(_) => return Err(invalid("amount", "amount must be a decimal string")),
    };
    let money = Money::parse(amount, currency).map_err(|reason| match reason {
        MoneyError::Empty | MoneyError::InvalidFormat => invalid("amount", reason.to_string()),
        _ => RequestError::Unprocessable {
            field: "amount",
            reason,
        },
    })?;
    let txn_type = TxnType::parse(required_string(&object, "type")?)
        .ok_or_else(|| invalid("type", "must be \"credit\" or \"debit\""))?;
    let description = optional_string(&object, "description")?
        .map(|text| checked_text("description", text, MAX_DESCRIPTION_CHARS))
        .transpose()?;
    let metadata = parse_metadata(present(&object, "metadata"))?;
    let callback_url = optional_string(&object, "callback_url")?
        .map(|url| {
            callback_url::validate(url)
                .map(|()| url.to_owned())
                .map_err(|detail| invalid("callback_url", detail))
        })
        .transpose()?;

    Ok(CreateTransaction {
        account_id,
        money,
        txn_type,
        description,
        metadata,
        callback_url,
    })
}

fn json_error(error: serde_json::Error) -> RequestError {
    use serde_json::error::Category;
    let message = match error.classify() {
        // Our own duplicate-key message: names the key (truncated), not the body.
        Category::Data => error.to_string(),
        Category::Syntax | Category::Eof | Category::Io => format!(
            "body is not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        ),
    };
    RequestError::MalformedJson(message)
}

fn invalid(field: &'static str, detail: impl Into<String>) -> RequestError {
    RequestError::InvalidField {
        field,
        detail: detail.into(),
    }
}

/// The field's value, treating `null` as absent.
fn present<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).filter(|value| !value.is_null())
}

fn required_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, RequestError> {
    optional_string(object, field)?.ok_or(RequestError::MissingField(field))
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, RequestError> {
    match present(object, field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// Free text: bounded in characters, and free of NUL, which PostgreSQL `text` cannot store (an
/// accepted request must never fail later in the ledger).
fn checked_text(field: &'static str, text: &str, max_chars: usize) -> Result<String, RequestError> {
    if text.chars().nth(max_chars).is_some() {
        return Err(invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(invalid(field, "must not contain NUL characters"));
    }
    Ok(text.to_owned())
}

fn parse_metadata(value: Option<&Value>) -> Result<BTreeMap<String, String>, RequestError> {
    let entries = match value {
        None => return Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(invalid("metadata", "must be an object of string values")),
    };
    if entries.len() > MAX_METADATA_ENTRIES {
        return Err(invalid(
            "metadata",
            format!("must have at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    let mut metadata = BTreeMap::new();
    for (key, value) in entries {
        let shown = strict_json::truncated(key);
        if key.is_empty() || key.chars().nth(MAX_METADATA_KEY_CHARS).is_some() {
            return Err(invalid(
                "metadata",
                format!("key {shown:?} must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
            ));
        }
        if key.contains('\0') {
            return Err(invalid(
                "metadata",
                format!("key {shown:?} must not contain NUL"),
            ));
        }
        let Value::String(text) = value else {
            return Err(invalid(
                "metadata",
                format!("value of {shown:?} must be a string"),
            ));
        };
        if text.chars().nth(MAX_METADATA_VALUE_CHARS).is_some() || text.contains('\0') {
            return Err(invalid(
                "metadata",
                format!(
                    "value of {shown:?} must be at most {MAX_METADATA_VALUE_CHARS} characters \
                     without NUL"
                ),
            ));
        }
        metadata.insert(key.clone(), text.clone());
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests;
