//! MongoDB client with explicit timeouts and durable write concern.

use crate::secret::Secret;
use crate::settings::ensure;
use mongodb::error::{Error, ErrorKind};
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
    /// Most time to open a connection, and (the driver ties them together) most time the
    /// server monitor waits for a heartbeat answer before it declares the server gone and
    /// cancels every operation in flight on it.
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
            // A server busy with a long aggregate (the reconciler's digests, a verification
            // scan) answers heartbeats late; at 5 s the monitor cancelled those very reads on
            // the local MongoDB-compatible server. A refused connection still fails at once.
            connect_timeout_ms: 30_000,
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

/// Server codes that mean "ask again": the node is restarting, stepping down, unreachable or
/// timed out (the driver's own retryable-read list).
const TRANSIENT_CODES: [i32; 13] = [
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 134, 262,
];

/// Whether a MongoDB error is transient (connection lost or reset, no server selectable in
/// time, server restarting) rather than a fault in the request or the data.
pub fn is_retryable(error: &Error) -> bool {
    if error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError")
    {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_transient_and_a_bad_request_is_not() {
        let reset: Error = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert!(is_retryable(&reset));
        // A document that does not decode is the data's fault: asking again cannot help.
        let bad: Error = mongodb::bson::from_document::<String>(mongodb::bson::doc! {})
            .map_err(ErrorKind::from)
            .unwrap_err()
            .into();
        assert!(!is_retryable(&bad));
    }
}
