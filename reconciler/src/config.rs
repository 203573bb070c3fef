//! Reconciler settings: defaults → optional file → `LEDGERLINE_*` environment, validated once.

use ledgerline_runtime::backoff::BackoffSettings;
use ledgerline_runtime::consume::BatchSettings;
use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::postgres::PostgresSettings;
use ledgerline_runtime::redis_client::RedisSettings;
use ledgerline_runtime::settings::{ensure, Validate};
use ledgerline_runtime::shutdown;
use ledgerline_runtime::status::StatusSettings;
use ledgerline_runtime::telemetry::LogSettings;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Everything the reconciler reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `/metrics`, `/healthz`, `/readyz` (daemon mode).
    pub admin_addr: SocketAddr,
    /// Logging.
    pub log: LogSettings,
    /// Kafka clients (the log is read by `assign`; no consumer group moves).
    pub kafka: KafkaSettings,
    /// The ledger database; runs, discrepancies and repairs are recorded there too.
    pub postgres: PostgresSettings,
    /// The audit database.
    pub mongo: MongoSettings,
    /// Redis: the status read model, which ledger repairs update like the writer does.
    pub redis: RedisSettings,
    /// Status read model.
    pub status: StatusSettings,
    /// Accounting rules used when a repair re-posts: must equal the ledger-writer's.
    pub ledger: ledger_writer::config::LedgerSettings,
    /// How runs compare.
    pub reconcile: ReconcileSettings,
    /// How repairs replay.
    pub repair: RepairSettings,
    /// Daemon mode.
    pub daemon: DaemonSettings,
    /// Retry pacing while a store is down (repairs).
    pub backoff: BackoffSettings,
    /// From SIGTERM, the most time a command or the daemon may take to stop: one still
    /// stopping then (a store that stopped answering) exits with status 124. A run it cuts
    /// short stays recorded as `running`, as after a crash.
    pub shutdown_deadline_ms: u64,
}

/// How a run compares the log with the stores.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// Offsets per digest bucket: a bucket is (topic, partition, offset / bucket_offsets).
    /// Smaller buckets make a drill-down cheaper and the digest phase dearer.
    pub bucket_offsets: i64,
    /// Work younger than this is in flight, not missing: an accepted outcome without a
    /// ledger row, or a request without an outcome, is reported only when older.
    pub settle_secs: u64,
    /// A posted transaction whose `txn.postings` event is still absent after this long, or a
    /// request without an outcome, is reported as stuck.
    pub stuck_after_secs: u64,
    /// Also walk every audit document of the window and re-derive it from its raw message
    /// (finds edits that left the hash alone). Reads every document: slower.
    pub deep_audit: bool,
    /// Reading the log: batch bounds.
    pub read_batch: BatchSettings,
    /// Most neighbouring differing buckets a drill-down reads in one pass (one seek on the
    /// log, one query per store); bounds what one pass holds in memory.
    pub drill_span_buckets_max: usize,
    /// Most discrepancies recorded per run (the counts by kind stay exact above it).
    pub discrepancies_recorded_max: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            bucket_offsets: 1_000,
            settle_secs: 60,
            stuck_after_secs: 300,
            deep_audit: false,
            read_batch: BatchSettings {
                batch_size_max: 5_000,
                batch_bytes_max: 16 * 1024 * 1024,
                flush_interval_ms: 50,
            },
            drill_span_buckets_max: 32,
            discrepancies_recorded_max: 100_000,
        }
    }
}

/// How a repair replays.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairSettings {
    /// Most log messages replayed per second, over all stores, so a repair cannot push the
    /// pipeline past its capacity.
    pub messages_per_sec_max: u32,
    /// Offsets replayed per step; the rate is enforced between steps.
    pub chunk_offsets: i64,
    /// Discrepancies at offsets closer than this are replayed as one range.
    pub merge_gap_offsets: i64,
}

impl Default for RepairSettings {
    fn default() -> Self {
        Self {
            messages_per_sec_max: 1_000,
            chunk_offsets: 500,
            merge_gap_offsets: 50,
        }
    }
}

