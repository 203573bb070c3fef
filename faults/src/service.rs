//! One pipeline service run as its own child process, the way an operator runs it: configured
//! only through `LEDGERLINE_*` variables, so a fault can `kill -9` it and start it again with
//! the same settings.

use nix::sys::signal::Signal;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::error::FaultError;

/// How often readiness and exits are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A service binary with its settings; running or not.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    binary: PathBuf,
    env: Vec<(String, String)>,
    ready_url: String,
    log: PathBuf,
    child: Option<Child>,
    /// Times it was started.
    pub starts: u32,
}

impl Service {
    /// A service that is not started yet; its output is appended to `log`.
    pub fn new(
        name: &'static str,
        binary: PathBuf,
        env: Vec<(String, String)>,
        ready_url: String,
        log: PathBuf,
    ) -> Service {
        Service {
            name,
            binary,
            env,
            ready_url,
            log,
            child: None,
            starts: 0,
        }
    }

    /// The service's name (`ingress`, `processor`, …).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Spawns the process (it must not be running).
    pub fn start(&mut self) -> Result<(), FaultError> {
        let io = |source| FaultError::Io {
            what: format!("log file {}", self.log.display()),
            source,
        };
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let child = Command::new(&self.binary)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| FaultError::Io {
                what: format!("starting {}", self.binary.display()),
                source,
            })?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Waits until `/readyz` answers 200, or fails when the process exits or `timeout` passes.
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Duration, FaultError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(FaultError::ServiceExited {
                    service: self.name,
                    status: status.to_string(),
                    log: self.log.clone(),
                });
            }
            let ready = http
                .get(&self.ready_url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(FaultError::NotReady {
                    service: self.name,
                    secs: timeout.as_secs(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILL and reap: the process gets no chance to flush, commit or say goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then waits up to `grace` for the exit; a process still alive then is killed
    /// and reported as such.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, FaultError> {
        let Some(mut child) = self.child.take() else {
            return Err(FaultError::NotRunning(self.name));
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(FaultError::Io {
                what: format!("waiting for {}", self.name),
                source,
            }),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(FaultError::ShutdownHung {
                    service: self.name,
                    secs: grace.as_secs(),
                })
            }
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, …) to the running process.
    pub fn signal(&self, signal: Signal) -> Result<(), FaultError> {
        let pid = self.pid().ok_or(FaultError::NotRunning(self.name))?;
        crate::proc::signal(pid, signal)
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Whether a process was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// The exit status of a process that ended on its own (a crash nobody injected).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Where its output goes.
    pub fn log(&self) -> &PathBuf {
        &self.log
    }
}
