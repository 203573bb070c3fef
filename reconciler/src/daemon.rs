//! Daemon mode: a run every `daemon.interval_secs` over the trailing window
//! `[now - settle_delay - window, now - settle_delay)`, with `/metrics`, `/healthz` and
//! `/readyz`. The PostgreSQL run lock keeps two runs (two daemons, or a daemon and an
//! operator's CLI run or repair) from working at once; a tick that finds it held is skipped.

use crate::app::{ConnectError, Context};
use crate::config::Settings;
use crate::metrics;
use crate::record::RunLock;
use crate::run::{reconcile, Window};
use ledgerline_runtime::admin::{AdminServer, AdminState};
use ledgerline_runtime::backoff::Backoff;
use ledgerline_runtime::health::Readiness;
use ledgerline_runtime::telemetry;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Readiness check name: the stores and the log are connected.
pub const STORES: &str = "stores";

/// A built daemon, not yet running.
#[derive(Debug)]
pub struct Daemon {
    settings: Settings,
    admin: AdminServer,
    readiness: Readiness,
}

impl Daemon {
    /// Binds the admin port.
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let readiness = Readiness::new(&[STORES]);
        let admin = AdminServer::bind(
            settings.admin_addr,
            AdminState {
                prometheus: telemetry::prometheus(),
                readiness: readiness.clone(),
            },
        )
        .await?;
        Ok(Self {
            settings,
            admin,
            readiness,
        })
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.settings.admin_addr)
    }

    /// Connects (retrying while a store is down), then runs on schedule until `shutdown`.
    /// A run in progress at shutdown stops at its next read and is recorded as failed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let admin_stop = CancellationToken::new();
        tokio::spawn(self.admin.run(admin_stop.clone()));
        let Some(ctx) = connect(&self.settings, &shutdown).await else {
            admin_stop.cancel();
            return;
        };
        self.readiness.set(STORES, true);
        let mut ticker =
            tokio::time::interval(Duration::from_secs(self.settings.daemon.interval_secs));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => tick(&ctx, &self.readiness, &shutdown).await,
            }
        }
        admin_stop.cancel();
        tracing::info!("reconciler daemon stopped");
    }
}

async fn connect(settings: &Settings, shutdown: &CancellationToken) -> Option<Context> {
    let mut backoff = Backoff::new(settings.backoff);
    loop {
        match Context::connect(settings.clone()).await {
            Ok(ctx) => return Some(ctx),
            Err(
                error @ (ConnectError::Postgres(_)
                | ConnectError::Mongo(_)
                | ConnectError::Kafka(_)
                | ConnectError::Migrate(_)),
            ) => {
                tracing::warn!(%error, "cannot connect the stores yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// The window a tick covers at `now`.
pub fn trailing_window(settings: &Settings, now: time::OffsetDateTime) -> Window {
    let seconds = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    let to = now - seconds(settings.daemon.settle_delay_secs);
    Window {
        from: to - seconds(settings.daemon.window_secs),
        to,
    }
}

async fn tick(ctx: &Context, readiness: &Readiness, shutdown: &CancellationToken) {
    let window = trailing_window(&ctx.settings, ledgerline_runtime::time::now());
    let lock = match RunLock::try_acquire(&ctx.pool).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::info!("another run holds the lock; skipping this tick");
            metrics::run_skipped();
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "postgres unavailable; skipping this tick");
            readiness.set(STORES, false);
            return;
        }
    };
    match reconcile(ctx, window, "daemon", shutdown).await {
        Ok(report) => {
            readiness.set(STORES, true);
            tracing::info!(
                run_id = report.run_id,
                status = report.status,
                discrepancies = report.discrepancies.len(),
                duration_ms = report.duration_ms,
                "reconciliation run finished"
            );
        }
        Err(error) => {
            readiness.set(STORES, false);
            tracing::warn!(%error, "reconciliation run failed");
        }
    }
    lock.release().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_trailing_window_ends_a_settle_delay_before_now() {
        let mut s = Settings::default();
        s.daemon.settle_delay_secs = 120;
        s.daemon.window_secs = 900;
        let w = trailing_window(&s, datetime!(2026-01-01 12:00 UTC));
        assert_eq!(w.to, datetime!(2026-01-01 11:58 UTC));
        assert_eq!(w.from, datetime!(2026-01-01 11:43 UTC));
    }
}
