//! Shared setup for the audit's integration tests: the real service against real Kafka and
//! MongoDB, each test with its own topics, database and consumer group; events written
//! straight to the pipeline topics as their producers would.

#![allow(dead_code, unreachable_pub)]

use audit::store::AuditStore;
use audit::verify::{Scope, VerifyReport};
use audit::{Application, Settings};
use futures::TryStreamExt;
use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{
    self, Decision, Event, PostingResult, TransactionDecided, TransactionPosted,
    TransactionRequested, TxnType, SCHEMA_VERSION,
};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::backoff::BackoffSettings;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_testkit::TestEnv;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Liveness bound of every wait: generous, the broker takes seconds to start a group.
pub const WAIT: Duration = Duration::from_secs(120);

pub fn settings(env: &TestEnv) -> Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        mongo: env.mongo.clone(),
        group_id: format!("audit-{}", env.id),
        // Quick recovery after an outage in tests; production keeps the 5 s cap.
        backoff: BackoffSettings {
            initial_ms: 50,
            max_ms: 1_000,
        },
        ..Settings::default()
    }
}

pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub admin: std::net::SocketAddr,
}

pub async fn start(settings: Settings) -> Running {
    let app = Application::build(settings).await.expect("audit builds");
    let admin = app.admin_addr();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(token).await.expect("audit runs");
    });
    Running {
        shutdown,
        handle,
        admin,
    }
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        ledgerline_testkit::wait::stopped("the audit writer", self.handle).await;
    }
}

/// One transaction's three events, as ingress, the processor and the ledger-writer publish them.
#[derive(Debug, Clone)]
pub struct Txn {
    pub requested: TransactionRequested,
    pub decided: TransactionDecided,
    pub posted: TransactionPosted,
}

pub fn txn(key: &str, account: &str, amount_minor: i64) -> Txn {
    let merchant_id = MerchantId::parse("m1").unwrap();
    let idempotency_key = IdempotencyKey::parse(key).unwrap();
    let now = ledgerline_runtime::time::now();
    let requested = TransactionRequested {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id: RequestId::new_v7(),
        transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant_id, &idempotency_key),
        merchant_id,
        account_id: AccountId::parse(account).unwrap(),
        idempotency_key,
        txn_type: TxnType::Debit,
        amount_minor,
        currency: Currency::EUR,
        description: Some("groceries".into()),
        metadata: BTreeMap::from([("order".to_string(), "o-1".to_string())]),
        callback_url: None,
        request_fingerprint: "fp".into(),
        correlation_id: format!("corr-{key}"),
        received_at: now,
    };
    let decided = TransactionDecided {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id: requested.request_id,
        transaction_id: requested.transaction_id,
        merchant_id: requested.merchant_id.clone(),
        account_id: requested.account_id.clone(),
        idempotency_key: requested.idempotency_key.clone(),
        txn_type: requested.txn_type,
        amount_minor,
        currency: Currency::EUR,
        decision: Decision::Accepted,
        reason_code: None,
        original_request_id: None,
        request_fingerprint: "fp".into(),
        correlation_id: requested.correlation_id.clone(),
        received_at: now,
        decided_at: now,
    };
    let posted = TransactionPosted {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id: requested.request_id,
        transaction_id: requested.transaction_id,
        merchant_id: requested.merchant_id.clone(),
        account_id: requested.account_id.clone(),
        txn_type: requested.txn_type,
        amount_minor,
        currency: Currency::EUR,
        result: PostingResult::Declined,
        reason_code: Some("INSUFFICIENT_FUNDS".into()),
        balance_after_minor: None,
        correlation_id: requested.correlation_id.clone(),
        posted_at: now,
    };
    Txn {
        requested,
        decided,
        posted,
    }
}

/// `n` transactions over `accounts` accounts.
pub fn workload(prefix: &str, n: usize, accounts: usize) -> Vec<Txn> {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            txn(
                &format!("{prefix}{i}"),
                &format!("acc-{}", i % accounts),
                rng.random_range(1..1_000_000),
            )
        })
        .collect()
}

pub fn producer(env: &TestEnv) -> FutureProducer {
    env.kafka.producer("test-producer").unwrap()
}

/// Publishes an event to its pipeline topic (base name) and returns (partition, offset).
pub async fn publish<E: Event>(
    env: &TestEnv,
    producer: &FutureProducer,
    base_topic: &str,
    event: &E,
) -> (i32, i64) {
    let payload = events::encode(event);
    let topic = env.topic(base_topic);
    let record = FutureRecord::to(&topic)
        .key(event.account_id().as_str())
        .payload(&payload)
        .headers(event_headers(E::EVENT_TYPE, event.correlation_id()));
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
        .unwrap()
}

