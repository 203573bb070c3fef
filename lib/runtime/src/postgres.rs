//! PostgreSQL pool with explicit limits, and the project's migrations.

use crate::secret::Secret;
use crate::settings::ensure;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// Connection pool settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// Connection URL; may hold a password, so it never prints.
    pub url: Secret<String>,
    /// Most pooled connections.
    pub pool_size_max: u32,
    /// How long to wait for a pooled connection before failing.
    pub acquire_timeout_ms: u64,
    /// Server-side `statement_timeout` for every session.
    pub statement_timeout_ms: u64,
    /// Apply migrations at start-up.
    pub migrate: bool,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/ledgerline".into()),
            pool_size_max: 8,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            migrate: true,
        }
    }
}

impl PostgresSettings {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        ensure(
            self.pool_size_max >= 1,
            "postgres.pool_size_max",
            "must be >= 1",
        )?;
        ensure(
            self.acquire_timeout_ms >= 1,
            "postgres.acquire_timeout_ms",
            "must be >= 1",
        )?;
        ensure(
            PgConnectOptions::from_str(self.url.expose()).is_ok(),
            "postgres.url",
            "is not a valid PostgreSQL URL",
        )
    }

    /// A lazily connecting pool: services start (and report not-ready) while the database is
    /// down, instead of crash-looping.
    pub fn pool(&self) -> Result<PgPool, sqlx::Error> {
        let options = PgConnectOptions::from_str(self.url.expose())?
            .options([("statement_timeout", self.statement_timeout_ms.to_string())])
            .application_name("ledgerline");
        Ok(PgPoolOptions::new()
            .max_connections(self.pool_size_max)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .connect_lazy_with(options))
    }
}

/// Applies the workspace's migrations (`migrations/`), idempotently.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../../migrations").run(pool).await
}

/// Whether a database error is transient (connection lost, server restarting, serialization
/// conflict) rather than a fault in the statement or data.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // 40001 serialization_failure, 40P01 deadlock, 57P01 admin_shutdown,
            // 57P03 cannot_connect_now, 53300 too_many_connections, 08* connection exceptions.
            let code = db.code().unwrap_or_default();
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
            ) || code.starts_with("08")
        }
        _ => false,
    }
}
