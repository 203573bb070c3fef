//! End to end: signed POSTs through ingress, the processor and the ledger-writer, read back
//! through the status and balance APIs.

mod support;

use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;

struct Downstream {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_downstream(app: &TestApp) -> Downstream {
    let env = &app.env;
    let shutdown = CancellationToken::new();
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    let processor = processor::Application::build(processor::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka: kafka.clone(),
        redis: env.redis.clone(),
        group_id: format!("p-{}", env.id),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ledger_settings = ledger_writer::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        redis: env.redis.clone(),
        postgres: env.postgres.clone(),
        group_id: format!("l-{}", env.id),
        ..Default::default()
    };
    ledger_settings.relay.poll_interval_ms = 50;
    let writer = ledger_writer::Application::build(ledger_settings)
        .await
        .unwrap();
    let (a, b) = (shutdown.clone(), shutdown.clone());
    let tasks = vec![
        tokio::spawn(async move { processor.run_until_stopped(a).await.unwrap() }),
        tokio::spawn(async move { writer.run_until_stopped(b).await.unwrap() }),
    ];
    Downstream { shutdown, tasks }
}

impl Downstream {
    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

fn txn(account: &str, amount: &str, kind: &str) -> String {
    format!(r#"{{"account_id":"{account}","amount":"{amount}","currency":"EUR","type":"{kind}"}}"#)
}

async fn post(app: &TestApp, body: &str) -> String {
    let r = app.post(&unique_key(), body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    v["transaction_id"].as_str().unwrap().to_string()
}

async fn status(app: &TestApp, id: &str) -> (u16, serde_json::Value) {
    let r = app
        .signed_get(
            MERCHANT,
            "k-new",
            SECRET_NEW,
            &format!("/v1/transactions/{id}"),
        )
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or_default())
}

async fn wait_for_state(app: &TestApp, id: &str, want: &str) -> serde_json::Value {
    ledgerline_testkit::wait::until(want, Duration::from_secs(90), || async {
        let (code, body) = status(app, id).await;
        (code == 200 && body["state"] == want).then_some(body)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_signed_transaction_ends_posted_with_its_balance_and_a_lost_read_model_falls_back_to_the_ledger(
) {
    let app = TestApp::start().await;
    let downstream = start_downstream(&app).await;
    let credit = post(&app, &txn("acc-e2e", "10.00", "credit")).await;
    let debit = post(&app, &txn("acc-e2e", "3.00", "debit")).await;
    let overdraw = post(&app, &txn("acc-e2e", "100.00", "debit")).await;

    let posted = wait_for_state(&app, &credit, "POSTED").await;
    assert_eq!(posted["source"], "live");
    assert_eq!(posted["balance_after"], "10.00");
    assert_eq!(
        wait_for_state(&app, &debit, "POSTED").await["balance_after"],
        "7.00"
    );
    let declined = wait_for_state(&app, &overdraw, "DECLINED").await;
    assert_eq!(declined["reason_code"], "INSUFFICIENT_FUNDS");

    let r = app
        .signed_get(
            MERCHANT,
            "k-new",
            SECRET_NEW,
            "/v1/accounts/acc-e2e/balance",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let balance: serde_json::Value = r.json().await.unwrap();
    assert_eq!(balance["balances"][0]["currency"], "EUR");
    assert_eq!(balance["balances"][0]["balance"], "7.00");
    assert_eq!(balance["balances"][0]["balance_minor"], 700);

    // Another merchant sees neither the transaction nor the account.
    let r = app
        .signed_get(
            OTHER_MERCHANT,
            "k1",
            SECRET_OTHER,
            &format!("/v1/transactions/{credit}"),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    let r = app
        .signed_get(
            OTHER_MERCHANT,
            "k1",
            SECRET_OTHER,
            "/v1/accounts/acc-e2e/balance",
        )
        .send()
        .await
        .unwrap();
    let other: serde_json::Value = r.json().await.unwrap();
    assert_eq!(other["balances"], serde_json::json!([]));
    // An unsigned balance read is refused like any other.
    let r = app
        .http
        .get(app.url("/v1/accounts/acc-e2e/balance"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "authentication-required").await;

    // The read model loses everything (expiry, FLUSHALL): the ledger still answers.
    let mut redis = app.env.redis_conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", app.env.redis.key_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    let (code, durable) = status(&app, &debit).await;
    assert_eq!(code, 200);
    assert_eq!(durable["source"], "ledger");
    assert_eq!(durable["state"], "POSTED");
    assert_eq!(durable["balance_after"], "7.00");
    assert_eq!(durable["fields"]["amount"], "3.00");

    downstream.stop().await;
    app.stop().await;
}
