//! One open-loop step: requests leave at their scheduled times whatever the server does.
//!
//! ```text
//! for i in 0..rate × duration:
//!     due ← start + i / rate                     (schedule::due_after_start)
//!     sleep until due (if ahead)                 a late dispatch is counted, never skipped
//!     permit ← try the in-flight semaphore       full → counted as unsent, the schedule goes on
//!     spawn: sign, send, read the answer (≤ request timeout), latency = now − due
//! wait until every permit is back                (every sent request has ended)
//! ```
//!
//! Latency is measured from `due`, not from the send: when the generator or the server falls
//! behind, the waiting shows up in the figures instead of vanishing (no coordinated omission).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Merchant;
use crate::record::{self, Accepted, Recorder, Role};
use crate::signer;
use crate::sweep::schedule;
use crate::sweep::stats::{Outcome, StepStats};
use crate::workload::{Generator, KeyMinter, TxnSpec};

/// Where and how the sweep sends.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// `http://host:port` of ingress (no trailing slash).
    pub base_url: String,
    /// Most requests in flight at once; beyond, a due request is counted as unsent.
    pub in_flight_requests_max: usize,
    /// Most time a request may take, from its send to the end of its answer.
    pub request_timeout: Duration,
}

/// The HTTP side of the generator: one pooled HTTP/1.1 client shared by every request.
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    post_uri: http::Uri,
    settings: SenderSettings,
    merchant: Merchant,
    recorder: Option<Arc<Recorder>>,
}

/// Why the sender cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The base URL does not form a valid request URI.
    #[error("--target {0:?} is not a valid http:// base URL")]
    BadUrl(String),
}

impl Sender {
    /// A sender signing as `merchant`, recording 202s to `recorder`.
    pub fn new(
        settings: SenderSettings,
        merchant: Merchant,
        recorder: Option<Arc<Recorder>>,
    ) -> Result<Sender, SenderError> {
        let post_uri: http::Uri = format!("{}{}", settings.base_url, signer::TRANSACTIONS_PATH)
            .parse()
            .map_err(|_| SenderError::BadUrl(settings.base_url.clone()))?;
        if post_uri.scheme_str() != Some("http") {
            return Err(SenderError::BadUrl(settings.base_url.clone()));
        }
        let mut connector = HttpConnector::new();
        // Small requests, latency measured: never wait for Nagle.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.request_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.in_flight_requests_max)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Sender {
            client,
            post_uri,
            settings,
            merchant,
            recorder,
        })
    }

    /// Runs one step of `rate_rps` for `duration_secs` and returns what it observed.
    pub async fn run_step(
        &self,
        generator: &mut Generator,
        keys: &mut KeyMinter,
        rate_rps: u32,
        duration_secs: u32,
    ) -> StepStats {
        let total = schedule::offered(rate_rps, duration_secs);
        let stats = Arc::new(Mutex::new(StepStats {
            offered: total,
            ..StepStats::default()
        }));
        let cap = self.settings.in_flight_requests_max;
        let permits = Arc::new(Semaphore::new(cap));
        let start = Instant::now();
        for index in 0..total {
            let due = start + schedule::due_after_start(index, rate_rps);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                lock(&stats).unsent_in_flight_cap += 1;
                continue;
            };
            let lag = Instant::now().saturating_duration_since(due);
            lock(&stats).dispatched(lag);
            let spec = generator.next_spec();
            let key = keys.next_key();
            let sender = self.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                let (outcome, transaction_id) = sender.send(&key, &spec).await;
                let latency = Instant::now().saturating_duration_since(due);
                let mut unrecorded = false;
                if outcome == Outcome::Accepted {
                    match transaction_id {
                        Some(transaction_id) => sender.record(transaction_id, key, spec),
                        None => unrecorded = true,
                    }
                }
                let mut s = lock(&stats);
                s.finish(outcome, latency);
                if unrecorded {
                    s.accepted_unrecorded += 1;
                }
                drop(permit);
            });
        }
        // Every permit back = every sent request has ended (each is bounded by the timeout).
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        let _all_back = permits
            .acquire_many(all)
            .await
            .expect("the semaphore is never closed");
        let stats = lock(&stats).clone();
        stats
    }

    async fn send(&self, key: &str, spec: &TxnSpec) -> (Outcome, Option<String>) {
        let signed = signer::post(
            &self.merchant,
            key,
            spec.body(),
            ledgerline_runtime::time::now_unix(),
        );
        let mut builder = http::Request::post(self.post_uri.clone());
        for (name, value) in &signed.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = match builder.body(Full::new(Bytes::from(signed.body))) {
            Ok(request) => request,
            Err(_) => return (Outcome::Transport, None),
        };
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        };
        match tokio::time::timeout(self.settings.request_timeout, exchange).await {
            Err(_) => (Outcome::Timeout, None),
            Ok(None) => (Outcome::Transport, None),
            Ok(Some((status, body))) => match status {
                202 => (Outcome::Accepted, transaction_id(&body)),
                429 => (Outcome::RateLimited, None),
                503 => (Outcome::Unavailable, None),
                other => (Outcome::OtherStatus(other), None),
            },
        }
    }

    fn record(&self, transaction_id: String, key: String, spec: TxnSpec) {
        if let Some(recorder) = &self.recorder {
            recorder.record(&Accepted {
                transaction_id,
                merchant_id: self.merchant.id.to_string(),
                idempotency_key: key,
                role: Role::Original,
                spec,
                accepted_at_ms: record::now_ms(),
            });
        }
    }
}

fn lock(stats: &Mutex<StepStats>) -> std::sync::MutexGuard<'_, StepStats> {
    // A panicking task cannot leave the counts half-updated in a way that matters more than
    // losing the whole step; keep counting.
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `transaction_id` of a 202 body.
pub fn transaction_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        transaction_id: String,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .map(|b| b.transaction_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_id_is_read_from_a_202_body() {
        let body = br#"{"transaction_id":"5b0c","request_id":"0193","status":"RECEIVED"}"#;
        assert_eq!(transaction_id(body).as_deref(), Some("5b0c"));
        assert_eq!(transaction_id(b"not json"), None);
    }
}
