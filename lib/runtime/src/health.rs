//! Readiness: named checks that components flip as their dependencies come and go, and a
//! probe for the one dependency a consumer cannot observe by itself, the broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The readiness check [`spawn_broker_probe`] keeps in the consumer stages.
pub const KAFKA_BROKER: &str = "kafka_broker";
/// Most time one probe's metadata request may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between probes while the broker answers.
const PROBE_INTERVAL_OK: Duration = Duration::from_secs(5);
/// Pause between probes while it does not, so recovery shows within about a second.
const PROBE_INTERVAL_FAILING: Duration = Duration::from_secs(1);

/// A set of named readiness flags. `/readyz` is 200 only when every flag is up. Components
/// update their own flag from their run loops (e.g. after a successful produce or commit), so a
/// probe never blocks on a dependency.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<BTreeMap<&'static str, AtomicBool>>,
}

impl Readiness {
    /// Declares the checks this process has; all start not ready.
    pub fn new(names: &[&'static str]) -> Self {
        let checks = names.iter().map(|n| (*n, AtomicBool::new(false))).collect();
        Self {
            checks: Arc::new(checks),
        }
    }

    /// Sets one check. Unknown names are a programming error.
    pub fn set(&self, name: &'static str, ready: bool) {
        let flag = self.checks.get(name);
        debug_assert!(flag.is_some(), "undeclared readiness check {name}");
        if let Some(flag) = flag {
            flag.store(ready, Ordering::Relaxed);
        }
    }

    /// Whether every check is up.
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|f| f.load(Ordering::Relaxed))
    }

    /// Each check and its state, for the `/readyz` body.
    pub fn report(&self) -> BTreeMap<&'static str, bool> {
        self.checks
            .iter()
            .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Keeps `check` true while `answers` (a blocking broker round trip, bounded by
/// [`PROBE_TIMEOUT`]) succeeds, until `stop`. A consumer's client never reports a lost broker:
/// librdkafka reconnects quietly and an idle stage produces nothing that could fail, so without
/// a probe `/readyz` would stay green through a broker outage.
pub fn spawn_broker_probe<F>(
    answers: F,
    readiness: Readiness,
    check: &'static str,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        loop {
            let answers = answers.clone();
            // The round trip blocks: keep it off the runtime's threads.
            let ok = tokio::task::spawn_blocking(move || answers())
                .await
                .unwrap_or(false);
            if !ok {
                tracing::warn!(check, "the broker did not answer a metadata request");
            }
            readiness.set(check, ok);
            let pause = if ok {
                PROBE_INTERVAL_OK
            } else {
                PROBE_INTERVAL_FAILING
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is_up() {
        let r = Readiness::new(&["kafka", "postgres"]);
        assert!(!r.is_ready());
        r.set("kafka", true);
        assert!(!r.is_ready());
        r.set("postgres", true);
        assert!(r.is_ready());
        r.set("kafka", false);
        assert_eq!(r.report().get("kafka"), Some(&false));
    }

    #[tokio::test]
    async fn the_probe_follows_what_the_broker_answers_and_stops_when_told() {
        let up = Arc::new(AtomicBool::new(true));
        let r = Readiness::new(&[KAFKA_BROKER]);
        let stop = CancellationToken::new();
        let answers = up.clone();
        let task = spawn_broker_probe(
            move || answers.load(Ordering::Relaxed),
            r.clone(),
            KAFKA_BROKER,
            stop.clone(),
        );
        let until = |want: bool| {
            let r = r.clone();
            async move {
                while r.is_ready() != want {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        until(true).await;
        up.store(false, Ordering::Relaxed);
        // Noticed at the next probe, at most one interval later.
        until(false).await;
        up.store(true, Ordering::Relaxed);
        until(true).await;
        stop.cancel();
        task.await.unwrap();
    }
}
