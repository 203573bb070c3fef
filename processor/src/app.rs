//! Building and running the processor: `main` and the tests share this.

use crate::config::Settings;
use crate::consumer::{Processor, KAFKA, REDIS};
use crate::idempotency::IdempotencyStore;
use crate::rules::Rules;
use ledgerline_contracts::topics;
use ledgerline_runtime::admin::{AdminServer, AdminState};
use ledgerline_runtime::backoff::{Backoff, Retrier};
use ledgerline_runtime::consume::{spawn_broker_check, spawn_lag_reporter};
use ledgerline_runtime::health::{Readiness, KAFKA_BROKER};
use ledgerline_runtime::kafka::DeadLetterer;
use ledgerline_runtime::partitions::PacedProducer;
use ledgerline_runtime::status::StatusStore;
use ledgerline_runtime::telemetry;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::util::Timeout;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The admin address could not be bound.
    #[error("cannot bind the admin address: {0}")]
    Bind(#[from] std::io::Error),
    /// A Kafka client could not be created, or topics could not be ensured.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// A built processor, not yet consuming.
#[derive(Debug)]
pub struct Application {
    settings: Settings,
    admin: AdminServer,
    readiness: Readiness,
}

impl Application {
    /// Binds the admin port and ensures topics. Redis is connected in `run_until_stopped`, with
    /// retries, so the process starts (not ready) while Redis is down.
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        if settings.kafka.create_topics {
            settings
                .kafka
                .ensure_topics(&settings.kafka.pipeline_topics())
                .await?;
        }
        let readiness = Readiness::new(&[KAFKA, KAFKA_BROKER, REDIS]);
        let admin = AdminServer::bind(
            settings.admin_addr,
            AdminState {
                prometheus: telemetry::prometheus(),
                readiness: readiness.clone(),
            },
        )
        .await?;
        Ok(Self {
            settings,
            admin,
            readiness,
        })
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.settings.admin_addr)
    }

    /// Consumes until `shutdown`: finishes the batch in hand, commits, leaves the group.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), BuildError> {
        let Self {
            settings,
            admin,
            readiness,
        } = self;
        let admin_stop = CancellationToken::new();
        tokio::spawn(admin.run(admin_stop.clone()));

        let Some(conn) = connect_redis(&settings, &shutdown).await else {
            admin_stop.cancel();
            return Ok(());
        };
        readiness.set(REDIS, true);
        let consumer = Arc::new(
            settings
                .kafka
                .consumer("ledgerline-processor", &settings.group_id)?,
        );
        consumer.subscribe(&[&settings.kafka.topic(topics::REQUESTS)])?;
        readiness.set(KAFKA, true);
        let producer = settings.kafka.producer("ledgerline-processor")?;
        spawn_broker_check(
            consumer.clone(),
            settings.kafka.topic(topics::REQUESTS),
            readiness.clone(),
            shutdown.child_token(),
        );
        spawn_lag_reporter(consumer.clone(), "processor", shutdown.child_token());

        let retrier = Retrier::new(
            settings.backoff,
            readiness.clone(),
            "ledgerline_processor_retries_total",
        );
        let processor = Processor {
            idempotency: IdempotencyStore::new(
                conn.clone(),
                &settings.redis.key_prefix,
                settings.idempotency.retention_hours,
            ),
            status: StatusStore::new(conn, &settings.redis.key_prefix, &settings.status),
            rules: Rules::new(&settings.rules),
            outcomes_topic: settings.kafka.topic(topics::OUTCOMES),
            dlq_topic: settings.kafka.dlq(topics::REQUESTS),
            consumer,
            producer: PacedProducer::new(producer.clone()),
            dead_letters: DeadLetterer::new(
                producer.clone(),
                retrier.clone(),
                KAFKA,
                Duration::from_millis(settings.produce_timeout_ms),
            ),
            retrier,
            readiness,
            settings: settings.clone(),
        };
        tracing::info!(group = %settings.group_id, "processor consuming");
        processor.run(shutdown).await;
        if let Err(error) = producer.flush(Timeout::After(Duration::from_millis(
            settings.shutdown_grace_ms,
        ))) {
            tracing::error!(%error, "producer flush incomplete at shutdown");
        }
        admin_stop.cancel();
        tracing::info!("processor stopped");
        Ok(())
    }
}

async fn connect_redis(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Option<redis::aio::ConnectionManager> {
    let mut backoff = Backoff::new(settings.backoff);
    loop {
        match settings.redis.connect().await {
            Ok(conn) => return Some(conn),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, attempt = backoff.attempts(), "redis unreachable at start-up; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
