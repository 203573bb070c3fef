//! Kafka clients with every option set explicitly, idempotent topic creation, and the
//! dead-letter helper shared by all consumers.

use crate::partitions::{
    group_by_partition, split_into_requests, Layout, PacedProducer, REQUEST_BYTES_MAX,
    RUN_BYTES_MAX,
};
use crate::settings::ensure;
use futures::StreamExt;
use ledgerline_contracts::events::{self, Event};
use ledgerline_contracts::topics::{self, headers};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Broker connection and client tuning. Every value is passed to librdkafka explicitly so the
/// behaviour does not change with the library's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Prepended to every topic name (`<prefix>txn.requests`); tests isolate themselves with it.
    pub topic_prefix: String,
    /// Partitions of every pipeline topic; all topics share it so an account maps to the same
    /// partition number everywhere (design §1).
    pub partitions: i32,
    /// Replication factor when creating topics (1 locally, 3 in production).
    pub replication_factor: i32,
    /// Create missing topics at start-up.
    pub create_topics: bool,
    /// Producer: how long a message may wait in librdkafka's queue plus retries before its
    /// delivery fails (`message.timeout.ms`).
    pub message_timeout_ms: u64,
    /// Producer: wait this long to fill a batch (`linger.ms`).
    pub linger_ms: u64,
    /// Producer: most messages held in librdkafka's queue (`queue.buffering.max.messages`).
    pub producer_queue_messages_max: u32,
    /// Producer: most kilobytes held in librdkafka's queue (`queue.buffering.max.kbytes`).
    pub producer_queue_kbytes_max: u32,
    /// Producer: most messages per broker request (`batch.num.messages`).
    pub producer_batch_messages_max: u32,
    /// Producer compression codec (`compression.type`): none, lz4, zstd, …
    pub compression: String,
    /// Per-request timeout against the broker (`request.timeout.ms`).
    pub request_timeout_ms: u64,
    /// Consumer group session timeout: a silent member's partitions move after this long.
    pub session_timeout_ms: u64,
    /// Consumer heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// Consumer: most time between polls before the member is considered stuck.
    pub max_poll_interval_ms: u64,
    /// Consumer: this replica's static group membership (`group.instance.id`), unset by
    /// default. Set, each replica of a stage needs its own stable value (a StatefulSet pod's
    /// name): a restarted replica then takes its partitions back at once instead of after the
    /// session timeout and a rebalance, and a clean shutdown does not leave the group (its
    /// partitions wait up to `session_timeout_ms` for it to return).
    pub group_instance_id: Option<String>,
    /// Consumer: most kilobytes prefetched in the consumer's one queue, whatever the number of
    /// partitions (`queued.max.messages.kbytes`; the high-level consumer has a single queue).
    pub consumer_queue_kbytes_max: u32,
    /// Consumer: most kilobytes one fetch returns per partition (`max.partition.fetch.bytes`).
    /// Larger fetches mean fewer reads of a backlog; a broker whose fetch cost grows with the
    /// backlog behind the fetch offset (see docs/benchmarks.md) pays that cost once per fetch.
    pub consumer_partition_fetch_kbytes_max: u32,
    /// Admin operations (topic creation, metadata) timeout.
    pub admin_timeout_ms: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            partitions: 12,
            replication_factor: 1,
            create_topics: true,
            message_timeout_ms: 10_000,
            linger_ms: 2,
            producer_queue_messages_max: 100_000,
            producer_queue_kbytes_max: 262_144,
            producer_batch_messages_max: 10_000,
            compression: "lz4".into(),
            request_timeout_ms: 5_000,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 2_000,
            max_poll_interval_ms: 300_000,
            group_instance_id: None,
            consumer_queue_kbytes_max: 65_536,
            // 8 MiB, not librdkafka's 1 MiB: on the local broker a fetch costs the backlog
            // behind it, so fewer, larger fetches drain a backlog faster (docs/benchmarks.md,
            // 2026-12-04: ledger-writer 11.5k → 12.8k txn/s, processor 9.9k → 10.7k/s).
            consumer_partition_fetch_kbytes_max: 8_192,
            admin_timeout_ms: 10_000,
        }
    }
}

