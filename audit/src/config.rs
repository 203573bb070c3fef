//! Audit settings: defaults → optional file → `LEDGERLINE_*` environment, validated once.

use ledgerline_runtime::backoff::BackoffSettings;
use ledgerline_runtime::consume::BatchSettings;
use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::settings::{ensure, Validate};
use ledgerline_runtime::shutdown;
use ledgerline_runtime::telemetry::LogSettings;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Everything the audit service reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
    /// Logging.
    pub log: LogSettings,
    /// Kafka clients.
    pub kafka: KafkaSettings,
    /// Consumer group id (one group reads the three pipeline topics and their DLQs).
    pub group_id: String,
    /// Batch bounds (one unordered `insert_many` per batch).
    pub batch: BatchSettings,
    /// The audit database.
    pub mongo: MongoSettings,
    /// Retry pacing while MongoDB or Kafka is down.
    pub backoff: BackoffSettings,
    /// Most time to wait for a dead-letter produce acknowledgement before retrying it.
    pub produce_timeout_ms: u64,
    /// From SIGTERM, the most time the whole drain may take: a process still draining then
    /// (a store that stopped answering) exits with status 124 and leaves the rest to
    /// redelivery. Must be greater than the drain's own bounds.
    pub shutdown_deadline_ms: u64,
    /// Fault injection for the crash tests. Never set in production.
    pub faults: FaultSettings,
}

/// Test-only switches that crash the process at chosen points.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Abort right after a batch's documents are acknowledged by MongoDB, before its offsets
    /// are committed.
    pub crash_after_insert: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9103)),
            log: LogSettings::default(),
            kafka: KafkaSettings::default(),
            group_id: "ledgerline-audit".into(),
            batch: BatchSettings {
                batch_size_max: 1_000,
                ..BatchSettings::default()
            },
            mongo: MongoSettings::default(),
            backoff: BackoffSettings::default(),
            produce_timeout_ms: 10_000,
            shutdown_deadline_ms: shutdown::DEADLINE_MS_DEFAULT,
            faults: FaultSettings::default(),
        }
    }
}

/// Most documents per batch: MongoDB splits an `insert_many` above 100,000 documents into
/// several commands, and a batch that is one command keeps a crash mid-write simple to reason
/// about (see `docs/audit.md`).
pub const BATCH_SIZE_MAX_LIMIT: usize = 100_000;

impl Validate for Settings {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.mongo.validate()?;
        self.batch.validate("batch")?;
        self.backoff.validate("backoff")?;
        shutdown::validate_deadline(
            self.shutdown_deadline_ms,
            self.produce_timeout_ms,
            "a dead letter's produce (produce_timeout_ms)",
        )?;
        ensure(!self.group_id.is_empty(), "group_id", "must not be empty")?;
        ensure(
            self.batch.batch_size_max <= BATCH_SIZE_MAX_LIMIT,
            "batch.batch_size_max",
            "must be <= 100000",
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
    fn a_shutdown_deadline_inside_a_dead_letter_produce_is_refused() {
        let mut s = Settings::default();
        s.shutdown_deadline_ms = s.produce_timeout_ms;
        let error = s.validate().unwrap_err();
        assert!(error.starts_with("shutdown_deadline_ms:"), "{error}");
    }

    #[test]
    fn an_oversized_batch_is_refused() {
        let mut s = Settings::default();
        s.batch.batch_size_max = BATCH_SIZE_MAX_LIMIT + 1;
        assert!(s.validate().unwrap_err().contains("batch.batch_size_max"));
    }

    #[test]
    fn an_empty_group_is_refused() {
        let mut s = Settings::default();
        s.group_id.clear();
        assert!(s.validate().unwrap_err().contains("group_id"));
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
