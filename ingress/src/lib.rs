//! `ingress`: the signed HTTP front door.
//!
//! - [`config`]: typed settings.
//! - [`app`]: `Application::build` / `run_until_stopped`, shared by `main` and the tests.
//! - [`server`]: accept loop, connection cap, graceful drain.
//! - [`routes`]: routing and the POST/GET handlers.
//! - [`problem`]: RFC 9457 problem responses.
//! - [`audit_trail`]: a transaction's events from the MongoDB audit trail.
//! - [`keys`]: merchants' signing keys.
//! - [`ledger`]: balance and durable-status reads from the PostgreSQL ledger.
//! - [`rate_limit`]: per-merchant token buckets.
//! - [`publisher`]: bounded, acknowledged publishing to `txn.requests`.
//! - [`metrics`]: metric names, in one place.

pub mod app;
pub mod audit_trail;
pub mod config;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod problem;
pub mod publisher;
pub mod rate_limit;
pub mod routes;
pub mod server;

pub use app::Application;
pub use config::Settings;
