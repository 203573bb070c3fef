//! The audit killed at the worst moments, as a real process, and its database cut off.

mod support;

use ledgerline_runtime::secret::Secret;
use ledgerline_runtime::shutdown::DEADLINE_EXIT_CODE;
use ledgerline_testkit::mongo_server::OwnedMongo;
use ledgerline_testkit::{Signal, TestEnv};
use mongodb::bson::doc;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn audit_process(env: &TestEnv, group: &str, extra: &[(&str, &str)]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit"));
    command
        .envs(env.service_env(group))
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command.spawn().unwrap()
}

/// Sends SIGTERM to the audit process and waits (bounded) for it to exit; `what` names the
/// expected end in the failure message.
async fn sigterm(child: &mut tokio::process::Child, what: &str) -> std::process::ExitStatus {
    let pid = child.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running {WAIT:?} after SIGTERM"))
        .unwrap()
}

#[tokio::test]
async fn an_audit_killed_after_its_insert_and_before_its_commit_leaves_no_gap_and_no_duplicate() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let sent = publish_all(&env, &workload("c", 40, 6)).await as u64;

    // Dies right after the first batch is in MongoDB: its offsets are never committed.
    let mut child = audit_process(
        &env,
        &s.group_id,
        &[("LEDGERLINE_FAULTS__CRASH_AFTER_INSERT", "true")],
    );
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the fault fires")
        .unwrap();
    assert!(!exit.success());
    let at_crash = count(&s, doc! {}).await;
    assert!(
        at_crash > 0,
        "the first batch was inserted before the crash"
    );

    // Restarted in-process: the batch is redelivered, found stored, and the rest follows.
    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, sent).await;
    wait_for_group_caught_up(&env, &s.group_id).await;
    running.stop().await;
    assert_eq!(count(&s, doc! {}).await, sent, "nothing stored twice");
    assert_eq!(count(&s, doc! { "kind": "event" }).await, sent);
    assert_complete_and_intact(&s).await;
}

#[tokio::test]
async fn an_audit_killed_with_sigkill_mid_stream_resumes_with_an_intact_chain() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let sent = publish_all(&env, &workload("k", 600, 20)).await as u64;

    let mut child = audit_process(
        &env,
        &s.group_id,
        &[("LEDGERLINE_BATCH__BATCH_SIZE_MAX", "10")],
    );
    wait_for_documents(&s, doc! {}, 100).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let at_kill = count(&s, doc! {}).await;
    assert!(at_kill < sent, "killed mid-stream ({at_kill} stored)");

    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, sent).await;
    wait_for_group_caught_up(&env, &s.group_id).await;
    running.stop().await;
    assert_eq!(count(&s, doc! {}).await, sent);
    assert_complete_and_intact(&s).await;
}

#[tokio::test]
async fn a_sigterm_finishes_the_batch_in_hand_commits_it_and_exits_cleanly() {
    let env = TestEnv::new().await.unwrap();
    let s = settings(&env);
    let sent = publish_all(&env, &workload("t", 600, 20)).await as u64;

    let mut child = audit_process(
        &env,
        &s.group_id,
        &[("LEDGERLINE_BATCH__BATCH_SIZE_MAX", "10")],
    );
    wait_for_documents(&s, doc! {}, 100).await;
    let exit = sigterm(&mut child, "the audit stops on SIGTERM").await;
    assert!(exit.success(), "{exit:?}");

    // What is stored is exactly what is committed: the batch in hand was finished and its
    // offsets committed before the process left.
    let documents = all_documents(&s).await;
    assert!((documents.len() as u64) < sent, "stopped mid-stream");
    let mut stored: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for ((topic, partition, offset), _) in chains(&documents) {
        stored.insert((topic, partition), offset + 1);
    }
    assert_eq!(committed_offsets(&env, &s.group_id).await, stored);
    assert_complete_and_intact(&s).await;
}

