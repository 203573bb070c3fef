//! Ledger-writer throughput benchmark (a report, not a test).
//!
//! 1. Pre-fills `txn.outcomes` of a fresh environment with N accepted decisions over A
//!    accounts (30 % debits).
//! 2. Service rate: starts the real writer (consumer group, batches, relay) and times the
//!    first to the last posted transaction, taking progress from its `/metrics`; prints where
//!    the batch time went; then waits for the outbox relay to have published every outcome
//!    (`relayed_all_seconds`, from the same start).
//! 3. Raw rate: in a second fresh database (the first one dropped), the same decisions are
//!    posted with the same statements (`LedgerStore::post`) in batches of the same size,
//!    without Kafka or the relay.
//!
//! ```bash
//! cargo run --release -p ledger-writer --example ledger_writer_throughput -- 1000000 10000 [no-relay|raw-only]
//! ```
//! The writer's settings start from its defaults and the `LEDGERLINE_*` environment, as the
//! service's would (e.g. `LEDGERLINE_KAFKA__COMPRESSION=none`); the bench then sets what
//! isolates the run (brokers, topic prefix, databases, group).

use ledger_writer::plan::{Accepted, Source};
use ledger_writer::store::LedgerStore;
use ledger_writer::{Application, Settings};
use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{self, Decision, TransactionDecided, TxnType};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::partitions;
use ledgerline_runtime::settings;
use ledgerline_testkit::{kafka, metrics, TestEnv};
use rand::Rng;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The time between two bench decisions (a processor deciding 20k/s).
const DECISION_INTERVAL: Duration = Duration::from_micros(50);

fn decisions(n: usize, accounts: usize) -> Vec<TransactionDecided> {
    let mut rng = rand::rng();
    let merchant = MerchantId::parse("bench").unwrap();
    // Decision times advance as a processor's would at 20k decisions/s, ending now. The
    // posted event's id starts with its decision's millisecond, so this is also what keeps
    // the posted-event-id index appending at its right edge, as in a live stream; decisions
    // stamped all in one millisecond would spread those inserts at random.
    let start = ledgerline_runtime::time::now() - DECISION_INTERVAL * n as u32;
    (0..n)
        .map(|i| {
            let decided_at = start + DECISION_INTERVAL * i as u32;
            let key = IdempotencyKey::parse(&format!("b{i}")).unwrap();
            TransactionDecided {
                schema_version: events::SCHEMA_VERSION,
                event_id: EventId::new_v7(),
                request_id: RequestId::new_v7(),
                transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant, &key),
                merchant_id: merchant.clone(),
                account_id: AccountId::parse(&format!("acc-{}", rng.random_range(0..accounts)))
                    .unwrap(),
                idempotency_key: key,
                txn_type: if rng.random_bool(0.3) {
                    TxnType::Debit
                } else {
                    TxnType::Credit
                },
                amount_minor: rng.random_range(1..10_000),
                currency: Currency::EUR,
                decision: Decision::Accepted,
                reason_code: None,
                original_request_id: None,
                request_fingerprint: "bench".into(),
                correlation_id: format!("bench-{i}"),
                received_at: decided_at,
                decided_at,
            }
        })
        .collect()
}

async fn count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What a run measures (third argument).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The benchmark: the service, then the raw statements.
    Both,
    /// A diagnostic: the service with its outbox relay switched off, which shows how much of
    /// the shared broker and cores the relay takes from the writer.
    NoRelay,
    /// A diagnostic: the raw statements alone, for iterating on the schema and the statements
    /// without a prefill and a service run each time.
    RawOnly,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: throughput [transactions] [accounts] [no-relay|raw-only]";
    let mode = match std::env::args().nth(3).as_deref() {
        None => Mode::Both,
        Some("no-relay") => Mode::NoRelay,
        Some("raw-only") => Mode::RawOnly,
        Some(_) => anyhow::bail!(USAGE),
    };
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .take(2)
        .map(|a| a.parse().expect(USAGE))
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let accounts = args.get(1).copied().unwrap_or(10_000);
    let all = decisions(n, accounts);
    let tuned: Settings = settings::load(None)?;
    let batch_size = tuned.batch.batch_size_max;

    let service = if mode == Mode::RawOnly {
        None
    } else {
        Some(service_run(&all, tuned.clone(), mode == Mode::NoRelay).await?)
    };
    let raw_secs = raw_run(&all, batch_size, tuned.kafka.partitions).await?;
    let raw_rate = n as f64 / raw_secs;
    let mut report = serde_json::json!({
        "transactions": n,
        "accounts": accounts,
        "batch_size_max": batch_size,
        "raw_seconds": raw_secs,
        "raw_per_second": raw_rate.round(),
    });
    if let Some(run) = service {
        let service_rate = n as f64 / run.service_secs;
        let fields = serde_json::json!({
            "relay": mode != Mode::NoRelay,
            "partitions": run.partitions,
            "declined": run.declined,
            "service_seconds": run.service_secs,
            "service_per_second": service_rate.round(),
            "ratio": (service_rate / raw_rate * 100.0).round() / 100.0,
            "outbox_unsent_at_end": run.unsent,
            "relayed_all_seconds": run.relay_secs,
            "relayed_per_second": run.relay_secs.map(|secs| (n as f64 / secs).round()),
            "histograms": run.histograms,
            "relay_histograms_at_relayed_all": run.relay_histograms,
        });
        if let (Some(report), serde_json::Value::Object(fields)) = (report.as_object_mut(), fields)
        {
            report.extend(fields);
        }
    }
    println!("{report}");
    Ok(())
}

