//! Ledger-writer settings: defaults → optional file → `LEDGERLINE_*` environment, validated once.

use ledgerline_runtime::backoff::BackoffSettings;
use ledgerline_runtime::consume::BatchSettings;
use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::postgres::PostgresSettings;
use ledgerline_runtime::redis_client::RedisSettings;
use ledgerline_runtime::settings::{ensure, Validate};
use ledgerline_runtime::shutdown;
use ledgerline_runtime::status::StatusSettings;
use ledgerline_runtime::telemetry::LogSettings;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Everything the ledger-writer reads at start-up.
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
    /// Batch bounds (one database transaction per batch).
    pub batch: BatchSettings,
    /// The ledger database.
    pub postgres: PostgresSettings,
    /// Redis (the status read model: POSTED / DECLINED).
    pub redis: RedisSettings,
    /// Status read model.
    pub status: StatusSettings,
    /// Accounting rules.
    pub ledger: LedgerSettings,
    /// The outbox relay to `txn.postings`.
    pub relay: RelaySettings,
    /// Retry pacing while PostgreSQL, Redis or Kafka is down.
    pub backoff: BackoffSettings,
    /// Most time to wait for a produce acknowledgement before retrying.
    pub produce_timeout_ms: u64,
    /// On shutdown, the relay gets this long to flush what it sent.
    pub shutdown_grace_ms: u64,
    /// From SIGTERM, the most time the whole drain may take: a process still draining then
    /// (a store that stopped answering) exits with status 124 and leaves the rest to
    /// redelivery. Must be greater than the drain's own bounds.
    pub shutdown_deadline_ms: u64,
    /// Fault injection for the crash tests. Never set in production.
    pub faults: FaultSettings,
}

/// Accounting rules. The default overdraft is 0 (design §7).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// How far below zero an account may go unless `account_limits` says otherwise, in minor
    /// units of the account's currency (design §7: 0).
    pub overdraft_default_minor: i64,
}

/// The outbox relay.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Most outbox rows sent per round.
    pub batch_size_max: i64,
    /// How often the relay looks for rows to send when nothing woke it.
    pub poll_interval_ms: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size_max: 2_000,
            poll_interval_ms: 250,
        }
    }
}

/// Test-only switches that crash the process at chosen points.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Abort right after a batch's database commit, before its offsets are committed and
    /// before the relay sends its outbox rows.
    pub crash_after_commit: bool,
    /// Run without the relay (tests of the crash between commit and relay).
    pub relay_disabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9102)),
            log: LogSettings::default(),
            kafka: KafkaSettings::default(),
            group_id: "ledgerline-ledger-writer".into(),
            // Larger batches spread each commit and each statement's fixed cost over more
            // transactions: 5,000 posted ~9 % faster than 2,000 at 10⁶ (docs/benchmarks.md).
            batch: BatchSettings {
                batch_size_max: 5_000,
                ..BatchSettings::default()
            },
            postgres: PostgresSettings::default(),
            redis: RedisSettings::default(),
            status: StatusSettings::default(),
            ledger: LedgerSettings::default(),
            relay: RelaySettings::default(),
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
        self.postgres.validate()?;
        self.redis.validate()?;
        self.status.validate()?;
        self.batch.validate("batch")?;
        self.backoff.validate("backoff")?;
        shutdown::validate_deadline(
            self.shutdown_deadline_ms,
            self.shutdown_grace_ms.saturating_mul(2),
            "the relay's drain and the flush (twice shutdown_grace_ms)",
        )?;
        ensure(!self.group_id.is_empty(), "group_id", "must not be empty")?;
        ensure(
            self.ledger.overdraft_default_minor >= 0,
            "ledger.overdraft_default_minor",
            "must be >= 0",
        )?;
        ensure(
            (1..=10_000).contains(&self.relay.batch_size_max),
            "relay.batch_size_max",
            "must be in 1..=10000",
        )?;
        ensure(
            self.relay.poll_interval_ms >= 1,
            "relay.poll_interval_ms",
            "must be >= 1",
        )?;
        ensure(
            self.produce_timeout_ms >= 100,
            "produce_timeout_ms",
            "must be >= 100",
        )
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
    fn a_shutdown_deadline_inside_the_relay_drain_and_flush_is_refused() {
        let mut s = Settings::default();
        s.shutdown_deadline_ms = 2 * s.shutdown_grace_ms;
        let error = s.validate().unwrap_err();
        assert!(error.starts_with("shutdown_deadline_ms:"), "{error}");
    }

    #[test]
    fn a_negative_overdraft_is_refused() {
        let mut s = Settings::default();
        s.ledger.overdraft_default_minor = -1;
        assert!(s.validate().unwrap_err().contains("overdraft"));
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
