//! A Kafka-compatible broker owned by one test: its own process, port and storage, so a test
//! can stop and restart it without disturbing the shared broker every other test uses.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The broker binary: `LEDGERLINE_TEST_NISSHI`, else where `scripts/up` installs it.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LEDGERLINE_TEST_NISSHI") {
        return path.into();
    }
    let tools = std::env::var_os("LEDGERLINE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".local/share/ledgerline/tools")
        });
    tools.join("nisshi-0.8.1/bin/nisshi")
}

/// A running (or stopped) test-owned broker. Killed on drop.
#[derive(Debug)]
pub struct OwnedBroker {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnedBroker {
    /// Starts a broker on a free loopback port with storage in a fresh directory, and waits
    /// until it answers metadata requests.
    pub async fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!(
            "ledgerline-broker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// `host:port` for `kafka.brokers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL): clients see connections refused until [`restart`].
    ///
    /// [`restart`]: OwnedBroker::restart
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // Run from / with an absolute path: the sqlite engine resolves its file against the
        // working directory (see scripts/lib.sh).
        let child = Command::new(binary())
            .current_dir("/")
            .env_remove("RUST_LOG")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .arg("--storage-engine")
            .arg(format!("sqlite://{}/broker.db", self.dir.display()))
            .args(["--group-initial-rebalance-delay", "250ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary().display()))?;
        self.child = Some(child);
        crate::wait::until("owned broker answers", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
    }
}

impl Drop for OwnedBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
