//! Isolated resources for one test.

use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::postgres::{self, PostgresSettings};
use ledgerline_runtime::redis_client::RedisSettings;
use ledgerline_runtime::secret::Secret;
use sqlx::{Connection, Executor, PgConnection, PgPool};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Where test databases are created and dropped from.
fn postgres_admin_url() -> String {
    var(
        "LEDGERLINE_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// The shared broker every test uses unless it owns one: `LEDGERLINE_TEST_KAFKA_BROKERS`, else
/// the local stack's.
pub fn shared_brokers() -> String {
    var("LEDGERLINE_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
}

/// Partitions of test topics: fewer than production's 12 keeps group rebalances quick while
/// still spreading accounts over several partitions.
pub const TEST_PARTITIONS: i32 = 3;

/// One test's resources. Names embed a random id, so tests run in parallel without sharing
/// state; nothing is cleaned up on drop (the data stays for post-mortems and `scripts/reset`
/// or a new machine clears it). Benchmarks, whose Redis keys run into millions and whose
/// databases into gigabytes, remove them with [`TestEnv::forget_redis`] and
/// [`TestEnv::drop_database`].
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// Short random id embedded in every name.
    pub id: String,
    /// Kafka settings with a unique topic prefix.
    pub kafka: KafkaSettings,
    /// Settings pointing at this test's database.
    pub postgres: PostgresSettings,
    /// A pool on this test's database.
    pub pg: PgPool,
    /// Redis settings with this test's key prefix.
    pub redis: RedisSettings,
    /// Settings pointing at this test's MongoDB database.
    pub mongo: MongoSettings,
}

impl TestEnv {
    /// Creates the database (with migrations) and the pipeline topics.
    pub async fn new() -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let admin_url = postgres_admin_url();
        let db = Self::database_name(&id);
        let mut admin = PgConnection::connect(&admin_url).await?;
        admin
            .execute(format!(r#"CREATE DATABASE "{db}""#).as_str())
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let postgres = PostgresSettings {
            url: Secret::new(format!("{base}/{db}")),
            pool_size_max: 4,
            ..PostgresSettings::default()
        };
        let pg = postgres.pool()?;
        postgres::migrate(&pg).await?;

        let kafka = KafkaSettings {
            brokers: shared_brokers(),
            topic_prefix: format!("t{id}."),
            partitions: TEST_PARTITIONS,
            // Short session so a killed member's partitions move quickly in crash tests.
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 1_000,
            ..KafkaSettings::default()
        };
        kafka.ensure_topics(&kafka.pipeline_topics()).await?;

        let redis = RedisSettings {
            url: Secret::new(var("LEDGERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")),
            key_prefix: format!("ll_test:{id}:"),
            ..RedisSettings::default()
        };
        let mongo = MongoSettings {
            uri: Secret::new(var(
                "LEDGERLINE_TEST_MONGO_URI",
                "mongodb://127.0.0.1:27017/?directConnection=true",
            )),
            // The same name as the PostgreSQL database, so a failed test's data is found together.
            database: db,
            ..MongoSettings::default()
        };
        Ok(Self {
            id,
            kafka,
            postgres,
            pg,
            redis,
            mongo,
        })
    }

    /// This environment's PostgreSQL and MongoDB database name.
    fn database_name(id: &str) -> String {
        format!("ll_test_{id}")
    }

    /// Drops this environment's database, after closing its pool; other connections to it are
    /// cut (`WITH (FORCE)`). For benchmarks: a 10⁶ ledger run leaves gigabytes behind.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        self.pg.close().await;
        let mut admin = PgConnection::connect(&postgres_admin_url()).await?;
        let db = Self::database_name(&self.id);
        admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#).as_str())
            .await?;
        admin.close().await?;
        Ok(())
    }

    /// `tuned` (a service's client tuning, e.g. loaded from the `LEDGERLINE_*` environment by a
    /// benchmark) pointed at this environment's broker, topic prefix and partitions, with topic
    /// creation off (the environment made them).
    pub fn isolated_kafka(&self, tuned: KafkaSettings) -> KafkaSettings {
        KafkaSettings {
            brokers: self.kafka.brokers.clone(),
            topic_prefix: self.kafka.topic_prefix.clone(),
            partitions: self.kafka.partitions,
            create_topics: false,
            ..tuned
        }
    }

    /// Moves this environment to topics of its own, `<stem><id>.*`, with the partition count of
    /// `tuned` (a service's settings loaded from the environment), and creates the pipeline
    /// topics plus `extra` ones. For benchmarks: the test topics have [`TEST_PARTITIONS`], while
    /// a run must measure the service's count (12 unless `LEDGERLINE_KAFKA__PARTITIONS` says
    /// otherwise), because nisshi runs a transaction per partition of a produce request
    /// (docs/benchmarks.md, "Partitions per produce request").
    pub async fn bench_topics(
        &mut self,
        stem: &str,
        tuned: &KafkaSettings,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        self.kafka.partitions = tuned.partitions;
        self.kafka.topic_prefix = format!("{stem}{}.", self.id);
        let mut topics = self.kafka.pipeline_topics();
        topics.extend(extra.iter().map(|base| self.kafka.topic(base)));
        self.kafka.ensure_topics(&topics).await?;
        Ok(())
    }

    /// A Redis connection on the test server.
    pub async fn redis_conn(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        Ok(self.redis.connect().await?)
    }

    /// Deletes this environment's Redis keys whose name after the prefix matches `pattern`
    /// (`*` for all of them: what FLUSHALL does, for this test alone); returns how many.
    /// SCAN, not KEYS: KEYS blocks the shared server for its whole keyspace, which after a
    /// benchmark holds millions of other keys, long enough to time out this client.
    pub async fn forget_redis_matching(&self, pattern: &str) -> anyhow::Result<usize> {
        let mut redis = self.redis_conn().await?;
        let pattern = format!("{}{pattern}", self.redis.key_prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                let _: () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut redis)
                    .await?;
                deleted += keys.len();
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Deletes every Redis key of this environment; returns how many.
    pub async fn forget_redis(&self) -> anyhow::Result<usize> {
        self.forget_redis_matching("*").await
    }

    /// The `LEDGERLINE_*` variables that point a service binary at this environment, for
    /// tests that spawn the real process (crash and kill tests).
    pub fn service_env(&self, group_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("LEDGERLINE_ADMIN_ADDR", "127.0.0.1:0".into()),
            ("LEDGERLINE_GROUP_ID", group_id.into()),
            ("LEDGERLINE_KAFKA__BROKERS", self.kafka.brokers.clone()),
            (
                "LEDGERLINE_KAFKA__TOPIC_PREFIX",
                self.kafka.topic_prefix.clone(),
            ),
            (
                "LEDGERLINE_KAFKA__PARTITIONS",
                self.kafka.partitions.to_string(),
            ),
            ("LEDGERLINE_KAFKA__CREATE_TOPICS", "false".into()),
            (
                "LEDGERLINE_KAFKA__SESSION_TIMEOUT_MS",
                self.kafka.session_timeout_ms.to_string(),
            ),
            (
                "LEDGERLINE_KAFKA__HEARTBEAT_INTERVAL_MS",
                self.kafka.heartbeat_interval_ms.to_string(),
            ),
            ("LEDGERLINE_REDIS__URL", self.redis.url.expose().clone()),
            (
                "LEDGERLINE_REDIS__KEY_PREFIX",
                self.redis.key_prefix.clone(),
            ),
            (
                "LEDGERLINE_POSTGRES__URL",
                self.postgres.url.expose().clone(),
            ),
            ("LEDGERLINE_MONGO__URI", self.mongo.uri.expose().clone()),
            ("LEDGERLINE_MONGO__DATABASE", self.mongo.database.clone()),
        ]
    }

    /// The full name of a pipeline topic in this environment.
    pub fn topic(&self, base: &str) -> String {
        self.kafka.topic(base)
    }
}
