//! JSON parsing that refuses duplicate object keys.
//!
//! `serde_json` keeps the last of two equal keys, so `{"amount":"1","amount":"1000"}` would be
//! read differently by us and by a proxy, a log viewer or a merchant's own tooling that keeps
//! the first. For a money request that ambiguity is refused outright.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// Longest key name echoed back in an error.
const MAX_ECHOED_KEY: usize = 64;

/// A JSON value with no duplicate keys at any depth.
pub(crate) struct StrictValue(pub(crate) Value);

/// Parses `bytes` as one JSON value, refusing duplicate keys. Nesting depth is bounded by
/// `serde_json`'s recursion limit, so hostile input cannot exhaust the stack.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

/// `name`, cut to at most [`MAX_ECHOED_KEY`] characters.
pub(crate) fn truncated(name: &str) -> String {
    name.chars().take(MAX_ECHOED_KEY).collect()
}

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // The value is only carried, never computed with; non-finite cannot come from JSON.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    truncated(&key)
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(from_slice(br#"{"a":1,"a":2}"#).is_err());
        assert!(from_slice(br#"{"m":{"k":"1","k":"2"}}"#).is_err());
        assert!(from_slice(br#"[{"k":1},{"k":2}]"#).is_ok());
    }

    #[test]
    fn values_match_serde_json() {
        let text = br#"{"a":[1,-2,3.5,true,null,"x\u00e9"],"b":{"c":{}}}"#;
        let ours = from_slice(text).ok();
        let theirs = serde_json::from_slice::<Value>(text).ok();
        assert!(ours.is_some());
        assert_eq!(ours, theirs);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(from_slice(deep.as_bytes()).is_err());
    }
}
