//! The crash window of design §3: the processor dies after claiming the idempotency key and
//! before producing the outcome. On restart the request must end ACCEPTED exactly once.

mod support;

use ledgerline_runtime::status::{State, StatusStore};
use ledgerline_testkit::TestEnv;
use std::process::Stdio;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn a_processor_killed_between_claim_and_produce_finishes_the_original_decision_on_restart() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let req = request("m1", "crash-key", "acc-1", 4_200, "fp");
    publish(&env, &producer(&env), &req).await;

    // The real binary, configured only through the environment, crashing at the fault point.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .env("LEDGERLINE_ADMIN_ADDR", "127.0.0.1:0")
        .env("LEDGERLINE_KAFKA__BROKERS", &s.kafka.brokers)
        .env("LEDGERLINE_KAFKA__TOPIC_PREFIX", &s.kafka.topic_prefix)
        .env(
            "LEDGERLINE_KAFKA__PARTITIONS",
            s.kafka.partitions.to_string(),
        )
        .env("LEDGERLINE_KAFKA__CREATE_TOPICS", "false")
        .env("LEDGERLINE_REDIS__URL", s.redis.url.expose())
        .env("LEDGERLINE_REDIS__KEY_PREFIX", &s.redis.key_prefix)
        .env("LEDGERLINE_GROUP_ID", &s.group_id)
        .env("LEDGERLINE_FAULTS__CRASH_AFTER_CLAIM", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the fault fires")
        .unwrap();
    assert!(!exit.success(), "the process died at the fault point");

    // The key is claimed but nothing was produced.
    let mut redis = env.redis_conn().await.unwrap();
    let claim: Option<String> = redis::cmd("GET")
        .arg(format!("{}idem:m1:crash-key", env.redis.key_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(claim.unwrap().contains(&req.request_id.to_string()));
    let before = ledgerline_testkit::kafka::read_topic(
        &env.kafka,
        &env.topic(ledgerline_contracts::topics::OUTCOMES),
        1,
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    assert!(before.is_empty(), "no outcome before the restart");

    // Restart without the fault, same group: the request is redelivered.
    let running = start(s).await;
    let out = outcomes(&env, 1).await;
    let extra = ledgerline_testkit::kafka::read_topic(
        &env.kafka,
        &env.topic(ledgerline_contracts::topics::OUTCOMES),
        2,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    running.stop().await;

    assert_eq!(out.len(), 1);
    assert_eq!(extra.len(), 1, "exactly one outcome");
    let event = out[0].json();
    assert_eq!(
        event["decision"], "ACCEPTED",
        "a redelivery is never its own duplicate"
    );
    assert_eq!(event["request_id"], req.request_id.to_string());
    let store = StatusStore::new(
        env.redis_conn().await.unwrap(),
        &env.redis.key_prefix,
        &Default::default(),
    );
    let status = store
        .get(&req.transaction_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state, State::Accepted);
}
