//! Identifiers. Each is a newtype that can only hold a valid value: string ids are checked for
//! length and alphabet when parsed (and when deserialized), UUID ids are derived by the rules of
//! design §3.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The namespace for [`TransactionId::derive`] in local and test deployments:
/// `6f1c2a4e-8b3d-4c5e-9a7f-1d2e3f405162`.
///
/// Production deployments configure their own, so two deployments never mint the same
/// transaction id for the same merchant and key. Changing it on a live deployment changes every
/// derived id, so retries across the change would not be recognised.
pub const DEFAULT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c2a4e_8b3d_4c5e_9a7f_1d2e3f405162);

/// Why a string identifier was refused. `what` names the identifier (e.g. `"merchant_id"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which identifier.
        what: &'static str,
    },
    /// The identifier is longer than allowed.
    #[error("{what} is longer than {max} characters")]
    TooLong {
        /// Which identifier.
        what: &'static str,
        /// The maximum length.
        max: usize,
    },
    /// The identifier contains a character outside its alphabet.
    #[error("{what} contains a character that is not allowed")]
    InvalidChar {
        /// Which identifier.
        what: &'static str,
    },
}

/// Checks length (in bytes, which equals characters for the ASCII alphabets used here) and
/// alphabet. Length is checked first so a huge input is refused without scanning it.
fn check(value: &str, what: &'static str, max: usize, extra: &[u8]) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        Ok(())
    } else {
        Err(IdError::InvalidChar { what })
    }
}

/// Declares a validated string identifier.
macro_rules! string_id {
    (
        $(#[$doc:meta])*
        $name:ident, what = $what:literal, max = $max:literal, extra = $extra:literal
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The name used in error messages and API problem details.
            pub const WHAT: &'static str = $what;
            /// The maximum length in characters.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check(value, $what, $max, $extra)?;
                Ok(Self(value.to_owned()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A merchant: 1–64 characters of `[A-Za-z0-9_-]`.
    MerchantId, what = "merchant_id", max = 64, extra = b"_-"
);
string_id!(
    /// A merchant's account (the Kafka partition key): 1–64 characters of `[A-Za-z0-9._:-]`.
    AccountId, what = "account_id", max = 64, extra = b"._:-"
);
string_id!(
    /// A merchant-chosen idempotency key (design §4): 1–255 characters of `[A-Za-z0-9._:-]`.
    IdempotencyKey, what = "idempotency_key", max = 255, extra = b"._:-"
);
string_id!(
    /// A signing key's id, as sent in `X-Signature: keyId=…`: 1–64 characters of
    /// `[A-Za-z0-9._-]`. Commas and `=` are excluded so the header stays unambiguous.
    KeyId, what = "key_id", max = 64, extra = b"._-"
);

/// Declares a UUID identifier, displayed and serialized as a hyphenated lowercase string.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID (e.g. one read back from a store).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(value).map(Self)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

uuid_id!(
    /// A transaction: UUIDv5 of the merchant and its idempotency key, so a retried request gets
    /// the same id at ingress without a lookup (design §3).
    TransactionId
);
uuid_id!(
    /// One HTTP request attempt accepted by ingress: a UUIDv7.
    RequestId
);
uuid_id!(
    /// One Kafka event: a UUIDv7. Stores deduplicate on it.
    EventId
);

impl TransactionId {
    /// UUIDv5(`namespace`, `merchant` + `"\n"` + `key`). The newline cannot occur in either id,
    /// so distinct (merchant, key) pairs never produce the same name.
    pub fn derive(namespace: Uuid, merchant: &MerchantId, key: &IdempotencyKey) -> TransactionId {
        let name = format!("{merchant}\n{key}");
        TransactionId(Uuid::new_v5(&namespace, name.as_bytes()))
    }
}

impl RequestId {
    /// A fresh random UUIDv7 (time-ordered, so ids sort roughly by arrival).
    pub fn new_v7() -> RequestId {
        RequestId(Uuid::now_v7())
    }
}

impl EventId {
    /// A fresh random UUIDv7.
    pub fn new_v7() -> EventId {
        EventId(Uuid::now_v7())
    }

    /// A deterministic UUIDv7: timestamp `unix_ms` (low 48 bits) and the 74 random bits taken
    /// from SHA-256(`seed`).
    ///
    /// Why: a processor that re-emits a decision after a crash must produce the same `event_id`
    /// as the first attempt, so downstream stores (which dedupe on it) keep one copy. Callers
    /// pass a seed that names the logical event (e.g. request id + event type) and a timestamp
    /// that is itself reproducible (e.g. the decision time already recorded).
    pub fn derive(unix_ms: u64, seed: &[u8]) -> EventId {
        let digest = Sha256::digest(seed);
        let mut random = [0_u8; 10];
        random.copy_from_slice(&digest[..10]);
        EventId(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
    }
}

#[cfg(test)]
mod tests;
