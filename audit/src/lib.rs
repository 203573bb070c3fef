//! `audit`: records every pipeline event, once, in a tamper-evident MongoDB trail.
//!
//! - [`config`]: typed settings.
//! - [`app`]: `Application::build` / `run_until_stopped`, and `verify`; shared by `main` and
//!   tests.
//! - [`cli`]: the command line (`run`, `verify`).
//! - [`writer`]: the batch loop (derive → dead-letter poison → link → insert → commit).
//! - [`document`]: the pure derivation of a document from a Kafka message, and back.
//! - [`chain`]: the pure hash chain: canonical content, link hash, the link verifier.
//! - [`store`]: the collection: indexes, head look-ups, the idempotent insert.
//! - [`replay`]: re-recording exact offset ranges through the same write path.
//! - [`verify`]: walking the stored chains and reporting each one's first break.
//! - [`metrics`]: metric names, in one place.
//!
//! See `docs/audit.md` for the document shape and the exact hash formula.

pub mod app;
pub mod chain;
pub mod cli;
pub mod config;
pub mod document;
pub mod metrics;
pub mod replay;
pub mod store;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod testing;

pub use app::Application;
pub use config::Settings;
