//! The connected context every command works with: `main` and the tests share this.

use crate::audit_side::QUARANTINE_COLLECTION;
use crate::config::Settings;
use crate::scan::Topics;
use audit::store::AuditStore;
use ledgerline_runtime::postgres;
use mongodb::bson::Document;
use mongodb::Collection;
use rdkafka::consumer::StreamConsumer;
use sqlx::PgPool;

/// Kafka client id of the reconciler's reader.
const CLIENT_ID: &str = "ledgerline-reconciler";

/// Why the reconciler could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Kafka client creation failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// PostgreSQL is unreachable or the migrations failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The migrations failed.
    #[error("postgres migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// MongoDB is unreachable.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

/// The stores and the log, connected.
pub struct Context {
    /// Settings.
    pub settings: Settings,
    /// The ledger database (and the reconciler's records).
    pub pool: PgPool,
    /// The audit collection.
    pub audit: AuditStore,
    /// Where repairs move audit documents that contradict the log.
    pub quarantine: Collection<Document>,
    /// A reader outside any consumer group (`assign` only).
    pub reader: StreamConsumer,
    /// The deployment's topics.
    pub topics: Topics,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Connects PostgreSQL (migrating when configured), MongoDB and a Kafka reader. A
    /// command-line run fails fast when a store is down; the daemon retries around this.
    pub async fn connect(settings: Settings) -> Result<Self, ConnectError> {
        let pool = settings.postgres.pool()?;
        if settings.postgres.migrate {
            postgres::migrate(&pool).await?;
        }
        let database = settings.mongo.database().await?;
        let audit = AuditStore::new(&database);
        audit.ensure_indexes().await?;
        let quarantine = database.collection::<Document>(QUARANTINE_COLLECTION);
        let reader = settings.kafka.reader(CLIENT_ID)?;
        let topics = Topics::of(&settings.kafka);
        Ok(Self {
            settings,
            pool,
            audit,
            quarantine,
            reader,
            topics,
        })
    }
}
