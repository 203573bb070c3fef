//! `verify` after a real run through the whole pipeline: it passes, and it fails once a ledger
//! row has been removed behind the pipeline's back.

mod support;

use loadtest::scenarios::{self, ScenarioName};
use loadtest::verify::{self, reconciler, VerifySettings};
use std::time::Duration;
use support::*;
use time::OffsetDateTime;

// A run of new transactions, retries and conflicting bodies: every 202 ends in the ledger once
// with the original's amount, postings and balances agree, the audit holds every event, and
// verification passes. Then one ledger row is deleted (bypassing the append-only trigger, as
// only a test may): verification fails and names that transaction.
#[tokio::test]
async fn verify_passes_after_a_real_run_and_fails_when_a_ledger_row_is_deleted() {
    let stack = Stack::pipeline().await;
    let record_file = stack.dir.join("accepted.jsonl");
    let since = OffsetDateTime::now_utc() - Duration::from_secs(1);
    {
        let _goose = GOOSE.lock().await;
        let mut settings = scenario_settings(Some(record_file.clone()));
        settings.retry_percent = 40;
        settings.conflict_percent = 40;
        let outcome = scenarios::run(
            settings,
            ScenarioName::RetryStorm,
            goose_config(&stack.url(), 2, 6),
        )
        .await
        .unwrap();
        assert!(!outcome.invariant_broken());
        assert!(outcome.counted.accepted >= 12, "{:?}", outcome.counted);
    }

    let settings = VerifySettings {
        record_file: record_file.clone(),
        since,
        postgres: stack.env.postgres.clone(),
        mongo: stack.env.mongo.clone(),
        drain_timeout: Duration::from_secs(120),
        poll_interval: Duration::from_millis(200),
        reconciler: reconciler::Choice::Off,
        reconciler_timeout: Duration::from_secs(60),
        reconciler_env: Vec::new(),
    };
    let report = verify::run(&settings).await.unwrap();
    assert!(report.passed, "{}", report.summary());
    assert_eq!(report.transactions, 12);
    assert_eq!(report.posted, 12, "credits only");
    assert_eq!(report.ledger_rows, 12);
    assert_eq!(report.audited, 12);
    assert_eq!(report.duplicates_decided, report.duplicates_sent);
    assert_eq!(report.conflicts_rejected, report.conflicts_sent);
    assert!(report.latency_202_to_ledger_ms.p99.is_some());
    assert_eq!(report.reconciler.status, "off");

    // Remove one transaction from the ledger behind the writer's back.
    let victim = loadtest::record::read(&record_file).unwrap()[0]
        .transaction_id
        .parse::<uuid::Uuid>()
        .unwrap();
    let mut tx = stack.env.pg.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    let deleted = sqlx::query("DELETE FROM ledger_transactions WHERE transaction_id = $1")
        .bind(victim)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    tx.commit().await.unwrap();

    let report = verify::run(&VerifySettings {
        drain_timeout: Duration::from_secs(2),
        ..settings
    })
    .await
    .unwrap();
    assert!(!report.passed);
    assert_eq!(
        report.findings_by_kind.get("not_terminal"),
        Some(&1),
        "{}",
        report.summary()
    );
    assert_eq!(
        report.findings[0].transaction_id.as_deref(),
        Some(victim.to_string().as_str())
    );
    stack.stop().await;
}
