//! Ledgerline's shared I/O runtime.
//!
//! - [`settings`]: typed settings from defaults, a file and `LEDGERLINE_*` variables.
//! - [`secret`]: a wrapper that keeps secrets out of logs.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`admin`] / [`health`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`shutdown`]: SIGTERM/SIGINT → cancellation, and a deadline for the drain.
//! - [`backoff`]: capped retry pacing.
//! - [`consume`]: bounded batches, commit-after-store, consumer lag.
//! - [`ranges`]: exact offset ranges (by time or offset) and a reader for them.
//! - [`kafka`], [`postgres`], [`redis_client`], [`mongo`]: store clients with explicit limits
//!   and one `is_retryable` per dependency.
//! - [`partitions`]: where keyed messages land; a producer's batch paced by partition.
//! - [`status`]: the transaction status read model in Redis.
//! - [`time`]: wall-clock helpers.

pub mod admin;
pub mod backoff;
pub mod consume;
pub mod health;
pub mod kafka;
pub mod mongo;
pub mod partitions;
pub mod postgres;
pub mod ranges;
pub mod redis_client;
pub mod secret;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod time;
