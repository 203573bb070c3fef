//! Building and running the ledger-writer: `main` and the tests share this.

use crate::config::Settings;
use crate::relay::{self, Relay};
use crate::replay::{self, ReplayError, ReplayFrom};
use crate::store::LedgerStore;
use crate::writer::{BatchReport, Writer, KAFKA, POSTGRES};
use ledgerline_contracts::topics;
use ledgerline_runtime::admin::{AdminServer, AdminState};
use ledgerline_runtime::backoff::{Interrupted, Retrier};
use ledgerline_runtime::consume::{spawn_broker_check, spawn_lag_reporter};
use ledgerline_runtime::health::{Readiness, KAFKA_BROKER};
use ledgerline_runtime::kafka::DeadLetterer;
use ledgerline_runtime::partitions::PacedProducer;
use ledgerline_runtime::ranges::OffsetRange;
use ledgerline_runtime::status::StatusStore;
use ledgerline_runtime::{postgres, telemetry};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why the ledger-writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The admin address could not be bound.
    #[error("cannot bind the admin address: {0}")]
    Bind(#[from] std::io::Error),
    /// A Kafka client could not be created, or topics could not be ensured.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The database URL is unusable.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A replay failed.
    #[error("replay: {0}")]
    Replay(#[from] ReplayError),
}

/// A built ledger-writer, not yet consuming.
#[derive(Debug)]
pub struct Application {
    settings: Settings,
    admin: AdminServer,
    readiness: Readiness,
}

/// The writer and relay, connected.
struct Running {
    writer: Writer,
    relay: Relay,
    producer: FutureProducer,
}

const RETRIES: &str = "ledgerline_ledger_writer_retries_total";

impl Application {
    /// Binds the admin port and ensures topics. PostgreSQL and Redis are connected in
    /// `run_until_stopped`, with retries, so the process starts (not ready) while they are down.
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        if settings.kafka.create_topics {
            settings
                .kafka
                .ensure_topics(&settings.kafka.pipeline_topics())
                .await?;
        }
        let readiness = Readiness::new(&[KAFKA, KAFKA_BROKER, POSTGRES, relay::REDIS]);
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

    /// Consumes until `shutdown`: finishes the batch in hand, commits offsets, lets the relay
    /// send what was written (within `shutdown_grace_ms`), leaves the group.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), BuildError> {
        let admin_stop = CancellationToken::new();
        tokio::spawn(self.admin.run(admin_stop.clone()));
        let settings = self.settings;
        let Ok(parts) = connect(&settings, &self.readiness, &shutdown).await? else {
            admin_stop.cancel();
            return Ok(());
        };
        let consumer = Arc::new(
            settings
                .kafka
                .consumer("ledgerline-ledger-writer", &settings.group_id)?,
        );
        consumer.subscribe(&[&settings.kafka.topic(topics::OUTCOMES)])?;
        self.readiness.set(KAFKA, true);
        spawn_broker_check(
            consumer.clone(),
            settings.kafka.topic(topics::OUTCOMES),
            self.readiness.clone(),
            shutdown.child_token(),
        );
        spawn_lag_reporter(consumer.clone(), "ledger_writer", shutdown.child_token());

        let (relay_stop, relay_task) = spawn_relay(&settings, parts.relay);
        tracing::info!(group = %settings.group_id, "ledger-writer consuming");
        parts.writer.run(&consumer, shutdown).await;
        finish(&settings, relay_stop, relay_task, &parts.producer).await;
        admin_stop.cancel();
        tracing::info!("ledger-writer stopped");
        Ok(())
    }

    /// Replays `txn.outcomes` from `from` (all partitions, or those given) to its current end
    /// through the normal write path, relays the results, and returns what was written.
    pub async fn replay(
        self,
        from: ReplayFrom,
        partitions: Option<Vec<i32>>,
        shutdown: CancellationToken,
    ) -> Result<BatchReport, BuildError> {
        let replayer = self.replayer(&shutdown).await?;
        let ranges = replay::ranges(
            &replayer.reader,
            &replayer.topic,
            partitions.as_deref(),
            from,
        )?;
        let report = replayer.replay(&ranges, &shutdown).await;
        replayer.finish().await;
        Ok(report?)
    }

    /// Connects the write path for replays of exact ranges (the reconciler's repairs): call
    /// [`Replayer::replay`] as often as needed, then [`Replayer::finish`].
    pub async fn replayer(self, shutdown: &CancellationToken) -> Result<Replayer, BuildError> {
        let settings = self.settings;
        let Ok(parts) = connect(&settings, &self.readiness, shutdown).await? else {
            return Err(ReplayError::Interrupted.into());
        };
        let topic = settings.kafka.topic(topics::OUTCOMES);
        let reader = settings.kafka.reader("ledgerline-ledger-writer-replay")?;
        let (relay_stop, relay_task) = spawn_relay(&settings, parts.relay);
        Ok(Replayer {
            settings,
            writer: parts.writer,
            producer: parts.producer,
            reader,
            topic,
            relay_stop,
            relay_task,
        })
    }
}

