//! The lifecycle shared by servers a single test owns: a free loopback port, a private data
//! directory, a child process to kill and start again on both, and cleanup on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A test-owned server process. Killed, and its directory removed, on drop.
#[derive(Debug)]
pub(crate) struct OwnedProcess {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnedProcess {
    /// Reserves a free port and a fresh directory named after `what`; starts nothing yet.
    pub(crate) fn prepare(what: &str) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!(
            "ledgerline-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            port,
            dir,
            child: None,
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills any running instance, then spawns `command` with its output discarded.
    pub(crate) fn spawn(&mut self, mut command: Command) -> anyhow::Result<()> {
        self.kill();
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {program}: {e}"))?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
