//! Building and running the ingress application: `main` and the tests share this.

use crate::audit_trail::AuditReader;
use crate::config::Settings;
use crate::keys::KeyRing;
use crate::ledger::LedgerReader;
use crate::publisher::Publisher;
use crate::rate_limit::RateLimiter;
use crate::server;
use ledgerline_contracts::topics;
use ledgerline_runtime::admin::AdminState;
use ledgerline_runtime::health::{spawn_broker_probe, Readiness, PROBE_TIMEOUT};
use ledgerline_runtime::status::StatusStore;
use ledgerline_runtime::telemetry;
use rdkafka::producer::Producer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// Readiness check names.
const KAFKA: &str = "kafka";

/// Why ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The Kafka producer could not be created or topics could not be ensured.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The ledger database URL is unusable.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The audit database URI is unusable.
    #[error("mongo: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

/// Everything a request handler reads.
#[derive(Debug)]
pub struct AppState {
    /// Validated settings.
    pub settings: Settings,
    /// Signing keys.
    pub keys: KeyRing,
    /// Per-merchant limits.
    pub limiter: RateLimiter,
    /// Kafka publishing.
    pub publisher: Publisher,
    /// The status read model, once Redis has been reached (ingress starts without it).
    pub status: Arc<OnceCell<StatusStore>>,
    /// Balances and the durable transaction status (PostgreSQL, connected lazily).
    pub ledger: LedgerReader,
    /// A transaction's events (MongoDB, connected lazily).
    pub audit: AuditReader,
    /// Metrics and readiness.
    pub admin: AdminState,
}

/// A built, bound ingress.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Application {
    /// Binds the listener, creates the producer and topics, and starts connecting to Redis.
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| BuildError::Bind {
                addr: settings.listen_addr,
                source,
            })?;
        if settings.kafka.create_topics {
            settings
                .kafka
                .ensure_topics(&settings.kafka.pipeline_topics())
                .await?;
        }
        let producer = if settings.publish.enabled {
            Some(settings.kafka.producer("ledgerline-ingress")?)
        } else {
            tracing::warn!("publishing is switched off: 202s are NOT durable (benchmark mode)");
            None
        };
        let publisher = Publisher::new(
            producer,
            settings.kafka.topic(topics::REQUESTS),
            settings.publish.in_flight_max,
            Duration::from_millis(settings.publish.produce_timeout_ms),
        );
        let overrides = settings
            .merchants
            .iter()
            .filter_map(|m| m.rate_limit.map(|r| (m.id.clone(), r)))
            .collect();
        let readiness = Readiness::new(&[KAFKA]);
        let state = Arc::new(AppState {
            keys: KeyRing::from_settings(&settings.merchants),
            limiter: RateLimiter::new(settings.rate_limit, overrides),
            publisher,
            status: Arc::new(OnceCell::new()),
            ledger: LedgerReader::new(settings.postgres.pool()?),
            audit: AuditReader::new(&settings.mongo.database().await?, settings.http.events_max),
            admin: AdminState {
                prometheus: telemetry::prometheus(),
                readiness,
            },
            settings,
        });
        Ok(Self { listener, state })
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.listen_addr)
    }

    /// Serves until `shutdown`, then drains in-flight requests and flushes the producer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let background = shutdown.child_token();
        tokio::spawn(connect_status_store(self.state.clone(), background.clone()));
        probe_kafka(&self.state, background.clone());
        tracing::info!(addr = %self.local_addr(), "ingress listening");
        server::serve(self.listener, self.state.clone(), shutdown).await;
        background.cancel();
        self.state.publisher.flush(Duration::from_millis(
            self.state.settings.publish.produce_timeout_ms,
        ));
        tracing::info!("ingress stopped");
    }
}

/// Connects to Redis, retrying with capped backoff until it answers or shutdown.
async fn connect_status_store(state: Arc<AppState>, stop: CancellationToken) {
    let mut backoff = ledgerline_runtime::backoff::Backoff::new(Default::default());
    loop {
        match state.settings.redis.connect().await {
            Ok(conn) => {
                let store = StatusStore::new(
                    conn,
                    &state.settings.redis.key_prefix,
                    &state.settings.status,
                );
                let _ = state.status.set(store);
                return;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, attempt = backoff.attempts(), "redis unreachable; status reads degraded");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Keeps the `kafka` readiness flag true while the broker answers metadata requests.
fn probe_kafka(state: &AppState, stop: CancellationToken) {
    let Some(producer) = state.publisher.producer().cloned() else {
        state.admin.readiness.set(KAFKA, true);
        return;
    };
    let topic = state.settings.kafka.topic(topics::REQUESTS);
    spawn_broker_probe(
        move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), PROBE_TIMEOUT)
                .is_ok()
        },
        state.admin.readiness.clone(),
        KAFKA,
        stop,
    );
}
