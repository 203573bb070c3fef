//! Shared setup for the processor's integration tests: the real processor against real Kafka
//! and Redis, requests written straight to `txn.requests`, outcomes read back.

#![allow(dead_code, unreachable_pub)]

use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{self, Event, TransactionRequested, TxnType, SCHEMA_VERSION};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_runtime::status::{StatusStore, TransactionStatus};
use ledgerline_testkit::kafka::{read_topic, Record};
use ledgerline_testkit::TestEnv;
use processor::{Application, Settings};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn settings(env: &TestEnv) -> Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        redis: env.redis.clone(),
        group_id: format!("processor-{}", env.id),
        ..Settings::default()
    }
}

pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub admin: std::net::SocketAddr,
}

pub async fn start(settings: Settings) -> Running {
    let app = Application::build(settings)
        .await
        .expect("processor builds");
    let admin = app.admin_addr();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(token).await.expect("processor runs");
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
        ledgerline_testkit::wait::stopped("the processor", self.handle).await;
    }
}

/// A request as ingress would publish it.
pub fn request(
    merchant: &str,
    key: &str,
    account: &str,
    amount_minor: i64,
    fingerprint: &str,
) -> TransactionRequested {
    let merchant_id = MerchantId::parse(merchant).unwrap();
    let idempotency_key = IdempotencyKey::parse(key).unwrap();
    TransactionRequested {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id: RequestId::new_v7(),
        transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant_id, &idempotency_key),
        merchant_id,
        account_id: AccountId::parse(account).unwrap(),
        idempotency_key,
        txn_type: TxnType::Credit,
        amount_minor,
        currency: Currency::EUR,
        description: None,
        metadata: BTreeMap::new(),
        callback_url: None,
        request_fingerprint: fingerprint.to_string(),
        correlation_id: format!("corr-{key}"),
        received_at: ledgerline_runtime::time::now(),
    }
}

pub async fn publish(env: &TestEnv, producer: &FutureProducer, request: &TransactionRequested) {
    let payload = events::encode(request);
    let topic = env.topic(topics::REQUESTS);
    let record = FutureRecord::to(&topic)
        .key(request.account_id.as_str())
        .payload(&payload)
        .headers(event_headers(
            TransactionRequested::EVENT_TYPE,
            &request.correlation_id,
        ));
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

pub async fn outcomes(env: &TestEnv, expected: usize) -> Vec<Record> {
    read_topic(
        &env.kafka,
        &env.topic(topics::OUTCOMES),
        expected,
        Duration::from_secs(60),
    )
    .await
    .unwrap()
}

pub fn producer(env: &TestEnv) -> FutureProducer {
    env.kafka.producer("test-producer").unwrap()
}

/// Waits (up to 10 s) until the read model of `transaction_id` satisfies `ready`, and returns it.
pub async fn status_when(
    env: &TestEnv,
    transaction_id: TransactionId,
    what: &str,
    ready: impl Fn(&TransactionStatus) -> bool,
) -> TransactionStatus {
    let store = StatusStore::new(
        env.redis_conn().await.unwrap(),
        &env.redis.key_prefix,
        &Default::default(),
    );
    let id = transaction_id.to_string();
    ledgerline_testkit::wait::until(what, Duration::from_secs(10), || async {
        store.get(&id).await.ok().flatten().filter(|s| ready(s))
    })
    .await
    .unwrap()
}
