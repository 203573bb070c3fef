//! Ingress settings: defaults → optional file → `LEDGERLINE_*` environment, validated once.

use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_runtime::mongo::MongoSettings;
use ledgerline_runtime::postgres::PostgresSettings;
use ledgerline_runtime::redis_client::RedisSettings;
use ledgerline_runtime::secret::Secret;
use ledgerline_runtime::settings::{ensure, Validate};
use ledgerline_runtime::shutdown;
use ledgerline_runtime::status::StatusSettings;
use ledgerline_runtime::telemetry::LogSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Everything ingress reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address of the public HTTP API (also serves `/metrics`, `/healthz`, `/readyz`).
    pub listen_addr: SocketAddr,
    /// Logging.
    pub log: LogSettings,
    /// HTTP limits.
    pub http: HttpSettings,
    /// Signature checks.
    pub signing: SigningSettings,
    /// Publishing to `txn.requests`.
    pub publish: PublishSettings,
    /// Kafka clients.
    pub kafka: KafkaSettings,
    /// Redis (status read model).
    pub redis: RedisSettings,
    /// Status read model.
    pub status: StatusSettings,
    /// The ledger (balances, and the status of transactions Redis no longer holds). Ingress
    /// only reads it and never migrates.
    pub postgres: PostgresSettings,
    /// The audit trail (a transaction's events). Ingress only reads it.
    pub mongo: MongoSettings,
    /// Default per-merchant rate limit (a merchant may override it).
    pub rate_limit: RateLimitSettings,
    /// Merchants allowed to call the API, with their signing keys.
    pub merchants: Vec<MerchantSettings>,
    /// From SIGTERM, the most time the whole drain may take: a process still draining then
    /// (a store that stopped answering) exits with status 124 and leaves the rest to
    /// redelivery. Must be greater than the drain's own bounds.
    pub shutdown_deadline_ms: u64,
}

/// HTTP server limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest accepted request body; larger ones get 413 before being read in full.
    pub body_bytes_max: usize,
    /// Most simultaneously open client connections; further ones wait in the accept queue.
    pub connections_max: usize,
    /// A client must finish sending headers within this time (slowloris guard).
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this time (else 408). Publishing has its own
    /// bound (`publish.produce_timeout_ms`), and so do reads from the stores.
    pub request_timeout_ms: u64,
    /// A read from a store (status in Redis, the ledger in PostgreSQL, the audit trail in
    /// MongoDB) must answer within this time, else 503 with `Retry-After`. Separate from the
    /// body deadline: a short body deadline must not turn a slow but healthy read into a 503.
    pub store_read_timeout_ms: u64,
    /// Keep idle connections open for reuse.
    pub keep_alive: bool,
    /// On shutdown, in-flight requests get this long to finish.
    pub shutdown_grace_ms: u64,
    /// Most events one `GET /v1/transactions/{id}/events` answer lists.
    pub events_max: i64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_bytes_max: 16 * 1024,
            connections_max: 10_000,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            store_read_timeout_ms: 5_000,
            keep_alive: true,
            shutdown_grace_ms: 15_000,
            events_max: 500,
        }
    }
}

/// Request-signature verification (design §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSettings {
    /// Accepted clock difference between the merchant's `X-Timestamp` and ours.
    pub max_skew_secs: u32,
    /// UUIDv5 namespace of this deployment's transaction ids (design §3). Changing it changes
    /// every transaction id: set once per deployment.
    pub namespace: uuid::Uuid,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            max_skew_secs: 300,
            namespace: ledgerline_contracts::ids::DEFAULT_NAMESPACE,
        }
    }
}

/// Publishing accepted requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishSettings {
    /// Most requests waiting for a Kafka acknowledgement at once; beyond it, 503 at once.
    pub in_flight_max: usize,
    /// Most time a request waits for its acknowledgement before a 503.
    pub produce_timeout_ms: u64,
    /// Seconds suggested in `Retry-After` on a 503.
    pub retry_after_secs: u32,
    /// Benchmark switch: `false` answers 202 without publishing (NEVER in production; the
    /// service refuses to start so unless `LEDGERLINE_PUBLISH__I_UNDERSTAND_NOTHING_IS_DURABLE`
    /// is also set).
    pub enabled: bool,
    /// Companion of `enabled = false`.
    pub i_understand_nothing_is_durable: bool,
    /// Most time a status write may take before it is given up (the 202 does not wait longer).
    pub status_write_timeout_ms: u64,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            in_flight_max: 20_000,
            produce_timeout_ms: 5_000,
            retry_after_secs: 1,
            enabled: true,
            i_understand_nothing_is_durable: false,
            status_write_timeout_ms: 250,
        }
    }
}

/// A token bucket: `per_second` tokens refill continuously up to `burst`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Sustained requests per second per merchant (0 disables the limit).
    pub per_second: u32,
    /// Largest burst.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 5_000,
            burst: 10_000,
        }
    }
}

/// One merchant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantSettings {
    /// `X-Merchant-Id`.
    pub id: String,
    /// Active signing keys; several at once so secrets rotate without downtime.
    pub keys: Vec<KeySettings>,
    /// Overrides the default rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSettings>,
}

