//! Ingress against real Kafka and Redis: the happy path, every error, replays, key rotation.

mod support;

use std::time::Duration;
use support::*;

#[tokio::test]
async fn a_signed_post_is_acknowledged_only_once_it_is_on_the_topic_with_key_and_headers() {
    let app = TestApp::start().await;
    let key = unique_key();

    let response = app
        .post(&key, &body("acc-1", "12.5"))
        .header("X-Correlation-Id", "corr-1")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(response.headers()["x-correlation-id"], "corr-1");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["status"], "RECEIVED");
    let txn = json["transaction_id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/transactions/{txn}"));

    let records = app.requests(1, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.key.as_deref(), Some(b"acc-1".as_slice()));
    assert_eq!(r.header("event-type"), Some("TransactionRequested"));
    assert_eq!(r.header("schema-version"), Some("1"));
    assert_eq!(r.header("correlation-id"), Some("corr-1"));
    let event = r.json();
    assert_eq!(event["transaction_id"], txn);
    assert_eq!(event["amount_minor"], 1250);
    assert_eq!(event["currency"], "EUR");
    assert_eq!(event["merchant_id"], MERCHANT);
    assert_eq!(event["idempotency_key"], key.as_str());
    app.stop().await;
}

#[tokio::test]
async fn the_status_is_readable_right_after_the_202_and_only_by_its_merchant() {
    let app = TestApp::start().await;
    let response = app
        .post(&unique_key(), &body("acc-2", "3.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let json: serde_json::Value = response.json().await.unwrap();
    let path = format!(
        "/v1/transactions/{}",
        json["transaction_id"].as_str().unwrap()
    );

    let status = app
        .signed_get(MERCHANT, "k-old", SECRET_OLD, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().as_u16(), 200);
    let status: serde_json::Value = status.json().await.unwrap();
    assert_eq!(status["state"], "RECEIVED");
    assert_eq!(status["fields"]["amount"], "3.00");
    assert_eq!(status["history"][0]["state"], "RECEIVED");

    let foreign = app
        .signed_get(OTHER_MERCHANT, "k1", SECRET_OTHER, &path)
        .send()
        .await
        .unwrap();
    assert_problem(foreign, 404, "not-found").await;
    let unknown = format!("/v1/transactions/{}", uuid::Uuid::new_v4());
    let unknown = app
        .signed_get(MERCHANT, "k-new", SECRET_NEW, &unknown)
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404, "not-found").await;
    let garbage = app
        .signed_get(MERCHANT, "k-new", SECRET_NEW, "/v1/transactions/not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_problem(garbage, 404, "not-found").await;
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_request_gets_the_same_transaction_id() {
    let app = TestApp::start().await;
    let key = unique_key();
    let ts = now();
    let b = body("acc-3", "1.00");
    let first = app
        .signed_post(MERCHANT, "k-new", SECRET_NEW, &key, &b, ts)
        .send()
        .await
        .unwrap();
    let replay = app
        .signed_post(MERCHANT, "k-new", SECRET_NEW, &key, &b, ts)
        .send()
        .await
        .unwrap();
    let first: serde_json::Value = first.json().await.unwrap();
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(first["transaction_id"], replay["transaction_id"]);
    assert_ne!(first["request_id"], replay["request_id"]);
    app.stop().await;
}

#[tokio::test]
async fn both_rotated_keys_work_and_a_retired_key_fails() {
    let app = TestApp::start().await;
    let b = body("acc-4", "1.00");
    let old = app
        .signed_post(MERCHANT, "k-old", SECRET_OLD, &unique_key(), &b, now())
        .send()
        .await
        .unwrap();
    let new = app
        .signed_post(MERCHANT, "k-new", SECRET_NEW, &unique_key(), &b, now())
        .send()
        .await
        .unwrap();
    assert_eq!(old.status().as_u16(), 202);
    assert_eq!(new.status().as_u16(), 202);
    let retired = app
        .signed_post(MERCHANT, "k-retired", SECRET_OLD, &unique_key(), &b, now())
        .send()
        .await
        .unwrap();
    assert_problem(retired, 401, "invalid-signature").await;
    app.stop().await;
}

#[tokio::test]
async fn every_bad_request_gets_its_own_problem_and_nothing_reaches_kafka() {
    let app = TestApp::start().await;
    let good = body("acc-5", "1.00");
    let k = unique_key;

    // Authentication.
    let r = with_header(app.post(&k(), &good), "X-Signature", "keyId=k-new,v1=00");
    assert_problem(
        app.http.execute(r).await.unwrap(),
        401,
        "malformed-authentication",
    )
    .await;
    let r = with_header(app.post(&k(), &good), "X-Signature", "keyId=k-new");
    assert_problem(
        app.http.execute(r).await.unwrap(),
        401,
        "malformed-authentication",
    )
    .await;
    // A second signature next to a valid one is ambiguous, so it is refused, not resolved.
    let r = app
        .post(&k(), &good)
        .header("X-Signature", "keyId=k-new,v1=00")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "malformed-authentication").await;
    let mut missing = app.post(&k(), &good).build().unwrap();
    missing.headers_mut().remove("X-Signature");
    assert_problem(
        app.http.execute(missing).await.unwrap(),
        401,
        "authentication-required",
    )
    .await;
    let mut missing = app.post(&k(), &good).build().unwrap();
    missing.headers_mut().remove("X-Merchant-Id");
    assert_problem(
        app.http.execute(missing).await.unwrap(),
        401,
        "authentication-required",
    )
    .await;
    let mut missing = app.post(&k(), &good).build().unwrap();
    missing.headers_mut().remove("X-Timestamp");
    assert_problem(
        app.http.execute(missing).await.unwrap(),
        401,
        "authentication-required",
    )
    .await;
    let r = with_header(app.post(&k(), &good), "X-Timestamp", "yesterday");
    assert_problem(
        app.http.execute(r).await.unwrap(),
        401,
        "malformed-authentication",
    )
    .await;
    let r = app
        .signed_post(
            MERCHANT,
            "k-new",
            "wrong-secret-0123456789abcdef0123",
            &k(),
            &good,
            now(),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "invalid-signature").await;
    let r = app
        .signed_post("nobody", "k-new", SECRET_NEW, &k(), &good, now())
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "invalid-signature").await;
    let r = app
        .signed_post(MERCHANT, "k-new", SECRET_NEW, &k(), &good, now() - 301)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "stale-timestamp").await;
    let r = app
        .signed_post(MERCHANT, "k-new", SECRET_NEW, &k(), &good, now() + 301)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "stale-timestamp").await;
    // Body signed, then tampered with in transit.
    let mut tampered = app.post(&k(), &good).build().unwrap();
    *tampered.body_mut() = Some(body("acc-5", "1000.00").into());
    assert_problem(
        app.http.execute(tampered).await.unwrap(),
        401,
        "invalid-signature",
    )
    .await;

    // Headers that are not authentication.
    let mut no_key = app.post("x", &good).build().unwrap();
    no_key.headers_mut().remove("Idempotency-Key");
    assert_problem(
        app.http.execute(no_key).await.unwrap(),
        400,
        "missing-header",
    )
    .await;
    let r = app.post("bad key with spaces", &good).send().await.unwrap();
    assert_problem(r, 400, "invalid-header").await;
    let r = with_header(app.post(&k(), &good), "Content-Type", "text/plain");
    assert_problem(
        app.http.execute(r).await.unwrap(),
        415,
        "unsupported-media-type",
    )
    .await;

    // Size.
    let huge = format!(
        r#"{{"account_id":"a","amount":"1.00","currency":"EUR","type":"credit","description":"{}"}}"#,
        "x".repeat(20_000)
    );
    assert_problem(
        app.post(&k(), &huge).send().await.unwrap(),
        413,
        "payload-too-large",
    )
    .await;
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(huge.clone())];
    let streamed = app
        .post(&k(), &huge)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(streamed, 413, "payload-too-large").await;

    // Body syntax (400) and semantics (422).
    let cases_400 = [
        ("{not json", "malformed-json", None),
        ("[1,2]", "malformed-json", None),
        (
            r#"{"amount":"1.00","currency":"EUR","type":"credit"}"#,
            "missing-field",
            Some("account_id"),
        ),
        (
            r#"{"account_id":"a","amount":1.5,"currency":"EUR","type":"credit"}"#,
            "invalid-field",
            Some("amount"),
        ),
        (
            r#"{"account_id":"a","amount":"1.00","currency":"EUR","type":"refund"}"#,
            "invalid-field",
            Some("type"),
        ),
        (
            r#"{"account_id":"a b","amount":"1.00","currency":"EUR","type":"credit"}"#,
            "invalid-field",
            Some("account_id"),
        ),
        (
            r#"{"account_id":"a","amount":"1.00","currency":"EUR","type":"credit","extra":1}"#,
            "unknown-field",
            None,
        ),
        (
            r#"{"account_id":"a","amount":"1.00","currency":"EUR","type":"credit","callback_url":"http://x"}"#,
            "invalid-field",
            Some("callback_url"),
        ),
    ];
    for (b, slug, field) in cases_400 {
        let problem = assert_problem(app.post(&k(), b).send().await.unwrap(), 400, slug).await;
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "{b}");
        }
    }
    let cases_422 = [
        ("0.00", "EUR", "AMOUNT_ZERO"),
        ("-1.00", "EUR", "AMOUNT_NEGATIVE"),
        ("1.001", "EUR", "AMOUNT_TOO_PRECISE"),
        ("1.5", "JPY", "AMOUNT_TOO_PRECISE"),
        ("99999999999999999999", "EUR", "AMOUNT_OVERFLOW"),
        ("1.00", "XYZ", "CURRENCY_UNKNOWN"),
    ];
    for (amount, currency, reason) in cases_422 {
        let b = format!(
            r#"{{"account_id":"a","amount":"{amount}","currency":"{currency}","type":"debit"}}"#
        );
        let problem = assert_problem(
            app.post(&k(), &b).send().await.unwrap(),
            422,
            "unprocessable-amount-or-currency",
        )
        .await;
        assert_eq!(problem["reason_code"], reason, "{amount} {currency}");
    }

    // Routing.
    let r = app
        .http
        .delete(app.url("/v1/transactions"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method-not-allowed").await;
    let r = app.http.get(app.url("/v2/anything")).send().await.unwrap();
    assert_problem(r, 404, "not-found").await;

    // Nothing above produced anything; a final good request proves the reader would see one.
    let ok = app.post(&k(), &good).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 202);
    let records = app.requests(2, Duration::from_secs(8)).await;
    assert_eq!(
        records.len(),
        1,
        "only the final good request may reach Kafka"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_merchant_over_its_rate_limit_gets_429_with_retry_after() {
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    s.merchants[0].rate_limit = Some(ingress::config::RateLimitSettings {
        per_second: 1,
        burst: 2,
    });
    let app = TestApp::start_with(env, s).await;
    let b = body("acc-6", "1.00");
    // Ten at once against a burst of 2: the limiter runs before publishing, so at most the
    // burst (plus a refill if the machine is very slow) gets through, and the rest get 429.
    let sends = (0..10).map(|_| app.post(&unique_key(), &b).send());
    let responses = futures::future::join_all(sends).await;
    let mut accepted = 0;
    let mut limited = 0;
    for r in responses {
        let r = r.unwrap();
        match r.status().as_u16() {
            202 => accepted += 1,
            429 => {
                limited += 1;
                assert!(r.headers().contains_key("retry-after"));
                assert_problem(r, 429, "rate-limited").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(accepted >= 2, "the burst is admitted");
    assert!(limited >= 1, "requests beyond the burst are limited");
    // The other merchant is unaffected.
    let other = app
        .signed_post(OTHER_MERCHANT, "k1", SECRET_OTHER, &unique_key(), &b, now())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 202);
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let app = TestApp::start().await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = ledgerline_testkit::wait::until("readiness", Duration::from_secs(20), || async {
        let r = app.http.get(app.url("/readyz")).send().await.ok()?;
        (r.status().as_u16() == 200).then_some(())
    })
    .await;
    assert!(ready.is_ok());
    assert_eq!(
        app.post(&unique_key(), &body("acc-7", "1.00"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ledgerline_ingress_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("ledgerline_ingress_produce_duration_seconds"));
    app.stop().await;
}

/// The request with `name` replaced (reqwest's builder appends, which would send two copies).
fn with_header(builder: reqwest::RequestBuilder, name: &str, value: &str) -> reqwest::Request {
    let mut request = builder.build().unwrap();
    request.headers_mut().insert(
        reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    request
}
