//! Why a scenario could not be carried out. A broken invariant is not an error: it is the
//! scenario's verdict (`outcome::Violation`).

use std::path::PathBuf;

/// The harness's one error type.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A service binary is not built.
    #[error(
        "no `{0}` binary next to this one or in target/{{release,debug}}; build the services \
         first: cargo build [--release] -p ingress -p processor -p ledger-writer -p audit -p reconciler"
    )]
    MissingBinary(&'static str),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A service exited while it should have been starting.
    #[error("{service} exited ({status}) while starting; its log: {}", log.display())]
    ServiceExited {
        /// The service.
        service: &'static str,
        /// How it ended.
        status: String,
        /// Its output.
        log: PathBuf,
    },
    /// A service did not become ready in time.
    #[error("{service} was not ready within {secs} s; its log: {}", log.display())]
    NotReady {
        /// The service.
        service: &'static str,
        /// The bound.
        secs: u64,
        /// Its output.
        log: PathBuf,
    },
    /// A service was asked to act while not running.
    #[error("{0} is not running")]
    NotRunning(&'static str),
    /// A SIGTERM did not end the service within its grace period.
    #[error("{service} did not exit within {secs} s of SIGTERM")]
    ShutdownHung {
        /// The service.
        service: &'static str,
        /// The grace period.
        secs: u64,
    },
    /// A signal could not be delivered.
    #[error("sending {signal} to pid {pid}: {detail}")]
    Signal {
        /// The process.
        pid: u32,
        /// The signal's name.
        signal: &'static str,
        /// The cause.
        detail: String,
    },
    /// An owned store (broker, Redis, PostgreSQL, MongoDB) failed to start or restart.
    #[error("{store}: {detail}")]
    Store {
        /// Which one.
        store: &'static str,
        /// The cause.
        detail: String,
    },
    /// The end-to-end verification could not be carried out.
    #[error("verify: {0}")]
    Verify(#[from] loadtest::verify::VerifyError),
    /// A direct read of a store by the harness failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The load generator's settings were refused.
    #[error("load: {0}")]
    Load(String),
}

impl FaultError {
    /// Wraps an owned store's error.
    pub fn store(store: &'static str, error: impl std::fmt::Display) -> FaultError {
        FaultError::Store {
            store,
            detail: error.to_string(),
        }
    }
}
