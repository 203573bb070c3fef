//! Each goose scenario against the real ingress (and, where it needs one, the real pipeline),
//! bounded by a number of iterations, never by time.

mod support;

use ledgerline_contracts::topics;
use loadtest::record::{self, Role};
use loadtest::scenarios::{self, Mix, ScenarioName};
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

/// Liveness bound for reading a topic back (not a performance assertion).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn post_requests(outcome: &scenarios::RunOutcome, name: &str) -> (usize, usize) {
    let key = format!("POST {name}");
    outcome
        .metrics
        .requests
        .get(&key)
        .map(|r| (r.success_count, r.fail_count))
        .unwrap_or_default()
}

// Every 202 of `submit` is recorded with its own transaction id, and each request is published
// to txn.requests exactly once.
#[tokio::test]
async fn submit_records_every_accepted_transaction_and_publishes_each_once() {
    let _goose = GOOSE.lock().await;
    let stack = Stack::ingress().await;
    let record_file = stack.dir.join("submit.jsonl");

    let outcome = scenarios::run(
        scenario_settings(Some(record_file.clone())),
        ScenarioName::Submit,
        goose_config(&stack.url(), 2, 5),
    )
    .await
    .unwrap();

    assert_eq!(outcome.counted.accepted, 10, "{:?}", outcome.counted);
    assert_eq!(post_requests(&outcome, "/v1/transactions"), (10, 0));
    let records = record::read(&record_file).unwrap();
    assert_eq!(records.len(), 10);
    let ids: BTreeSet<_> = records.iter().map(|r| r.transaction_id.clone()).collect();
    assert_eq!(ids.len(), 10, "one transaction per request");
    assert!(records.iter().all(|r| r.role == Role::Original));
    let published = stack.env.kafka.clone();
    let messages = ledgerline_testkit::kafka::read_topic(
        &published,
        &stack.env.topic(topics::REQUESTS),
        10,
        READ_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(messages.len(), 10);
    let published_ids: BTreeSet<String> = messages
        .iter()
        .map(|m| m.json()["transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(published_ids, ids);
    stack.stop().await;
}

// Every bad-auth request (ten kinds of mistake) is refused with 400 or 401, and none reaches
// Kafka: after them, one valid request is the only message on txn.requests.
#[tokio::test]
async fn bad_auth_requests_are_all_refused_and_none_reaches_kafka() {
    let _goose = GOOSE.lock().await;
    let stack = Stack::ingress().await;

    let outcome = scenarios::run(
        scenario_settings(None),
        ScenarioName::BadAuth,
        goose_config(&stack.url(), 2, 10),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.counted.bad_auth_refused, 20,
        "{:?}",
        outcome.counted
    );
    assert_eq!(outcome.counted.bad_auth_not_refused, 0);
    assert!(!outcome.invariant_broken());
    let refused_in_goose: usize = outcome
        .metrics
        .requests
        .values()
        .map(|r| r.success_count)
        .sum();
    assert_eq!(
        refused_in_goose, 20,
        "goose counts each refusal as the expected answer"
    );

    // A sentinel: one valid request after all the bad ones.
    let sentinel = scenarios::run(
        scenario_settings(None),
        ScenarioName::Submit,
        goose_config(&stack.url(), 1, 1),
    )
    .await
    .unwrap();
    assert_eq!(sentinel.counted.accepted, 1);
    let messages = ledgerline_testkit::kafka::read_topic(
        &stack.env.kafka,
        &stack.env.topic(topics::REQUESTS),
        1,
        READ_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(messages.len(), 1, "only the sentinel was published");
    stack.stop().await;
}

// Retries and conflicting bodies under a used key are answered 202 with the original's
// transaction id, and recorded with their role.
#[tokio::test]
async fn retry_storm_retries_and_conflicts_answer_the_original_transaction() {
    let _goose = GOOSE.lock().await;
    let stack = Stack::ingress().await;
    let record_file = stack.dir.join("retry.jsonl");

    let outcome = scenarios::run(
        scenario_settings(Some(record_file.clone())),
        ScenarioName::RetryStorm,
        goose_config(&stack.url(), 2, 8),
    )
    .await
    .unwrap();

    let c = &outcome.counted;
    assert_eq!(c.retry_other_transaction, 0);
    // retry 50 % + conflict 50 %: every original is followed by one of them.
    assert_eq!(c.retries_sent + c.conflicts_sent, 16, "{c:?}");
    assert_eq!(c.accepted, 32);
    let records = record::read(&record_file).unwrap();
    assert_eq!(records.len(), 32);
    let originals: BTreeSet<_> = records
        .iter()
        .filter(|r| r.role == Role::Original)
        .map(|r| r.transaction_id.clone())
        .collect();
    assert_eq!(originals.len(), 16);
    for r in records.iter().filter(|r| r.role != Role::Original) {
        assert!(originals.contains(&r.transaction_id), "{r:?}");
    }
    stack.stop().await;
}

// status-poll follows each of its transactions through the real pipeline to a terminal state.
#[tokio::test]
async fn status_poll_follows_each_transaction_to_a_terminal_state() {
    let _goose = GOOSE.lock().await;
    let stack = Stack::pipeline().await;

    let outcome = scenarios::run(
        scenario_settings(None),
        ScenarioName::StatusPoll,
        goose_config(&stack.url(), 2, 3),
    )
    .await
    .unwrap();

    let c = &outcome.counted;
    assert_eq!(c.polled_terminal, 6, "{c:?}");
    assert_eq!(c.polled_posted, 6, "credits only: every one is posted");
    assert_eq!(c.polled_gave_up, 0);
    stack.stop().await;
}

// mixed runs every kind of transaction in one scenario, with its weights.
#[tokio::test]
async fn mixed_runs_every_kind_of_transaction() {
    let _goose = GOOSE.lock().await;
    let stack = Stack::pipeline().await;
    let mut settings = scenario_settings(None);
    settings.mix = Mix::parse("submit=2,retry-storm=1,bad-auth=1,status-poll=1").unwrap();

    let outcome = scenarios::run(
        settings,
        ScenarioName::Mixed,
        goose_config(&stack.url(), 1, 2),
    )
    .await
    .unwrap();

    let c = &outcome.counted;
    // Per iteration: 2 submits, 1 retry-storm original + 1 retry or conflict, 1 status-poll
    // submit; 1 bad-auth.
    assert_eq!(c.accepted, 2 * 5, "{c:?}");
    assert_eq!(c.bad_auth_refused, 2);
    assert_eq!(c.retries_sent + c.conflicts_sent, 2);
    assert_eq!(c.polled_terminal, 2);
    assert!(!outcome.invariant_broken());
    stack.stop().await;
}
