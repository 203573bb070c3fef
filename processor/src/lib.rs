//! `processor`: decides every requested transaction exactly once.
//!
//! - [`config`]: typed settings.
//! - [`app`]: `Application::build` / `run_until_stopped`, shared by `main` and the tests.
//! - [`consumer`]: the batch loop (decode → claim → produce → status → commit).
//! - [`idempotency`]: Redis records and the pure duplicate/conflict/redelivery decision.
//! - [`rules`]: business rules with named reason codes.
//! - [`metrics`]: metric names, in one place.

pub mod app;
pub mod config;
pub mod consumer;
pub mod idempotency;
pub mod metrics;
pub mod rules;

pub use app::Application;
pub use config::Settings;
