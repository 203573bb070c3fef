//! `faults`: the fault-injection suite. Each scenario runs the whole pipeline (real service
//! binaries, an owned broker, Redis, PostgreSQL and MongoDB) under steady signed load, injects
//! one kind of fault at seeded moments, lets it recover, then checks the guarantees of the
//! design with the end-to-end verifier, the reconciler and its own invariants.
//!
//! Module map:
//! - [`cli`]: the command line (`faults list`, `faults run`).
//! - [`stack`]: the owned pipeline: stores, services, their settings.
//! - [`service`]: one service binary as a child process (start, SIGKILL, SIGTERM, readiness).
//! - [`proc`]: signals and resident memory by process id.
//! - [`load`]: the careful merchant: sequential per account, retries on retriable answers,
//!   deliberate replays, every 202 recorded.
//! - [`scenario`]: the faults, and how hard they hit.
//! - [`repair`]: the `kill-reconciler` scenario (drift, then a repair killed part-way).
//! - [`hostile`]: poison messages on every topic and hostile HTTP requests.
//! - [`invariants`]: per-account order, recovery, the front door's answers.
//! - [`run`]: one run, start to verdict.
//! - [`timeline`]: what was done when, printed with a failure.
//! - [`report`]: the results table.
//! - [`error`]: why a run could not be carried out.

pub mod cli;
pub mod error;
pub mod hostile;
pub mod invariants;
pub mod load;
pub mod proc;
pub mod repair;
pub mod report;
pub mod run;
pub mod scenario;
pub mod service;
pub mod stack;
pub mod timeline;