#[tokio::test]
async fn a_sigterm_while_mongodb_is_frozen_ends_the_process_at_its_shutdown_deadline() {
    // A drain held by a store that stopped answering (no error, no closed socket) must not
    // hold the process: it leaves at its deadline with the deadline's status, and what it had
    // not committed is stored on restart, once, with the chain intact.
    let env = TestEnv::new().await.unwrap();
    let mongo = OwnedMongo::start().await.unwrap();
    let mut s = settings(&env);
    s.mongo.uri = Secret::new(mongo.uri());
    let sent = publish_all(&env, &workload("f", 600, 20)).await as u64;

    let uri = mongo.uri();
    let mut child = audit_process(
        &env,
        &s.group_id,
        &[
            ("LEDGERLINE_MONGO__URI", uri.as_str()),
            ("LEDGERLINE_BATCH__BATCH_SIZE_MAX", "10"),
            ("LEDGERLINE_PRODUCE_TIMEOUT_MS", "1000"),
            ("LEDGERLINE_SHUTDOWN_DEADLINE_MS", "3000"),
        ],
    );
    wait_for_documents(&s, doc! {}, 100).await;
    mongo.signal(Signal::SIGSTOP).unwrap();
    // With events still queued, the audit's next insert goes to the frozen server and waits
    // there: its commits stop moving.
    tokio::time::timeout(WAIT, async {
        let mut before = committed_offsets(&env, &s.group_id).await;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = committed_offsets(&env, &s.group_id).await;
            if now == before {
                break;
            }
            before = now;
        }
    })
    .await
    .expect("the audit's commits stop while MongoDB is frozen");

    let exit = sigterm(&mut child, "the audit leaves at its shutdown deadline").await;
    assert_eq!(exit.code(), Some(DEADLINE_EXIT_CODE), "{exit:?}");

    mongo.signal(Signal::SIGCONT).unwrap();
    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, sent).await;
    wait_for_group_caught_up(&env, &s.group_id).await;
    running.stop().await;
    assert_eq!(count(&s, doc! {}).await, sent, "nothing stored twice");
    assert_complete_and_intact(&s).await;
}

/// A TCP proxy in front of MongoDB that the test can cut: while down it refuses new
/// connections and has dropped the open ones, as a crashed or partitioned server would.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, connections2) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections2.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            up,
            connections,
            accept,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_pauses_the_audit_and_loses_nothing() {
    let env = TestEnv::new().await.unwrap();
    let direct = settings(&env);
    let uri = env.mongo.uri.expose();
    let target = uri
        .trim_start_matches("mongodb://")
        .split(['/', '?'])
        .next()
        .unwrap()
        .to_string();
    let proxy = Proxy::start(target).await;
    let mut s = direct.clone();
    s.mongo.uri = ledgerline_runtime::secret::Secret::new(format!(
        "mongodb://{}/?directConnection=true",
        proxy.addr
    ));
    s.mongo.server_selection_timeout_ms = 1_000;

    let first = publish_all(&env, &workload("a", 10, 3)).await as u64;
    let running = start(s.clone()).await;
    wait_for_documents(&direct, doc! {}, first).await;

    proxy.down();
    let second = publish_all(&env, &workload("b", 10, 3)).await as u64;
    ledgerline_testkit::wait::until("not ready during the outage", WAIT, || async {
        let (status, _) = admin_get(running.admin, "/readyz").await;
        (status == 503).then_some(())
    })
    .await
    .unwrap();
    assert!(
        count(&direct, doc! {}).await < first + second,
        "nothing lands while cut off"
    );

    proxy.up();
    wait_for_documents(&direct, doc! {}, first + second).await;
    ledgerline_testkit::wait::until("ready again", WAIT, || async {
        let (status, _) = admin_get(running.admin, "/readyz").await;
        (status == 200).then_some(())
    })
    .await
    .unwrap();
    wait_for_group_caught_up(&env, &s.group_id).await;
    running.stop().await;
    assert_eq!(count(&direct, doc! {}).await, first + second);
    assert_complete_and_intact(&direct).await;
}

// An idle consumer hears nothing of a lost broker (librdkafka reconnects quietly): the
// `kafka_broker` check is what turns `/readyz` red, and green again once the broker returns.
#[tokio::test]
async fn a_broker_outage_turns_readiness_off_and_its_return_turns_it_back_on() {
    let mut broker = ledgerline_testkit::broker::OwnedBroker::start()
        .await
        .unwrap();
    let env = TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    s.kafka.brokers = broker.address();
    s.kafka.create_topics = true;
    let running = start(s).await;
    let readiness = |want: u16| async move {
        ledgerline_testkit::wait::until("readiness", WAIT, || async {
            let (status, body) = admin_get(running.admin, "/readyz").await;
            (status == want).then_some(body)
        })
        .await
        .unwrap()
    };
    let before = readiness(200).await;
    assert!(before.contains(r#""kafka_broker":true"#), "{before}");

    broker.kill();
    let during = readiness(503).await;
    assert!(during.contains(r#""kafka_broker":false"#), "{during}");
    assert!(
        during.contains(r#""mongo":true"#),
        "only the broker's check fails: {during}"
    );

    broker.restart().await.unwrap();
    let after = readiness(200).await;
    assert!(after.contains(r#""kafka_broker":true"#), "{after}");
    running.stop().await;
}
