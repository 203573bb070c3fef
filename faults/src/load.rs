//! Steady signed load that behaves like a careful merchant integration, so the invariants can be
//! checked exactly:
//!
//! ```text
//! worker w (of `workers`) owns accounts f<w>-000 … f<w>-<accounts_per_worker − 1>
//! loop until stopped:
//!     spec ← seeded random account of w, amount, credit or debit
//!     send (key, spec) until a 202, retrying 503 / 429 / timeouts / refused connections with
//!         capped backoff (the same key and body: a retry, never a new transaction)
//!     record the 202 (Original)                       → the verifier's expectations
//!     with `replay_percent`: send the same key and body again and record it (Retry)
//!     pause `pause_ms`
//! ```
//!
//! One worker per account and one request at a time per worker means each account's requests
//! are sent in a known order, which the ledger must keep (`invariants::order`). A status other
//! than 202 and the retriable ones is a non-retriable error: counted, never retried.

use ledgerline_contracts::events::TxnType;
use loadtest::config::Merchant;
use loadtest::record::{self, Accepted, Recorder, Role};
use loadtest::signer;
use loadtest::workload::TxnSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The load's shape.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Concurrent workers (each one request at a time).
    pub workers: u32,
    /// Accounts each worker owns.
    pub accounts_per_worker: u32,
    /// Pause after each transaction, per worker, in milliseconds (sets the rate).
    pub pause_ms: u64,
    /// Share of transactions sent a second time with the same key and body, in percent.
    pub replay_percent: u8,
    /// Most time one request may take before the worker gives up on that attempt.
    pub request_timeout: Duration,
    /// Most attempts per transaction before the worker moves on (counted as abandoned).
    pub attempts_max: u32,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for LoadSettings {
    fn default() -> LoadSettings {
        LoadSettings {
            workers: 8,
            accounts_per_worker: 8,
            pause_ms: 40,
            replay_percent: 5,
            request_timeout: Duration::from_secs(15),
            attempts_max: 60,
            seed: 1,
        }
    }
}

/// What the load saw, by answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests sent (every attempt).
    pub sent: u64,
    /// 202s of originals.
    pub accepted: u64,
    /// 202s of deliberate replays.
    pub replays_accepted: u64,
    /// 503s (the broker could not take the request in time).
    pub unavailable: u64,
    /// 429s.
    pub rate_limited: u64,
    /// Attempts that got no answer within the request timeout.
    pub timeouts: u64,
    /// Attempts whose connection failed (refused, reset: a restarting ingress).
    pub transport: u64,
    /// Answers that are neither 202 nor retriable, by status: a broken promise.
    pub non_retriable: BTreeMap<u16, u64>,
    /// Transactions given up after `attempts_max` attempts.
    pub abandoned: u64,
    /// Slowest answer of any attempt, in milliseconds.
    pub latency_max_ms: u64,
}

/// Shared state between the workers and the scenario.
#[derive(Debug, Default)]
struct Shared {
    counts: Mutex<Counts>,
    /// Originals in acceptance order, with their account.
    accepted: Mutex<Vec<(Uuid, String)>>,
    /// Bumped when Redis loses its data: a replay of a transaction accepted in an earlier
    /// epoch cannot be recognised as one, so it is recorded as another original.
    redis_epoch: AtomicU64,
    /// While set, no replays are sent (around a Redis loss, so none straddles it).
    replays_paused: AtomicBool,
}

/// Running load.
#[derive(Debug)]
pub struct Load {
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    workers: JoinSet<()>,
}

/// A handle the scenario keeps to steer the load while faults happen.
#[derive(Debug, Clone)]
pub struct Steer {
    shared: Arc<Shared>,
}

impl Steer {
    /// Stops (or resumes) sending replays.
    pub fn pause_replays(&self, paused: bool) {
        self.shared.replays_paused.store(paused, Ordering::SeqCst);
    }

