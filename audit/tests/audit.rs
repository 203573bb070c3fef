//! The audit service against real Kafka and MongoDB.

mod support;

use audit::chain::GENESIS;
use ledgerline_contracts::topics::{self, headers};
use ledgerline_testkit::kafka::{produce, read_topic};
use ledgerline_testkit::TestEnv;
use mongodb::bson::{doc, Bson, Document};
use rdkafka::consumer::Consumer;
use std::time::Duration;
use support::*;

fn no_doubles(value: &Bson) -> bool {
    match value {
        Bson::Double(_) => false,
        Bson::Document(d) => d.values().all(no_doubles),
        Bson::Array(a) => a.iter().all(no_doubles),
        _ => true,
    }
}

async fn by_id(s: &audit::Settings, id: &str) -> Document {
    events(s)
        .await
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("document {id} is stored"))
}

#[tokio::test]
async fn every_event_type_is_recorded_once_with_its_fields_and_int64_amounts() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let t = txn("k1", "acc-1", 150_075);
    let p = producer(&env);
    let requested_at = publish(&env, &p, topics::REQUESTS, &t.requested).await;
    let decided_at = publish(&env, &p, topics::OUTCOMES, &t.decided).await;
    let posted_at = publish(&env, &p, topics::POSTINGS, &t.posted).await;

    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, 3).await;
    running.stop().await;

    assert_eq!(count(&s, doc! {}).await, 3, "one document per event");
    let expected = [
        (
            t.requested.event_id.to_string(),
            "TransactionRequested",
            topics::REQUESTS,
            requested_at,
        ),
        (
            t.decided.event_id.to_string(),
            "TransactionDecided",
            topics::OUTCOMES,
            decided_at,
        ),
        (
            t.posted.event_id.to_string(),
            "TransactionPosted",
            topics::POSTINGS,
            posted_at,
        ),
    ];
    for (id, event_type, topic, (partition, offset)) in expected {
        let d = by_id(&s, &id).await;
        assert_eq!(d.get_str("kind").unwrap(), "event");
        assert_eq!(d.get_str("event_type").unwrap(), event_type);
        assert_eq!(d.get_str("event_id").unwrap(), id);
        assert_eq!(
            d.get_str("transaction_id").unwrap(),
            t.requested.transaction_id.to_string()
        );
        assert_eq!(d.get_str("merchant_id").unwrap(), "m1");
        assert_eq!(d.get_str("account_id").unwrap(), "acc-1");
        assert_eq!(d.get_str("correlation_id").unwrap(), "corr-k1");
        assert!(d.get_datetime("recorded_at").is_ok());
        assert!(d.get_datetime("occurred_at").is_ok());
        let source = d.get_document("source").unwrap();
        assert_eq!(source.get_str("topic").unwrap(), env.topic(topic));
        assert_eq!(source.get("partition"), Some(&Bson::Int32(partition)));
        assert_eq!(source.get("offset"), Some(&Bson::Int64(offset)));
        let body = d.get_document("event").unwrap();
        assert_eq!(
            body.get("amount_minor"),
            Some(&Bson::Int64(150_075)),
            "{event_type}"
        );
        assert_eq!(body.get_str("event_id").unwrap(), id);
        let raw = d.get_document("message").unwrap();
        assert_eq!(raw.get_str("key").unwrap(), "acc-1");
        assert!(raw.get_binary_generic("payload").is_ok());
        assert!(no_doubles(&Bson::Document(d.clone())), "{d}");
        assert_eq!(d.get_str("hash").unwrap().len(), 64);
        // Each is the first link of its own partition's chain.
        assert_eq!(d.get_str("prev_hash").unwrap(), GENESIS);
    }
    let posted = by_id(&s, &t.posted.event_id.to_string()).await;
    assert_eq!(
        posted
            .get_document("event")
            .unwrap()
            .get("balance_after_minor"),
        Some(&Bson::Null)
    );
    let requested = by_id(&s, &t.requested.event_id.to_string()).await;
    assert_eq!(
        requested
            .get_document("event")
            .unwrap()
            .get_document("metadata")
            .unwrap(),
        &doc! { "order": "o-1" }
    );
    assert_complete_and_intact(&s).await;
}

