//! The raw producer ceiling (benchmark support): how fast this machine's broker acknowledges
//! messages like ingress's (same client settings, 300-byte values, keyed by account), from one
//! process, with at most `in_flight` messages outstanding.
//!
//! ```bash
//! cargo run --release -p ingress --example producer_ceiling -- 200000 1024
//! ```

use ledgerline_runtime::kafka::KafkaSettings;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("usage: producer_ceiling <messages> <in_flight>")
        })
        .collect();
    let n = args.first().copied().unwrap_or(200_000);
    let in_flight = args.get(1).copied().unwrap_or(1_024);
    let settings = KafkaSettings {
        topic_prefix: format!("ceiling{}.", uuid::Uuid::new_v4().simple()),
        partitions: 12,
        ..KafkaSettings::default()
    };
    let topic = settings.topic("txn.requests");
    settings.ensure_topics(std::slice::from_ref(&topic)).await?;
    let producer = settings.producer("ceiling")?;
    let payload = vec![b'x'; 300];
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for chunk_start in (0..n).step_by(in_flight) {
        let end = (chunk_start + in_flight).min(n);
        let sends = (chunk_start..end).map(|i| {
            let key = format!("acc-{}", i % 10_000);
            let producer = producer.clone();
            let topic = topic.clone();
            let payload = payload.clone();
            async move {
                let sent = Instant::now();
                let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("acknowledged");
                sent.elapsed()
            }
        });
        latencies.extend(futures::future::join_all(sends).await);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "messages": n, "in_flight": in_flight, "seconds": secs,
            "per_second": (n as f64 / secs).round(),
            "ack_p50_ms": pct(0.50).as_secs_f64() * 1e3,
            "ack_p99_ms": pct(0.99).as_secs_f64() * 1e3,
        })
    );
    Ok(())
}
