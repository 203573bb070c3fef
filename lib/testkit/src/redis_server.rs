//! A Redis server owned by one test (its own process, port and append-only file), to stop
//! and restart without touching the shared one.

use crate::owned::OwnedProcess;
use std::process::Command;
use std::time::Duration;

/// A test-owned `redis-server`. Killed on drop.
#[derive(Debug)]
pub struct OwnedRedis {
    process: OwnedProcess,
}

impl OwnedRedis {
    /// Starts `redis-server` on a free loopback port, persisting every write (`appendfsync
    /// always`) so a restart keeps what was acknowledged, like a production Redis with AOF.
    pub async fn start() -> anyhow::Result<Self> {
        let mut redis = Self {
            process: OwnedProcess::prepare("redis")?,
        };
        redis.restart().await?;
        Ok(redis)
    }

    /// `redis://…` for `redis.url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.process.port())
    }

    crate::owned::process_controls! {
        /// Stops the server with SIGTERM.
        stop: nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15)
    }

    /// Kills the server, deletes everything it had persisted, and starts it again: a Redis
    /// that lost its data (a restart without persistence, a failed-over replica that lagged).
    pub async fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        for entry in std::fs::read_dir(self.process.dir())?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        self.restart().await
    }

    /// Starts it again on the same port and data, and waits until it answers PING.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.process.port().to_string(),
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.process.dir());
        self.process.spawn(command)?;
        let url = self.url();
        crate::wait::until("owned redis answers", Duration::from_secs(30), || async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        })
        .await
        .map(|_| ())
    }
}