#[tokio::test]
async fn a_redelivered_or_replayed_log_stores_nothing_twice_and_keeps_the_chain_intact() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let txns = workload("r", 40, 5);
    let sent = publish_all(&env, &txns).await as u64;
    let mut small = s.clone();
    small.batch.batch_size_max = 17; // many batches, several per partition
    let running = start(small).await;
    wait_for_documents(&s, doc! {}, sent).await;

    // The producers re-send the first ten transactions (a retry after a lost ack): same
    // event ids at new offsets.
    let resent = publish_all(&env, &txns[..10]).await as u64;
    wait_for_documents(&s, doc! {}, sent + resent).await;
    wait_for_group_caught_up(&env, &s.group_id).await;
    running.stop().await;
    assert_eq!(
        count(&s, doc! { "kind": "event" }).await,
        sent,
        "one event document per event"
    );
    assert_eq!(count(&s, doc! { "kind": "duplicate" }).await, resent);
    let t = &txns[0];
    assert_eq!(
        count(&s, doc! { "event_id": t.decided.event_id.to_string() }).await,
        2,
        "the re-sent occurrence is kept, keyed by its position"
    );

    // A second group over the same database reads the whole log again.
    let mut replay = s.clone();
    replay.group_id = format!("{}-replay", s.group_id);
    let running = start(replay.clone()).await;
    wait_for_group_caught_up(&env, &replay.group_id).await;
    running.stop().await;
    assert_eq!(
        count(&s, doc! {}).await,
        sent + resent,
        "the replay stored nothing"
    );
    assert_complete_and_intact(&s).await;
}

#[tokio::test]
async fn a_rebuild_from_the_log_into_an_empty_database_reproduces_every_hash() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let txns = workload("b", 30, 4);
    let sent = publish_all(&env, &txns).await as u64;
    let p = producer(&env);
    produce(
        &p,
        &env.topic(topics::OUTCOMES),
        "acc-1",
        b"{\"poison\":",
        &[],
    )
    .await
    .unwrap();
    publish_all(&env, &txns[..3]).await;
    let total = sent + 9 + 2; // events, re-sent events, the poison and its dead letter

    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, total).await;
    running.stop().await;

    let mut rebuild = s.clone();
    rebuild.mongo.database = format!("{}_rebuild", s.mongo.database);
    rebuild.group_id = format!("{}-rebuild", s.group_id);
    let mut small = rebuild.clone();
    small.batch.batch_size_max = 7; // other batch boundaries must not matter
    let running = start(small).await;
    // The rebuild dead-letters the poison once more (its new database has no record of the
    // first time) and audits that second dead letter too.
    wait_for_documents(&rebuild, doc! {}, total + 1).await;
    wait_for_group_caught_up(&env, &rebuild.group_id).await;
    running.stop().await;

    let original = chains(&all_documents(&s).await);
    let rebuilt = chains(&all_documents(&rebuild).await);
    assert_eq!(original.len() as u64, total);
    assert_eq!(rebuilt.len() as u64, total + 1);
    for (position, link) in &original {
        assert_eq!(
            rebuilt.get(position),
            Some(link),
            "{position:?}: same kind and hashes"
        );
    }
    let extra: Vec<_> = rebuilt
        .keys()
        .filter(|k| !original.contains_key(*k))
        .collect();
    assert_eq!(extra.len(), 1);
    assert_eq!(
        extra[0].0,
        env.kafka.dlq(topics::OUTCOMES),
        "only the second dead letter"
    );
    assert_complete_and_intact(&rebuild).await;
}