/// Publishes every event of `txns`, topic by topic; returns how many messages were sent.
pub async fn publish_all(env: &TestEnv, txns: &[Txn]) -> usize {
    let p = producer(env);
    for t in txns {
        publish(env, &p, topics::REQUESTS, &t.requested).await;
    }
    for t in txns {
        publish(env, &p, topics::OUTCOMES, &t.decided).await;
    }
    for t in txns {
        publish(env, &p, topics::POSTINGS, &t.posted).await;
    }
    txns.len() * 3
}

pub async fn events(settings: &Settings) -> Collection<Document> {
    AuditStore::new(&settings.mongo.database().await.unwrap())
        .collection()
        .clone()
}

pub async fn count(settings: &Settings, filter: Document) -> u64 {
    events(settings)
        .await
        .count_documents(filter)
        .await
        .unwrap()
}

/// Waits until the audit database holds at least `n` documents matching `filter`.
pub async fn wait_for_documents(settings: &Settings, filter: Document, n: u64) {
    let collection = events(settings).await;
    ledgerline_testkit::wait::until("audit documents", WAIT, || async {
        let stored = collection.count_documents(filter.clone()).await.ok()?;
        (stored >= n).then_some(())
    })
    .await
    .unwrap();
}

/// Every stored document, in chain order.
pub async fn all_documents(settings: &Settings) -> Vec<Document> {
    events(settings)
        .await
        .find(doc! {})
        .sort(doc! { "source.topic": 1, "source.partition": 1, "source.offset": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

pub async fn verify(settings: &Settings, scope: Scope) -> VerifyReport {
    audit::app::verify(settings, &scope).await.unwrap()
}

/// (topic, partition, offset) → (kind, prev_hash, hash) of every stored document.
pub fn chains(documents: &[Document]) -> BTreeMap<(String, i32, i64), (String, String, String)> {
    documents
        .iter()
        .map(|d| {
            let s = d.get_document("source").unwrap();
            (
                (
                    s.get_str("topic").unwrap().to_string(),
                    s.get_i32("partition").unwrap(),
                    s.get_i64("offset").unwrap(),
                ),
                (
                    d.get_str("kind").unwrap().to_string(),
                    d.get_str("prev_hash").unwrap().to_string(),
                    d.get_str("hash").unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Asserts every partition's offsets are consecutive from 0 and every chain verifies.
pub async fn assert_complete_and_intact(settings: &Settings) {
    let documents = all_documents(settings).await;
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for ((topic, partition, offset), _) in chains(&documents) {
        let expected = next.entry((topic.clone(), partition)).or_insert(0);
        assert_eq!(offset, *expected, "{topic}/{partition}: no gap, no repeat");
        *expected += 1;
    }
    let report = verify(settings, Scope::All).await;
    assert!(report.intact, "{report:#?}");
    assert_eq!(report.documents, documents.len() as u64);
}

/// Waits until `group` has committed every message of every pipeline topic (and DLQ).
pub async fn wait_for_group_caught_up(env: &TestEnv, group: &str) {
    let consumer = std::sync::Arc::new(env.kafka.consumer("test-lag-probe", group).unwrap());
    let mut list = TopicPartitionList::new();
    for t in env.kafka.pipeline_topics() {
        for p in 0..env.kafka.partitions {
            list.add_partition(&t, p);
        }
    }
    ledgerline_testkit::wait::until("the group caught up", WAIT, || {
        let (consumer, list) = (consumer.clone(), list.clone());
        async move {
            // librdkafka's offset and watermark queries block: keep them off the runtime
            // thread the audit under test runs on.
            tokio::task::spawn_blocking(move || caught_up(&consumer, list))
                .await
                .ok()
                .flatten()
        }
    })
    .await
    .unwrap();
}

fn caught_up(consumer: &rdkafka::consumer::StreamConsumer, list: TopicPartitionList) -> Option<()> {
    let timeout = Duration::from_secs(5);
    let committed = consumer.committed_offsets(list, timeout).ok()?;
    for e in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .ok()?;
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        if at < high {
            return None;
        }
    }
    Some(())
}

/// The offsets `group` has committed, per (topic, partition) of every pipeline topic and DLQ
/// (partitions without a commit are left out).
pub async fn committed_offsets(env: &TestEnv, group: &str) -> BTreeMap<(String, i32), i64> {
    let consumer = env.kafka.consumer("test-commit-probe", group).unwrap();
    let mut list = TopicPartitionList::new();
    for t in env.kafka.pipeline_topics() {
        for p in 0..env.kafka.partitions {
            list.add_partition(&t, p);
        }
    }
    tokio::task::spawn_blocking(move || {
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

/// `GET http://<admin><path>` → (status, body).
pub async fn admin_get(admin: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}
