//! The whole pipeline for one scenario, owned end to end: its own broker, Redis, PostgreSQL
//! and MongoDB processes (so a fault can kill or pause them without touching anything else on
//! the machine), and the four services as child processes configured to use them.

use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::postgres::{self, PostgresSettings};
use ledgerline_runtime::secret::Secret;
use ledgerline_testkit::broker::OwnedBroker;
use ledgerline_testkit::mongo_server::OwnedMongo;
use ledgerline_testkit::postgres_server::OwnedPostgres;
use ledgerline_testkit::redis_server::OwnedRedis;
use loadtest::config::Merchant;
use sqlx::{Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::FaultError;
use crate::service::Service;

/// Partitions of every topic: enough to spread accounts, few enough that a group rebalance
/// after a kill is quick on the local broker.
pub const PARTITIONS: i32 = 3;

/// Most time a service may take to become ready after a start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Most time a service may take to exit after SIGTERM (its own grace periods are shorter).
pub const TERMINATE_GRACE: Duration = Duration::from_secs(40);

/// The harness's own requests (readiness, hostile rounds) are answered or dropped within this;
/// a service that holds one open is a finding, not a reason for the run to hang.
const HARNESS_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The merchant the load signs as.
pub const MERCHANT_ID: &str = "faults-merchant";
const KEY_ID: &str = "faults-key-1";

/// The four long-running services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The HTTP front door.
    Ingress,
    /// Decisions and idempotency.
    Processor,
    /// The PostgreSQL ledger.
    LedgerWriter,
    /// The MongoDB audit trail.
    Audit,
}

impl Part {
    /// Every service, in pipeline order.
    pub const ALL: [Part; 4] = [
        Part::Ingress,
        Part::Processor,
        Part::LedgerWriter,
        Part::Audit,
    ];

    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Part::Ingress => "ingress",
            Part::Processor => "processor",
            Part::LedgerWriter => "ledger-writer",
            Part::Audit => "audit",
        }
    }
}

/// Where the service binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: Option<PathBuf>,
}

impl Binaries {
    /// Binaries in `dir`, or (with `None`) next to this executable or in `target/*`.
    pub fn new(dir: Option<PathBuf>) -> Binaries {
        Binaries { dir }
    }

    /// The path of `name`, which must exist.
    pub fn locate(&self, name: &'static str) -> Result<PathBuf, FaultError> {
        let candidates = match &self.dir {
            Some(dir) => vec![dir.join(name)],
            None => loadtest::verify::reconciler::sibling_binaries(name),
        };
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .ok_or(FaultError::MissingBinary(name))
    }
}

/// A running pipeline.
#[derive(Debug)]
pub struct Stack {
    /// The scenario's directory: service logs, the record file.
    pub dir: PathBuf,
    /// The broker.
    pub broker: OwnedBroker,
    /// Redis.
    pub redis: OwnedRedis,
    /// PostgreSQL.
    pub postgres: OwnedPostgres,
    /// MongoDB.
    pub mongo: OwnedMongo,
    /// Kafka settings of this pipeline.
    pub kafka: KafkaSettings,
    /// The ledger database.
    pub ledger: PostgresSettings,
    /// The audit database.
    pub audit: MongoSettings,
    /// The merchant the load signs as (its key is in ingress's settings).
    pub merchant: Merchant,
    /// `http://127.0.0.1:<port>` of ingress.
    pub ingress_url: String,
    /// The reconciler binary.
    pub reconciler: PathBuf,
    services: Vec<(Part, Service)>,
    http: reqwest::Client,
}

fn free_port() -> Result<u16, FaultError> {
    ledgerline_testkit::port::free_port().map_err(|source| FaultError::Io {
        what: "reserving a loopback port".into(),
        source,
    })
}

