//! Typed settings every mode shares, validated once at start-up (parse, don't validate): the
//! merchant that signs, and the shape of the generated workload.

use ledgerline_contracts::ids::{KeyId, MerchantId};
use ledgerline_contracts::money::Money;
use ledgerline_contracts::Currency;
use ledgerline_runtime::secret::Secret;

use crate::zipf::{self, Zipf};

/// Most accounts a workload spreads over (the Zipf table's limit).
pub const ACCOUNTS_MAX: u32 = zipf::RANKS_MAX as u32;

/// Shortest accepted signing secret, in bytes: the services require 32 too.
pub const SECRET_BYTES_MIN: usize = 32;

/// Why the settings were refused. Each message names the flag at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `--merchant-id` is not a valid merchant id.
    #[error("--merchant-id: {0}")]
    MerchantId(String),
    /// `--key-id` is not a valid key id.
    #[error("--key-id: {0}")]
    KeyId(String),
    /// No secret, or one too short. The secret itself is never shown.
    #[error("the signing secret (LOADTEST_SECRET or --secret) must be at least {SECRET_BYTES_MIN} bytes")]
    Secret,
    /// `--currency` is not a known ISO-4217 code.
    #[error("--currency: unknown currency {0:?}")]
    Currency(String),
    /// An amount bound does not parse in the currency's scale, or the range is empty.
    #[error("{flag}: {detail}")]
    Amount {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Any other value out of range.
    #[error("{flag}: {detail}")]
    Range {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The merchant whose key signs every request. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct Merchant {
    /// `X-Merchant-Id`.
    pub id: MerchantId,
    /// The key id in `X-Signature: keyId=…`.
    pub key_id: KeyId,
    secret: Secret<String>,
}

impl Merchant {
    /// Validates the three parts of a merchant's credentials.
    pub fn new(id: &str, key_id: &str, secret: Secret<String>) -> Result<Merchant, ConfigError> {
        let id = MerchantId::parse(id).map_err(|e| ConfigError::MerchantId(e.to_string()))?;
        let key_id = KeyId::parse(key_id).map_err(|e| ConfigError::KeyId(e.to_string()))?;
        if secret.expose().len() < SECRET_BYTES_MIN {
            return Err(ConfigError::Secret);
        }
        Ok(Merchant { id, key_id, secret })
    }

    /// The secret's bytes, for the HMAC (the only place it is read).
    pub fn secret_bytes(&self) -> &[u8] {
        self.secret.expose().as_bytes()
    }
}

/// How accounts are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Skew {
    /// Every account equally likely.
    Uniform,
    /// Rank `k` with probability ∝ `1 / k^exponent` (account `0` is the hottest).
    Zipf {
        /// The Zipf exponent (> 0).
        exponent: f64,
    },
}

/// What the generated transactions look like.
#[derive(Debug, Clone)]
pub struct Workload {
    /// How many distinct accounts (`<prefix>000000` …).
    pub accounts: u32,
    /// Account id prefix; the index follows, zero-padded to 6 digits.
    pub account_prefix: String,
    /// Uniform or Zipfian account choice.
    pub skew: Skew,
    /// Share of debits, in percent (the rest are credits).
    pub debit_percent: u8,
    /// Smallest amount, in minor units (> 0).
    pub amount_min_minor: i64,
    /// Largest amount, in minor units (≥ the smallest).
    pub amount_max_minor: i64,
    /// The currency of every transaction.
    pub currency: Currency,
    /// Seed of every random choice; a run with the same seed generates the same bodies.
    pub seed: u64,
    /// The Zipf table when `skew` is Zipfian (built once, shared).
    zipf: Option<std::sync::Arc<Zipf>>,
}

/// The raw workload options, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Distinct accounts.
    pub accounts: u32,
    /// Account id prefix.
    pub account_prefix: String,
    /// `uniform` or `zipf`.
    pub skew: SkewKind,
    /// Zipf exponent (used with `zipf`).
    pub zipf_exponent: f64,
    /// Share of debits, percent.
    pub debit_percent: u8,
    /// Smallest amount, a decimal string in the currency's scale.
    pub amount_min: String,
    /// Largest amount, a decimal string in the currency's scale.
    pub amount_max: String,
    /// ISO-4217 code.
    pub currency: String,
    /// Seed.
    pub seed: u64,
}

/// The skew names accepted on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SkewKind {
    /// Every account equally likely.
    Uniform,
    /// Zipfian hot accounts (`--zipf-exponent`).
    Zipf,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            accounts: 1_000,
            account_prefix: "lt-acc-".into(),
            skew: SkewKind::Uniform,
            zipf_exponent: 1.0,
            debit_percent: 30,
            amount_min: "1.00".into(),
            amount_max: "500.00".into(),
            currency: "EUR".into(),
            seed: 1,
        }
    }
}