/// Kafka's rule for a `group.instance.id`: the legal characters and length of a topic name.
fn valid_group_instance_id(id: &str) -> bool {
    (1..=249).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KafkaSettings {
    /// Checks ranges and the cross-field rules librdkafka would otherwise reject at runtime.
    pub fn validate(&self) -> Result<(), String> {
        ensure(
            !self.brokers.trim().is_empty(),
            "kafka.brokers",
            "must not be empty",
        )?;
        ensure(self.partitions >= 1, "kafka.partitions", "must be >= 1")?;
        ensure(
            self.replication_factor >= 1,
            "kafka.replication_factor",
            "must be >= 1",
        )?;
        ensure(
            self.message_timeout_ms >= 1_000,
            "kafka.message_timeout_ms",
            "must be >= 1000",
        )?;
        ensure(
            self.heartbeat_interval_ms < self.session_timeout_ms,
            "kafka.heartbeat_interval_ms",
            "must be below kafka.session_timeout_ms",
        )?;
        ensure(
            self.producer_queue_messages_max >= 1,
            "kafka.producer_queue_messages_max",
            "must be >= 1",
        )?;
        if let Some(id) = &self.group_instance_id {
            ensure(
                valid_group_instance_id(id),
                "kafka.group_instance_id",
                "must be 1..=249 characters of A-Z a-z 0-9 . _ - (unset it for dynamic membership)",
            )?;
        }
        // A partition's share cannot exceed the whole fetch (`fetch.max.bytes`, 50 MiB by
        // default), which librdkafka in turn caps at the prefetch queue; a larger value would
        // only look like a bound it is not.
        ensure(
            (1..=51_200).contains(&self.consumer_partition_fetch_kbytes_max)
                && self.consumer_partition_fetch_kbytes_max <= self.consumer_queue_kbytes_max,
            "kafka.consumer_partition_fetch_kbytes_max",
            "must be 1..=51200 and at most kafka.consumer_queue_kbytes_max",
        )
    }

    /// The full name of a pipeline topic, with this deployment's prefix.
    pub fn topic(&self, base: &str) -> String {
        format!("{}{}", self.topic_prefix, base)
    }

    /// The full name of a topic's dead-letter topic.
    pub fn dlq(&self, base: &str) -> String {
        topics::dlq_of(&self.topic(base))
    }

    fn base_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set(
                "socket.timeout.ms",
                self.request_timeout_ms.max(10_000).to_string(),
            )
            .set("log_level", "4");
        config
    }

    /// An idempotent producer (`acks=all`, `enable.idempotence=true`): a delivery report means
    /// the message is durably in the log and retries never duplicate or reorder it.
    pub fn producer(&self, client_id: &str) -> Result<FutureProducer, KafkaError> {
        self.base_config(client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "max.in.flight.requests.per.connection",
                crate::partitions::REQUESTS_IN_FLIGHT_PER_BROKER.to_string(),
            )
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set("request.timeout.ms", self.request_timeout_ms.to_string())
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", REQUEST_BYTES_MAX.to_string())
            .set(
                "queue.buffering.max.messages",
                self.producer_queue_messages_max.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.producer_queue_kbytes_max.to_string(),
            )
            .set(
                "batch.num.messages",
                self.producer_batch_messages_max.to_string(),
            )
            .set("compression.type", &self.compression)
            // Keyed messages go to murmur2(key) % partitions, as the Java client does, so
            // services in other languages agree on an account's partition.
            .set("partitioner", "murmur2_random")
            .create()
    }

    /// A group consumer with manual commits: offsets are committed by the service only after
    /// its store acknowledged the batch. A member of the group by `group_instance_id` when it
    /// is set (static membership).
    pub fn consumer(&self, client_id: &str, group_id: &str) -> Result<StreamConsumer, KafkaError> {
        let mut config = self.base_config(client_id);
        if let Some(id) = &self.group_instance_id {
            config.set("group.instance.id", id);
        }
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                self.heartbeat_interval_ms.to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            )
            .set(
                "queued.max.messages.kbytes",
                self.consumer_queue_kbytes_max.to_string(),
            )
            .set("max.partition.fetch.bytes", self.partition_fetch_bytes())
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_uncommitted")
            .create()
    }

    /// A consumer outside any group, for replays by `assign`/`seek` and for tests. Replays and
    /// the reconciler's log pass read whole backlogs, so they take the same fetch size.
    pub fn reader(&self, client_id: &str) -> Result<StreamConsumer, KafkaError> {
        self.base_config(client_id)
            .set("group.id", format!("{client_id}-reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("max.partition.fetch.bytes", self.partition_fetch_bytes())
            .set("enable.partition.eof", "false")
            .create()
    }

    fn partition_fetch_bytes(&self) -> String {
        (u64::from(self.consumer_partition_fetch_kbytes_max) * 1024).to_string()
    }

    /// Creates the given topics (full names) if they are missing. Existing topics are fine.
    pub async fn ensure_topics(&self, names: &[String]) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> =
            self.base_config("ledgerline-admin").create()?;
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    self.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_millis(self.admin_timeout_ms)))
            .request_timeout(Some(Duration::from_millis(self.admin_timeout_ms)));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    tracing::error!(%topic, ?code, "topic creation failed");
                    return Err(KafkaError::AdminOp(code));
                }
            }
        }
        Ok(())
    }

    /// Every pipeline topic and its dead-letter topic, with the prefix applied.
    pub fn pipeline_topics(&self) -> Vec<String> {
        topics::ALL
            .iter()
            .flat_map(|t| [self.topic(t), self.dlq(t)])
            .collect()
    }
}

