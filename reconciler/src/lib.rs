//! `reconciler`: finds every drift between the Kafka log, the ledger and the audit trail, and
//! repairs it through the writers' own code paths.
//!
//! - [`config`]: typed settings.
//! - [`cli`]: the command line (`run`, `report`, `repair`, `replay`, `dlq`, `daemon`).
//! - [`commands`]: what each command does and prints.
//! - [`app`]: the connected [`app::Context`] every command works with.
//! - [`run`]: one run over a window: digests, drill-down, checks, record.
//! - [`scan`]: the log side: one pass computing what the stores must hold.
//! - [`ledger_side`] / [`audit_side`]: the same, computed inside PostgreSQL and MongoDB.
//! - [`digest`]: the pure per-bucket digests and fingerprints.
//! - [`drill`]: the pure record-by-record comparison of one bucket.
//! - [`discrepancy`]: the kinds of drift and their remedies.
//! - [`repair`]: the plan (pure) and its rate-limited application, then the re-check.
//! - [`dlq`]: listing and redriving dead letters.
//! - [`dead_letters`]: a run's findings for them, one per dead-lettered source message.
//! - [`daemon`]: scheduled runs over a trailing window, with `/metrics`, `/healthz`, `/readyz`.
//! - [`record`]: runs, discrepancies, repairs and redrives in PostgreSQL.
//! - [`metrics`]: metric names, in one place.
//!
//! See `docs/reconciliation.md`.

pub mod app;
pub mod audit_side;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dead_letters;
pub mod digest;
pub mod discrepancy;
pub mod dlq;
pub mod drill;
pub mod ledger_side;
pub mod metrics;
pub mod record;
pub mod repair;
pub mod run;
pub mod scan;

pub use app::Context;
pub use config::Settings;
