//! SIGTERM / SIGINT → a cancelled [`CancellationToken`] that every run loop watches, and a
//! deadline after which a process still draining exits anyway.
//!
//! Each run loop bounds its own drain (a grace for the batch in hand, a flush deadline), but
//! some waits sit below those bounds: a store that stops answering without closing its socket
//! (a frozen server, a dropped route) holds a driver call that has no timeout of its own, and a
//! drain waiting on it ends only when the driver gives up on the server, if it ever does
//! (MongoDB's driver does at its heartbeat timeout, `mongo.connect_timeout_ms`, 30 s). The
//! process manager's SIGKILL would end it, at a time the process does not choose and with
//! nothing in its log to say what it was waiting for. The deadline ends it first and says so. Every path is crash-safe (offsets are committed only
//! after the store has the batch, and writes are idempotent), so leaving at the deadline costs
//! redeliveries, never data.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The exit status of a process that was still draining at its shutdown deadline: the status
/// `timeout(1)` gives a command it ended, so operators read it the same way.
pub const DEADLINE_EXIT_CODE: i32 = 124;

/// Every service's `shutdown_deadline_ms` default: longer than each one's own drain bounds at
/// their defaults (at most 30 s, the ledger-writer's relay drain and flush), shorter than what
/// compose gives a container to stop (`stop_grace_period: 60s`).
pub const DEADLINE_MS_DEFAULT: u64 = 45_000;

/// Checks a service's `shutdown_deadline_ms` against the longest drain its own bounds allow
/// (`drain`, named for the message): a deadline inside it would cut short a drain that was
/// going to end by itself.
pub fn validate_deadline(deadline_ms: u64, drain_ms: u64, drain: &str) -> Result<(), String> {
    crate::settings::ensure(
        deadline_ms > drain_ms,
        "shutdown_deadline_ms",
        &format!("must be greater than {drain} ({drain_ms} ms)"),
    )
}

/// Returns a token cancelled on the first SIGTERM or SIGINT (ctrl-c). From that signal on, the
/// process has `deadline` to finish its drain and return from `main`; if it has not, it logs
/// what happened and exits with [`DEADLINE_EXIT_CODE`].
pub fn on_signal(deadline: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            deadline_ms = deadline.as_millis() as u64,
            "shutdown signal received; draining"
        );
        exit_after(deadline);
        child.cancel();
    });
    token
}

/// Starts the deadline's clock on a thread of its own: a drain stuck in a call that blocks a
/// runtime thread (a client's blocking close, a synchronous commit) must not stop the clock.
fn exit_after(deadline: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(deadline);
            tracing::error!(
                deadline_ms = deadline.as_millis() as u64,
                exit_code = DEADLINE_EXIT_CODE,
                "still draining at the shutdown deadline; exiting without finishing (anything \
                 not yet committed is redelivered)"
            );
            std::process::exit(DEADLINE_EXIT_CODE);
        });
    if let Err(error) = spawned {
        // Without the thread the drain keeps its own bounds only; the process manager's
        // SIGKILL remains the last resort.
        tracing::warn!(%error, "cannot start the shutdown deadline's thread");
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_must_outlast_the_drain_it_bounds() {
        assert!(validate_deadline(45_000, 30_000, "the relay's drain and flush").is_ok());
        let error = validate_deadline(30_000, 30_000, "the relay's drain and flush").unwrap_err();
        assert_eq!(
            error,
            "shutdown_deadline_ms: must be greater than the relay's drain and flush (30000 ms)"
        );
    }
}
