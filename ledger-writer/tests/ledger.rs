//! The ledger-writer against real Kafka, PostgreSQL and Redis.

mod support;

use ledger_writer::replay::ReplayFrom;
use ledger_writer::Application;
use ledgerline_contracts::events::{self, Decision, PostingResult, TransactionPosted, TxnType};
use ledgerline_contracts::topics::{self, headers};
use ledgerline_testkit::TestEnv;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn credits_and_debits_post_balanced_entries_and_an_overdraft_is_declined() {
    let env = TestEnv::new().await.unwrap();
    let credit = decided("m1", "k1", "acc-1", TxnType::Credit, 1_000);
    let debit = decided("m1", "k2", "acc-1", TxnType::Debit, 300);
    let too_much = decided("m1", "k3", "acc-1", TxnType::Debit, 800);
    let mut rejected = decided("m1", "k4", "acc-1", TxnType::Credit, 5);
    rejected.decision = Decision::Rejected;
    rejected.reason_code = Some("AMOUNT_ABOVE_LIMIT".into());
    let later = decided("m1", "k5", "acc-1", TxnType::Credit, 50);
    // Another merchant's account with the same name is a different account.
    let other = decided("m2", "k1", "acc-1", TxnType::Credit, 7);
    publish_all(
        &env,
        &[
            credit.clone(),
            debit.clone(),
            too_much.clone(),
            rejected.clone(),
            later.clone(),
            other.clone(),
        ],
    )
    .await;

    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 5).await;
    wait_for_relay(&env).await;
    let relayed = postings_topic(&env, 5, Duration::from_secs(30)).await;
    running.stop().await;

    assert_eq!(
        result_of(&env, &credit).await,
        ("POSTED".into(), None, Some(1_000))
    );
    assert_eq!(
        result_of(&env, &debit).await,
        ("POSTED".into(), None, Some(700))
    );
    assert_eq!(
        result_of(&env, &too_much).await,
        ("DECLINED".into(), Some("INSUFFICIENT_FUNDS".into()), None)
    );
    assert_eq!(
        result_of(&env, &later).await,
        ("POSTED".into(), None, Some(750))
    );
    let rejected_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transactions WHERE transaction_id = $1")
            .bind(rejected.transaction_id.as_uuid())
            .fetch_one(&env.pg)
            .await
            .unwrap();
    assert_eq!(rejected_rows, 0, "only ACCEPTED decisions reach the ledger");
    assert_eq!(balance(&env, "m1", "acc-1").await, 750);
    assert_eq!(balance(&env, "m2", "acc-1").await, 7);
    let clearing: i64 = sqlx::query_scalar(
        "SELECT balance_minor FROM clearing_balances WHERE merchant_id = 'm1' AND currency = 'EUR'",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(clearing, -750, "the clearing side mirrors the account");
    let sources: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM postings WHERE source_topic = $1 AND source_offset >= 0",
    )
    .bind(env.topic(topics::OUTCOMES))
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(sources, 8, "every entry records where it came from");
    assert_books_balance(&env).await;

    // Relayed to txn.postings, keyed by account, and shown in the status read model.
    assert_eq!(relayed.len(), 5);
    for r in &relayed {
        assert_eq!(r.key.as_deref(), Some(b"acc-1".as_slice()));
        assert_eq!(r.header(headers::EVENT_TYPE), Some("TransactionPosted"));
        // The event is the ledger row, field for field (the outbox row only names it).
        let event: TransactionPosted = events::decode(r.payload.as_deref().unwrap()).unwrap();
        assert_eq!(event, ledger_row_event(&env, &event).await);
        assert_eq!(
            r.header(headers::CORRELATION_ID),
            Some(event.correlation_id.as_str())
        );
    }
    let declined = relayed
        .iter()
        .find(|r| r.json()["transaction_id"] == too_much.transaction_id.to_string())
        .unwrap();
    assert_eq!(declined.json()["result"], "DECLINED");
    // The read model gets the settlement fields (the processor's fields come from the
    // processor; the end-to-end test in ingress reads the merged status through the API).
    let redis = env.redis_conn().await.unwrap();
    let hash = |id: String| {
        let key = format!("{}txn:{id}", env.redis.key_prefix);
        let mut redis = redis.clone();
        async move {
            redis::cmd("HGETALL")
                .arg(key)
                .query_async::<HashMap<String, String>>(&mut redis)
                .await
                .unwrap()
        }
    };
    let posted = hash(debit.transaction_id.to_string()).await;
    assert_eq!(posted["settlement"], "POSTED");
    assert_eq!(posted["balance_after"], "7.00");
    let declined = hash(too_much.transaction_id.to_string()).await;
    assert_eq!(declined["settlement"], "DECLINED");
    assert!(!declined.contains_key("balance_after"));
}

