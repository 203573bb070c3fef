//! The ledger-writer killed at the worst moments, as a real process.

mod support;

use ledgerline_testkit::TestEnv;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn writer_process(env: &TestEnv, faults: &[(&str, &str)]) -> tokio::process::Child {
    let s = settings(env);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger-writer"));
    command
        .envs(env.service_env(&s.group_id))
        .envs(faults.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command.spawn().unwrap()
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.pg).await.unwrap()
}

#[tokio::test]
async fn a_writer_killed_after_its_database_commit_reposts_nothing_and_relays_everything() {
    let env = TestEnv::new().await.unwrap();
    let decisions = random_workload("c", 60, 6);
    publish_all(&env, &decisions).await;

    // Dies right after the first batch's commit: offsets not committed, outbox not relayed.
    let mut child = writer_process(
        &env,
        &[
            ("LEDGERLINE_FAULTS__CRASH_AFTER_COMMIT", "true"),
            ("LEDGERLINE_FAULTS__RELAY_DISABLED", "true"),
        ],
    );
    let exit = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the fault fires")
        .unwrap();
    assert!(!exit.success());
    let committed = count(&env, "SELECT count(*) FROM ledger_transactions").await;
    assert!(
        committed > 0,
        "the first batch was committed before the crash"
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM outbox").await,
        committed,
        "nothing was relayed"
    );

    // Restart normally: the batch is redelivered, found recorded, and the relay catches up.
    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 60).await;
    wait_for_relay(&env).await;
    let relayed = distinct_postings(&env, 60, Duration::from_secs(30)).await;
    running.stop().await;

    assert_matches_model(&env, &decisions).await;
    assert_eq!(
        relayed.len(),
        60,
        "every outcome reaches txn.postings (after dedupe by event_id)"
    );
}

#[tokio::test]
async fn a_writer_killed_with_sigkill_mid_stream_resumes_to_the_exact_final_state() {
    let env = TestEnv::new().await.unwrap();
    let decisions = random_workload("k", 3_000, 40);
    publish_all(&env, &decisions).await;

    let mut child = writer_process(&env, &[("LEDGERLINE_BATCH__BATCH_SIZE_MAX", "50")]);
    ledgerline_testkit::wait::until(
        "some batches committed",
        Duration::from_secs(90),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
                .fetch_one(&env.pg)
                .await
                .ok()?;
            (n >= 100).then_some(())
        },
    )
    .await
    .unwrap();
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let at_kill = count(&env, "SELECT count(*) FROM ledger_transactions").await;
    assert!(at_kill < 3_000, "killed mid-stream ({at_kill} posted)");

    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 3_000).await;
    wait_for_relay(&env).await;
    running.stop().await;
    assert_matches_model(&env, &decisions).await;
    assert_eq!(
        count(&env, "SELECT count(*) FROM outbox").await,
        0,
        "every row was sent, then deleted"
    );
    // The relay is at least once: a round cut short by the kill is sent again.
    assert_eq!(
        distinct_postings(&env, 3_000, Duration::from_secs(60))
            .await
            .len(),
        3_000,
        "every outcome reaches txn.postings (after dedupe by event_id)"
    );
}
