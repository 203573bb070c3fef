//! A PostgreSQL cluster owned by one test: `initdb` into a private directory, its own
//! postmaster on a free port, to stop, kill, freeze and start again without touching the
//! machine's PostgreSQL.

use crate::owned::OwnedProcess;
use nix::sys::signal::Signal;
use sqlx::Connection;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Most time a (re)start may take, including waiting for a killed postmaster's backends to go.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server binaries: `LEDGERLINE_TEST_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn bindir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LEDGERLINE_TEST_PG_BINDIR") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL server under /usr/lib/postgresql"))
}

/// PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user and
/// its processes run as that user (set on the child itself, so the child *is* the postmaster
/// and a kill reaches it, which a `su` wrapper would not).
fn run_as() -> anyhow::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?
        .ok_or_else(|| anyhow::anyhow!("running as root and there is no `postgres` user"))?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    command.env_remove("PGDATA").env("LC_ALL", "C");
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

/// A running (or stopped) test-owned PostgreSQL. Killed on drop.
#[derive(Debug)]
pub struct OwnedPostgres {
    process: OwnedProcess,
    bindir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl OwnedPostgres {
    /// Creates a cluster (trust authentication, superuser `postgres`) and starts it.
    pub async fn start() -> anyhow::Result<Self> {
        let process = OwnedProcess::prepare("postgres")?;
        let owner = run_as()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(process.dir(), Some(uid), Some(gid))?;
        }
        let bindir = bindir()?;
        let data = process.dir().join("data");
        let status = command(&bindir.join("initdb"), owner)
            .current_dir(process.dir())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .args(["--no-sync", "--no-instructions"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()?;
        anyhow::ensure!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let mut postgres = Self {
            process,
            bindir,
            owner,
        };
        postgres.restart().await?;
        Ok(postgres)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`, a superuser on the `postgres` database.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.process.port()
        )
    }

    // `pid` and `signal` reach the postmaster only (its backends are its children); after a
    // `kill` the backends notice and exit by themselves, and `restart` waits for them.
    crate::owned::process_controls! {
        /// Fast shutdown (SIGINT): sessions are ended, a checkpoint is written.
        stop: Signal::SIGINT, Duration::from_secs(30)
    }

    /// Starts the postmaster on the same port and data, and waits until it accepts
    /// connections. After a kill, a start can fail while old backends still hold the shared
    /// memory; it is tried again until [`START_TIMEOUT`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let url = self.admin_url();
        loop {
            let mut postgres = command(&self.bindir.join("postgres"), self.owner);
            postgres
                .current_dir(self.process.dir())
                .arg("-D")
                .arg(self.process.dir().join("data"))
                .args(["-p", &self.process.port().to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!(
                    "unix_socket_directories={}",
                    self.process.dir().display()
                ))
                .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"]);
            self.process.spawn_logged(postgres)?;
            loop {
                if sqlx::PgConnection::connect(&url).await.is_ok() {
                    return Ok(());
                }
                if self.process.has_exited() {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "postgres did not accept connections within {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    self.process.log_path().display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "postgres kept exiting at start-up for {} s; see {}",
                START_TIMEOUT.as_secs(),
                self.process.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
