//! A measurement, not a check: the audit writer against a raw `insert_many` of the same
//! documents on the same server (secantusdb is slow; compare with it, not with MongoDB's
//! published figures). Run with
//! `cargo test -p audit --test throughput -- --ignored --nocapture`.

mod support;

use audit::store::AuditStore;
use futures::future::join_all;
use ledgerline_contracts::events::{self, Event};
use ledgerline_contracts::topics;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_testkit::TestEnv;
use mongodb::bson::Document;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};
use support::*;

/// Transactions published (three events each).
const TRANSACTIONS: usize = 10_000;
/// Documents per raw `insert_many`, as the audit's default `batch.batch_size_max`.
const RAW_BATCH_DOCUMENTS: usize = 1_000;
/// How often the measurement looks at the document count (its resolution).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints figures"]
async fn the_audit_writer_against_a_raw_insert_many_baseline() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let txns = workload("p", TRANSACTIONS, 50);
    let p = producer(&env);
    let mut payloads = Vec::new();
    for t in &txns {
        payloads.push((
            topics::REQUESTS,
            t.requested.account_id.as_str(),
            encoded(&t.requested),
        ));
        payloads.push((
            topics::OUTCOMES,
            t.decided.account_id.as_str(),
            encoded(&t.decided),
        ));
        payloads.push((
            topics::POSTINGS,
            t.posted.account_id.as_str(),
            encoded(&t.posted),
        ));
    }
    let names: Vec<String> = payloads.iter().map(|(t, _, _)| env.topic(t)).collect();
    let mut sends = Vec::new();
    for ((_, key, (event_type, correlation, payload)), topic) in payloads.iter().zip(&names) {
        let record = FutureRecord::to(topic)
            .key(*key)
            .payload(payload)
            .headers(event_headers(event_type, correlation));
        sends.push(p.send(record, Duration::from_secs(30)));
    }
    for result in join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }
    let n = (TRANSACTIONS * 3) as u64;

    let started = Instant::now();
    let running = start(s.clone()).await;
    // Progress comes from the writer's own metrics (documents in acknowledged batches), not
    // from the server: secantusdb answers every count, even `estimated_document_count`, with a
    // collection scan, which would slow the very inserts being measured. The first non-zero
    // figure marks the end of the consumer group's start, so the steady rate is reported
    // beside the one that includes it.
    let mut first: Option<(Duration, u64)> = None;
    loop {
        let stored = stored_so_far(running.admin).await;
        if stored > 0 && first.is_none() {
            first = Some((started.elapsed(), stored));
        }
        if stored >= n {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let audit = started.elapsed();
    let (group_start, first_count) = first.unwrap_or((Duration::ZERO, 0));
    let (_, metrics) = admin_get(running.admin, "/metrics").await;
    running.stop().await;
    for line in metrics.lines().filter(|l| {
        !l.contains("_bucket") && !l.contains("lag") && l.starts_with("ledgerline_audit_")
    }) {
        println!("{line}");
    }

    let mut documents = all_documents(&s).await;
    for (i, d) in documents.iter_mut().enumerate() {
        d.insert("_id", format!("raw-{i}"));
    }
    let mut raw = s.clone();
    raw.mongo.database = format!("{}_raw", s.mongo.database);
    // The same indexes, so the baseline pays the same index maintenance.
    let store = AuditStore::new(&raw.mongo.database().await.unwrap());
    store.ensure_indexes().await.unwrap();
    let collection = store.collection();
    let started = Instant::now();
    for chunk in documents.chunks(RAW_BATCH_DOCUMENTS) {
        collection
            .insert_many(chunk.iter().collect::<Vec<&Document>>())
            .ordered(false)
            .await
            .unwrap();
    }
    let baseline = started.elapsed();
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let steady = (n - first_count) as f64 / (audit - group_start).as_secs_f64();
    println!(
        "audit: {n} documents in {audit:?} ({:.0}/s, group start included; first documents \
         after {group_start:?}, then {steady:.0}/s); raw insert_many: {baseline:?} ({:.0}/s); \
         ratio {:.2} (steady {:.2})",
        rate(audit),
        rate(baseline),
        rate(audit) / rate(baseline),
        steady / rate(baseline),
    );
    assert_complete_and_intact(&s).await;
}

/// Documents the writer has stored so far, from its `/metrics` (the batch-size sum).
async fn stored_so_far(admin: std::net::SocketAddr) -> u64 {
    let (_, metrics) = admin_get(admin, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("ledgerline_audit_batch_size_sum "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// (event type, correlation id, payload) of an event.
fn encoded<E: Event>(event: &E) -> (&'static str, String, Vec<u8>) {
    (
        E::EVENT_TYPE,
        event.correlation_id().to_string(),
        events::encode(event),
    )
}
