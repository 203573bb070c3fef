//! Shared setup for the ledger-writer's integration tests: the real writer against real
//! Kafka, PostgreSQL and Redis; decisions written straight to `txn.outcomes`.

#![allow(dead_code, unreachable_pub)]

use ledger_writer::{Application, Settings};
use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{
    self, Decision, Event, TransactionDecided, TxnType, SCHEMA_VERSION,
};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_testkit::kafka::{read_topic, Record};
use ledgerline_testkit::TestEnv;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn settings(env: &TestEnv) -> Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    let mut s = Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        postgres: env.postgres.clone(),
        redis: env.redis.clone(),
        group_id: format!("ledger-{}", env.id),
        ..Settings::default()
    };
    s.relay.poll_interval_ms = 50;
    s
}

pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub admin: std::net::SocketAddr,
}

pub async fn start(settings: Settings) -> Running {
    let app = Application::build(settings).await.expect("writer builds");
    let admin = app.admin_addr();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(token).await.expect("writer runs");
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
        ledgerline_testkit::wait::stopped("the ledger-writer", self.handle).await;
    }
}

/// A decision as the processor would publish it.
pub fn decided(
    merchant: &str,
    key: &str,
    account: &str,
    txn_type: TxnType,
    amount_minor: i64,
) -> TransactionDecided {
    let merchant_id = MerchantId::parse(merchant).unwrap();
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

pub async fn publish(env: &TestEnv, producer: &FutureProducer, decided: &TransactionDecided) {
    let payload = events::encode(decided);
    let topic = env.topic(topics::OUTCOMES);
    let record = FutureRecord::to(&topic)
        .key(decided.account_id.as_str())
        .payload(&payload)
        .headers(event_headers(
            TransactionDecided::EVENT_TYPE,
            &decided.correlation_id,
        ));
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

pub async fn publish_all(env: &TestEnv, decisions: &[TransactionDecided]) {
    let p = producer(env);
    for d in decisions {
        publish(env, &p, d).await;
    }
}

/// Waits until the ledger holds `n` transactions (posted or declined).
pub async fn wait_for_transactions(env: &TestEnv, n: i64) {
    ledgerline_testkit::wait::until("ledger transactions", Duration::from_secs(90), || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
            .fetch_one(&env.pg)
            .await
            .ok()?;
        (count >= n).then_some(())
    })
    .await
    .unwrap();
}

/// Waits until the outbox has no unsent rows.
pub async fn wait_for_relay(env: &TestEnv) {
    ledgerline_testkit::wait::until("outbox relayed", Duration::from_secs(60), || async {
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&env.pg)
            .await
            .ok()?;
        (unsent == 0).then_some(())
    })
    .await
    .unwrap();
}

pub async fn postings_topic(env: &TestEnv, expected: usize, timeout: Duration) -> Vec<Record> {
    read_topic(&env.kafka, &env.topic(topics::POSTINGS), expected, timeout)
        .await
        .unwrap()
}

/// The distinct `event_id`s on `txn.postings`, read until `n` are seen or `timeout` passes
/// (the relay is at least once, so an event may be there twice).
pub async fn distinct_postings(env: &TestEnv, n: usize, timeout: Duration) -> HashSet<String> {
    let mut records = n;
    loop {
        let read = postings_topic(env, records, timeout).await;
        let ids: HashSet<String> = read
            .iter()
            .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
            .collect();
        // Fewer records than asked for means the read ran out of time: the topic has no more.
        if ids.len() >= n || read.len() < records {
            return ids;
        }
        records += n - ids.len();
    }
}

/// `(result, reason, balance_after)` of a transaction.
pub async fn result_of(
    env: &TestEnv,
    d: &TransactionDecided,
) -> (String, Option<String>, Option<i64>) {
    sqlx::query_as(
        "SELECT result, reason_code, balance_after_minor FROM ledger_transactions
         WHERE transaction_id = $1",
    )
    .bind(d.transaction_id.as_uuid())
    .fetch_one(&env.pg)
    .await
    .unwrap()
}