/// What the service run measured.
struct ServiceRun {
    partitions: i32,
    service_secs: f64,
    declined: i64,
    unsent: i64,
    relay_secs: Option<f64>,
    histograms: serde_json::Value,
    relay_histograms: Option<serde_json::Value>,
}

/// Pre-fills a fresh environment's `txn.outcomes` with `all` and times the real writer
/// posting them.
async fn service_run(
    all: &[TransactionDecided],
    tuned: Settings,
    no_relay: bool,
) -> anyhow::Result<ServiceRun> {
    let n = all.len();
    let mut env = TestEnv::new().await?;
    env.bench_topics("bench", &tuned.kafka, &[]).await?;
    let kafka = env.isolated_kafka(tuned.kafka.clone());
    let producer = kafka.producer("bench-prefill")?;
    kafka::prefill(&producer, &env.topic(topics::OUTCOMES), all).await;
    let mut settings = Settings {
        admin_addr: "127.0.0.1:0".parse()?,
        kafka,
        postgres: env.postgres.clone(),
        redis: env.redis.clone(),
        group_id: format!("bench-{}", env.id),
        ..tuned
    };
    settings.postgres.pool_size_max = 8;
    settings.faults.relay_disabled = no_relay;
    let app = Application::build(settings.clone()).await?;
    let metrics_url = format!("http://{}/metrics", app.admin_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let mut first: Option<Instant> = None;
    let exposition = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Progress from the writer's own counter of committed transactions: a count(*) per
        // poll would compete with the writer for PostgreSQL.
        let exposition = reqwest::get(&metrics_url).await?.text().await?;
        let seen = metrics::total(&exposition, "ledgerline_ledger_writer_transactions_total");
        if seen > 0.0 {
            first.get_or_insert_with(Instant::now);
        }
        if seen >= n as f64 {
            break exposition;
        }
    };
    let service_secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let histograms = metrics::histogram_totals(&exposition, "ledgerline_ledger_writer_");
    assert_eq!(count(&env.pg).await, n as i64);
    let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&env.pg)
        .await?;
    // The relay trails the posting; the time until it has published every outcome is the
    // end-to-end figure (posted and on `txn.postings`), measured from the same start.
    // Its phase histograms are read again then: at the end of posting it has sent only part.
    let (relay_secs, relay_histograms) = if no_relay {
        (None, None)
    } else {
        loop {
            let exposition = reqwest::get(&metrics_url).await?.text().await?;
            if metrics::total(&exposition, "ledgerline_ledger_writer_relayed_total") >= n as f64 {
                break (
                    first.map(|f| f.elapsed().as_secs_f64()),
                    Some(metrics::histogram_totals(
                        &exposition,
                        "ledgerline_ledger_writer_relay_",
                    )),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    shutdown.cancel();
    task.await??;
    // The run's idempotency and status keys (a 24 h TTL) would otherwise stay in the shared
    // Redis, millions after a 10⁶ run, and slow every test that scans it.
    eprintln!(
        "removed {} Redis keys of the run",
        env.forget_redis().await?
    );
    let declined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transactions WHERE result = 'DECLINED'")
            .fetch_one(&env.pg)
            .await?;

    env.drop_database().await?;
    Ok(ServiceRun {
        partitions: env.kafka.partitions,
        service_secs,
        declined,
        unsent,
        relay_secs,
        histograms,
        relay_histograms,
    })
}

/// Posts `all` with the service's statements (`LedgerStore::post`) in batches of
/// `batch_size`, one after another as the service writes them, in a fresh database, without
/// Kafka or the relay; returns the seconds taken.
async fn raw_run(
    all: &[TransactionDecided],
    batch_size: usize,
    partitions: i32,
) -> anyhow::Result<f64> {
    let n = all.len();
    let raw_env = TestEnv::new().await?;
    let store = LedgerStore::new(raw_env.pg.clone(), 0);
    let accepted: Vec<Accepted> = all
        .iter()
        .enumerate()
        .map(|(i, d)| Accepted {
            decided: d.clone(),
            source: Source {
                topic: "raw".into(),
                // Where the service's producer puts the account's decisions.
                partition: partitions::partition_for_key(
                    d.account_id.as_str().as_bytes(),
                    partitions,
                ),
                offset: i as i64,
            },
        })
        .collect();
    let started = Instant::now();
    for batch in accepted.chunks(batch_size) {
        store.post(batch).await?;
    }
    let raw_secs = started.elapsed().as_secs_f64();
    assert_eq!(count(&raw_env.pg).await, n as i64);
    // A ledger of n transactions, 2n postings and n outbox rows: gigabytes at 10⁶.
    raw_env.drop_database().await?;
    Ok(raw_secs)
}
