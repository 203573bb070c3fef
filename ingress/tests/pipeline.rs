//! End to end: signed POSTs through ingress, the processor and the ledger-writer, read back
//! through the status and balance APIs.

mod support;

use std::time::Duration;
use support::downstream::start_downstream;
use support::*;

fn txn(account: &str, amount: &str, kind: &str) -> String {
    format!(r#"{{"account_id":"{account}","amount":"{amount}","currency":"EUR","type":"{kind}"}}"#)
}

async fn post(app: &TestApp, body: &str) -> String {
    post_with_key(app, &unique_key(), body).await
}

async fn post_with_key(app: &TestApp, key: &str, body: &str) -> String {
    let r = app.post(key, body).send().await.unwrap();
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
    let credit_key = unique_key();
    let credit = post_with_key(&app, &credit_key, &txn("acc-e2e", "10.00", "credit")).await;
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

    // The merchant retries the credit (same key and body) and then sends a conflicting body
    // under the same key: the audit trail lists every event of the transaction, in order.
    assert_eq!(
        post_with_key(&app, &credit_key, &txn("acc-e2e", "10.00", "credit")).await,
        credit
    );
    assert_eq!(
        post_with_key(&app, &credit_key, &txn("acc-e2e", "99.00", "credit")).await,
        credit
    );
    let events_path = format!("/v1/transactions/{credit}/events");
    let events =
        ledgerline_testkit::wait::until("audit events", Duration::from_secs(90), || async {
            let r = app
                .signed_get(MERCHANT, "k-new", SECRET_NEW, &events_path)
                .send()
                .await
                .ok()?;
            let body: serde_json::Value = r.json().await.ok()?;
            let events = body["events"].as_array()?.clone();
            (events.len() == 7).then_some(events)
        })
        .await
        .unwrap();
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let outcome = e["event"]["decision"]
                .as_str()
                .or(e["event"]["result"].as_str())
                .unwrap_or("");
            (
                e["event_type"].as_str().unwrap().to_string(),
                outcome.to_string(),
            )
        })
        .collect();
    let has = |t: &str, o: &str| kinds.iter().any(|(a, b)| a == t && b == o);
    assert!(has("TransactionPosted", "POSTED"), "{kinds:?}");
    assert!(has("TransactionDecided", "ACCEPTED"), "{kinds:?}");
    assert!(has("TransactionDecided", "DUPLICATE"), "{kinds:?}");
    assert!(has("TransactionDecided", "REJECTED"), "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|(t, _)| t == "TransactionRequested")
            .count(),
        3
    );
    assert_eq!(
        events[0]["event_type"], "TransactionRequested",
        "oldest first"
    );
    assert_eq!(
        events[0]["event"]["amount_minor"], 1_000,
        "amounts stay integers"
    );

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
    assert!(app.env.forget_redis().await.unwrap() > 0);
    let (code, durable) = status(&app, &debit).await;
    assert_eq!(code, 200);
    assert_eq!(durable["source"], "ledger");
    assert_eq!(durable["state"], "POSTED");
    assert_eq!(durable["balance_after"], "7.00");
    assert_eq!(durable["fields"]["amount"], "3.00");

    downstream.stop().await;
    app.stop().await;
}

// Redis loses everything (here: every key of this test's prefix, which is what FLUSHALL does to
// it without disturbing the tests running beside it) while merchants retry requests that were
// already posted. The processor accepts the retries afresh; the ledger must post nothing twice,
// and the status must still say POSTED with the original balance.
#[tokio::test]
async fn retries_after_the_read_model_lost_its_data_post_nothing_twice_and_report_the_truth() {
    let app = TestApp::start().await;
    let downstream = start_downstream(&app).await;
    let keys: Vec<String> = (0..5).map(|_| unique_key()).collect();
    let body = txn("acc-flush", "10.00", "credit");
    let mut ids = Vec::new();
    for key in &keys {
        ids.push(post_with_key(&app, key, &body).await);
    }
    let mut before = Vec::new();
    for id in &ids {
        before.push(wait_for_state(&app, id, "POSTED").await["balance_after"].clone());
    }

    assert!(app.env.forget_redis().await.unwrap() > 0);

    for key in &keys {
        post_with_key(&app, key, &body).await;
    }
    for (id, balance) in ids.iter().zip(&before) {
        let after =
            ledgerline_testkit::wait::until("restated", Duration::from_secs(90), || async {
                let (code, body) = status(&app, id).await;
                (code == 200 && body["source"] == "live" && body["state"] == "POSTED")
                    .then_some(body)
            })
            .await
            .unwrap();
        assert_eq!(
            &after["balance_after"], balance,
            "the original result, not a new one"
        );
    }
    let (posted, postings): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ledger_transactions WHERE account_id = 'acc-flush'),
                (SELECT count(*) FROM postings WHERE account_id = 'acc-flush')",
    )
    .fetch_one(&app.env.pg)
    .await
    .unwrap();
    assert_eq!((posted, postings), (5, 5));
    let balance: i64 = sqlx::query_scalar(
        "SELECT balance_minor FROM balances WHERE account_id = 'acc-flush' AND currency = 'EUR'",
    )
    .fetch_one(&app.env.pg)
    .await
    .unwrap();
    assert_eq!(balance, 5_000);
    downstream.stop().await;
    app.stop().await;
}
