//! Processor throughput benchmark (a report, not a test).
//!
//! 1. Pre-fills `txn.requests` of a fresh environment with N requests over A accounts, 5 % of
//!    them retries (same key and body, new request id) of earlier ones.
//! 2. Service rate: starts the real processor and times the first to the last outcome, taking
//!    progress from its `/metrics`; prints where the batch time went.
//! 3. Raw rate, same run and broker: a consumer in its own group reads the same topic in
//!    batches of the same size and produces every message (key, value and headers, as the
//!    pipeline's messages travel) to another topic, waiting for the acks per batch —
//!    consume→produce without Redis or decisions. Then once more without the headers, to show
//!    what they cost the broker.
//!
//! ```bash
//! cargo run --release -p processor --example processor_throughput -- 1000000 10000
//! ```
//! The processor's settings start from its defaults and the `LEDGERLINE_*` environment, as the
//! service's would (e.g. `LEDGERLINE_KAFKA__COMPRESSION=none`); the bench then sets what
//! isolates the run (brokers, topic prefix, Redis prefix, group).

use futures::StreamExt;
use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{TransactionRequested, TxnType, SCHEMA_VERSION};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::redis_client::server_cpu_secs;
use ledgerline_runtime::settings;
use ledgerline_testkit::{kafka, metrics, TestEnv};
use processor::{Application, Settings};
use rand::Rng;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn requests(n: usize, accounts: usize) -> Vec<TransactionRequested> {
    let mut rng = rand::rng();
    let merchant = MerchantId::parse("bench").unwrap();
    let now = ledgerline_runtime::time::now();
    let mut out: Vec<TransactionRequested> = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && rng.random_bool(0.05) {
            let mut retry = out[rng.random_range(0..i)].clone();
            retry.request_id = RequestId::new_v7();
            retry.event_id = EventId::new_v7();
            out.push(retry);
            continue;
        }
        let key = IdempotencyKey::parse(&format!("p{i}")).unwrap();
        out.push(TransactionRequested {
            schema_version: SCHEMA_VERSION,
            event_id: EventId::new_v7(),
            request_id: RequestId::new_v7(),
            transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant, &key),
            merchant_id: merchant.clone(),
            account_id: AccountId::parse(&format!("acc-{}", rng.random_range(0..accounts)))
                .unwrap(),
            idempotency_key: key,
            txn_type: TxnType::Credit,
            amount_minor: rng.random_range(1..10_000),
            currency: Currency::EUR,
            description: None,
            metadata: Default::default(),
            callback_url: None,
            request_fingerprint: format!("{i:064x}"),
            correlation_id: format!("bench-{i}"),
            received_at: now,
        });
    }
    out
}