    /// Marks that Redis lost everything from here on.
    pub fn redis_lost(&self) {
        self.shared.redis_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Originals accepted so far.
    pub fn accepted_so_far(&self) -> Vec<Uuid> {
        lock(&self.shared.accepted)
            .iter()
            .map(|(id, _)| *id)
            .collect()
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        lock(&self.shared.counts).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Load {
    /// Starts `settings.workers` workers against `base_url`, recording 202s to `recorder`.
    pub fn start(
        settings: &LoadSettings,
        base_url: &str,
        merchant: Merchant,
        recorder: Arc<Recorder>,
    ) -> Load {
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .tcp_nodelay(true)
            .build()
            .expect("a client without TLS always builds");
        let mut workers = JoinSet::new();
        for w in 0..settings.workers {
            let worker = Worker {
                id: w,
                settings: settings.clone(),
                url: format!("{base_url}{}", signer::TRANSACTIONS_PATH),
                merchant: merchant.clone(),
                client: client.clone(),
                shared: shared.clone(),
                recorder: recorder.clone(),
                rng: StdRng::seed_from_u64(settings.seed ^ (u64::from(w) << 32)),
                run: format!("{:x}", settings.seed),
                stop: stop.clone(),
            };
            workers.spawn(worker.run());
        }
        Load {
            shared,
            recorder,
            stop,
            workers,
        }
    }

    /// A handle to steer the load.
    pub fn steer(&self) -> Steer {
        Steer {
            shared: self.shared.clone(),
        }
    }

    /// Stops every worker after its current transaction, flushes the record file and returns
    /// the counts and the originals in acceptance order.
    pub async fn stop(mut self) -> (Counts, Vec<(Uuid, String)>) {
        self.stop.cancel();
        while self.workers.join_next().await.is_some() {}
        if let Err(error) = self.recorder.flush() {
            tracing::error!(%error, "cannot flush the record file");
        }
        let counts = lock(&self.shared.counts).clone();
        let accepted = std::mem::take(&mut *lock(&self.shared.accepted));
        (counts, accepted)
    }
}

/// What one attempt got.
enum Answer {
    Accepted(Uuid),
    Retriable,
    Refused,
}

#[derive(Debug)]
struct Worker {
    id: u32,
    settings: LoadSettings,
    url: String,
    merchant: Merchant,
    client: reqwest::Client,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    rng: StdRng,
    run: String,
    stop: CancellationToken,
}

impl Worker {
    async fn run(mut self) {
        let mut n: u64 = 0;
        while !self.stop.is_cancelled() {
            n += 1;
            let spec = self.next_spec();
            let key = format!("f{}-{}-{n}", self.run, self.id);
            let epoch = self.shared.redis_epoch.load(Ordering::SeqCst);
            let Some(id) = self.until_accepted(&key, &spec).await else {
                lock(&self.shared.counts).abandoned += 1;
                continue;
            };
            lock(&self.shared.counts).accepted += 1;
            lock(&self.shared.accepted).push((id, spec.account_id.clone()));
            self.record(id, &key, &spec, Role::Original);
            let replay = self.rng.random_range(0..100) < self.settings.replay_percent;
            if replay && !self.shared.replays_paused.load(Ordering::SeqCst) {
                let same_epoch = self.shared.redis_epoch.load(Ordering::SeqCst) == epoch;
                if let Some(again) = self.until_accepted(&key, &spec).await {
                    lock(&self.shared.counts).replays_accepted += 1;
                    // Across a Redis loss the system cannot know it saw this key: it decides
                    // the transaction again (same id, one ledger row), which is the truth to
                    // check, not a DUPLICATE.
                    let role = if same_epoch && again == id {
                        Role::Retry
                    } else {
                        Role::Original
                    };
                    self.record(again, &key, &spec, role);
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(self.settings.pause_ms)) => {}
            }
        }
    }

    fn next_spec(&mut self) -> TxnSpec {
        let account = self.rng.random_range(0..self.settings.accounts_per_worker);
        let debit = self.rng.random_range(0..100) < 30;
        TxnSpec {
            account_id: format!("f{:02}-{account:03}", self.id),
            amount_minor: self.rng.random_range(1..=50_000),
            txn_type: if debit {
                TxnType::Debit
            } else {
                TxnType::Credit
            },
            currency: "EUR".into(),
        }
    }

    /// Sends until a 202 or a non-retriable answer; `None` when given up.
    async fn until_accepted(&mut self, key: &str, spec: &TxnSpec) -> Option<Uuid> {
        let mut backoff = Duration::from_millis(100);
        for _ in 0..self.settings.attempts_max {
            match self.attempt(key, spec).await {
                Answer::Accepted(id) => return Some(id),
                Answer::Refused => return None,
                Answer::Retriable => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        None
    }

    async fn attempt(&self, key: &str, spec: &TxnSpec) -> Answer {
        let signed = signer::post(
            &self.merchant,
            key,
            spec.body(),
            ledgerline_runtime::time::now_unix(),
        );
        let mut request = self.client.post(&self.url).body(signed.body);
        for (name, value) in &signed.headers {
            request = request.header(*name, value.as_str());
        }
        let started = Instant::now();
        let sent = request.send().await;
        let answer = match sent {
            Err(e) if e.is_timeout() => {
                lock(&self.shared.counts).timeouts += 1;
                Answer::Retriable
            }
            Err(_) => {
                lock(&self.shared.counts).transport += 1;
                Answer::Retriable
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let mut counts = lock(&self.shared.counts);
                match status {
                    202 => match loadtest::sweep::generator::transaction_id(&body)
                        .and_then(|id| id.parse().ok())
                    {
                        Some(id) => Answer::Accepted(id),
                        None => {
                            *counts.non_retriable.entry(status).or_default() += 1;
                            Answer::Refused
                        }
                    },
                    503 => {
                        counts.unavailable += 1;
                        Answer::Retriable
                    }
                    429 => {
                        counts.rate_limited += 1;
                        Answer::Retriable
                    }
                    other => {
                        *counts.non_retriable.entry(other).or_default() += 1;
                        Answer::Refused
                    }
                }
            }
        };
        let mut counts = lock(&self.shared.counts);
        counts.sent += 1;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        counts.latency_max_ms = counts.latency_max_ms.max(ms);
        answer
    }

    fn record(&self, id: Uuid, key: &str, spec: &TxnSpec, role: Role) {
        self.recorder.record(&Accepted {
            transaction_id: id.to_string(),
            merchant_id: self.merchant.id.to_string(),
            idempotency_key: key.to_string(),
            role,
            spec: spec.clone(),
            accepted_at_ms: record::now_ms(),
        });
    }
}