/// The ledger's write path and relay, connected for replays.
pub struct Replayer {
    settings: Settings,
    writer: Writer,
    producer: FutureProducer,
    reader: rdkafka::consumer::StreamConsumer,
    topic: String,
    relay_stop: CancellationToken,
    relay_task: RelayTask,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// The `txn.outcomes` topic it replays (with the deployment's prefix).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Posts every message of `ranges` (of `txn.outcomes`) through the normal write path.
    pub async fn replay(
        &self,
        ranges: &[OffsetRange],
        shutdown: &CancellationToken,
    ) -> Result<BatchReport, ReplayError> {
        for r in ranges {
            tracing::info!(
                partition = r.partition,
                from = r.from,
                to = r.to,
                "replaying"
            );
        }
        replay::replay(&self.writer, &self.reader, ranges, shutdown).await
    }

    /// Lets the relay send what the replays wrote (within the grace period), then flushes.
    pub async fn finish(self) {
        finish(
            &self.settings,
            self.relay_stop,
            self.relay_task,
            &self.producer,
        )
        .await;
    }
}

/// Connects PostgreSQL (and migrates), Redis and the producer, retrying outages until
/// `shutdown` (then `Ok(Err(Interrupted))`).
async fn connect(
    settings: &Settings,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Result<Running, Interrupted>, BuildError> {
    let retrier = Retrier::new(settings.backoff, readiness.clone(), RETRIES);
    let pool = settings.postgres.pool()?;
    if settings.postgres.migrate {
        let migrated = retrier
            .run("postgres", POSTGRES, shutdown, || postgres::migrate(&pool))
            .await;
        if let Err(interrupted) = migrated {
            return Ok(Err(interrupted));
        }
    }
    readiness.set(POSTGRES, true);
    let redis = match retrier
        .run("redis", relay::REDIS, shutdown, || settings.redis.connect())
        .await
    {
        Ok(conn) => conn,
        Err(interrupted) => return Ok(Err(interrupted)),
    };
    let producer = settings.kafka.producer("ledgerline-ledger-writer")?;
    let status = StatusStore::new(redis, &settings.redis.key_prefix, &settings.status);
    let wake = Arc::new(Notify::new());
    let writer = Writer {
        settings: settings.clone(),
        store: LedgerStore::new(pool.clone(), settings.ledger.overdraft_default_minor),
        dead_letters: DeadLetterer::new(
            producer.clone(),
            retrier.clone(),
            KAFKA,
            Duration::from_millis(settings.produce_timeout_ms),
        ),
        retrier: retrier.clone(),
        status: status.clone(),
        dlq_topic: settings.kafka.dlq(topics::OUTCOMES),
        relay_wake: wake.clone(),
    };
    let relay = Relay {
        pool,
        producer: PacedProducer::new(producer.clone()),
        status,
        topic: settings.kafka.topic(topics::POSTINGS),
        settings: settings.relay,
        produce_timeout: Duration::from_millis(settings.produce_timeout_ms),
        retrier,
        readiness: readiness.clone(),
        backoff: settings.backoff,
        wake,
    };
    Ok(Ok(Running {
        writer,
        relay,
        producer,
    }))
}

type RelayTask = Option<(CancellationToken, tokio::task::JoinHandle<()>)>;

fn spawn_relay(settings: &Settings, relay: Relay) -> (CancellationToken, RelayTask) {
    let stop = CancellationToken::new();
    if settings.faults.relay_disabled {
        return (stop, None);
    }
    let hard_stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone(), hard_stop.clone()));
    (stop, Some((hard_stop, task)))
}

/// Lets the relay drain within the grace period, then flushes the producer.
async fn finish(
    settings: &Settings,
    relay_stop: CancellationToken,
    relay_task: RelayTask,
    producer: &FutureProducer,
) {
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    relay_stop.cancel();
    if let Some((hard_stop, mut task)) = relay_task {
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(
                "relay did not drain within the grace period; unsent rows stay in the outbox"
            );
            hard_stop.cancel();
            let _ = task.await;
        }
    }
    if let Err(error) = producer.flush(grace) {
        tracing::error!(%error, "producer flush incomplete at shutdown");
    }
}