/// The standard headers every pipeline message carries (design §2).
pub fn event_headers(event_type: &str, correlation_id: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: headers::EVENT_TYPE,
            value: Some(event_type),
        })
        .insert(Header {
            key: headers::SCHEMA_VERSION,
            value: Some("1"),
        })
        .insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(correlation_id),
        })
}

/// A header's value as UTF-8, if present.
pub fn header_str<'a, M: Message>(message: &'a M, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// One pipeline message to produce.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Full topic name.
    pub topic: &'a str,
    /// The account id (per-account order).
    pub key: &'a str,
    /// The encoded event.
    pub payload: &'a [u8],
    /// The `event-type` header.
    pub event_type: &'a str,
    /// The `correlation-id` header.
    pub correlation_id: &'a str,
}

/// Produces every message and waits for all acknowledgements; re-sends only the failed ones,
/// with capped backoff, until all are acknowledged or `shutdown` (then `Interrupted`, and the
/// caller leaves its input uncommitted). `observe(ok)` is told after each round, for readiness
/// and retry metrics. Re-sent messages that had in fact landed are duplicates by `event_id`,
/// which every consumer deduplicates.
///
/// Messages are handed to the producer a few partitions at a time ([`crate::partitions`]
/// says why), each partition's in input order.
pub async fn produce_all(
    producer: &PacedProducer,
    messages: &[Outgoing<'_>],
    timeout: Duration,
    backoff: crate::backoff::BackoffSettings,
    shutdown: &tokio_util::sync::CancellationToken,
    mut observe: impl FnMut(bool),
) -> Result<(), crate::backoff::Interrupted> {
    let mut pending: Vec<&Outgoing<'_>> = messages.iter().collect();
    let mut backoff = crate::backoff::Backoff::new(backoff);
    while !pending.is_empty() {
        let layout = match pending.first() {
            Some(first) if pending.iter().all(|m| m.topic == first.topic) => {
                producer.layout(first.topic).await
            }
            _ => None,
        };
        let failed = send_paced(producer.producer(), layout, &pending, timeout).await;
        observe(failed.is_empty());
        if failed.is_empty() {
            break;
        }
        pending = failed;
        tokio::select! {
            _ = shutdown.cancelled() => return Err(crate::backoff::Interrupted),
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
    Ok(())
}

/// Sends `pending` one request's worth per partition at a time, as many partitions at once as
/// may be in flight (everything at once without a layout), and returns the messages that were
/// not acknowledged. After a failure in a partition its later messages are not sent this round
/// but returned with the failed ones, so a retry cannot overtake them.
async fn send_paced<'m, 'o>(
    producer: &FutureProducer,
    layout: Option<Layout>,
    pending: &[&'m Outgoing<'o>],
    timeout: Duration,
) -> Vec<&'m Outgoing<'o>> {
    let (groups, in_flight) = match layout {
        Some(layout) => (
            group_by_partition(pending.iter().map(|m| m.key.as_bytes()), layout.partitions),
            layout.in_flight_max,
        ),
        None => (vec![(0..pending.len()).collect()], 1),
    };
    let size_of = |index: usize| {
        let m = pending[index];
        m.key.len() + m.payload.len() + m.event_type.len() + m.correlation_id.len()
    };
    let sends = groups.into_iter().map(|group| async move {
        let mut failed = Vec::new();
        let runs = match layout {
            Some(_) => split_into_requests(&group, size_of, RUN_BYTES_MAX),
            None => vec![&group[..]],
        };
        for run in runs {
            if !failed.is_empty() {
                failed.extend(run.iter().map(|&index| pending[index]));
                continue;
            }
            let sends = run.iter().map(|&index| {
                let m = pending[index];
                let record = FutureRecord::to(m.topic)
                    .key(m.key)
                    .payload(m.payload)
                    .headers(event_headers(m.event_type, m.correlation_id));
                let send = producer.send(record, timeout);
                async move { (m, send.await.map_err(|(e, _)| e)) }
            });
            for (m, result) in futures::future::join_all(sends).await {
                if let Err(error) = result {
                    tracing::warn!(%error, topic = m.topic, "message not acknowledged; will retry");
                    failed.push(m);
                }
            }
        }
        failed
    });
    futures::stream::iter(sends)
        .buffer_unordered(in_flight)
        .concat()
        .await
}

/// Decodes a pipeline message as `E`, or names why it is poison (the DLQ reason): no payload,
/// an `event-type` header naming another type, or any [`events::decode`] failure.
pub fn decode_message<E: Event, M: Message>(message: &M) -> Result<E, &'static str> {
    let payload = message.payload().ok_or("EMPTY_PAYLOAD")?;
    if let Some(kind) = header_str(message, headers::EVENT_TYPE) {
        if kind != E::EVENT_TYPE {
            return Err("UNEXPECTED_EVENT_TYPE");
        }
    }
    events::decode::<E>(payload).map_err(|error| error.reason_code())
}

/// Sends an unprocessable message to `dlq_topic` with its original key, value and headers plus
/// the design's `dlq-*` headers. Returns only once the broker has it, so the caller may then
/// commit past the poison message.
pub async fn dead_letter<M: Message>(
    producer: &FutureProducer,
    dlq_topic: &str,
    message: &M,
    reason: &str,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let mut out = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let failed_at = crate::time::now_rfc3339();
    out = out
        .insert(Header {
            key: headers::DLQ_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_OFFSET,
            value: Some(&offset),
        })
        .insert(Header {
            key: headers::DLQ_FAILED_AT,
            value: Some(&failed_at),
        });
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic)
        .headers(out)
        .partition(message.partition());
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, timeout)
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Sends poison messages to a dead-letter topic, retrying while Kafka is down: the one way
/// every consumer dead-letters, so the log line, the retry pacing and the readiness flag agree.
#[derive(Clone)]
pub struct DeadLetterer {
    producer: FutureProducer,
    retrier: crate::backoff::Retrier,
    check: &'static str,
    timeout: Duration,
}

impl std::fmt::Debug for DeadLetterer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterer")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl DeadLetterer {
    /// Produces through `producer`; while Kafka refuses, `retrier` paces the attempts and keeps
    /// the readiness flag `check` false. Each attempt waits at most `timeout` for the ack.
    pub fn new(
        producer: FutureProducer,
        retrier: crate::backoff::Retrier,
        check: &'static str,
        timeout: Duration,
    ) -> Self {
        Self {
            producer,
            retrier,
            check,
            timeout,
        }
    }

    /// Returns once `dlq_topic` has `message` (see [`dead_letter`]), or `Interrupted` at
    /// shutdown (the caller then leaves the message uncommitted).
    pub async fn send<M: Message + Sync>(
        &self,
        dlq_topic: &str,
        message: &M,
        reason: &'static str,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), crate::backoff::Interrupted> {
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "dead-lettering poison message"
        );
        self.retrier
            .run("kafka", self.check, shutdown, || {
                dead_letter(&self.producer, dlq_topic, message, reason, self.timeout)
            })
            .await
    }
}

