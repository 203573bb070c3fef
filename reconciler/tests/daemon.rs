//! Daemon mode against the real stores: it becomes ready, runs on schedule over its trailing
//! window, records each run, exports the results as metrics, and stops on shutdown.

mod support;

use ledgerline_contracts::events::TxnType;
use ledgerline_testkit::TestEnv;
use reconciler::daemon::Daemon;
use reconciler::record;
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;

async fn get(admin: std::net::SocketAddr, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{admin}{path}")).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_on_schedule_records_its_runs_and_exports_them_as_metrics() {
    let env = TestEnv::new().await.unwrap();
    let ledger = start_ledger(&env).await;
    let audit = start_audit(&env).await;
    let p = producer(&env);
    for i in 0..5 {
        let d = decided(&format!("d{i}"), "acc-d", TxnType::Credit, 10 + i);
        publish(&env, &p, &d).await;
    }
    wait_for_ledger(&env, 5).await;
    wait_for_documents(&env, 10).await;
    ledger.stop().await;
    audit.stop().await;

    let mut s = settings(&env);
    s.daemon.interval_secs = 1;
    s.daemon.window_secs = 600;
    s.daemon.settle_delay_secs = 0;
    let daemon = Daemon::build(s).await.unwrap();
    let admin = daemon.admin_addr();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(daemon.run_until_stopped(shutdown.clone()));

    ledgerline_testkit::wait::until("two clean daemon runs", Duration::from_secs(60), || async {
        let runs = record::latest_runs(&env.pg, 10).await.ok()?;
        let clean = runs
            .iter()
            .filter(|r| r.trigger == "daemon" && r.status == "clean")
            .count();
        (clean >= 2).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(get(admin, "/readyz").await.0, 200);
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let (status, metrics) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "ledgerline_reconciler_runs_total",
        "ledgerline_reconciler_discrepancies",
        "ledgerline_reconciler_run_duration_seconds",
        "ledgerline_reconciler_last_clean_window_end_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("status=\"clean\""));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("the daemon stops on shutdown")
        .unwrap();
}
