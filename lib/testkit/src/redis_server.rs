//! A Redis server owned by one test (its own process, port and append-only file), to stop
//! and restart without touching the shared one.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A test-owned `redis-server`. Killed on drop.
#[derive(Debug)]
pub struct OwnedRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnedRedis {
    /// Starts `redis-server` on a free loopback port, persisting every write (`appendfsync
    /// always`) so a restart keeps what was acknowledged, like a production Redis with AOF.
    pub async fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!(
            "ledgerline-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    /// `redis://…` for `redis.url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data, and waits until it answers PING.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
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

impl Drop for OwnedRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