#[tokio::test]
async fn a_random_workload_matches_a_sequential_model_of_every_account() {
    let env = TestEnv::new().await.unwrap();
    let decisions = random_workload("r", 400, 25);
    let mut s = settings(&env);
    s.batch.batch_size_max = 37; // many batches, some splitting an account's run
    let running = start(s).await;
    publish_all(&env, &decisions).await;
    wait_for_transactions(&env, 400).await;
    running.stop().await;

    assert_matches_model(&env, &decisions).await;
}

#[tokio::test]
async fn redelivered_and_replayed_decisions_post_nothing_twice() {
    let env = TestEnv::new().await.unwrap();
    let decisions: Vec<_> = (0..30)
        .map(|i| {
            decided(
                "m1",
                &format!("d{i}"),
                &format!("acc-{}", i % 4),
                TxnType::Credit,
                100,
            )
        })
        .collect();
    publish_all(&env, &decisions).await;
    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 30).await;
    // The processor re-emits the same decisions (e.g. after a crash): new offsets, same ids.
    publish_all(&env, &decisions[..10]).await;
    let relayed = postings_topic(&env, 30, Duration::from_secs(30)).await;
    wait_for_relay(&env).await;
    running.stop().await;
    let count = |sql: &'static str| {
        let pg = env.pg.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pg)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM ledger_transactions").await, 30);
    assert_eq!(count("SELECT count(*) FROM postings").await, 60);
    assert_eq!(
        count("SELECT count(*) FROM outbox").await,
        0,
        "every row was sent, then deleted"
    );
    assert_eq!(relayed.len(), 30);

    // A replay of the whole topic through the same path finds everything recorded.
    let app = Application::build(settings(&env)).await.unwrap();
    let report = app
        .replay(ReplayFrom::Offset(0), None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.posted, 0);
    assert_eq!(report.already_recorded, 40);
    // What was found recorded, by the redeliveries or by the replay, is not announced again.
    assert_eq!(count("SELECT count(*) FROM outbox").await, 0);
    let announced = postings_topic(&env, 31, Duration::from_secs(5)).await;
    assert_eq!(announced.len(), 30, "one announcement per transaction");
    assert_eq!(count("SELECT count(*) FROM ledger_transactions").await, 30);
    assert_eq!(count("SELECT count(*) FROM postings").await, 60);
    for i in 0..4 {
        assert_eq!(
            balance(&env, "m1", &format!("acc-{i}")).await,
            if i < 2 { 800 } else { 700 }
        );
    }
    assert_books_balance(&env).await;
}

