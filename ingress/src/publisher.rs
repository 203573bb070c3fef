//! Publishing to `txn.requests`, bounded in count and time: a request either gets a durable
//! acknowledgement or a prompt 503, never an unbounded wait.

use crate::metrics;
use ledgerline_runtime::kafka;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Why a publish did not end in an acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `publish.in_flight_max` requests are already waiting for Kafka.
    #[error("too many requests waiting for Kafka")]
    Saturated,
    /// No acknowledgement within `publish.produce_timeout_ms`.
    #[error("Kafka did not acknowledge in time")]
    TimedOut,
    /// The producer reported a failure.
    #[error("Kafka rejected the message: {0}")]
    Kafka(#[from] KafkaError),
}

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The idempotent producer plus the in-flight bound.
#[derive(Clone)]
pub struct Publisher {
    producer: Option<FutureProducer>,
    topic: String,
    permits: Arc<Semaphore>,
    in_flight_max: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// `producer = None` is the benchmark mode with publishing switched off.
    pub fn new(
        producer: Option<FutureProducer>,
        topic: String,
        in_flight_max: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            producer,
            topic,
            permits: Arc::new(Semaphore::new(in_flight_max)),
            in_flight_max,
            timeout,
        }
    }

    /// The producer, for readiness probes and flushing.
    pub fn producer(&self) -> Option<&FutureProducer> {
        self.producer.as_ref()
    }

    /// Publishes one message and waits for its acknowledgement (`acks=all`).
    ///
    /// If this times out the message may still land later; the 503 tells the merchant to retry
    /// with the same Idempotency-Key, which the processor turns into a DUPLICATE of the first,
    /// so the transaction still applies exactly once.
    pub async fn publish(
        &self,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivered, PublishError> {
        let Some(producer) = &self.producer else {
            return Ok(Delivered {
                partition: -1,
                offset: -1,
            });
        };
        let Ok(_permit) = self.permits.try_acquire() else {
            metrics::produce_failed("saturated");
            return Err(PublishError::Saturated);
        };
        metrics::in_flight(self.in_flight_max - self.permits.available_permits());
        let started = Instant::now();
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        // The queue wait and the acknowledgement share one deadline.
        let send = producer.send(record, Timeout::After(self.timeout));
        let result = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => Err(PublishError::TimedOut),
            Ok(Err((error, _))) => Err(PublishError::Kafka(error)),
            Ok(Ok(delivery)) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        };
        match &result {
            Ok(_) => metrics::produce_latency(started.elapsed()),
            Err(PublishError::TimedOut) => metrics::produce_failed("timeout"),
            Err(PublishError::Kafka(e)) if kafka::is_retryable(e) => {
                metrics::produce_failed("retryable")
            }
            Err(_) => metrics::produce_failed("fatal"),
        }
        result
    }

    /// Waits (bounded) for every queued message to be acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Some(producer) = &self.producer {
            if let Err(error) = producer.flush(Timeout::After(timeout)) {
                tracing::error!(%error, "producer flush did not complete; unacknowledged requests got no 202");
            }
        }
    }
}
