//! The lifecycle shared by servers a single test owns: a free loopback port, a private data
//! directory, a child process to kill, signal and start again, and cleanup on drop.

use nix::sys::signal::Signal;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The controls every owned server exposes over its [`OwnedProcess`] (a field named
/// `process`): `pid`, `signal` and `kill` alike for all, and `stop` with the server's own
/// polite signal and grace, given as `stop: SIGNAL, GRACE` and documented by the caller.
macro_rules! process_controls {
    ($(#[$stop_doc:meta])* stop: $signal:expr, $grace:expr) => {
        /// The server's process id.
        pub fn pid(&self) -> Option<u32> {
            self.process.pid()
        }

        /// Sends `signal` to the server (SIGSTOP and SIGCONT freeze and thaw it).
        pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
            self.process.signal(signal)
        }

        /// Kills the server (SIGKILL) and reaps it: clients see connections refused until it
        /// is started again.
        pub fn kill(&mut self) {
            self.process.kill();
        }

        $(#[$stop_doc])*
        pub async fn stop(&mut self) {
            self.process.stop($signal, $grace).await;
        }
    };
}
pub(crate) use process_controls;

/// A test-owned server process. Killed, and its directory removed, on drop.
#[derive(Debug)]
pub(crate) struct OwnedProcess {
    what: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnedProcess {
    /// Reserves a free port and a fresh directory named after `what`; starts nothing yet.
    pub(crate) fn prepare(what: &str) -> anyhow::Result<Self> {
        let port = crate::port::free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "ledgerline-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            what: what.to_string(),
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

    /// The running process's id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the running process (SIGSTOP and SIGCONT to freeze and thaw it).
    pub(crate) fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow::anyhow!("{} is not running", self.what))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` and waits up to `timeout` for the exit; a process still alive then is
    /// killed.
    pub(crate) async fn stop(&mut self, signal: Signal, timeout: Duration) {
        if self.signal(signal).is_err() {
            self.kill();
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// Kills any running instance, then spawns `command` with its output discarded.
    pub(crate) fn spawn(&mut self, command: Command) -> anyhow::Result<()> {
        self.spawn_with(command, Stdio::null(), Stdio::null())
    }

    /// Like [`spawn`](Self::spawn), but the output is appended to `<dir>/<what>.log`, for
    /// servers whose start-up can fail in ways worth reading.
    pub(crate) fn spawn_logged(&mut self, command: Command) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let err = log.try_clone()?;
        self.spawn_with(command, log.into(), err.into())
    }

    /// Where [`spawn_logged`](Self::spawn_logged) writes.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.what))
    }

    fn spawn_with(&mut self, mut command: Command, out: Stdio, err: Stdio) -> anyhow::Result<()> {
        self.kill();
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {program}: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process was started and has exited since.
    pub(crate) fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