#[tokio::test]
async fn an_outbox_row_whose_transaction_left_the_ledger_is_dropped_and_the_rest_are_sent() {
    let env = TestEnv::new().await.unwrap();
    let decisions: Vec<_> = (0..4)
        .map(|i| decided("m1", &format!("q{i}"), "acc-q", TxnType::Credit, 100))
        .collect();
    publish_all(&env, &decisions).await;
    let mut quiet = settings(&env);
    quiet.faults.relay_disabled = true;
    let running = start(quiet).await;
    wait_for_transactions(&env, 4).await;
    running.stop().await;
    // A repair of an earlier version moved a transaction aside and left its outbox row.
    let gone = *decisions[1].transaction_id.as_uuid();
    quarantine(&env.pg, gone, &["postings", "ledger_transactions"])
        .await
        .unwrap();
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&env.pg)
            .await
            .unwrap(),
        4
    );

    let running = start(settings(&env)).await;
    wait_for_relay(&env).await;
    let metrics = reqwest::get(format!("http://{}/metrics", running.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let relayed = postings_topic(&env, 4, Duration::from_secs(5)).await;
    running.stop().await;

    let announced: Vec<String> = relayed
        .iter()
        .map(|r| r.json()["transaction_id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = [0, 2, 3]
        .iter()
        .map(|&i| decisions[i].transaction_id.to_string())
        .collect();
    assert_eq!(announced, expected, "the others, in their order");
    assert!(
        metrics.contains(
            "ledgerline_ledger_writer_outbox_dropped_total{reason=\"not_in_ledger\"} 1\n"
        ),
        "the drop is counted:\n{metrics}"
    );
}

#[tokio::test]
async fn a_replay_into_an_empty_ledger_rebuilds_the_same_books() {
    let env = TestEnv::new().await.unwrap();
    let mut decisions = Vec::new();
    for i in 0..40 {
        let t = if i % 3 == 0 {
            TxnType::Debit
        } else {
            TxnType::Credit
        };
        decisions.push(decided(
            "m1",
            &format!("b{i}"),
            &format!("acc-{}", i % 5),
            t,
            40 + i,
        ));
    }
    publish_all(&env, &decisions).await;
    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 40).await;
    running.stop().await;
    let snapshot = |pg: sqlx::PgPool| async move {
        let b: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT merchant_id, account_id, balance_minor FROM balances ORDER BY 1, 2",
        )
        .fetch_all(&pg)
        .await
        .unwrap();
        let t: Vec<(uuid::Uuid, String, uuid::Uuid)> = sqlx::query_as(
            "SELECT transaction_id, result, posted_event_id FROM ledger_transactions ORDER BY 1",
        )
        .fetch_all(&pg)
        .await
        .unwrap();
        (b, t)
    };
    let before = snapshot(env.pg.clone()).await;

    sqlx::query("TRUNCATE postings, outbox, ledger_transactions, balances")
        .execute(&env.pg)
        .await
        .unwrap();
    let app = Application::build(settings(&env)).await.unwrap();
    let report = app
        .replay(ReplayFrom::Offset(0), None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.posted + report.declined, 40);
    assert_eq!(snapshot(env.pg.clone()).await, before);
    assert_books_balance(&env).await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_rest_posts() {
    let env = TestEnv::new().await.unwrap();
    let p = producer(&env);
    let topic = env.topic(topics::OUTCOMES);
    let good = decided("m1", "good", "acc-1", TxnType::Credit, 10);
    let mut future = serde_json::to_value(&good).unwrap();
    future["schema_version"] = 2.into();
    let mut negative =
        serde_json::to_value(decided("m1", "neg", "acc-1", TxnType::Credit, 1)).unwrap();
    negative["amount_minor"] = (-5).into();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            b"not json".to_vec(),
            "TransactionDecided",
            "MALFORMED_EVENT",
        ),
        (
            future.to_string().into_bytes(),
            "TransactionDecided",
            "UNSUPPORTED_SCHEMA_VERSION",
        ),
        (
            negative.to_string().into_bytes(),
            "TransactionDecided",
            "INVALID_EVENT",
        ),
        (
            serde_json::to_vec(&good).unwrap(),
            "TransactionRequested",
            "UNEXPECTED_EVENT_TYPE",
        ),
    ];
    for (payload, event_type, _) in &cases {
        ledgerline_testkit::kafka::produce(
            &p,
            &topic,
            "acc-1",
            payload,
            &[
                (headers::EVENT_TYPE, event_type),
                (headers::CORRELATION_ID, "c"),
            ],
        )
        .await
        .unwrap();
    }
    publish(&env, &p, &good).await;
    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 1).await;
    let dlq = ledgerline_testkit::kafka::read_topic(
        &env.kafka,
        &env.kafka.dlq(topics::OUTCOMES),
        cases.len(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    running.stop().await;

    let reasons: HashSet<&str> = dlq
        .iter()
        .filter_map(|r| r.header(headers::DLQ_REASON))
        .collect();
    let want: HashSet<&str> = cases.iter().map(|(_, _, reason)| *reason).collect();
    assert_eq!(reasons, want);
    for r in &dlq {
        assert_eq!(r.header(headers::DLQ_SOURCE_TOPIC), Some(topic.as_str()));
        assert!(r.header(headers::DLQ_SOURCE_OFFSET).is_some());
    }
    assert_eq!(result_of(&env, &good).await.0, "POSTED");
    assert_eq!(balance(&env, "m1", "acc-1").await, 10);
}

#[tokio::test]
async fn an_account_limit_lets_a_debit_overdraw_down_to_the_limit() {
    let env = TestEnv::new().await.unwrap();
    sqlx::query(
        "INSERT INTO account_limits (merchant_id, account_id, currency, overdraft_minor)
         VALUES ('m1', 'acc-od', 'EUR', 500)",
    )
    .execute(&env.pg)
    .await
    .unwrap();
    let first = decided("m1", "o1", "acc-od", TxnType::Debit, 400);
    let second = decided("m1", "o2", "acc-od", TxnType::Debit, 101);
    let third = decided("m1", "o3", "acc-od", TxnType::Debit, 100);
    publish_all(&env, &[first.clone(), second.clone(), third.clone()]).await;
    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 3).await;
    running.stop().await;
    assert_eq!(result_of(&env, &first).await.2, Some(-400));
    assert_eq!(result_of(&env, &second).await.0, "DECLINED");
    assert_eq!(result_of(&env, &third).await.2, Some(-500));
}

