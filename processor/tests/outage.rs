//! Redis goes away under a running processor and comes back: nothing is lost, skipped,
//! dead-lettered or decided twice.

mod support;

use ledgerline_testkit::redis_server::OwnedRedis;
use ledgerline_testkit::TestEnv;
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn redis_stopped_mid_stream_loses_and_duplicates_nothing_after_it_returns() {
    let env = TestEnv::new().await.unwrap();
    let mut redis = OwnedRedis::start().await.unwrap();
    let mut s = settings(&env);
    s.redis.url = ledgerline_runtime::secret::Secret::new(redis.url());
    s.backoff.max_ms = 500;
    let running = start(s).await;
    let p = producer(&env);
    let requests: Vec<_> = (0..40)
        .map(|i| {
            request(
                "m1",
                &format!("o{i}"),
                &format!("acc-{}", i % 7),
                100 + i,
                "fp",
            )
        })
        .collect();
    for r in &requests[..20] {
        publish(&env, &p, r).await;
    }
    assert_eq!(outcomes(&env, 20).await.len(), 20);

    redis.kill();
    for r in &requests[20..] {
        publish(&env, &p, r).await;
    }
    let ready = format!("http://{}/readyz", running.admin);
    ledgerline_testkit::wait::until(
        "not ready during the outage",
        Duration::from_secs(60),
        || async {
            let code = reqwest::get(&ready).await.ok()?.status().as_u16();
            (code == 503).then_some(())
        },
    )
    .await
    .unwrap();

    redis.restart().await.unwrap();
    let out = outcomes(&env, 40).await;
    let extra = ledgerline_testkit::kafka::read_topic(
        &env.kafka,
        &env.topic(ledgerline_contracts::topics::OUTCOMES),
        41,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let dlq = ledgerline_testkit::kafka::read_topic(
        &env.kafka,
        &env.kafka.dlq(ledgerline_contracts::topics::REQUESTS),
        1,
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    running.stop().await;

    assert_eq!(out.len(), 40);
    assert_eq!(extra.len(), 40, "no outcome twice");
    assert!(dlq.is_empty(), "an outage dead-letters nothing");
    let decided: BTreeSet<String> = out
        .iter()
        .map(|r| {
            assert_eq!(r.json()["decision"], "ACCEPTED");
            r.json()["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    let sent: BTreeSet<String> = requests.iter().map(|r| r.request_id.to_string()).collect();
    assert_eq!(decided, sent, "every request decided exactly once");
}

// SIGTERM while the broker is gone: the offsets it cannot commit are delivered again once the
// broker is back (and decided as duplicates), so the processor must not wait for a broker that
// may never return; it gives up within its grace and exits.
#[tokio::test]
async fn a_processor_asked_to_stop_while_the_broker_is_gone_still_stops() {
    let mut broker = ledgerline_testkit::broker::OwnedBroker::start()
        .await
        .unwrap();
    let mut env = TestEnv::new().await.unwrap();
    env.kafka.brokers = broker.address();
    let mut s = settings(&env);
    s.kafka.create_topics = true;
    let running = start(s).await;
    let p = producer(&env);
    for i in 0..5 {
        publish(
            &env,
            &p,
            &request("m1", &format!("o{i}"), "acc-1", 100 + i, "fp"),
        )
        .await;
    }
    assert_eq!(outcomes(&env, 5).await.len(), 5);

    broker.kill();
    running.stop().await;
}