/// Whether a Kafka error is worth retrying (broker down, timeouts, queue full) rather than a
/// permanent fault of the message or configuration.
pub fn is_retryable(error: &KafkaError) -> bool {
    !matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::InvalidRecord,
        )
    )
}

#[cfg(test)]
mod tests {
    use super::KafkaSettings;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(KafkaSettings::default().validate(), Ok(()));
    }

    #[test]
    fn a_partition_fetch_larger_than_the_prefetch_queue_is_rejected() {
        let settings = KafkaSettings {
            consumer_queue_kbytes_max: 4_096,
            consumer_partition_fetch_kbytes_max: 8_192,
            ..KafkaSettings::default()
        };
        let error = settings.validate().unwrap_err();
        assert!(
            error.contains("kafka.consumer_partition_fetch_kbytes_max"),
            "{error}"
        );
    }

    #[test]
    fn a_group_instance_id_is_a_kafka_name_or_unset() {
        let with = |id: &str| KafkaSettings {
            group_instance_id: Some(id.to_string()),
            ..KafkaSettings::default()
        };
        assert_eq!(with("ledger-writer-0").validate(), Ok(()));
        assert_eq!(with("pod_1.zone-a").validate(), Ok(()));
        assert_eq!(with(&"a".repeat(249)).validate(), Ok(()));
        for bad in ["", "pod 1", "pod/1", "pöd", &"a".repeat(250)] {
            let error = with(bad).validate().unwrap_err();
            assert!(
                error.contains("kafka.group_instance_id"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn an_empty_partition_fetch_is_rejected() {
        let settings = KafkaSettings {
            consumer_partition_fetch_kbytes_max: 0,
            ..KafkaSettings::default()
        };
        assert!(settings.validate().is_err());
    }
}