pub async fn balance(env: &TestEnv, merchant: &str, account: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT balance_minor FROM balances
         WHERE merchant_id = $1 AND account_id = $2 AND currency = 'EUR'",
    )
    .bind(merchant)
    .bind(account)
    .fetch_optional(&env.pg)
    .await
    .unwrap()
    .unwrap_or(0)
}

/// The ledger's invariants, checked in SQL: every transaction's postings sum to zero (two
/// legs for POSTED, none for DECLINED), and every balance equals the sum of its postings.
pub async fn assert_books_balance(env: &TestEnv) {
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
            SELECT t.transaction_id
            FROM ledger_transactions t LEFT JOIN postings p USING (transaction_id)
            GROUP BY t.transaction_id, t.result
            HAVING coalesce(sum(p.amount_minor), 0) <> 0
                OR count(p.leg) <> CASE t.result WHEN 'POSTED' THEN 2 ELSE 0 END
         ) bad",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "transactions whose postings do not balance");
    let drifted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM balances b
         LEFT JOIN (SELECT merchant_id, account_id, currency, sum(amount_minor) AS s,
                           count(*) AS n
                    FROM postings GROUP BY 1, 2, 3) p
           USING (merchant_id, account_id, currency)
         WHERE b.balance_minor <> coalesce(p.s, 0) OR b.postings_count <> coalesce(p.n, 0)",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(
        drifted, 0,
        "balances that differ from the sum of their postings"
    );
}

/// `n` decisions of merchant `m1` over `accounts` accounts, 30 % debits.
pub fn random_workload(prefix: &str, n: usize, accounts: usize) -> Vec<TransactionDecided> {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let account = format!("acc-{}", rng.random_range(0..accounts));
            let txn_type = if rng.random_bool(0.3) {
                TxnType::Debit
            } else {
                TxnType::Credit
            };
            decided(
                "m1",
                &format!("{prefix}{i}"),
                &account,
                txn_type,
                rng.random_range(1..5_000),
            )
        })
        .collect()
}

/// The expected books: accounts are independent and each sees its decisions in publish
/// order, so balances and declines follow from a sequential walk.
pub fn sequential_model(
    decisions: &[TransactionDecided],
) -> (HashMap<String, i64>, HashMap<uuid::Uuid, &'static str>) {
    let mut balances: HashMap<String, i64> = HashMap::new();
    let mut results = HashMap::new();
    for d in decisions {
        let balance = balances.entry(d.account_id.to_string()).or_default();
        let result = match d.txn_type {
            TxnType::Credit => {
                *balance += d.amount_minor;
                "POSTED"
            }
            TxnType::Debit if *balance >= d.amount_minor => {
                *balance -= d.amount_minor;
                "POSTED"
            }
            TxnType::Debit => "DECLINED",
        };
        results.insert(*d.transaction_id.as_uuid(), result);
    }
    (balances, results)
}

/// Asserts the ledger matches [`sequential_model`] exactly.
pub async fn assert_matches_model(env: &TestEnv, decisions: &[TransactionDecided]) {
    let (model, expected) = sequential_model(decisions);
    for (account, want) in &model {
        assert_eq!(balance(env, "m1", account).await, *want, "{account}");
    }
    let rows: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT transaction_id, result FROM ledger_transactions")
            .fetch_all(&env.pg)
            .await
            .unwrap();
    assert_eq!(rows.len(), decisions.len());
    for (id, result) in rows {
        assert_eq!(expected[&id], result, "{id}");
    }
    assert_books_balance(env).await;
}

/// Deletes `id` from each of `tables` in order, in one database transaction that says it is
/// a quarantine (the only deletes the ledger allows: migrations/0003).
pub async fn quarantine(
    pool: &sqlx::PgPool,
    id: uuid::Uuid,
    tables: &[&str],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL ledgerline.quarantine = 'on'")
        .execute(&mut *tx)
        .await?;
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table} WHERE transaction_id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
