//! A wrapper that keeps secrets out of logs, `Debug` output and serialized settings dumps.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A secret value: its `Debug` and `Display` forms are always `[redacted]`, so logging a
/// settings struct (as services do at start-up, with `?settings`) can never leak it.
///
/// `Serialize` writes the real value: settings are layered by serializing the defaults and
/// merging files and the environment over them, and a redacted default would replace the real
/// one (a service started without `LEDGERLINE_REDIS__URL` would get `[redacted]` as its URL).
/// Nothing serializes settings for output except `--print-settings`, which prints defaults.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself. Call sites are the only places a secret is read; keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_secret_survives_a_serialization_round_trip() {
        let s = Secret::new("redis://127.0.0.1:6379/0".to_string());
        let back: Secret<String> =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.expose(), s.expose());
    }
}
