//! The shared runtime against the real services: every client connects, topics are created
//! idempotently, a keyed message round-trips, migrations apply, and a paced batch lands whole,
//! in per-key order, where librdkafka's partitioner puts it; the status read model keeps the
//! first attempts up to its cap.

use ledgerline_runtime::backoff::BackoffSettings;
use ledgerline_runtime::kafka::{produce_all, Outgoing};
use ledgerline_runtime::partitions::{partition_for_key, PacedProducer};
use ledgerline_runtime::status::{
    Attempt, State, StatusSettings, StatusStore, StatusUpdate, TransactionFields,
};
use ledgerline_testkit::kafka::{produce, read_topic};
use ledgerline_testkit::TestEnv;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn a_fresh_environment_has_a_migrated_database_and_created_topics() {
    let env = TestEnv::new().await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&env.pg)
        .await
        .unwrap();
    assert!(applied >= 1);
    // Creating the same topics again is harmless.
    env.kafka
        .ensure_topics(&env.kafka.pipeline_topics())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_keyed_message_lands_on_one_partition_and_reads_back_with_its_headers() {
    let env = TestEnv::new().await.unwrap();
    let producer = env.kafka.producer("runtime-test").unwrap();
    let topic = env.topic("txn.requests");
    let mut partitions = std::collections::BTreeSet::new();
    for i in 0..5 {
        let (p, _) = produce(
            &producer,
            &topic,
            "acc-1",
            format!("m{i}").as_bytes(),
            &[("event-type", "T")],
        )
        .await
        .unwrap();
        partitions.insert(p);
    }
    assert_eq!(partitions.len(), 1, "one key, one partition");
    let records = read_topic(&env.kafka, &topic, 5, Duration::from_secs(30))
        .await
        .unwrap();
    let payloads: Vec<_> = records.iter().map(|r| r.payload.clone().unwrap()).collect();
    assert_eq!(
        payloads,
        (0..5)
            .map(|i| format!("m{i}").into_bytes())
            .collect::<Vec<_>>(),
        "order kept"
    );
    assert_eq!(records[0].header("event-type"), Some("T"));
}

