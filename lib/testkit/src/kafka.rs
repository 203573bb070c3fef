//! Raw Kafka access for tests: write arbitrary bytes (poison included) and read topics back.

use futures::StreamExt;
use ledgerline_contracts::events::{self, Event};
use ledgerline_runtime::kafka::{event_headers, KafkaSettings};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Most messages a [`prefill`] waits on at once: enough to keep the broker's requests full,
/// few enough to bound the payloads held in memory.
const PREFILL_IN_FLIGHT_MAX: usize = 5_000;

/// Settings on `brokers` with a topic prefix no other test uses and `partitions`, the rest
/// defaults, and the one topic `<prefix>events`, created: for tests of the Kafka client code
/// itself, which need neither the pipeline's topics nor a database.
pub async fn own_topic(
    brokers: String,
    partitions: i32,
) -> anyhow::Result<(KafkaSettings, String)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let settings = KafkaSettings {
        brokers,
        topic_prefix: format!("k{}.", &id[..12]),
        partitions,
        ..KafkaSettings::default()
    };
    let topic = settings.topic("events");
    settings.ensure_topics(std::slice::from_ref(&topic)).await?;
    Ok((settings, topic))
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub payload: Option<Vec<u8>>,
    /// Headers as (name, UTF-8 value).
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.payload
            .as_deref()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Produces one message (durably) with the given headers.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> anyhow::Result<(i32, i64)> {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let record = FutureRecord::to(topic).key(key).payload(payload).headers(h);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| anyhow::anyhow!("produce to {topic} failed: {e}"))
}

/// Fills `topic` with `all`, each keyed and headed as its producing stage sends it, waiting on
/// at most [`PREFILL_IN_FLIGHT_MAX`] at a time, then flushes and prints the rate on stderr
/// (`prefill: …`, which the benchmarks' profiling commands wait for). For benchmarks: a failed
/// produce panics, since a partial fill would measure something else.
pub async fn prefill<E: Event>(producer: &FutureProducer, topic: &str, all: &[E]) {
    let started = Instant::now();
    for chunk in all.chunks(PREFILL_IN_FLIGHT_MAX) {
        let payloads: Vec<Vec<u8>> = chunk.iter().map(events::encode).collect();
        let sends = chunk.iter().zip(&payloads).map(|(event, payload)| {
            let record = FutureRecord::to(topic)
                .key(event.account_id().as_str())
                .payload(payload)
                .headers(event_headers(E::EVENT_TYPE, event.correlation_id()));
            producer.send(record, Duration::from_secs(60))
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e).expect("prefill produce");
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("prefill flush");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "prefill: {} messages in {secs:.1} s ({:.0}/s)",
        all.len(),
        all.len() as f64 / secs
    );
}

/// Reads every message of `topic` from the beginning until `expected` have arrived or
/// `timeout` passes; returns what it read (possibly fewer — the caller asserts).
pub async fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    let consumer = settings.reader(&format!("test-reader-{}", uuid::Uuid::new_v4().simple()))?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..settings.partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = consumer.stream();
    while out.len() < expected {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(Some(msg)) = next else { break };
        let msg = msg?;
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_string(), v.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    drop(stream);
    // rdkafka's consumer drop polls until librdkafka reports the consumer closed, with no
    // bound: a broker that stops answering mid-close would hang the test, and on a
    // current-thread runtime everything else in it. The test has what it read, so the
    // consumer closes on a thread of its own.
    std::thread::spawn(move || drop(consumer));
    Ok(out)
}
