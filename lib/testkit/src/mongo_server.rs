//! A MongoDB-compatible server (secantusdb) owned by one test: its own process, port and
//! storage, to stop, kill, freeze and start again without touching the shared one.

use crate::owned::OwnedProcess;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Most time a (re)start may take: a large data directory takes seconds to open.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server: `LEDGERLINE_TEST_SECANTUSD`, else where `scripts/up` installs it.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LEDGERLINE_TEST_SECANTUSD") {
        return path.into();
    }
    crate::broker::tools_dir().join("secantusdb-0.7.0b3/bin/secantusd-py")
}

/// A running (or stopped) test-owned MongoDB-compatible server. Killed on drop.
#[derive(Debug)]
pub struct OwnedMongo {
    process: OwnedProcess,
}

impl OwnedMongo {
    /// Starts a server on a free loopback port with storage in a fresh directory, and waits
    /// until it answers a ping.
    pub async fn start() -> anyhow::Result<Self> {
        let process = OwnedProcess::prepare("mongo")?;
        // An explicit empty configuration turns off the server's auto-discovery of config
        // files in the working and home directories: the command line is all of it.
        std::fs::write(process.dir().join("secantusd.toml"), "")?;
        let mut mongo = Self { process };
        mongo.restart().await?;
        Ok(mongo)
    }

    /// `mongodb://127.0.0.1:<port>/?directConnection=true`.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.process.port()
        )
    }

    crate::owned::process_controls! {
        /// Stops the server with SIGTERM.
        stop: Signal::SIGTERM, Duration::from_secs(30)
    }

    /// Starts it again on the same port and storage, and waits until it answers a ping.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let dir = self.process.dir().to_path_buf();
        let mut command = Command::new(binary());
        command
            .current_dir(&dir)
            .arg("--config")
            .arg(dir.join("secantusd.toml"))
            .args(["--host", "127.0.0.1", "--port"])
            .arg(self.process.port().to_string())
            .arg("--storage-path")
            .arg(dir.join("data"));
        self.process.spawn_logged(command)?;
        let mut options = mongodb::options::ClientOptions::parse(self.uri()).await?;
        options.server_selection_timeout = Some(Duration::from_secs(1));
        options.connect_timeout = Some(Duration::from_secs(1));
        let client = mongodb::Client::with_options(options)?;
        let log = self.process.log_path();
        let process = &mut self.process;
        crate::wait::until("owned mongo answers", START_TIMEOUT, || {
            let client = client.clone();
            let exited = process.has_exited();
            let log = log.clone();
            async move {
                if exited {
                    return Some(Err(anyhow::anyhow!(
                        "the server exited at start-up; see {}",
                        log.display()
                    )));
                }
                client
                    .database("admin")
                    .run_command(mongodb::bson::doc! { "ping": 1 })
                    .await
                    .ok()
                    .map(|_| Ok(()))
            }
        })
        .await?
    }
}