#[tokio::test]
async fn the_partition_computed_for_a_key_is_the_one_librdkafka_chooses() {
    let env = TestEnv::new().await.unwrap();
    let producer = env.kafka.producer("runtime-test").unwrap();
    let topic = env.topic("txn.postings");
    let layout = PacedProducer::new(producer.clone())
        .layout(&topic)
        .await
        .unwrap();
    assert_eq!(layout.partitions, env.kafka.partitions);
    for i in 0..64 {
        let key = format!("acc-{i}");
        let (partition, _) = produce(&producer, &topic, &key, b"x", &[]).await.unwrap();
        assert_eq!(
            partition_for_key(key.as_bytes(), layout.partitions),
            partition,
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_paced_batch_larger_than_a_request_lands_whole_and_in_per_key_order() {
    let env = TestEnv::new().await.unwrap();
    let producer = env.kafka.producer("runtime-test").unwrap();
    let topic = env.topic("txn.postings");
    // 3,000 messages of ~1 KiB over 20 accounts: every partition's share is several requests.
    let value = "v".repeat(1_000);
    let keys: Vec<String> = (0..3_000).map(|i| format!("acc-{}", i % 20)).collect();
    let payloads: Vec<String> = (0..3_000).map(|i| format!("{i:05}{value}")).collect();
    let messages: Vec<Outgoing<'_>> = keys
        .iter()
        .zip(&payloads)
        .map(|(key, payload)| Outgoing {
            topic: &topic,
            key,
            payload: payload.as_bytes(),
            event_type: "TransactionPosted",
            correlation_id: "paced",
        })
        .collect();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut rounds = Vec::new();
    produce_all(
        &PacedProducer::new(producer),
        &messages,
        Duration::from_secs(30),
        BackoffSettings::default(),
        &shutdown,
        |ok| rounds.push(ok),
    )
    .await
    .unwrap();
    assert_eq!(rounds, vec![true], "one round, nothing retried");
    let records = read_topic(&env.kafka, &topic, 3_000, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(records.len(), 3_000);
    let mut by_key: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
    for r in &records {
        let sequence = std::str::from_utf8(&r.payload.as_ref().unwrap()[..5])
            .unwrap()
            .parse()
            .unwrap();
        by_key
            .entry(r.key.clone().unwrap())
            .or_default()
            .push(sequence);
        assert_eq!(r.header("correlation-id"), Some("paced"));
    }
    assert_eq!(by_key.len(), 20);
    for (key, sequence) in by_key {
        assert!(
            sequence.windows(2).all(|w| w[0] < w[1]),
            "{key:?} out of order"
        );
        assert_eq!(sequence.len(), 150);
    }
}

#[tokio::test]
async fn redis_and_mongodb_answer() {
    let env = TestEnv::new().await.unwrap();
    let mut redis = env.redis_conn().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut redis).await.unwrap();
    assert_eq!(pong, "PONG");
    let db = env.mongo.database().await.unwrap();
    let reply = db
        .run_command(mongodb::bson::doc! {"ping": 1})
        .await
        .unwrap();
    assert_eq!(
        reply
            .get_f64("ok")
            .ok()
            .or(reply.get_i32("ok").ok().map(f64::from)),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_unreachable_dependency_is_reported_as_retryable() {
    let pg = ledgerline_runtime::postgres::PostgresSettings {
        url: ledgerline_runtime::secret::Secret::new("postgres://postgres@127.0.0.1:1/x".into()),
        acquire_timeout_ms: 500,
        ..Default::default()
    };
    let err = sqlx::query("SELECT 1")
        .execute(&pg.pool().unwrap())
        .await
        .unwrap_err();
    assert!(ledgerline_runtime::postgres::is_retryable(&err), "{err}");
}

/// The fields of transaction `t`.
fn txn_fields() -> TransactionFields {
    TransactionFields {
        request_id: "001".into(),
        account_id: "acc-1".into(),
        amount: "1.00".into(),
        currency: "EUR".into(),
        txn_type: "credit".into(),
        description: None,
        metadata: BTreeMap::new(),
        correlation_id: "c".into(),
    }
}

/// An attempt's entry, its time ordered by its request id.
fn attempt_entry(request_id: &str, decision: State) -> Attempt {
    Attempt {
        request_id: request_id.into(),
        decision,
        reason_code: None,
        at: format!("2026-12-06T00:00:00.{request_id}Z"),
    }
}

/// An attempt of transaction `t`.
fn attempt(request_id: &str, decision: State) -> StatusUpdate {
    StatusUpdate::Attempt {
        transaction_id: "t".into(),
        attempt: attempt_entry(request_id, decision),
    }
}

/// A read model keeping at most three attempts per transaction, under the test's prefix.
async fn store_capped_at_three(env: &TestEnv) -> StatusStore {
    StatusStore::new(
        env.redis_conn().await.unwrap(),
        &env.redis.key_prefix,
        &StatusSettings {
            retention_hours: 1,
            attempts_max: 3,
        },
    )
}

/// The request ids of the attempts `t`'s status lists, in its order.
async fn listed_attempts(store: &StatusStore) -> Vec<String> {
    let status = store.get("t").await.unwrap().expect("the status is there");
    status.attempts.into_iter().map(|a| a.request_id).collect()
}

#[tokio::test]
async fn attempts_written_in_batched_script_calls_keep_the_first_ones_up_to_the_cap() {
    let env = TestEnv::new().await.unwrap();
    let store = store_capped_at_three(&env).await;
    let fields = txn_fields();
    // One batch: the decision, its attempt twice (a redelivery), then more attempts than the
    // cap; and a second batch with one more. Only the first three distinct attempts stay.
    let mut first = vec![StatusUpdate::Decided {
        transaction_id: "t".into(),
        merchant_id: "m".into(),
        fields,
        state: State::Accepted,
        reason_code: None,
        at: "2026-12-06T00:00:00Z".into(),
    }];
    first.push(attempt("001", State::Accepted));
    first.push(attempt("001", State::Accepted));
    first.extend(["002", "003", "004"].map(|r| attempt(r, State::Duplicate)));
    store.apply(&first).await.unwrap();
    store
        .apply(&[attempt("005", State::Duplicate)])
        .await
        .unwrap();

    let status = store.get("t").await.unwrap().expect("the status is there");
    assert_eq!(status.state, State::Accepted);
    assert_eq!(listed_attempts(&store).await, ["001", "002", "003"]);
    // The attempts live in the transaction's own hash, which expires with the retention.
    let mut conn = env.redis_conn().await.unwrap();
    let key = format!("{}txn:t", env.redis.key_prefix);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=3600).contains(&ttl), "the hash expires: {ttl}");
    let counted: u32 = redis::cmd("HGET")
        .arg(&key)
        .arg("attempts")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(counted, 3);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", env.redis.key_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, [key], "one key per transaction");
    env.forget_redis().await.unwrap();
}

#[tokio::test]
async fn attempts_a_status_kept_in_their_own_hash_before_the_layout_change_are_still_listed() {
    let env = TestEnv::new().await.unwrap();
    let store = store_capped_at_three(&env).await;
    // Written as the earlier layout did: the states in `txn:<id>`, the attempts in a second
    // hash `txn:<id>:attempts` keyed by request id.
    let fields = txn_fields();
    let mut conn = env.redis_conn().await.unwrap();
    let key = format!("{}txn:t", env.redis.key_prefix);
    let legacy = |request_id: &str| {
        serde_json::to_string(&attempt_entry(request_id, State::Duplicate)).unwrap()
    };
    let _: () = redis::pipe()
        .hset(&key, "merchant_id", "m")
        .hset(&key, "fields", serde_json::to_string(&fields).unwrap())
        .hset(&key, "received_at", "2026-12-06T00:00:00Z")
        .hset(format!("{key}:attempts"), "001", legacy("001"))
        .hset(format!("{key}:attempts"), "002", legacy("002"))
        .query_async(&mut conn)
        .await
        .unwrap();

    // A later attempt, written in the new layout, joins them; one already there is not listed
    // twice.
    store
        .apply(&[
            attempt("002", State::Duplicate),
            attempt("003", State::Duplicate),
        ])
        .await
        .unwrap();
    assert_eq!(listed_attempts(&store).await, ["001", "002", "003"]);
    env.forget_redis().await.unwrap();
}
