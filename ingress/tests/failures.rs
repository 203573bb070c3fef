//! Ingress when Kafka cannot take a request, and during shutdown: never a 202 that is not
//! durable, never an unbounded wait, no accepted request lost.

mod support;

use ledgerline_contracts::topics;
use ledgerline_testkit::kafka::read_topic;
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn an_unreachable_broker_gets_a_prompt_503_with_retry_after_and_never_a_202() {
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    // Nothing listens on port 1: every produce fails or times out.
    s.kafka.brokers = "127.0.0.1:1".into();
    s.kafka.message_timeout_ms = 1_000;
    s.publish.produce_timeout_ms = 1_500;
    let app = TestApp::start_with(env, s).await;

    let response = app
        .post(&unique_key(), &body("acc-1", "1.00"))
        .send()
        .await
        .unwrap();

    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "service-unavailable").await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    app.stop().await;
}

// The broker dies under a running ingress and comes back: 503 (never 202) while it is gone,
// 202 again once it returns, and every 202 is on the topic.
#[tokio::test]
async fn a_stopped_broker_gets_503_and_ingress_recovers_when_it_returns() {
    let mut broker = ledgerline_testkit::broker::OwnedBroker::start()
        .await
        .unwrap();
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    s.kafka.brokers = broker.address();
    s.kafka.create_topics = true;
    s.kafka.message_timeout_ms = 2_000;
    s.publish.produce_timeout_ms = 2_500;
    let kafka = s.kafka.clone();
    let app = TestApp::start_with(env, s).await;
    let before = app
        .post(&unique_key(), &body("acc-1", "1.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status().as_u16(), 202);
    let first: serde_json::Value = before.json().await.unwrap();

    broker.kill();
    let during = app
        .post(&unique_key(), &body("acc-1", "2.00"))
        .send()
        .await
        .unwrap();
    assert!(during.headers().contains_key("retry-after"));
    assert_problem(during, 503, "service-unavailable").await;

    broker.restart().await.unwrap();
    let after =
        ledgerline_testkit::wait::until("202 after recovery", Duration::from_secs(60), || async {
            let r = app
                .post(&unique_key(), &body("acc-1", "3.00"))
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 202).then_some(())
        })
        .await;
    assert!(
        after.is_ok(),
        "ingress accepts again once the broker is back"
    );
    let records = read_topic(
        &kafka,
        &kafka.topic(topics::REQUESTS),
        1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(records
        .iter()
        .any(|r| r.json()["transaction_id"] == first["transaction_id"]));
    app.stop().await;
}

#[tokio::test]
async fn a_saturated_publisher_answers_503_instead_of_queueing_without_bound() {
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    s.kafka.brokers = "127.0.0.1:1".into();
    s.kafka.message_timeout_ms = 3_000;
    s.publish.produce_timeout_ms = 3_000;
    s.publish.in_flight_max = 2;
    let app = TestApp::start_with(env, s).await;

    let requests = (0..6).map(|i| {
        app.post(&unique_key(), &body(&format!("acc-{i}"), "1.00"))
            .send()
    });
    let responses = futures::future::join_all(requests).await;

    let statuses: Vec<u16> = responses
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    app.stop().await;
}

// Shutdown starts while requests are in flight: every 202 must be on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_no_accepted_request() {
    let app = TestApp::start().await;
    let client = app.http.clone();

    // Fire 200 requests at once; shutdown starts once the 20th answer is back, so some are
    // answered before it, and the rest are in flight or arrive during the drain.
    let (tx, mut rx) = tokio::sync::mpsc::channel(200);
    for i in 0..200 {
        let req = app.post(&unique_key(), &body(&format!("acc-{}", i % 17), "1.00"));
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(req.send().await).await;
        });
    }
    drop(tx);
    let mut accepted = BTreeSet::new();
    let mut answered = 0;
    while let Some(result) = rx.recv().await {
        answered += 1;
        if answered == 20 {
            app.shutdown.cancel();
        }
        let r = match result {
            Ok(r) => r,
            Err(e) if e.is_timeout() => panic!("a request got neither an answer nor a reset: {e}"),
            Err(_) => continue, // refused or reset once the listener closed
        };
        let status = r.status().as_u16();
        assert!(status == 202 || status == 503, "unexpected status {status}");
        if status == 202 {
            let json: serde_json::Value = r.json().await.unwrap();
            accepted.insert(json["transaction_id"].as_str().unwrap().to_string());
        }
    }
    drop(client);
    let env = app.env.clone();
    ledgerline_testkit::wait::stopped("ingress", app.handle).await;

    assert!(!accepted.is_empty());
    let records = read_topic(
        &env.kafka,
        &env.topic(topics::REQUESTS),
        accepted.len(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let on_topic: BTreeSet<String> = records
        .iter()
        .map(|r| r.json()["transaction_id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = accepted.difference(&on_topic).collect();
    assert!(lost.is_empty(), "accepted but not on the topic: {lost:?}");
}

// A client that stalls halfway through its headers must not keep a stopping ingress (or its
// own request) alive past the grace period: hyper's graceful shutdown waits for a started
// request, so the server closes what is left when the grace ends.
#[tokio::test]
async fn a_connection_stalled_mid_request_is_closed_when_the_grace_period_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    s.http.shutdown_grace_ms = 200;
    // Far longer than the wait below, so only the grace period can close the connection.
    s.http.header_read_timeout_ms = 600_000;
    let app = TestApp::start_with(env, s).await;

    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/transactions HTTP/1.1\r\nHost: ingress\r\nContent-Type: app")
        .await
        .unwrap();
    // The server has the partial head before shutdown starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.shutdown.cancel();
    ledgerline_testkit::wait::stopped("ingress", app.handle).await;

    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
    match read {
        Err(_) => panic!("the stalled connection is still open after the grace period"),
        Ok(Ok(_)) | Ok(Err(_)) => assert!(
            rest.is_empty(),
            "no response for an unfinished request, got {:?}",
            String::from_utf8_lossy(&rest)
        ),
    }
}