/// One signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// `keyId` in `X-Signature`.
    pub key_id: String,
    /// The shared secret (never logged).
    pub secret: Secret<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log: LogSettings::default(),
            http: HttpSettings::default(),
            signing: SigningSettings::default(),
            publish: PublishSettings::default(),
            kafka: KafkaSettings::default(),
            redis: RedisSettings::default(),
            status: StatusSettings::default(),
            postgres: PostgresSettings {
                migrate: false,
                ..PostgresSettings::default()
            },
            mongo: MongoSettings::default(),
            rate_limit: RateLimitSettings::default(),
            merchants: Vec::new(),
            shutdown_deadline_ms: shutdown::DEADLINE_MS_DEFAULT,
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.redis.validate()?;
        self.status.validate()?;
        self.postgres.validate()?;
        self.mongo.validate()?;
        shutdown::validate_deadline(
            self.shutdown_deadline_ms,
            self.http
                .shutdown_grace_ms
                .saturating_add(self.publish.produce_timeout_ms),
            "the requests' grace (http.shutdown_grace_ms) and the flush (publish.produce_timeout_ms)",
        )?;
        ensure(
            (1..=10_000).contains(&self.http.events_max),
            "http.events_max",
            "must be in 1..=10000",
        )?;
        ensure(
            self.http.body_bytes_max >= 256,
            "http.body_bytes_max",
            "must be >= 256",
        )?;
        ensure(
            (1..=60_000).contains(&self.http.store_read_timeout_ms),
            "http.store_read_timeout_ms",
            "must be in 1..=60000",
        )?;
        ensure(
            self.http.connections_max >= 1,
            "http.connections_max",
            "must be >= 1",
        )?;
        ensure(
            self.publish.in_flight_max >= 1,
            "publish.in_flight_max",
            "must be >= 1",
        )?;
        ensure(
            self.publish.produce_timeout_ms >= 1,
            "publish.produce_timeout_ms",
            "must be >= 1",
        )?;
        ensure(
            self.publish.enabled || self.publish.i_understand_nothing_is_durable,
            "publish.enabled",
            "false answers 202 without durability; also set \
             publish.i_understand_nothing_is_durable (benchmarks only)",
        )?;
        ensure(
            self.signing.max_skew_secs >= 1,
            "signing.max_skew_secs",
            "must be >= 1",
        )?;
        let mut seen = BTreeSet::new();
        for m in &self.merchants {
            let name = format!("merchants[{}]", m.id);
            ensure(
                ledgerline_contracts::ids::MerchantId::parse(&m.id).is_ok(),
                &name,
                "id must be 1-64 chars of [A-Za-z0-9_-]",
            )?;
            ensure(seen.insert(m.id.clone()), &name, "duplicate merchant id")?;
            ensure(!m.keys.is_empty(), &name, "needs at least one key")?;
            let mut key_ids = BTreeSet::new();
            for k in &m.keys {
                ensure(
                    ledgerline_contracts::ids::KeyId::parse(&k.key_id).is_ok(),
                    &name,
                    "key_id must be 1-64 chars of [A-Za-z0-9._-]",
                )?;
                ensure(key_ids.insert(k.key_id.clone()), &name, "duplicate key_id")?;
                ensure(
                    k.secret.expose().len() >= 32,
                    &name,
                    "secrets must be >= 32 bytes",
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(id: &str, secret: &str) -> MerchantSettings {
        MerchantSettings {
            id: id.into(),
            keys: vec![KeySettings {
                key_id: "k1".into(),
                secret: Secret::new(secret.into()),
            }],
            rate_limit: None,
        }
    }

    #[test]
    fn every_setting_is_documented_with_its_environment_variable() {
        let doc = include_str!("../../docs/configuration.md");
        let missing = ledgerline_runtime::settings::undocumented::<Settings>(doc);
        assert!(
            missing.is_empty(),
            "missing from docs/configuration.md: {missing:?}"
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn a_shutdown_deadline_inside_the_requests_grace_and_flush_is_refused() {
        let mut s = Settings::default();
        s.shutdown_deadline_ms = s.http.shutdown_grace_ms + s.publish.produce_timeout_ms;
        let error = s.validate().unwrap_err();
        assert!(error.starts_with("shutdown_deadline_ms:"), "{error}");
    }

    #[test]
    fn short_secrets_and_duplicate_merchants_are_refused() {
        let mut s = Settings {
            merchants: vec![merchant("m1", "short")],
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().contains("32 bytes"));
        s.merchants = vec![
            merchant("m1", &"x".repeat(32)),
            merchant("m1", &"y".repeat(32)),
        ];
        assert!(s.validate().unwrap_err().contains("duplicate merchant"));
    }

    #[test]
    fn publishing_cannot_be_switched_off_by_accident() {
        let mut s = Settings::default();
        s.publish.enabled = false;
        assert!(s.validate().is_err());
        s.publish.i_understand_nothing_is_durable = true;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn settings_dumps_never_contain_secrets() {
        let s = Settings {
            merchants: vec![merchant("m1", "super-secret-value-that-is-long-enough")],
            ..Settings::default()
        };
        // Logs print settings with `Debug`; `Serialize` keeps the real value because the
        // loader layers settings through it (see `Secret`), and nothing prints that form.
        let dump = format!("{s:?}");
        assert!(!dump.contains("super-secret"));
        assert!(dump.contains("[redacted]"));
    }
}
