//! Transaction bodies and idempotency keys, generated from the [`Workload`] settings.
//!
//! Everything here is pure and seeded: the same seed and stream id produce the same sequence of
//! bodies, so a run can be repeated. Keys embed a run id, so two runs never share a key.

use ledgerline_contracts::events::TxnType;
use ledgerline_contracts::money::format_minor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::config::{Skew, Workload};

/// One generated transaction: what its body says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnSpec {
    /// The account.
    pub account_id: String,
    /// The amount in minor units (> 0).
    pub amount_minor: i64,
    /// `credit` or `debit`.
    #[serde(rename = "type")]
    pub txn_type: TxnType,
    /// ISO-4217 code.
    pub currency: String,
}

impl TxnSpec {
    /// The exact JSON body bytes to send (and sign): fields in a fixed order, the amount as a
    /// decimal string at the currency's scale, no whitespace.
    pub fn body(&self) -> String {
        // Account ids come from the validated workload alphabet and currencies from the ISO
        // table, so nothing here needs JSON escaping.
        let currency = ledgerline_contracts::Currency::parse(&self.currency)
            .expect("a generated spec always carries a known currency");
        format!(
            r#"{{"account_id":"{}","amount":"{}","currency":"{}","type":"{}"}}"#,
            self.account_id,
            format_minor(self.amount_minor, currency),
            self.currency,
            self.txn_type.as_str()
        )
    }
}

/// A seeded stream of [`TxnSpec`]s. Each goose user (and the sweep) owns one, with its own
/// stream id, so users never contend on a shared random source.
#[derive(Debug, Clone)]
pub struct Generator {
    workload: Arc<Workload>,
    rng: StdRng,
}

impl Generator {
    /// Stream `stream` of the workload's seed.
    pub fn new(workload: Arc<Workload>, stream: u64) -> Generator {
        // Mix the stream id into the seed so neighbouring streams are unrelated sequences.
        let seed = workload
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Generator {
            workload,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The workload this stream draws from.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// A 0-based account index, by the workload's skew.
    pub fn account_index(&mut self) -> u32 {
        let w = &self.workload;
        let index = match (w.skew, w.zipf()) {
            (Skew::Zipf { .. }, Some(table)) => table.sample(&mut self.rng) as u32,
            _ => self.rng.random_range(0..w.accounts),
        };
        debug_assert!(index < w.accounts);
        index
    }

    /// The next transaction.
    pub fn next_spec(&mut self) -> TxnSpec {
        let index = self.account_index();
        let w = &self.workload;
        let amount_minor = self
            .rng
            .random_range(w.amount_min_minor..=w.amount_max_minor);
        let txn_type = if self.rng.random_range(0..100_u8) < w.debit_percent {
            TxnType::Debit
        } else {
            TxnType::Credit
        };
        TxnSpec {
            account_id: w.account_id(index),
            amount_minor,
            txn_type,
            currency: w.currency.code().to_string(),
        }
    }

    /// A body that conflicts with `original` under the same idempotency key: same account (so
    /// the same partition, and the original is decided first) and type, another amount.
    pub fn conflicting(&mut self, original: &TxnSpec) -> TxnSpec {
        let w = &self.workload;
        let amount_minor = if original.amount_minor < w.amount_max_minor {
            original.amount_minor + 1
        } else {
            // amount_min ≤ original = amount_max; a range of one value still differs by one
            // minor unit downwards unless that would reach zero.
            if original.amount_minor > 1 {
                original.amount_minor - 1
            } else {
                original.amount_minor + 1
            }
        };
        debug_assert_ne!(amount_minor, original.amount_minor);
        TxnSpec {
            amount_minor,
            ..original.clone()
        }
    }

    /// A uniform draw in `0..100`, for the scenarios' percentage choices.
    pub fn percent(&mut self) -> u8 {
        self.rng.random_range(0..100)
    }

    /// A uniform index in `0..n` (n > 0).
    pub fn index(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        self.rng.random_range(0..n)
    }
}

/// Unique idempotency keys: `lt-<run id>-<stream>-<counter>`.
#[derive(Debug, Clone)]
pub struct KeyMinter {
    prefix: String,
    next: u64,
}

impl KeyMinter {
    /// Keys for one stream of one run.
    pub fn new(run_id: &str, stream: u64) -> KeyMinter {
        KeyMinter {
            prefix: format!("lt-{run_id}-{stream}-"),
            next: 0,
        }
    }

    /// The next key; never repeats within the minter.
    pub fn next_key(&mut self) -> String {
        let key = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        key
    }
}

/// A short id for this run, unique enough to keep keys of different runs apart (the time in
/// milliseconds and 32 random bits, base 36).
pub fn new_run_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let random: u32 = rand::random();
    format!("{}{}", base36(millis as u128), base36(u128::from(random)))
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SkewKind, WorkloadSpec};
    use ledgerline_contracts::parse_create_transaction;