impl Workload {
    /// Validates `spec` and builds the sampler tables.
    pub fn from_spec(spec: &WorkloadSpec) -> Result<Workload, ConfigError> {
        if spec.accounts == 0 || spec.accounts > ACCOUNTS_MAX {
            return Err(ConfigError::Range {
                flag: "--accounts",
                detail: format!("must be within 1..={ACCOUNTS_MAX}, got {}", spec.accounts),
            });
        }
        // The prefix plus 6+ digits must stay a valid AccountId (64 chars of [A-Za-z0-9._:-]).
        let longest = format!("{}{:06}", spec.account_prefix, spec.accounts - 1);
        ledgerline_contracts::AccountId::parse(&longest).map_err(|e| ConfigError::Range {
            flag: "--account-prefix",
            detail: e.to_string(),
        })?;
        if spec.debit_percent > 100 {
            return Err(ConfigError::Range {
                flag: "--debit-percent",
                detail: format!("must be within 0..=100, got {}", spec.debit_percent),
            });
        }
        let currency = Currency::parse(&spec.currency)
            .map_err(|_| ConfigError::Currency(spec.currency.clone()))?;
        let amount = |flag: &'static str, value: &str| {
            Money::parse(value, currency)
                .map(|m| m.minor())
                .map_err(|e| ConfigError::Amount {
                    flag,
                    detail: format!("{value:?} is not a positive {currency:?} amount: {e}"),
                })
        };
        let amount_min_minor = amount("--amount-min", &spec.amount_min)?;
        let amount_max_minor = amount("--amount-max", &spec.amount_max)?;
        if amount_max_minor < amount_min_minor {
            return Err(ConfigError::Amount {
                flag: "--amount-max",
                detail: "must not be below --amount-min".into(),
            });
        }
        let (skew, zipf) = match spec.skew {
            SkewKind::Uniform => (Skew::Uniform, None),
            SkewKind::Zipf => {
                let table = Zipf::new(spec.accounts as usize, spec.zipf_exponent).map_err(|e| {
                    ConfigError::Range {
                        flag: "--zipf-exponent",
                        detail: e.to_string(),
                    }
                })?;
                (
                    Skew::Zipf {
                        exponent: spec.zipf_exponent,
                    },
                    Some(std::sync::Arc::new(table)),
                )
            }
        };
        Ok(Workload {
            accounts: spec.accounts,
            account_prefix: spec.account_prefix.clone(),
            skew,
            debit_percent: spec.debit_percent,
            amount_min_minor,
            amount_max_minor,
            currency,
            seed: spec.seed,
            zipf,
        })
    }

    /// The Zipf table, when the skew is Zipfian.
    pub fn zipf(&self) -> Option<&Zipf> {
        self.zipf.as_deref()
    }

    /// The account id of 0-based index `index`.
    pub fn account_id(&self, index: u32) -> String {
        debug_assert!(index < self.accounts);
        format!("{}{index:06}", self.account_prefix)
    }
}

/// A positive count parsed from a flag, with its unit in the flag name.
pub fn ensure_positive(flag: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(ConfigError::Range {
            flag,
            detail: "must be > 0".into(),
        })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret<String> {
        Secret::new(s.to_string())
    }

    #[test]
    fn a_merchant_never_shows_its_secret_in_debug_output() {
        let m = Merchant::new(
            "m1",
            "k1",
            secret("a-very-long-secret-of-at-least-32-bytes"),
        )
        .unwrap();
        let shown = format!("{m:?}");
        assert!(!shown.contains("a-very-long-secret"), "{shown}");
        assert_eq!(m.secret_bytes(), b"a-very-long-secret-of-at-least-32-bytes");
    }

    #[test]
    fn a_short_secret_or_a_bad_merchant_id_is_refused() {
        assert_eq!(
            Merchant::new("m1", "k1", secret("short")).unwrap_err(),
            ConfigError::Secret
        );
        assert!(matches!(
            Merchant::new("m 1", "k1", secret(&"x".repeat(40))),
            Err(ConfigError::MerchantId(_))
        ));
        assert!(matches!(
            Merchant::new("m1", "k,1", secret(&"x".repeat(40))),
            Err(ConfigError::KeyId(_))
        ));
    }

    #[test]
    fn amounts_are_parsed_in_the_currency_scale_into_minor_units() {
        let spec = WorkloadSpec {
            amount_min: "0.05".into(),
            amount_max: "12.50".into(),
            ..WorkloadSpec::default()
        };
        let w = Workload::from_spec(&spec).unwrap();
        assert_eq!((w.amount_min_minor, w.amount_max_minor), (5, 1_250));

        let yen = WorkloadSpec {
            currency: "JPY".into(),
            amount_min: "1".into(),
            amount_max: "1.5".into(),
            ..WorkloadSpec::default()
        };
        assert!(matches!(
            Workload::from_spec(&yen),
            Err(ConfigError::Amount {
                flag: "--amount-max",
                ..
            })
        ));
    }

    #[test]
    fn an_empty_amount_range_or_an_out_of_range_share_is_refused() {
        let inverted = WorkloadSpec {
            amount_min: "5.00".into(),
            amount_max: "4.00".into(),
            ..WorkloadSpec::default()
        };
        assert!(Workload::from_spec(&inverted).is_err());
        let share = WorkloadSpec {
            debit_percent: 101,
            ..WorkloadSpec::default()
        };
        assert!(Workload::from_spec(&share).is_err());
        let none = WorkloadSpec {
            accounts: 0,
            ..WorkloadSpec::default()
        };
        assert!(Workload::from_spec(&none).is_err());
    }

    #[test]
    fn a_zipf_workload_builds_its_table_and_a_bad_exponent_is_refused() {
        let spec = WorkloadSpec {
            skew: SkewKind::Zipf,
            zipf_exponent: 1.2,
            accounts: 10,
            ..WorkloadSpec::default()
        };
        let w = Workload::from_spec(&spec).unwrap();
        assert_eq!(w.zipf().map(Zipf::len), Some(10));
        let bad = WorkloadSpec {
            zipf_exponent: -1.0,
            ..spec
        };
        assert!(matches!(
            Workload::from_spec(&bad),
            Err(ConfigError::Range {
                flag: "--zipf-exponent",
                ..
            })
        ));
    }

    #[test]
    fn account_ids_are_the_prefix_and_a_zero_padded_index() {
        let w = Workload::from_spec(&WorkloadSpec::default()).unwrap();
        assert_eq!(w.account_id(7), "lt-acc-000007");
    }
}
