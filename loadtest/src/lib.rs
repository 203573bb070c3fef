//! `loadtest`: signed load against Ledgerline, measured honestly, and proof that nothing
//! accepted was lost.
//!
//! Module map:
//! - [`cli`]: the command line (`run`, `sweep`, `verify`), turned into the typed settings below.
//! - [`config`]: typed, validated settings shared by every mode: the merchant, the workload.
//! - [`zipf`]: a seeded Zipf sampler over account ranks (hot accounts).
//! - [`workload`]: transaction bodies and idempotency keys, from the workload settings.
//! - [`signer`]: requests signed per request with `ledgerline_contracts::signing`, and the
//!   deliberately bad ones of the `bad-auth` scenario.
//! - [`record`]: the record file: one JSON line per `202` (transaction id, body, time).
//! - [`scenarios`]: the goose scenarios (`submit`, `retry-storm`, `bad-auth`, `status-poll`,
//!   `mixed`); goose's own flags, reports and thresholds apply.
//! - [`sweep`]: the open-loop sweep: a constant arrival rate per step, latency from the
//!   intended send time, per-step and per-stage figures, the knee, Markdown/JSON/SVG reports.
//! - [`verify`]: the end-to-end check against PostgreSQL, MongoDB and the reconciler.
//! - [`cpu`]: process CPU time from `/proc`, so a generator limit is never read as a server one.
//! - [`scrape`]: the services' Prometheus `/metrics`, parsed into per-stage counters.

pub mod cli;
pub mod config;
pub mod cpu;
pub mod record;
pub mod scenarios;
pub mod scrape;
pub mod signer;
pub mod sweep;
pub mod verify;
pub mod workload;
pub mod zipf;