    fn workload(spec: WorkloadSpec) -> Arc<Workload> {
        Arc::new(Workload::from_spec(&spec).unwrap())
    }

    #[test]
    fn generated_bodies_are_valid_requests_with_the_generated_fields() {
        let mut g = Generator::new(workload(WorkloadSpec::default()), 0);
        for _ in 0..200 {
            let spec = g.next_spec();
            let parsed = parse_create_transaction(spec.body().as_bytes()).unwrap();
            assert_eq!(parsed.account_id.as_str(), spec.account_id);
            assert_eq!(parsed.money.minor(), spec.amount_minor);
            assert_eq!(parsed.txn_type, spec.txn_type);
            assert!((100..=50_000).contains(&spec.amount_minor));
        }
    }

    #[test]
    fn the_debit_share_is_close_to_the_configured_percentage() {
        let mut g = Generator::new(
            workload(WorkloadSpec {
                debit_percent: 25,
                ..WorkloadSpec::default()
            }),
            1,
        );
        let debits = (0..20_000)
            .filter(|_| g.next_spec().txn_type == TxnType::Debit)
            .count();
        assert!((4_500..5_500).contains(&debits), "{debits}");
    }

    #[test]
    fn zipf_skew_sends_most_traffic_to_the_first_accounts() {
        let mut g = Generator::new(
            workload(WorkloadSpec {
                skew: SkewKind::Zipf,
                zipf_exponent: 1.5,
                accounts: 1_000,
                ..WorkloadSpec::default()
            }),
            2,
        );
        let hot = (0..10_000).filter(|_| g.account_index() < 10).count();
        assert!(hot > 7_000, "{hot}");
    }

    #[test]
    fn uniform_skew_reaches_every_account() {
        let mut g = Generator::new(
            workload(WorkloadSpec {
                accounts: 20,
                ..WorkloadSpec::default()
            }),
            3,
        );
        let mut seen = [false; 20];
        for _ in 0..2_000 {
            seen[g.account_index() as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn the_same_seed_and_stream_generate_the_same_bodies_and_other_streams_differ() {
        let w = workload(WorkloadSpec::default());
        let run = |stream| {
            let mut g = Generator::new(w.clone(), stream);
            (0..20).map(|_| g.next_spec()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn a_conflicting_body_keeps_the_account_and_changes_the_amount() {
        let w = workload(WorkloadSpec {
            amount_min: "1.00".into(),
            amount_max: "1.00".into(),
            ..WorkloadSpec::default()
        });
        let mut g = Generator::new(w, 0);
        let original = g.next_spec();
        let conflict = g.conflicting(&original);
        assert_eq!(conflict.account_id, original.account_id);
        assert_ne!(conflict.amount_minor, original.amount_minor);
        assert!(conflict.amount_minor > 0);
        assert_ne!(conflict.body(), original.body());
    }

    #[test]
    fn keys_never_repeat_and_are_valid_idempotency_keys() {
        let mut keys = KeyMinter::new(&new_run_id(), 3);
        let a = keys.next_key();
        let b = keys.next_key();
        assert_ne!(a, b);
        ledgerline_contracts::IdempotencyKey::parse(&a).unwrap();
    }
}
