//! Bounded waiting: tests wait on conditions, never on bare sleeps, and never without an end.

use std::future::Future;
use std::time::Duration;

/// How long a service under test may take to stop once its shutdown token is cancelled. Its own
/// grace periods are shorter; this only turns a shutdown that never ends into a failure.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
///
/// The timeout is a liveness bound (so a broken pipeline fails instead of hanging), not a
/// performance assertion: keep it generous. It also bounds each check, so one check that
/// never answers (a request to a stalled server, say) fails the wait instead of holding it.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(_) => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what} (a check hung)")
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Awaits a service task after its shutdown was requested, and panics naming `what` if it has
/// not ended within [`STOP_TIMEOUT`] or if it panicked.
pub async fn stopped<T>(what: &str, task: tokio::task::JoinHandle<T>) -> T {
    stopped_within(what, task, STOP_TIMEOUT).await
}

async fn stopped_within<T>(what: &str, task: tokio::task::JoinHandle<T>, bound: Duration) -> T {
    match tokio::time::timeout(bound, task).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what} failed while stopping: {error}"),
        Err(_) => panic!("{what} did not stop within {bound:?} of its shutdown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_that_never_answers_fails_the_wait_at_its_deadline() {
        let waited = until("an answer", Duration::from_millis(100), || {
            std::future::pending::<Option<()>>()
        })
        .await;
        let message = waited.unwrap_err().to_string();
        assert!(message.contains("a check hung"), "{message}");
    }

    #[tokio::test]
    async fn a_condition_met_on_a_later_check_is_returned() {
        let mut calls = 0;
        let found = until("the third call", Duration::from_secs(5), || {
            calls += 1;
            let now = calls;
            async move { (now == 3).then_some(now) }
        })
        .await;
        assert_eq!(found.unwrap(), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "a stuck task did not stop")]
    async fn a_task_that_never_ends_fails_the_stop() {
        let task = tokio::spawn(std::future::pending::<()>());
        stopped_within("a stuck task", task, Duration::from_millis(100)).await;
    }
}
