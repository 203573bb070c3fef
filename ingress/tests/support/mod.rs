//! Shared setup for ingress's integration tests: the real app on port 0 against real Kafka and
//! Redis, and a signing client.

#![allow(dead_code, unreachable_pub)]

pub mod downstream;

use ingress::config::{KeySettings, MerchantSettings, RateLimitSettings};
use ingress::{Application, Settings};
use ledgerline_contracts::signing;
use ledgerline_runtime::secret::Secret;
use ledgerline_testkit::TestEnv;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub const MERCHANT: &str = "merchant-1";
pub const OTHER_MERCHANT: &str = "merchant-2";
pub const SECRET_OLD: &str = "old-secret-0123456789abcdef0123456789";
pub const SECRET_NEW: &str = "new-secret-0123456789abcdef0123456789";
pub const SECRET_OTHER: &str = "other-secret-0123456789abcdef01234567";
/// The test client's bound on one request, answer included.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct TestApp {
    pub addr: SocketAddr,
    pub env: TestEnv,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub http: reqwest::Client,
}

pub fn key(key_id: &str, secret: &str) -> KeySettings {
    KeySettings {
        key_id: key_id.into(),
        secret: Secret::new(secret.into()),
    }
}

/// Settings for a test: two merchants, the first with two active keys (rotation).
pub fn settings(env: &TestEnv) -> Settings {
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    Settings {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        redis: env.redis.clone(),
        postgres: ledgerline_runtime::postgres::PostgresSettings {
            migrate: false,
            ..env.postgres.clone()
        },
        mongo: env.mongo.clone(),
        merchants: vec![
            MerchantSettings {
                id: MERCHANT.into(),
                keys: vec![key("k-old", SECRET_OLD), key("k-new", SECRET_NEW)],
                rate_limit: None,
            },
            MerchantSettings {
                id: OTHER_MERCHANT.into(),
                keys: vec![key("k1", SECRET_OTHER)],
                rate_limit: None,
            },
        ],
        rate_limit: RateLimitSettings {
            per_second: 10_000,
            burst: 10_000,
        },
        ..Settings::default()
    }
}

impl TestApp {
    pub async fn start() -> TestApp {
        let env = TestEnv::new().await.expect("test environment");
        let s = settings(&env);
        Self::start_with(env, s).await
    }

    pub async fn start_with(env: TestEnv, settings: Settings) -> TestApp {
        let app = Application::build(settings).await.expect("ingress builds");
        let addr = app.local_addr();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        TestApp {
            addr,
            env,
            shutdown,
            handle,
            // A request that gets neither an answer nor a reset fails its test after this
            // long instead of holding the whole run; no test waits on a slower answer.
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A POST signed by `merchant` with `key_id`/`secret` at `timestamp`.
    pub fn signed_post(
        &self,
        merchant: &str,
        key_id: &str,
        secret: &str,
        idempotency_key: &str,
        body: &str,
        timestamp: i64,
    ) -> reqwest::RequestBuilder {
        let ts = timestamp.to_string();
        let canonical = signing::canonical_string(
            "POST",
            "/v1/transactions",
            &ts,
            idempotency_key,
            body.as_bytes(),
        );
        let sig = signing::signature_header(key_id, &signing::sign(secret.as_bytes(), &canonical));
        self.http
            .post(self.url("/v1/transactions"))
            .header("Content-Type", "application/json")
            .header("X-Merchant-Id", merchant)
            .header("X-Timestamp", ts)
            .header("X-Signature", sig)
            .header("Idempotency-Key", idempotency_key)
            .body(body.to_string())
    }

    /// A correctly signed POST for the default merchant with its new key.
    pub fn post(&self, idempotency_key: &str, body: &str) -> reqwest::RequestBuilder {
        self.signed_post(MERCHANT, "k-new", SECRET_NEW, idempotency_key, body, now())
    }

    /// A signed GET.
    pub fn signed_get(
        &self,
        merchant: &str,
        key_id: &str,
        secret: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let ts = now().to_string();
        let canonical = signing::canonical_string("GET", path, &ts, "", b"");
        let sig = signing::signature_header(key_id, &signing::sign(secret.as_bytes(), &canonical));
        self.http
            .get(self.url(path))
            .header("X-Merchant-Id", merchant)
            .header("X-Timestamp", ts)
            .header("X-Signature", sig)
    }

    /// Reads `txn.requests` from the beginning until `expected` messages or `timeout`.
    pub async fn requests(
        &self,
        expected: usize,
        timeout: std::time::Duration,
    ) -> Vec<ledgerline_testkit::kafka::Record> {
        let topic = self.env.topic(ledgerline_contracts::topics::REQUESTS);
        ledgerline_testkit::kafka::read_topic(&self.env.kafka, &topic, expected, timeout)
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        ledgerline_testkit::wait::stopped("ingress", self.handle).await;
    }
}

pub fn now() -> i64 {
    ledgerline_runtime::time::now_unix()
}

pub fn body(account: &str, amount: &str) -> String {
    format!(r#"{{"account_id":"{account}","amount":"{amount}","currency":"EUR","type":"credit"}}"#)
}

pub fn unique_key() -> String {
    format!("key-{}", uuid::Uuid::new_v4().simple())
}

/// Asserts a problem+json response with the given status and `type` slug; returns the body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value = response.json().await.expect("problem body");
    assert_eq!(
        body["type"],
        format!("https://ledgerline.dev/problems/{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    body
}