#[tokio::test]
async fn the_schema_refuses_unbalanced_postings_and_edits_to_history() {
    let env = TestEnv::new().await.unwrap();
    let d = decided("m1", "s1", "acc-1", TxnType::Credit, 10);
    publish_all(&env, std::slice::from_ref(&d)).await;
    let running = start(settings(&env)).await;
    wait_for_transactions(&env, 1).await;
    running.stop().await;
    let unbalanced = sqlx::query(
        "INSERT INTO postings (transaction_id, leg, merchant_id, account_id, currency,
             amount_minor, source_topic, source_partition, source_offset)
         SELECT transaction_id, 'account', 'm1', 'x', 'EUR', 5, 't', 0, 0
         FROM ledger_transactions",
    )
    .execute(&env.pg)
    .await;
    assert!(
        unbalanced.is_err(),
        "a posting that does not balance is refused"
    );
    let edit = sqlx::query("UPDATE postings SET amount_minor = amount_minor * 2")
        .execute(&env.pg)
        .await;
    assert!(edit.is_err(), "postings are append-only");
    let delete = sqlx::query("DELETE FROM ledger_transactions")
        .execute(&env.pg)
        .await;
    assert!(delete.is_err(), "transactions are append-only");
}

/// The event a transaction's ledger row announces, read straight from the row.
async fn ledger_row_event(env: &TestEnv, e: &TransactionPosted) -> TransactionPosted {
    let (event_id, request_id, result, reason_code, balance_after_minor, correlation_id, posted_at): (
        uuid::Uuid,
        uuid::Uuid,
        String,
        Option<String>,
        Option<i64>,
        String,
        time::OffsetDateTime,
    ) = sqlx::query_as(
        "SELECT posted_event_id, request_id, result, reason_code, balance_after_minor,
                correlation_id, posted_at
         FROM ledger_transactions
         WHERE transaction_id = $1 AND merchant_id = $2 AND account_id = $3 AND txn_type = $4
           AND amount_minor = $5 AND currency = $6",
    )
    .bind(e.transaction_id.as_uuid())
    .bind(e.merchant_id.as_str())
    .bind(e.account_id.as_str())
    .bind(e.txn_type.as_str())
    .bind(e.amount_minor)
    .bind(e.currency.code())
    .fetch_one(&env.pg)
    .await
    .unwrap();
    TransactionPosted {
        event_id: ledgerline_contracts::ids::EventId::from_uuid(event_id),
        request_id: ledgerline_contracts::ids::RequestId::from_uuid(request_id),
        result: if result == "POSTED" {
            PostingResult::Posted
        } else {
            PostingResult::Declined
        },
        reason_code,
        balance_after_minor,
        correlation_id,
        posted_at,
        ..e.clone()
    }
}
