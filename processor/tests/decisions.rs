//! The processor against real Kafka and Redis: accepted, rejected, duplicate, conflict,
//! redelivery, poison messages and per-account order.

mod support;

use ledgerline_contracts::topics;
use ledgerline_runtime::status::State;
use ledgerline_testkit::kafka::{produce, read_topic};
use ledgerline_testkit::TestEnv;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::*;

#[tokio::test]
async fn a_first_request_is_accepted_and_its_status_says_so() {
    let env = TestEnv::new().await.unwrap();
    let running = start(settings(&env)).await;
    let req = request("m1", "k1", "acc-1", 1_000, "fp1");

    publish(&env, &producer(&env), &req).await;

    let out = outcomes(&env, 1).await;
    assert_eq!(out.len(), 1);
    let event = out[0].json();
    assert_eq!(event["decision"], "ACCEPTED");
    assert_eq!(event["transaction_id"], req.transaction_id.to_string());
    assert_eq!(out[0].key.as_deref(), Some(b"acc-1".as_slice()));
    assert_eq!(out[0].header("event-type"), Some("TransactionDecided"));
    let status = status_when(&env, req.transaction_id, "status ACCEPTED", |s| {
        s.state == State::Accepted
    })
    .await;
    assert_eq!(status.attempts.len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_redis_that_has_forgotten_its_scripts_still_records_the_decision_and_every_attempt() {
    // What a Redis restart does to the script cache; the claim and the status writes send
    // their scripts by hash and must load them again rather than retry forever.
    let env = TestEnv::new().await.unwrap();
    let mut conn = env.redis_conn().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let running = start(settings(&env)).await;
    let req = request("m1", "k-flushed", "acc-1", 1_000, "fp1");
    let retry = request("m1", "k-flushed", "acc-1", 1_000, "fp1");

    publish(&env, &producer(&env), &req).await;
    publish(&env, &producer(&env), &retry).await;

    let out = outcomes(&env, 2).await;
    let decisions: BTreeSet<String> = out
        .iter()
        .map(|r| r.json()["decision"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        decisions,
        BTreeSet::from(["ACCEPTED".into(), "DUPLICATE".into()])
    );
    let status = status_when(&env, req.transaction_id, "two attempts", |s| {
        s.attempts.len() == 2
    })
    .await;
    assert_eq!(status.state, State::Accepted);
    running.stop().await;
}

#[tokio::test]
async fn each_rule_rejects_with_its_own_reason_code() {
    let env = TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    s.rules.amount_max_minor = Some(10_000);
    s.rules.accounts_blocked = vec!["blocked".into()];
    s.rules.merchants = vec![
        processor::config::MerchantRules {
            id: "usd-only".into(),
            amount_max_minor: None,
            currencies_allowed: Some(vec!["USD".into()]),
            suspended: false,
        },
        processor::config::MerchantRules {
            id: "gone".into(),
            amount_max_minor: None,
            currencies_allowed: None,
            suspended: true,
        },
    ];
    let running = start(s).await;
    let p = producer(&env);
    let cases = [
        (request("m1", "a", "acc", 10_001, "f"), "AMOUNT_OVER_LIMIT"),
        (request("m1", "b", "blocked", 1, "f"), "ACCOUNT_BLOCKED"),
        (
            request("usd-only", "c", "acc", 1, "f"),
            "CURRENCY_NOT_ALLOWED",
        ),
        (request("gone", "d", "acc", 1, "f"), "MERCHANT_SUSPENDED"),
    ];
    for (r, _) in &cases {
        publish(&env, &p, r).await;
    }
    let out = outcomes(&env, cases.len()).await;
    let by_txn: BTreeMap<String, serde_json::Value> = out
        .iter()
        .map(|r| {
            (
                r.json()["transaction_id"].as_str().unwrap().to_string(),
                r.json(),
            )
        })
        .collect();
    for (r, reason) in &cases {
        let e = &by_txn[&r.transaction_id.to_string()];
        assert_eq!(e["decision"], "REJECTED");
        assert_eq!(e["reason_code"], *reason);
    }
    running.stop().await;
}

#[tokio::test]
async fn a_retry_is_a_duplicate_and_a_changed_body_is_a_conflict_leaving_the_original_untouched() {
    let env = TestEnv::new().await.unwrap();
    let running = start(settings(&env)).await;
    let p = producer(&env);
    let original = request("m1", "same-key", "acc-1", 500, "fp-a");
    let retry = request("m1", "same-key", "acc-1", 500, "fp-a");
    let conflict = request("m1", "same-key", "acc-1", 999, "fp-b");

    for r in [&original, &retry, &conflict] {
        publish(&env, &p, r).await;
    }

    let out = outcomes(&env, 3).await;
    let by_request: BTreeMap<String, serde_json::Value> = out
        .iter()
        .map(|r| {
            (
                r.json()["request_id"].as_str().unwrap().to_string(),
                r.json(),
            )
        })
        .collect();
    assert_eq!(
        by_request[&original.request_id.to_string()]["decision"],
        "ACCEPTED"
    );
    let dup = &by_request[&retry.request_id.to_string()];
    assert_eq!(dup["decision"], "DUPLICATE");
    assert_eq!(dup["original_request_id"], original.request_id.to_string());
    let conf = &by_request[&conflict.request_id.to_string()];
    assert_eq!(conf["decision"], "REJECTED");
    assert_eq!(conf["reason_code"], "IDEMPOTENCY_CONFLICT");

    let status = status_when(&env, original.transaction_id, "three attempts", |s| {
        s.attempts.len() == 3
    })
    .await;
    assert_eq!(status.state, State::Accepted, "the original stays accepted");
    assert_eq!(status.fields.amount, "5.00");
    assert_eq!(status.fields.request_id, original.request_id.to_string());
    running.stop().await;
}

#[tokio::test]
async fn a_redelivered_batch_repeats_the_same_decisions_with_the_same_event_ids() {
    let env = TestEnv::new().await.unwrap();
    let p = producer(&env);
    let requests: Vec<_> = (0..20)
        .map(|i| {
            request(
                "m1",
                &format!("k{i}"),
                &format!("acc-{}", i % 4),
                100 + i,
                "f",
            )
        })
        .collect();
    for r in &requests {
        publish(&env, &p, r).await;
    }
    let first = start(settings(&env)).await;
    let out = outcomes(&env, 20).await;
    first.stop().await;

    // A new group reads everything again: exactly what a redelivery after a lost commit does.
    let mut again = settings(&env);
    again.group_id = format!("{}-again", again.group_id);
    let second = start(again).await;
    let all = outcomes(&env, 40).await;
    second.stop().await;

    assert_eq!(out.len(), 20);
    assert_eq!(all.len(), 40);
    let ids: BTreeSet<String> = all
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.len(),
        20,
        "re-emitted outcomes carry the original event ids"
    );
    assert!(
        all.iter().all(|r| r.json()["decision"] == "ACCEPTED"),
        "a redelivery is never a duplicate"
    );
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dlq_and_the_partition_moves_on() {
    let env = TestEnv::new().await.unwrap();
    let running = start(settings(&env)).await;
    let p = producer(&env);
    let topic = env.topic(topics::REQUESTS);
    let (partition, offset) = produce(
        &p,
        &topic,
        "acc-1",
        b"{not json",
        &[("event-type", "TransactionRequested")],
    )
    .await
    .unwrap();
    produce(&p, &topic, "acc-1", br#"{"schema_version":2}"#, &[])
        .await
        .unwrap();
    let good = request("m1", "after-poison", "acc-1", 100, "f");
    publish(&env, &p, &good).await;

    let out = outcomes(&env, 1).await;
    assert_eq!(
        out[0].json()["transaction_id"],
        good.transaction_id.to_string()
    );
    let dlq = read_topic(
        &env.kafka,
        &env.kafka.dlq(topics::REQUESTS),
        2,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(dlq.len(), 2);
    let first = dlq
        .iter()
        .find(|r| r.payload.as_deref() == Some(b"{not json".as_slice()))
        .unwrap();
    assert_eq!(first.header("dlq-reason"), Some("MALFORMED_EVENT"));
    assert_eq!(first.header("dlq-source-topic"), Some(topic.as_str()));
    assert_eq!(
        first.header("dlq-source-partition"),
        Some(partition.to_string().as_str())
    );
    assert_eq!(
        first.header("dlq-source-offset"),
        Some(offset.to_string().as_str())
    );
    assert!(first.header("dlq-failed-at").is_some());
    assert_eq!(
        first.header("event-type"),
        Some("TransactionRequested"),
        "original headers are kept"
    );
    let second = dlq
        .iter()
        .find(|r| r.payload.as_deref() != Some(b"{not json".as_slice()))
        .unwrap();
    assert_eq!(
        second.header("dlq-reason"),
        Some("UNSUPPORTED_SCHEMA_VERSION")
    );
    running.stop().await;
}

#[tokio::test]
async fn each_accounts_requests_are_decided_in_arrival_order() {
    let env = TestEnv::new().await.unwrap();
    let p = producer(&env);
    let accounts = 25;
    let per_account = 20;
    let mut sent = Vec::new();
    for seq in 0..per_account {
        for a in 0..accounts {
            let r = request(
                "m1",
                &format!("a{a}-s{seq}"),
                &format!("acc-{a}"),
                seq + 1,
                "f",
            );
            sent.push(r);
        }
    }
    // Publish concurrently per account but in order within an account.
    let mut by_account: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in &sent {
        by_account
            .entry(r.account_id.to_string())
            .or_default()
            .push(r.clone());
    }
    let tasks = by_account.into_values().map(|list| {
        let env = env.clone();
        let p = p.clone();
        async move {
            for r in list {
                publish(&env, &p, &r).await;
            }
        }
    });
    futures::future::join_all(tasks).await;
    let mut s = settings(&env);
    s.batch.batch_size_max = 37;
    let running = start(s).await;

    let out = outcomes(&env, sent.len()).await;
    running.stop().await;

    assert_eq!(out.len(), sent.len());
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut sorted = out.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        let e = r.json();
        let account = e["account_id"].as_str().unwrap().to_string();
        let seq = e["amount_minor"].as_i64().unwrap();
        let prev = last.insert(account.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "account {account} out of order");
    }
}
