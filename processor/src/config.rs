//! Processor settings: defaults → optional file → `LEDGERLINE_*` environment, validated once.

use ledgerline_runtime::backoff::BackoffSettings;
use ledgerline_runtime::consume::BatchSettings;
use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::redis_client::RedisSettings;
use ledgerline_runtime::settings::{ensure, Validate};
use ledgerline_runtime::shutdown;
use ledgerline_runtime::status::StatusSettings;
use ledgerline_runtime::telemetry::LogSettings;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Everything the processor reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
    /// Logging.
    pub log: LogSettings,
    /// Kafka clients.
    pub kafka: KafkaSettings,
    /// Consumer group id.
    pub group_id: String,
    /// Batch bounds.
    pub batch: BatchSettings,
    /// Redis (idempotency records and the status read model).
    pub redis: RedisSettings,
    /// Status read model.
    pub status: StatusSettings,
    /// Idempotency records.
    pub idempotency: IdempotencySettings,
    /// Business rules.
    pub rules: RulesSettings,
    /// Retry pacing while Redis or Kafka is down.
    pub backoff: BackoffSettings,
    /// Most time to wait for an outcome's acknowledgement before the batch is retried.
    pub produce_timeout_ms: u64,
    /// On shutdown, the batch in hand gets this long to finish.
    pub shutdown_grace_ms: u64,
    /// From SIGTERM, the most time the whole drain may take: a process still draining then
    /// (a store that stopped answering) exits with status 124 and leaves the rest to
    /// redelivery. Must be greater than the drain's own bounds.
    pub shutdown_deadline_ms: u64,
    /// Fault injection for the crash tests. Never set in production.
    pub faults: FaultSettings,
}

/// Idempotency record lifetime.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySettings {
    /// How long a key is remembered (design §3: at least 24 h).
    pub retention_hours: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            retention_hours: 48,
        }
    }
}

/// Decision rules applied to every first request of a key.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// Largest amount per transaction, in the currency's minor units (None: no limit).
    pub amount_max_minor: Option<i64>,
    /// Currencies accepted (empty: any ISO-4217 currency).
    pub currencies_allowed: Vec<String>,
    /// Accounts that may not transact.
    pub accounts_blocked: Vec<String>,
    /// Per-merchant overrides.
    pub merchants: Vec<MerchantRules>,
}

/// One merchant's overrides of the rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantRules {
    /// Merchant id.
    pub id: String,
    /// Overrides `rules.amount_max_minor`.
    #[serde(default)]
    pub amount_max_minor: Option<i64>,
    /// Overrides `rules.currencies_allowed`.
    #[serde(default)]
    pub currencies_allowed: Option<Vec<String>>,
    /// A suspended merchant's requests are all rejected.
    #[serde(default)]
    pub suspended: bool,
}

/// Test-only switches that crash the process at chosen points.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Abort the process right after the idempotency keys of a batch are claimed and before
    /// any outcome is produced (the crash window of design §3).
    pub crash_after_claim: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9101)),
            log: LogSettings::default(),
            kafka: KafkaSettings::default(),
            group_id: "ledgerline-processor".into(),
            batch: BatchSettings::default(),
            redis: RedisSettings::default(),
            status: StatusSettings::default(),
            idempotency: IdempotencySettings::default(),
            rules: RulesSettings::default(),
            backoff: BackoffSettings::default(),
            produce_timeout_ms: 10_000,
            shutdown_grace_ms: 15_000,
            shutdown_deadline_ms: shutdown::DEADLINE_MS_DEFAULT,
            faults: FaultSettings::default(),
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.redis.validate()?;
        self.status.validate()?;
        self.batch.validate("batch")?;
        self.backoff.validate("backoff")?;
        shutdown::validate_deadline(
            self.shutdown_deadline_ms,
            self.produce_timeout_ms
                .saturating_add(self.shutdown_grace_ms),
            "the batch in hand (produce_timeout_ms) and the flush (shutdown_grace_ms)",
        )?;
        ensure(!self.group_id.is_empty(), "group_id", "must not be empty")?;
        ensure(
            self.idempotency.retention_hours >= 24,
            "idempotency.retention_hours",
            "must be >= 24 (design §3)",
        )?;
        ensure(
            self.produce_timeout_ms >= 100,
            "produce_timeout_ms",
            "must be >= 100",
        )?;
        for c in self.rules.currencies_allowed.iter().chain(
            self.rules
                .merchants
                .iter()
                .flat_map(|m| m.currencies_allowed.iter().flatten()),
        ) {
            ensure(
                ledgerline_contracts::currency::Currency::parse(c).is_ok(),
                "rules.currencies_allowed",
                "holds an unknown currency code",
            )?;
        }
        let limits = std::iter::once(self.rules.amount_max_minor)
            .chain(self.rules.merchants.iter().map(|m| m.amount_max_minor));
        for limit in limits.flatten() {
            ensure(limit > 0, "rules.amount_max_minor", "must be > 0")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn a_shutdown_deadline_inside_the_drain_it_bounds_is_refused() {
        let mut s = Settings::default();
        s.shutdown_deadline_ms = s.produce_timeout_ms + s.shutdown_grace_ms;
        let error = s.validate().unwrap_err();
        assert!(error.starts_with("shutdown_deadline_ms:"), "{error}");
    }

    #[test]
    fn every_setting_is_documented_with_its_environment_variable() {
        let doc = include_str!("../../docs/configuration.md");
        let missing = ledgerline_runtime::settings::undocumented::<Settings>(doc);
        assert!(
            missing.is_empty(),
            "missing from docs/configuration.md: {missing:?}"
        );
    }
}
