//! Test support: every integration test gets isolated real resources.
//!
//! - [`TestEnv`]: a fresh PostgreSQL database with migrations applied, its own MongoDB
//!   database, uniquely prefixed Kafka topics (created), and a Redis key prefix, all on the
//!   local services that `scripts/up` starts.
//! - [`wait`]: bounded polling for conditions (never a bare sleep).
//! - [`kafka`]: producing raw messages and reading a topic back from the beginning.
//! - [`metrics`]: totals from a service's own `/metrics`, for benchmarks' progress.
//! - [`port`]: a free loopback port for a process the caller starts.
//! - [`broker`], [`redis_server`], [`postgres_server`], [`mongo_server`]: a broker, Redis,
//!   PostgreSQL cluster or MongoDB-compatible server owned by one test (or one fault-injection
//!   run), to kill, stop, freeze and restart without touching the shared ones.
//!
//! Addresses default to loopback and can be overridden with `LEDGERLINE_TEST_POSTGRES_URL`
//! (an admin URL to the `postgres` database), `LEDGERLINE_TEST_REDIS_URL`,
//! `LEDGERLINE_TEST_MONGO_URI` and `LEDGERLINE_TEST_KAFKA_BROKERS`; the owned broker's binary with
//! `LEDGERLINE_TEST_NISSHI`, the PostgreSQL server binaries' directory with
//! `LEDGERLINE_TEST_PG_BINDIR`, and the MongoDB-compatible server with
//! `LEDGERLINE_TEST_SECANTUSD`.

pub mod broker;
pub mod env;
pub mod kafka;
pub mod metrics;
pub mod mongo_server;
mod owned;
pub mod port;
pub mod postgres_server;
pub mod redis_server;
pub mod wait;

pub use env::TestEnv;
/// The signals the owned servers' `signal` takes (SIGSTOP and SIGCONT freeze and thaw one), so
/// a test names them without a dependency of its own on `nix`.
pub use nix::sys::signal::Signal;
