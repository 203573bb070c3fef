//! `ledger-writer`: posts accepted transactions to a double-entry PostgreSQL ledger.
//!
//! - [`config`]: typed settings.
//! - [`app`]: `Application::build` / `run_until_stopped` / `replay`, shared by `main` and tests.
//! - [`cli`]: the command line (`run`, `replay`).
//! - [`writer`]: the batch loop (decode → post → commit offsets).
//! - [`plan`]: the pure accounting: results, postings, balances of a batch.
//! - [`store`]: the batch's database transaction (locks, set-based writes).
//! - [`relay`]: the outbox relay to `txn.postings` and the status read model.
//! - `outbox`: the relay's read: waiting rows joined to the ledger rows they announce.
//! - [`replay`]: re-posting `txn.outcomes` from an offset or time through the same path.
//! - [`metrics`]: metric names, in one place.

pub mod app;
pub mod cli;
pub mod config;
pub mod metrics;
mod outbox;
pub mod plan;
pub mod relay;
pub mod replay;
pub mod store;
pub mod writer;

pub use app::Application;
pub use config::Settings;
