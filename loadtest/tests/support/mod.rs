//! Shared setup for the load tests: the real ingress on port 0 (and, where a test needs it, the
//! real processor, ledger-writer and audit) against the local Kafka, Redis, PostgreSQL and
//! MongoDB, each test with its own topics, key prefix and databases.

#![allow(dead_code, unreachable_pub)]

use ingress::config::{KeySettings, MerchantSettings, RateLimitSettings};
use ledgerline_runtime::secret::Secret;
use ledgerline_testkit::TestEnv;
use loadtest::config::{Merchant, Workload, WorkloadSpec};
use loadtest::scenarios::{Mix, ScenarioSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MERCHANT: &str = "lt-merchant";
pub const KEY_ID: &str = "k1";
pub const SECRET: &str = "loadtest-test-secret-0123456789abcdef";

/// goose keeps process-wide state (its kill switch, its logger): one attack at a time per test
/// binary.
pub static GOOSE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Stack {
    pub env: TestEnv,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub dir: PathBuf,
}

impl Stack {
    /// Ingress alone.
    pub async fn ingress() -> Stack {
        Self::start(false).await
    }

    /// Ingress, processor, ledger-writer and audit.
    pub async fn pipeline() -> Stack {
        Self::start(true).await
    }

    async fn start(downstream: bool) -> Stack {
        let env = TestEnv::new().await.expect("test environment");
        let shutdown = CancellationToken::new();
        let mut kafka = env.kafka.clone();
        kafka.create_topics = false;
        let ingress = ingress::Application::build(ingress::Settings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            kafka: kafka.clone(),
            redis: env.redis.clone(),
            postgres: ledgerline_runtime::postgres::PostgresSettings {
                migrate: false,
                ..env.postgres.clone()
            },
            mongo: env.mongo.clone(),
            merchants: vec![MerchantSettings {
                id: MERCHANT.into(),
                keys: vec![KeySettings {
                    key_id: KEY_ID.into(),
                    secret: Secret::new(SECRET.into()),
                }],
                rate_limit: None,
            }],
            rate_limit: RateLimitSettings {
                per_second: 100_000,
                burst: 100_000,
            },
            ..ingress::Settings::default()
        })
        .await
        .expect("ingress builds");
        let addr = ingress.local_addr();
        let token = shutdown.clone();
        let mut tasks = vec![tokio::spawn(ingress.run_until_stopped(token))];
        if downstream {
            let processor = processor::Application::build(processor::Settings {
                admin_addr: "127.0.0.1:0".parse().unwrap(),
                kafka: kafka.clone(),
                redis: env.redis.clone(),
                group_id: format!("p-{}", env.id),
                ..Default::default()
            })
            .await
            .expect("processor builds");
            let mut ledger_settings = ledger_writer::Settings {
                admin_addr: "127.0.0.1:0".parse().unwrap(),
                kafka: kafka.clone(),
                redis: env.redis.clone(),
                postgres: env.postgres.clone(),
                group_id: format!("l-{}", env.id),
                ..Default::default()
            };
            ledger_settings.relay.poll_interval_ms = 50;
            let writer = ledger_writer::Application::build(ledger_settings)
                .await
                .expect("ledger-writer builds");
            let audit = audit::Application::build(audit::Settings {
                admin_addr: "127.0.0.1:0".parse().unwrap(),
                kafka: kafka.clone(),
                mongo: env.mongo.clone(),
                group_id: format!("a-{}", env.id),
                ..Default::default()
            })
            .await
            .expect("audit builds");
            let (a, b, c) = (shutdown.clone(), shutdown.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                processor
                    .run_until_stopped(a)
                    .await
                    .expect("processor runs")
            }));
            tasks.push(tokio::spawn(async move {
                writer
                    .run_until_stopped(b)
                    .await
                    .expect("ledger-writer runs")
            }));
            tasks.push(tokio::spawn(async move {
                audit.run_until_stopped(c).await.expect("audit runs")
            }));
        }
        let dir = std::env::temp_dir().join(format!("loadtest-{}", env.id));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Stack {
            env,
            addr,
            shutdown,
            tasks,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            ledgerline_testkit::wait::stopped("a stage", t).await;
        }
    }
}

pub fn merchant() -> Merchant {
    Merchant::new(MERCHANT, KEY_ID, Secret::new(SECRET.into())).expect("valid test merchant")
}

pub fn workload() -> Arc<Workload> {
    Arc::new(
        Workload::from_spec(&WorkloadSpec {
            accounts: 20,
            // Credits only unless a test says otherwise: nothing is declined for funds.
            debit_percent: 0,
            ..WorkloadSpec::default()
        })
        .expect("valid test workload"),
    )
}

pub fn scenario_settings(record_file: Option<PathBuf>) -> ScenarioSettings {
    ScenarioSettings {
        merchant: merchant(),
        workload: workload(),
        retry_percent: 50,
        conflict_percent: 50,
        poll_interval: Duration::from_millis(100),
        polls_max: 600,
        mix: Mix::default(),
        record_file,
    }
}

/// goose's configuration for a run bounded by request count: `users` users, each running the
/// scenario `iterations` times, against `host`.
pub fn goose_config(
    host: &str,
    users: usize,
    iterations: usize,
) -> goose::config::GooseConfiguration {
    goose::config::GooseConfiguration::parse_args_default(&[
        "--host",
        host,
        "--users",
        &users.to_string(),
        "--increase-rate",
        "1000",
        "--iterations",
        &iterations.to_string(),
        "--no-telnet",
        "--quiet",
    ])
    .expect("valid goose options")
}