impl Stack {
    /// Starts the stores, creates the database and topics, then starts every service and waits
    /// until each is ready. With `static_membership`, each consumer stage (one replica each)
    /// joins its group with the instance id `<binary>-0`.
    pub async fn start(
        dir: &Path,
        binaries: &Binaries,
        static_membership: bool,
    ) -> Result<Stack, FaultError> {
        std::fs::create_dir_all(dir).map_err(|source| FaultError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let (broker, redis, postgres_server, mongo) = tokio::try_join!(
            async {
                OwnedBroker::start()
                    .await
                    .map_err(|e| FaultError::store("broker", e))
            },
            async {
                OwnedRedis::start()
                    .await
                    .map_err(|e| FaultError::store("redis", e))
            },
            async {
                OwnedPostgres::start()
                    .await
                    .map_err(|e| FaultError::store("postgres", e))
            },
            async {
                OwnedMongo::start()
                    .await
                    .map_err(|e| FaultError::store("mongo", e))
            },
        )?;

        let admin_url = postgres_server.admin_url();
        let mut admin = PgConnection::connect(&admin_url).await?;
        admin.execute(r#"CREATE DATABASE "ledgerline""#).await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let ledger = PostgresSettings {
            url: Secret::new(format!("{base}/ledgerline")),
            pool_size_max: 4,
            ..PostgresSettings::default()
        };
        // Migrated here once, so no service races another to create the schema.
        let pool = ledger.pool()?;
        postgres::migrate(&pool)
            .await
            .map_err(|e| FaultError::store("postgres", e))?;
        pool.close().await;

        let kafka = KafkaSettings {
            brokers: broker.address(),
            partitions: PARTITIONS,
            // A killed member's partitions move after this; short, so recovery is quick.
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 1_000,
            ..KafkaSettings::default()
        };
        kafka
            .ensure_topics(&kafka.pipeline_topics())
            .await
            .map_err(|e| FaultError::store("broker", e))?;
        let audit = MongoSettings {
            uri: Secret::new(mongo.uri()),
            database: "ledgerline".into(),
            ..MongoSettings::default()
        };

        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let merchant = Merchant::new(MERCHANT_ID, KEY_ID, Secret::new(secret.clone()))
            .map_err(|e| FaultError::Load(e.to_string()))?;
        let common = common_env(&kafka, redis.url(), &ledger, &audit);

        let mut services = Vec::new();
        let mut ingress_url = String::new();
        for part in Part::ALL {
            let port = free_port()?;
            let mut env = common.clone();
            let base = format!("http://127.0.0.1:{port}");
            match part {
                Part::Ingress => {
                    env.extend(ingress_env(port, &secret));
                    ingress_url = base.clone();
                }
                _ => {
                    env.push(("LEDGERLINE_ADMIN_ADDR".into(), format!("127.0.0.1:{port}")));
                    if static_membership {
                        env.push((
                            "LEDGERLINE_KAFKA__GROUP_INSTANCE_ID".into(),
                            format!("{}-0", part.binary()),
                        ));
                    }
                }
            }
            let name = part.binary();
            let service = Service::new(
                name,
                binaries.locate(name)?,
                env,
                format!("{base}/readyz"),
                dir.join(format!("{name}.log")),
            );
            services.push((part, service));
        }
        let mut stack = Stack {
            dir: dir.to_path_buf(),
            broker,
            redis,
            postgres: postgres_server,
            mongo,
            kafka,
            ledger,
            audit,
            merchant,
            ingress_url,
            reconciler: binaries.locate("reconciler")?,
            services,
            http: reqwest::Client::builder()
                .timeout(HARNESS_REQUEST_TIMEOUT)
                .build()
                .map_err(|e| FaultError::Io {
                    what: "building the harness's http client".into(),
                    source: std::io::Error::other(e),
                })?,
        };
        for part in Part::ALL {
            stack.service(part).start()?;
        }
        for part in Part::ALL {
            stack.wait_ready(part).await?;
        }
        Ok(stack)
    }

    /// One service.
    pub fn service(&mut self, part: Part) -> &mut Service {
        &mut self
            .services
            .iter_mut()
            .find(|(p, _)| *p == part)
            .expect("every part is started with the stack")
            .1
    }

    /// Every service.
    pub fn services(&mut self) -> impl Iterator<Item = (Part, &mut Service)> {
        self.services.iter_mut().map(|(p, s)| (*p, s))
    }

    /// Waits until `part` is ready; returns how long that took.
    pub async fn wait_ready(&mut self, part: Part) -> Result<Duration, FaultError> {
        let http = self.http.clone();
        self.service(part).wait_ready(&http, READY_TIMEOUT).await
    }

    /// Starts `part` (after a kill or a stop) and waits until it is ready; returns how long
    /// readiness took.
    pub async fn start_ready(&mut self, part: Part) -> Result<Duration, FaultError> {
        self.service(part).start()?;
        self.wait_ready(part).await
    }

    /// The `LEDGERLINE_*` settings of this pipeline, for the reconciler.
    pub fn reconciler_env(&self) -> Vec<(String, String)> {
        let mut env = common_env(&self.kafka, self.redis.url(), &self.ledger, &self.audit);
        // The default (60 s) takes an accepted transaction without a ledger row for work in
        // flight for a minute; a run here lasts about that long, so drift injected into it
        // would go unseen. The harness reconciles only after the pipeline has drained.
        env.push((
            "LEDGERLINE_RECONCILE__SETTLE_SECS".into(),
            RECONCILE_SETTLE.as_secs().to_string(),
        ));
        env
    }

    /// The HTTP client the harness uses for readiness checks.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Stops every service with SIGTERM (each must exit within its grace), then the stores.
    /// Returns the services that did not shut down cleanly.
    pub async fn shutdown(mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        for (part, service) in self.services.iter_mut().rev() {
            if !service.is_running() {
                continue;
            }
            match service.terminate(TERMINATE_GRACE).await {
                Ok(status) if status.success() => {}
                Ok(status) => unclean.push(format!("{}: {status}", part.binary())),
                Err(error) => unclean.push(error.to_string()),
            }
        }
        unclean
    }
}

/// What the reconciler takes for in-flight work here (see [`Stack::reconciler_env`]).
pub const RECONCILE_SETTLE: Duration = Duration::from_secs(2);

/// Settings every service (and the reconciler) shares.
fn common_env(
    kafka: &KafkaSettings,
    redis_url: String,
    ledger: &PostgresSettings,
    audit: &MongoSettings,
) -> Vec<(String, String)> {
    [
        ("LEDGERLINE_LOG__FORMAT", "json".to_string()),
        ("LEDGERLINE_KAFKA__BROKERS", kafka.brokers.clone()),
        ("LEDGERLINE_KAFKA__PARTITIONS", kafka.partitions.to_string()),
        ("LEDGERLINE_KAFKA__CREATE_TOPICS", "false".into()),
        (
            "LEDGERLINE_KAFKA__SESSION_TIMEOUT_MS",
            kafka.session_timeout_ms.to_string(),
        ),
        (
            "LEDGERLINE_KAFKA__HEARTBEAT_INTERVAL_MS",
            kafka.heartbeat_interval_ms.to_string(),
        ),
        ("LEDGERLINE_REDIS__URL", redis_url),
        ("LEDGERLINE_POSTGRES__URL", ledger.url.expose().clone()),
        ("LEDGERLINE_POSTGRES__MIGRATE", "false".into()),
        ("LEDGERLINE_MONGO__URI", audit.uri.expose().clone()),
        ("LEDGERLINE_MONGO__DATABASE", audit.database.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Ingress's own settings: its port, the merchant's key, no rate limit (the load is the
/// harness's to shape), and a produce deadline well under the load's request timeout, so a
/// stalled broker shows as 503s rather than as client timeouts.
fn ingress_env(port: u16, secret: &str) -> Vec<(String, String)> {
    let merchants =
        format!(r#"[{{id="{MERCHANT_ID}",keys=[{{key_id="{KEY_ID}",secret="{secret}"}}]}}]"#);
    [
        ("LEDGERLINE_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("LEDGERLINE_MERCHANTS", merchants),
        ("LEDGERLINE_RATE_LIMIT__PER_SECOND", "0".into()),
        ("LEDGERLINE_PUBLISH__PRODUCE_TIMEOUT_MS", "3000".into()),
        ("LEDGERLINE_HTTP__SHUTDOWN_GRACE_MS", "10000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