#[tokio::test]
async fn poison_on_a_pipeline_topic_goes_to_its_dlq_and_is_then_audited_from_there() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let p = producer(&env);
    let requests = env.topic(topics::REQUESTS);
    let dlq = env.kafka.dlq(topics::REQUESTS);
    let (partition, offset) = produce(
        &p,
        &requests,
        "acc-9",
        b"{\"schema_version\":1,\"amount_minor\":1.5}",
        &[(headers::EVENT_TYPE, "TransactionRequested")],
    )
    .await
    .unwrap();
    // Garbage written straight to a DLQ is recorded raw, never dead-lettered again.
    produce(&p, &dlq, "acc-9", b"\x00\xffraw", &[])
        .await
        .unwrap();
    let good = txn("k1", "acc-9", 10);
    publish(&env, &p, topics::REQUESTS, &good.requested).await;

    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! { "kind": "dead_letter" }, 2).await;
    wait_for_documents(&s, doc! {}, 4).await;
    running.stop().await;

    let poison = by_id(&s, &format!("poison:{requests}:{partition}:{offset}")).await;
    assert_eq!(
        poison
            .get_document("poison")
            .unwrap()
            .get_str("reason")
            .unwrap(),
        "MALFORMED_EVENT"
    );
    assert_eq!(
        poison
            .get_document("poison")
            .unwrap()
            .get_str("dead_letter_topic")
            .unwrap(),
        dlq
    );
    assert_eq!(poison.get("event_type"), Some(&Bson::Null));
    // The body is kept (as text where a number is not an integer), never as a double.
    assert_eq!(
        poison
            .get_document("event")
            .unwrap()
            .get_str("amount_minor")
            .unwrap(),
        "1.5"
    );

    let dead_letters = read_topic(&env.kafka, &dlq, 2, WAIT).await.unwrap();
    assert_eq!(dead_letters.len(), 2);
    let sent = dead_letters
        .iter()
        .find(|r| r.header(headers::DLQ_REASON).is_some())
        .expect("the poison was dead-lettered");
    assert_eq!(
        sent.header(headers::DLQ_SOURCE_TOPIC),
        Some(requests.as_str())
    );
    assert_eq!(
        sent.header(headers::DLQ_SOURCE_OFFSET),
        Some(offset.to_string().as_str())
    );
    let audited = by_id(&s, &format!("dlq:{dlq}:{}:{}", sent.partition, sent.offset)).await;
    let dead_letter = audited.get_document("dead_letter").unwrap();
    assert_eq!(dead_letter.get_str("reason").unwrap(), "MALFORMED_EVENT");
    assert_eq!(dead_letter.get_str("source_topic").unwrap(), requests);
    assert_eq!(dead_letter.get("source_offset"), Some(&Bson::Int64(offset)));
    assert_eq!(
        audited
            .get_document("message")
            .unwrap()
            .get_binary_generic("payload")
            .unwrap(),
        sent.payload.as_ref().unwrap()
    );
    let headers = audited
        .get_document("message")
        .unwrap()
        .get_array("headers")
        .unwrap();
    assert!(headers
        .iter()
        .any(|h| h.as_document().unwrap().get_str("name") == Ok("dlq-failed-at")));

    let raw = dead_letters
        .iter()
        .find(|r| r.header(headers::DLQ_REASON).is_none())
        .unwrap();
    let stored_raw = by_id(&s, &format!("dlq:{dlq}:{}:{}", raw.partition, raw.offset)).await;
    assert_eq!(
        stored_raw
            .get_document("message")
            .unwrap()
            .get_binary_generic("payload")
            .unwrap(),
        b"\x00\xffraw"
    );
    // Everything in the DLQ is audited, and the DLQ holds only those two messages: the raw
    // one was not sent on (its document exists, so it was processed before this check).
    let reader = env.kafka.reader("test-watermarks").unwrap();
    let messages: i64 = tokio::task::spawn_blocking(move || {
        (0..ledgerline_testkit::env::TEST_PARTITIONS)
            .map(|p| {
                let (low, high) = reader
                    .fetch_watermarks(&dlq, p, Duration::from_secs(5))
                    .unwrap();
                high - low
            })
            .sum()
    })
    .await
    .unwrap();
    assert_eq!(messages, 2);
    assert_eq!(
        count(&s, doc! { "kind": "event" }).await,
        1,
        "the good event after the poison"
    );
    assert_complete_and_intact(&s).await;
}

#[tokio::test]
async fn the_admin_endpoints_report_health_readiness_and_metrics() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    publish_all(&env, &workload("m", 2, 1)).await;
    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, 6).await;

    let (status, _) = admin_get(running.admin, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = admin_get(running.admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = admin_get(running.admin, "/metrics").await;
    for name in [
        "ledgerline_audit_documents_total",
        "ledgerline_audit_duplicates_total",
        "ledgerline_audit_batch_size",
        "ledgerline_audit_batch_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    running.stop().await;
}
