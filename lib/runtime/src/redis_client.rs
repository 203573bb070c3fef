//! Redis connection with explicit timeouts and a key prefix for isolation.

use crate::secret::Secret;
use crate::settings::ensure;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Redis settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Connection URL; may hold a password, so it never prints.
    pub url: Secret<String>,
    /// Prepended to every key (`<prefix>idem:…`); tests and co-hosted deployments isolate with it.
    pub key_prefix: String,
    /// Most time to wait for a reply before the call fails.
    pub response_timeout_ms: u64,
    /// Most time to establish a connection.
    pub connection_timeout_ms: u64,
    /// Longest pause between the client's own reconnection attempts after a connection drops.
    pub reconnect_delay_max_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379/0".into()),
            key_prefix: "ledgerline:".into(),
            response_timeout_ms: 2_000,
            connection_timeout_ms: 2_000,
            reconnect_delay_max_ms: 250,
        }
    }
}

impl RedisSettings {
    /// Checks the URL and timeouts.
    pub fn validate(&self) -> Result<(), String> {
        ensure(
            redis::Client::open(self.url.expose().as_str()).is_ok(),
            "redis.url",
            "is not a valid Redis URL",
        )?;
        ensure(
            self.response_timeout_ms >= 1,
            "redis.response_timeout_ms",
            "must be >= 1",
        )?;
        ensure(
            self.connection_timeout_ms >= 1,
            "redis.connection_timeout_ms",
            "must be >= 1",
        )?;
        ensure(
            (1..=60_000).contains(&self.reconnect_delay_max_ms),
            "redis.reconnect_delay_max_ms",
            "must be between 1 and 60000",
        )
    }

    /// A multiplexed, self-reconnecting connection. The manager is created lazily against a
    /// server that may be down; calls fail fast (bounded by the timeouts) until it returns.
    ///
    /// The manager's reconnection backoff starts at one second and, left at its defaults,
    /// multiplies by its factor (100) up to a 60 s cap plus up to 100 % jitter: a Redis that
    /// was down for ten seconds was reached again only after a minute or two, while every
    /// caller waited on the pending reconnection. The callers already retry with their own
    /// capped backoff, so the manager makes one quick retry and then reports the failure.
    pub async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let client = redis::Client::open(self.url.expose().as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Duration::from_millis(self.response_timeout_ms))
            .set_connection_timeout(Duration::from_millis(self.connection_timeout_ms))
            .set_number_of_retries(1)
            .set_factor(2)
            .set_max_delay(self.reconnect_delay_max_ms);
        ConnectionManager::new_with_config(client, config).await
    }
}

/// Whether a Redis error is transient (connection refused or dropped, timeout, loading,
/// failover) rather than a fault of the command.
pub fn is_retryable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            redis::ErrorKind::BusyLoadingError
                | redis::ErrorKind::TryAgain
                | redis::ErrorKind::MasterDown
                | redis::ErrorKind::ClusterDown
        )
}

/// The server's own CPU time so far, user plus system, in seconds (`INFO cpu`). Benchmarks
/// read it before and after a run to report what the run cost Redis, which wall time on a
/// shared machine cannot tell.
pub async fn server_cpu_secs(conn: &mut ConnectionManager) -> redis::RedisResult<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(parse_cpu_secs(&info))
}

fn parse_cpu_secs(info: &str) -> f64 {
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| matches!(*name, "used_cpu_user" | "used_cpu_sys"))
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_cpu_is_user_plus_system_time_and_nothing_else() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.000000\r\nused_cpu_user_main_thread:2.000000\r\n";
        assert!((parse_cpu_secs(info) - 3.75).abs() < 1e-9);
    }
}
