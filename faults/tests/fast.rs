//! The CI subset of the fault suite (`Scenario::FAST`), each scenario once at CI intensity,
//! against the real service binaries built with the workspace and stores owned by the run.
//! The full suite is `scripts/faults` (docs/reliability.md).

use clap::Parser;
use faults::cli::{Cli, Command};
use faults::run;
use faults::scenario::Scenario;

/// One whole pipeline at a time: the box has two cores, and a scenario's timings (restart,
/// rebalance, drain) should not depend on how many others run beside it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn passes(scenario: Scenario, seed: u64) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let out = std::env::temp_dir().join(format!("ledgerline-faults-{}", uuid_like()));
    let Command::Run(args) = Cli::parse_from([
        "faults",
        "run",
        "--fast",
        "--workers",
        "4",
        "--pause-ms",
        "50",
        "--out",
        out.to_str().unwrap(),
    ])
    .command
    else {
        unreachable!("parsed a run")
    };
    let outcome = run::run(&args.run_settings(scenario, seed)).await.unwrap();
    assert!(outcome.passed(), "{}", outcome.failure());
    assert!(outcome.faults > 0, "a fault was injected");
    assert!(outcome.counts.accepted > 0, "the load was accepted");
    assert!(outcome.transactions >= outcome.counts.accepted);
    let _ = std::fs::remove_dir_all(&out);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_writer_killed_under_load_loses_nothing_and_applies_nothing_twice() {
    passes(Scenario::KillLedgerWriter, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_under_load_loses_nothing_and_applies_nothing_twice() {
    passes(Scenario::StopRedis, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_on_every_topic_is_dead_lettered_while_the_load_still_posts() {
    passes(Scenario::Poison, 13).await;
}
