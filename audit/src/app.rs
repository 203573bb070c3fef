//! Building and running the audit service: `main` and the tests share this.

use crate::config::Settings;
use crate::metrics;
use crate::store::AuditStore;
use crate::verify::{self, Scope, VerifyReport};
use crate::writer::{Writer, KAFKA, MONGO};
use ledgerline_runtime::admin::{AdminServer, AdminState};
use ledgerline_runtime::backoff::Retrier;
use ledgerline_runtime::consume::{spawn_broker_check, spawn_lag_reporter};
use ledgerline_runtime::health::{Readiness, KAFKA_BROKER};
use ledgerline_runtime::telemetry;
use rdkafka::consumer::Consumer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Kafka client id of the service's consumer and producer.
const CLIENT_ID: &str = "ledgerline-audit";

/// Why the audit service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The admin address could not be bound.
    #[error("cannot bind the admin address: {0}")]
    Bind(#[from] std::io::Error),
    /// A Kafka client could not be created, or topics could not be ensured.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The MongoDB URI is unusable.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// Shutdown arrived while a dependency was still down.
    #[error("interrupted by shutdown")]
    Interrupted,
}

/// A built audit service, not yet consuming.
#[derive(Debug)]
pub struct Application {
    settings: Settings,
    admin: AdminServer,
    readiness: Readiness,
}

impl Application {
    /// Binds the admin port and ensures topics. MongoDB is connected in `run_until_stopped`,
    /// with retries, so the process starts (not ready) while it is down.
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        if settings.kafka.create_topics {
            settings
                .kafka
                .ensure_topics(&settings.kafka.pipeline_topics())
                .await?;
        }
        let readiness = Readiness::new(&[KAFKA, KAFKA_BROKER, MONGO]);
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

    /// Consumes until `shutdown`: finishes the batch in hand, commits offsets, leaves the group.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), BuildError> {
        let admin_stop = CancellationToken::new();
        tokio::spawn(self.admin.run(admin_stop.clone()));
        let result = consume(self.settings, self.readiness, shutdown).await;
        admin_stop.cancel();
        tracing::info!("audit stopped");
        result
    }
}

async fn consume(
    settings: Settings,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), BuildError> {
    let retrier = Retrier::new(settings.backoff, readiness.clone(), metrics::RETRIES);
    let store = AuditStore::new(&settings.mongo.database().await?);
    // Indexes first: the head look-ups and the unique source position depend on them.
    if retrier
        .run("mongo", MONGO, &shutdown, || store.ensure_indexes())
        .await
        .is_err()
    {
        return Ok(());
    }
    let producer = settings.kafka.producer(CLIENT_ID)?;
    let consumer = Arc::new(settings.kafka.consumer(CLIENT_ID, &settings.group_id)?);
    let topics = settings.kafka.pipeline_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    readiness.set(KAFKA, true);
    spawn_broker_check(
        consumer.clone(),
        settings.kafka.topic(ledgerline_contracts::topics::REQUESTS),
        readiness.clone(),
        shutdown.child_token(),
    );
    spawn_lag_reporter(consumer.clone(), "audit", shutdown.child_token());
    tracing::info!(group = %settings.group_id, ?topics, "audit consuming");
    let mut writer = Writer::new(settings, store, producer, retrier);
    // Dead letters are awaited one by one before their batch commits, so nothing is left in
    // the producer's queue to flush when the loop returns.
    writer.run(&consumer, shutdown).await;
    Ok(())
}

/// Connects the write path for replays of exact ranges (the reconciler's repairs). MongoDB
/// and Kafka outages are retried until `shutdown`.
pub async fn replayer(
    settings: Settings,
    shutdown: &CancellationToken,
) -> Result<Replayer, BuildError> {
    let readiness = Readiness::new(&[KAFKA, MONGO]);
    let retrier = Retrier::new(settings.backoff, readiness, metrics::RETRIES);
    let store = AuditStore::new(&settings.mongo.database().await?);
    if retrier
        .run("mongo", MONGO, shutdown, || store.ensure_indexes())
        .await
        .is_err()
    {
        return Err(BuildError::Interrupted);
    }
    let producer = settings.kafka.producer(CLIENT_ID)?;
    let reader = settings.kafka.reader("ledgerline-audit-replay")?;
    Ok(Replayer {
        writer: Writer::new(settings, store, producer, retrier),
        reader,
    })
}

/// The audit's write path, connected for replays.
pub struct Replayer {
    writer: Writer,
    reader: rdkafka::consumer::StreamConsumer,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer").finish_non_exhaustive()
    }
}

impl Replayer {
    /// Records every message of `ranges` (any audited topic) through the normal write path.
    pub async fn replay(
        &mut self,
        ranges: &[ledgerline_runtime::ranges::OffsetRange],
        shutdown: &CancellationToken,
    ) -> Result<crate::writer::BatchReport, crate::replay::ReplayError> {
        crate::replay::replay(&mut self.writer, &self.reader, ranges, shutdown).await
    }
}

/// Verifies the stored chains once. No retries: a command-line check reports an outage
/// instead of waiting it out.
pub async fn verify(settings: &Settings, scope: &Scope) -> mongodb::error::Result<VerifyReport> {
    let store = AuditStore::new(&settings.mongo.database().await?);
    verify::verify(&store, scope).await
}
