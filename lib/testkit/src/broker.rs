//! A Kafka-compatible broker owned by one test: its own process, port and storage, so a test
//! can stop and restart it without disturbing the shared broker every other test uses.

use crate::owned::OwnedProcess;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long the broker's sqlite engine waits for its write lock before failing a request, as
/// the shared broker is started (KAFKA_SQLITE_BUSY_TIMEOUT in scripts/lib.sh says why it is
/// longer than nisshi's 5 s).
const SQLITE_BUSY_TIMEOUT: &str = "30s";

/// The broker binary: `LEDGERLINE_TEST_NISSHI`, else where `scripts/up` installs it.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LEDGERLINE_TEST_NISSHI") {
        return path.into();
    }
    // The install root names the version and the storage features (NISSHI_ROOT in scripts/lib.sh).
    tools_dir().join("nisshi-0.8.1-libsql-postgres/bin/nisshi")
}

/// Where `scripts/up` installs the broker and the MongoDB-compatible server:
/// `LEDGERLINE_TOOLS_DIR`, else `~/.local/share/ledgerline/tools`.
pub(crate) fn tools_dir() -> PathBuf {
    std::env::var_os("LEDGERLINE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".local/share/ledgerline/tools")
        })
}

/// A running (or stopped) test-owned broker. Killed on drop.
#[derive(Debug)]
pub struct OwnedBroker {
    process: OwnedProcess,
}

impl OwnedBroker {
    /// Starts a broker on a free loopback port with storage in a fresh directory, and waits
    /// until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let mut broker = Self {
            process: OwnedProcess::prepare("broker")?,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// `host:port` for `kafka.brokers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.process.port())
    }

    crate::owned::process_controls! {
        /// Stops the broker with SIGTERM (it serves for up to 5 s more, then exits).
        stop: nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15)
    }

    /// Starts the broker again on the same port and storage, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let port = self.process.port();
        let url = format!("tcp://127.0.0.1:{port}");
        // Run from / with an absolute path: the sqlite engine resolves its file against the
        // working directory (see scripts/lib.sh).
        let mut command = Command::new(binary());
        command
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
            .arg(format!(
                "sqlite://{}/broker.db?busy_timeout={SQLITE_BUSY_TIMEOUT}",
                self.process.dir().display()
            ))
            .args(["--group-initial-rebalance-delay", "250ms"]);
        self.process.spawn(command)?;
        crate::wait::until("owned broker answers", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
    }
}