async fn raw_consume_produce(
    kafka: &KafkaSettings,
    from: &str,
    to: &str,
    n: usize,
    batch: usize,
    with_headers: bool,
) -> f64 {
    let consumer = kafka
        .consumer("bench-raw", &format!("raw-{}", uuid::Uuid::new_v4()))
        .unwrap();
    consumer.subscribe(&[from]).unwrap();
    let producer = kafka.producer("bench-raw").unwrap();
    let mut stream = consumer.stream();
    let mut seen = 0;
    let mut started = None;
    while seen < n {
        let mut messages = Vec::with_capacity(batch);
        while messages.len() < batch && seen + messages.len() < n {
            let next = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
            match next {
                Ok(Some(Ok(m))) => messages.push(m.detach()),
                Ok(_) => {}
                Err(_) if !messages.is_empty() => break,
                Err(_) => {}
            }
        }
        started.get_or_insert_with(Instant::now);
        let sends = messages.iter().map(|m| {
            let mut record = FutureRecord::to(to).payload(m.payload().unwrap_or_default());
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            if let (true, Some(headers)) = (with_headers, m.headers()) {
                record = record.headers(headers.clone());
            }
            producer.send(record, Duration::from_secs(30))
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e).expect("raw produce");
        }
        seen += messages.len();
    }
    started.map_or(0.0, |s| s.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: throughput [requests] [accounts]"))
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let accounts = args.get(1).copied().unwrap_or(10_000);
    let all = requests(n, accounts);
    let mut env = TestEnv::new().await?;
    let tuned: Settings = settings::load(None)?;
    env.bench_topics("pbench", &tuned.kafka, &["raw.copy"])
        .await?;
    let raw_topic = env.kafka.topic("raw.copy");
    let kafka = env.isolated_kafka(tuned.kafka.clone());
    let producer = kafka.producer("bench-prefill")?;
    let requests_topic = env.topic(topics::REQUESTS);
    kafka::prefill(&producer, &requests_topic, &all).await;

    let settings = Settings {
        admin_addr: "127.0.0.1:0".parse()?,
        kafka: kafka.clone(),
        redis: env.redis.clone(),
        group_id: format!("bench-{}", env.id),
        ..tuned
    };
    let batch = settings.batch.batch_size_max;
    // What the run costs Redis (claims and status writes), from the server's own CPU clock.
    let mut redis = env.redis_conn().await?;
    let redis_cpu_before = server_cpu_secs(&mut redis).await?;
    let app = Application::build(settings).await?;
    let metrics_url = format!("http://{}/metrics", app.admin_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let mut first = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Progress from the processor's own counter of reported decisions: polling the
        // broker's watermarks here would load the broker and block a runtime thread.
        let exposition = reqwest::get(&metrics_url).await?.text().await?;
        let done = metrics::total(&exposition, "ledgerline_processor_decisions_total");
        if done > 0.0 {
            first.get_or_insert_with(Instant::now);
        }
        if done >= n as f64 {
            break;
        }
    }
    let service_secs = first.map_or(0.0, |f: Instant| f.elapsed().as_secs_f64());
    let redis_cpu_secs = server_cpu_secs(&mut redis).await? - redis_cpu_before;
    // Where the time went. The Redis stages overlap the produce, so they do not add up to
    // the batch time.
    let stages = metrics::histogram_totals(
        &reqwest::get(&metrics_url).await?.text().await?,
        "ledgerline_processor_",
    );
    shutdown.cancel();
    task.await??;
    // The run's idempotency and status keys (a 24 h TTL) would otherwise stay in the shared
    // Redis, millions after a 10⁶ run, and slow every test that scans it.
    eprintln!(
        "removed {} Redis keys of the run",
        env.forget_redis().await?
    );
    env.drop_database().await?;

    // Raw, as the pipeline's messages travel: key, value and the design's headers forwarded.
    let raw_secs = raw_consume_produce(&kafka, &requests_topic, &raw_topic, n, batch, true).await;
    // Raw without headers, the cheapest consume→produce: it shows what headers cost this broker.
    let bare_secs = raw_consume_produce(&kafka, &requests_topic, &raw_topic, n, batch, false).await;
    let service = n as f64 / service_secs;
    let raw = n as f64 / raw_secs;
    println!(
        "{}",
        serde_json::json!({
            "requests": n, "accounts": accounts, "partitions": env.kafka.partitions, "retries_share": 0.05,
            "batch_size_max": batch,
            "service_seconds": service_secs, "service_per_second": service.round(),
            "raw_seconds": raw_secs, "raw_per_second": raw.round(),
            "ratio": (service / raw * 100.0).round() / 100.0,
            "raw_without_headers_per_second": (n as f64 / bare_secs).round(),
            "ratio_to_raw_without_headers": (service * bare_secs / n as f64 * 100.0).round() / 100.0,
            "redis_cpu_seconds": (redis_cpu_secs * 100.0).round() / 100.0,
            "redis_cpu_us_per_decision": (redis_cpu_secs * 1e7 / n as f64).round() / 10.0,
            "histograms": stages,
        })
    );
    Ok(())
}
