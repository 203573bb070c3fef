//! MongoDB client with explicit timeouts and durable write concern.

use crate::secret::Secret;
use crate::settings::ensure;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Database};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// MongoDB settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoSettings {
    /// Connection URI; may hold credentials, so it never prints.
    pub uri: Secret<String>,
    /// Database name.
    pub database: String,
    /// Most time to find a usable server before an operation fails.
    pub server_selection_timeout_ms: u64,
    /// Most time to open a connection.
    pub connect_timeout_ms: u64,
    /// Most pooled connections.
    pub pool_size_max: u32,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            uri: Secret::new("mongodb://127.0.0.1:27017/?directConnection=true".into()),
            database: "ledgerline".into(),
            server_selection_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            pool_size_max: 16,
        }
    }
}

impl MongoSettings {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        ensure(
            !self.database.is_empty(),
            "mongo.database",
            "must not be empty",
        )?;
        ensure(
            self.pool_size_max >= 1,
            "mongo.pool_size_max",
            "must be >= 1",
        )
    }

    /// The database handle, with majority + journaled writes: an acknowledged insert survives
    /// a crash of the server.
    pub async fn database(&self) -> mongodb::error::Result<Database> {
        let mut options = ClientOptions::parse(self.uri.expose()).await?;
        options.server_selection_timeout =
            Some(Duration::from_millis(self.server_selection_timeout_ms));
        options.connect_timeout = Some(Duration::from_millis(self.connect_timeout_ms));
        options.max_pool_size = Some(self.pool_size_max);
        options.app_name = Some("ledgerline".into());
        options.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
        Ok(Client::with_options(options)?.database(&self.database))
    }
}
