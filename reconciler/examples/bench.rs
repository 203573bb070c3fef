//! Reconciler benchmark (a measurement, not a test): fills an isolated environment with N
//! accepted decisions through the real ledger-writer and then the audit's replay path (its
//! writer's own `process`), then times a clean run over the window and runs with K injected
//! differences (ledger rows deleted, spread evenly).
//!
//! ```sh
//! cargo run --release -p reconciler --example bench -- 100000 10,1000
//! ```
//! Prints one line per run: window size, differences, duration, which store answered when.

use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::events::{self, Decision, Event, TransactionDecided, TxnType};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
};
use ledgerline_contracts::topics;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_runtime::ranges::{self, Position};
use ledgerline_testkit::TestEnv;
use rdkafka::producer::FutureRecord;
use reconciler::run::{reconcile, Window};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(10_000), |a| a.parse())?;
    let diffs: Vec<usize> = args
        .get(2)
        .map_or("10", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let env = TestEnv::new().await?;
    let started = ledgerline_runtime::time::now();

    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    let ledger_settings = ledger_writer::Settings {
        admin_addr: "127.0.0.1:0".parse()?,
        kafka: kafka.clone(),
        postgres: env.postgres.clone(),
        redis: env.redis.clone(),
        group_id: format!("ledger-{}", env.id),
        ..ledger_writer::Settings::default()
    };
    let audit_settings = audit::Settings {
        admin_addr: "127.0.0.1:0".parse()?,
        kafka: kafka.clone(),
        mongo: env.mongo.clone(),
        group_id: format!("audit-{}", env.id),
        ..audit::Settings::default()
    };
    let stop = CancellationToken::new();
    let ledger = ledger_writer::Application::build(ledger_settings).await?;

    // The topic is filled before the ledger-writer starts, so producing does not compete with them
    // for the broker (at 10⁶, sends queued behind their fetches timed out).
    let fill = Instant::now();
    let producer = env.kafka.producer("bench")?;
    let topic = env.topic(topics::OUTCOMES);
    let merchant = MerchantId::parse("m-bench")?;
    let now = ledgerline_runtime::time::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let sends = chunk.iter().map(|i| {
            let key = IdempotencyKey::parse(&format!("b{i}")).unwrap();
            let d = TransactionDecided {
                schema_version: events::SCHEMA_VERSION,
                event_id: EventId::new_v7(),
                request_id: RequestId::new_v7(),
                transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant, &key),
                merchant_id: merchant.clone(),
                account_id: AccountId::parse(&format!("acc-{}", i % 1_000)).unwrap(),
                idempotency_key: key,
                txn_type: TxnType::Credit,
                amount_minor: 100 + (*i as i64 % 900),
                currency: Currency::EUR,
                decision: Decision::Accepted,
                reason_code: None,
                original_request_id: None,
                request_fingerprint: "fp".into(),
                correlation_id: format!("c{i}"),
                received_at: now,
                decided_at: now,
            };
            let payload = events::encode(&d);
            let account = d.account_id.as_str().to_string();
            let headers = event_headers(TransactionDecided::EVENT_TYPE, &d.correlation_id);
            let producer = &producer;
            let topic = &topic;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(&account)
                            .payload(&payload)
                            .headers(headers),
                        Duration::from_secs(120),
                    )
                    .await
                    .map_err(|(e, _)| e)
            }
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    let produced = fill.elapsed();
    let ledger_task = tokio::spawn(ledger.run_until_stopped(stop.clone()));
    // The ledger is filled when it holds every transaction (a count in PostgreSQL is cheap)
    // and the outbox relay has announced every posting.
    let reader = env
        .kafka
        .consumer("bench-poll", &format!("bench-poll-{}", env.id))?;
    let postings = env.topic(topics::POSTINGS);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
            .fetch_one(&env.pg)
            .await?;
        if (rows as usize) < n {
            continue;
        }
        let announced: i64 = ranges::offsets_at(&reader, &postings, None, Position::End)?
            .values()
            .sum();
        if announced >= n as i64 {
            break;
        }
    }
    stop.cancel();
    let _ = ledger_task.await;
    let ledgered = fill.elapsed();

    // The audit is filled after the ledger, through its replay path (the writer's own
    // `process`, read by offset range, no consumer group), so the broker serves one reader:
    // at 10⁶, the live writer beside an idle ledger consumer got ~250 documents/s from a
    // saturated broker, and session time-outs made both groups re-read thousands of messages.
    let mut replay_ranges = Vec::new();
    for name in [&topic, &postings] {
        replay_ranges.extend(ranges::between(
            &reader,
            name,
            None,
            Position::Offset(0),
            Position::End,
        )?);
    }
    let never = CancellationToken::new();
    let mut replayer = audit::app::replayer(audit_settings, &never).await?;
    let recorded = replayer.replay(&replay_ranges, &never).await?;
    eprintln!(
        "filled {n} transactions ({} audit documents) in {:.1} s: {:.1} s producing them, \
         ledger done at {:.1} s",
        recorded.inserted,
        fill.elapsed().as_secs_f64(),
        produced.as_secs_f64(),
        ledgered.as_secs_f64(),
    );

    // At 10⁶ secantusdb spends longer than the default 30 s in one `$group`, misses the
    // driver's heartbeat (the driver times heartbeats by `connect_timeout`) and the driver
    // cuts the digest query; a real MongoDB answers heartbeats on another thread.
    let mut mongo = env.mongo.clone();
    mongo.connect_timeout_ms = mongo.connect_timeout_ms.max(120_000);
    let mut settings = reconciler::Settings {
        kafka,
        postgres: env.postgres.clone(),
        mongo,
        redis: env.redis.clone(),
        ..reconciler::Settings::default()
    };
    settings.reconcile.settle_secs = 0;
    let ctx = reconciler::Context::connect(settings).await?;
    let window = Window {
        from: started - time::Duration::seconds(5),
        to: ledgerline_runtime::time::now() + time::Duration::seconds(1),
    };
    let shutdown = CancellationToken::new();
    for attempt in 1..=2 {
        let t = Instant::now();
        let r = reconcile(&ctx, window, "bench", &shutdown).await?;
        println!(
            "clean run {attempt}: n={n} status={} {:.2} s counts={}",
            r.status,
            t.elapsed().as_secs_f64(),
            r.counts
        );
    }
    let mut deleted = 0usize;
    for k in diffs {
        // Delete more rows, evenly spread, up to k in all.
        let step = n / k.max(1);
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT transaction_id FROM ledger_transactions ORDER BY source_partition, \
             source_offset",
        )
        .fetch_all(&env.pg)
        .await?
        .into_iter()
        .step_by(step.max(1))
        .take(k - deleted.min(k))
        .collect();
        let mut tx = env.pg.begin().await?;
        sqlx::query("SET LOCAL ledgerline.quarantine = 'on'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM postings WHERE transaction_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM ledger_transactions WHERE transaction_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        deleted += ids.len();
        let t = Instant::now();
        let r = reconcile(&ctx, window, "bench", &shutdown).await?;
        println!(
            "drill-down: n={n} deleted={deleted} found={:?} {:.2} s counts={}",
            r.by_kind.get("missing_in_ledger"),
            t.elapsed().as_secs_f64(),
            r.counts
        );
    }
    Ok(())
}
