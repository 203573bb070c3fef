//! The raw producer ceiling (benchmark support): how fast this machine's broker acknowledges
//! the messages ingress publishes for the load generator's requests (same client settings, the
//! same `TransactionRequested` value and the design's three headers, keyed by account), from
//! one process, with at most `in_flight` messages outstanding.
//!
//! `bare` as a third argument sends 300-byte values without headers instead, the ceiling the
//! first figures used: on nisshi, headers cost a large share of the broker's rate, so the two
//! ceilings differ a lot (see docs/benchmarks.md).
//!
//! `producers=N` spreads the messages over N producers (N connections to the broker), each
//! taking the partitions `p % N == i`, so one key still goes through one producer in order.
//!
//! `partitions=N` sets the topic's partitions (default 12, the pipeline's): nisshi stores each
//! partition's share of a produce request in its own database transaction, so fewer partitions
//! mean fewer, larger transactions per request.
//!
//! ```bash
//! cargo run --release -p ingress --example producer_ceiling -- 200000 1024 [bare] [producers=N] [partitions=N]
//! ```

use futures::StreamExt;
use ledgerline_contracts::events::{self, Event, TransactionRequested};
use ledgerline_contracts::ids::AccountId;
use ledgerline_runtime::kafka::{event_headers, KafkaSettings};
use ledgerline_runtime::partitions;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};

/// The value of a `name=value` argument after the two counts.
fn option(name: &str) -> Option<String> {
    std::env::args()
        .skip(3)
        .find_map(|a| a.strip_prefix(name).map(str::to_owned))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bare = std::env::args().skip(3).any(|a| a == "bare");
    let producers_n: usize = option("producers=").map_or(1, |n| n.parse().expect("a count"));
    let partitions: i32 = option("partitions=").map_or(12, |n| n.parse().expect("a count"));
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .take(2)
        .map(|a| {
            a.parse()
                .expect("usage: producer_ceiling <messages> <in_flight>")
        })
        .collect();
    let n = args.first().copied().unwrap_or(200_000);
    let in_flight = args.get(1).copied().unwrap_or(1_024);
    let settings = KafkaSettings {
        topic_prefix: format!("ceiling{}.", uuid::Uuid::new_v4().simple()),
        partitions,
        ..KafkaSettings::default()
    };
    let topic = settings.topic("txn.requests");
    settings.ensure_topics(std::slice::from_ref(&topic)).await?;
    let producers = (0..producers_n.max(1))
        .map(|i| settings.producer(&format!("ceiling-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    // What ingress publishes for wrk_signed's bodies: no description, metadata or callback.
    let mut template: TransactionRequested = serde_json::from_str(include_str!(
        "../../lib/contracts/tests/fixtures/transaction_requested.json"
    ))?;
    template.description = None;
    template.metadata = Default::default();
    template.callback_url = None;
    let started = Instant::now();
    // A sliding window, as wrk's connections are: a new message goes out as soon as any of
    // the `in_flight` outstanding ones is acknowledged.
    let sends = (0..n).map(|i| {
        let key = format!("acc-{}", i % 10_000);
        let correlation_id = format!("ceiling-{i}");
        let payload = if bare {
            vec![b'x'; 300]
        } else {
            let mut message = template.clone();
            message.account_id = AccountId::parse(&key).expect("valid account id");
            message.correlation_id.clone_from(&correlation_id);
            events::encode(&message)
        };
        let partition = partitions::partition_for_key(key.as_bytes(), settings.partitions);
        let producer = producers[partition as usize % producers.len()].clone();
        let topic = topic.clone();
        async move {
            let sent = Instant::now();
            let mut record = FutureRecord::to(&topic).key(&key).payload(&payload);
            if !bare {
                record = record.headers(event_headers(
                    TransactionRequested::EVENT_TYPE,
                    &correlation_id,
                ));
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .expect("acknowledged");
            sent.elapsed()
        }
    });
    let mut latencies: Vec<Duration> = futures::stream::iter(sends)
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "messages": n, "in_flight": in_flight, "producers": producers.len(),
            "partitions": partitions, "seconds": secs,
            "kind": if bare { "bare 300-byte values" } else { "ingress's messages with headers" },
            "per_second": (n as f64 / secs).round(),
            "ack_p50_ms": pct(0.50).as_secs_f64() * 1e3,
            "ack_p99_ms": pct(0.99).as_secs_f64() * 1e3,
        })
    );
    Ok(())
}
