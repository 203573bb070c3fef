//! Shared setup for the reconciler's integration tests: the real ledger-writer and audit
//! against real Kafka, PostgreSQL, Redis and MongoDB; decisions written straight to
//! `txn.outcomes`; drift injected into the stores by hand.

#![allow(dead_code, unreachable_pub)]

use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{
    self, Decision, Event, TransactionDecided, TxnType, SCHEMA_VERSION,
};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_testkit::TestEnv;
use mongodb::bson::{doc, Document};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reconciler::run::Window;
use reconciler::{Context, Settings};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MERCHANT: &str = "m-rec";

/// A running service (ledger-writer or audit) in this process.
pub struct Running {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        ledgerline_testkit::wait::stopped("the reconciler daemon", self.handle).await;
    }
}

pub fn ledger_settings(env: &TestEnv) -> ledger_writer::Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    let mut s = ledger_writer::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        postgres: env.postgres.clone(),
        redis: env.redis.clone(),
        group_id: format!("ledger-{}", env.id),
        ..ledger_writer::Settings::default()
    };
    s.relay.poll_interval_ms = 50;
    s
}

pub fn audit_settings(env: &TestEnv) -> audit::Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    audit::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        mongo: env.mongo.clone(),
        group_id: format!("audit-{}", env.id),
        ..audit::Settings::default()
    }
}

pub fn settings(env: &TestEnv) -> Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    let mut s = Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        postgres: env.postgres.clone(),
        mongo: env.mongo.clone(),
        redis: env.redis.clone(),
        ..Settings::default()
    };
    // Everything a test waits for has settled; nothing is stuck unless a test says so.
    s.reconcile.settle_secs = 0;
    s.reconcile.stuck_after_secs = 3_600;
    s.reconcile.bucket_offsets = 10;
    s.repair.messages_per_sec_max = 10_000;
    s
}

pub async fn start_ledger(env: &TestEnv) -> Running {
    start_ledger_with(ledger_settings(env)).await
}

pub async fn start_ledger_with(settings: ledger_writer::Settings) -> Running {
    let app = ledger_writer::Application::build(settings).await.unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { app.run_until_stopped(token).await.unwrap() });
    Running { shutdown, handle }
}

pub async fn start_audit(env: &TestEnv) -> Running {
    let app = audit::Application::build(audit_settings(env))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { app.run_until_stopped(token).await.unwrap() });
    Running { shutdown, handle }
}

/// A decision as the processor would publish it.
pub fn decided(
    key: &str,
    account: &str,
    txn_type: TxnType,
    amount_minor: i64,
) -> TransactionDecided {
    let merchant_id = MerchantId::parse(MERCHANT).unwrap();
    let idempotency_key = IdempotencyKey::parse(key).unwrap();
    let now = ledgerline_runtime::time::now();
    TransactionDecided {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id: RequestId::new_v7(),
        transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant_id, &idempotency_key),
        merchant_id,
        account_id: AccountId::parse(account).unwrap(),
        idempotency_key,
        txn_type,
        amount_minor,
        currency: Currency::EUR,
        decision: Decision::Accepted,
        reason_code: None,
        original_request_id: None,
        request_fingerprint: "fp".into(),
        correlation_id: format!("corr-{key}"),
        received_at: now,
        decided_at: now,
    }
}

pub fn producer(env: &TestEnv) -> FutureProducer {
    env.kafka.producer("test-producer").unwrap()
}

/// Publishes to `topic` (full name); returns (partition, offset).
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: rdkafka::message::OwnedHeaders,
) -> (i32, i64) {
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
        .unwrap()
}

/// Publishes a decision to `txn.outcomes`; returns (partition, offset).
pub async fn publish(
    env: &TestEnv,
    producer: &FutureProducer,
    d: &TransactionDecided,
) -> (i32, i64) {
    send(
        producer,
        &env.topic(topics::OUTCOMES),
        d.account_id.as_str(),
        &events::encode(d),
        event_headers(TransactionDecided::EVENT_TYPE, &d.correlation_id),
    )
    .await
}

pub async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.pg).await.unwrap()
}

pub async fn wait_for_ledger(env: &TestEnv, n: i64) {
    ledgerline_testkit::wait::until("ledger transactions", Duration::from_secs(90), || async {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
            .fetch_one(&env.pg)
            .await
            .ok()?;
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&env.pg)
            .await
            .ok()?;
        (rows >= n && unsent == 0).then_some(())
    })
    .await
    .unwrap();
}

pub async fn events(env: &TestEnv) -> mongodb::Collection<Document> {
    env.mongo
        .database()
        .await
        .unwrap()
        .collection::<Document>("events")
}

pub async fn wait_for_documents(env: &TestEnv, n: u64) {
    let c = events(env).await;
    ledgerline_testkit::wait::until("audit documents", Duration::from_secs(120), || {
        let c = c.clone();
        async move {
            let stored = c.count_documents(doc! {}).await.ok()?;
            (stored >= n).then_some(())
        }
    })
    .await
    .unwrap();
}

/// The window every test reconciles: from before its first message to just after now.
pub fn window(started: time::OffsetDateTime) -> Window {
    Window {
        from: started - time::Duration::seconds(5),
        to: ledgerline_runtime::time::now() + time::Duration::seconds(1),
    }
}

pub async fn context(env: &TestEnv) -> Context {
    ledgerline_runtime::telemetry::init_logging(&Default::default());
    Context::connect(settings(env)).await.unwrap()
}

/// Runs `sql` with the ledger's append-only guard off, as an intruder with database rights
/// (or a bug) would.
pub async fn tamper(env: &TestEnv, sql: &str) {
    let mut tx = env.pg.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}