/// Daemon mode: a run over a trailing window on a schedule.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Time between the starts of two runs.
    pub interval_secs: u64,
    /// Length of the trailing window each run covers.
    pub window_secs: u64,
    /// The window ends this long before now, so in-flight work has settled.
    pub settle_delay_secs: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            window_secs: 900,
            settle_delay_secs: 120,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9104)),
            log: LogSettings::default(),
            kafka: KafkaSettings::default(),
            postgres: PostgresSettings::default(),
            mongo: MongoSettings::default(),
            redis: RedisSettings::default(),
            status: StatusSettings::default(),
            ledger: ledger_writer::config::LedgerSettings::default(),
            reconcile: ReconcileSettings::default(),
            repair: RepairSettings::default(),
            daemon: DaemonSettings::default(),
            backoff: BackoffSettings::default(),
            shutdown_deadline_ms: shutdown::DEADLINE_MS_DEFAULT,
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.postgres.validate()?;
        self.mongo.validate()?;
        self.redis.validate()?;
        self.status.validate()?;
        self.backoff.validate("backoff")?;
        ensure(
            self.shutdown_deadline_ms >= 1_000,
            "shutdown_deadline_ms",
            "must be >= 1000",
        )?;
        self.reconcile.read_batch.validate("reconcile.read_batch")?;
        let r = &self.reconcile;
        ensure(
            (10..=1_000_000).contains(&r.bucket_offsets),
            "reconcile.bucket_offsets",
            "must be in 10..=1000000",
        )?;
        ensure(
            r.stuck_after_secs >= r.settle_secs,
            "reconcile.stuck_after_secs",
            "must be >= reconcile.settle_secs",
        )?;
        ensure(
            (1..=1_000).contains(&r.drill_span_buckets_max),
            "reconcile.drill_span_buckets_max",
            "must be in 1..=1000",
        )?;
        ensure(
            r.discrepancies_recorded_max >= 1,
            "reconcile.discrepancies_recorded_max",
            "must be >= 1",
        )?;
        ensure(
            self.repair.messages_per_sec_max >= 1,
            "repair.messages_per_sec_max",
            "must be >= 1",
        )?;
        ensure(
            self.repair.chunk_offsets >= 1,
            "repair.chunk_offsets",
            "must be >= 1",
        )?;
        ensure(
            self.repair.merge_gap_offsets >= 0,
            "repair.merge_gap_offsets",
            "must be >= 0",
        )?;
        ensure(
            self.daemon.interval_secs >= 1 && self.daemon.window_secs >= 1,
            "daemon",
            "interval_secs and window_secs must be >= 1",
        )?;
        ensure(
            self.ledger.overdraft_default_minor >= 0,
            "ledger.overdraft_default_minor",
            "must be >= 0",
        )
    }
}

impl Settings {
    /// The ledger-writer's settings for repairs: this deployment's stores, its accounting.
    pub fn ledger_writer(&self) -> ledger_writer::Settings {
        let mut s = ledger_writer::Settings {
            // Its admin endpoint is not served during a repair; port 0 never collides with
            // the running ledger-writer's.
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kafka: self.kafka.clone(),
            postgres: self.postgres.clone(),
            redis: self.redis.clone(),
            status: self.status.clone(),
            ledger: self.ledger,
            backoff: self.backoff,
            ..ledger_writer::Settings::default()
        };
        s.kafka.create_topics = false;
        // The reconciler migrated already; the writer path must not race it.
        s.postgres.migrate = false;
        s
    }

    /// The audit's settings for repairs.
    pub fn audit(&self) -> audit::Settings {
        let mut s = audit::Settings {
            kafka: self.kafka.clone(),
            mongo: self.mongo.clone(),
            backoff: self.backoff,
            ..audit::Settings::default()
        };
        s.kafka.create_topics = false;
        s
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
    fn a_shutdown_deadline_under_a_second_is_refused() {
        let s = Settings {
            shutdown_deadline_ms: 999,
            ..Settings::default()
        };
        let error = s.validate().unwrap_err();
        assert!(error.starts_with("shutdown_deadline_ms:"), "{error}");
    }

    #[test]
    fn a_stuck_threshold_below_the_settle_delay_is_refused() {
        let mut s = Settings::default();
        s.reconcile.stuck_after_secs = 10;
        s.reconcile.settle_secs = 60;
        assert!(s.validate().unwrap_err().contains("stuck_after_secs"));
    }

    #[test]
    fn tiny_buckets_are_refused() {
        let mut s = Settings::default();
        s.reconcile.bucket_offsets = 1;
        assert!(s.validate().unwrap_err().contains("bucket_offsets"));
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
