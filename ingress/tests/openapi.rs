//! `docs/openapi.yaml` against the running ingress (real Kafka, Redis, PostgreSQL, MongoDB and
//! the downstream stages in-process): every documented operation answers, every answer —
//! success or problem — is documented for its operation and matches its schema and headers,
//! nothing undocumented answers, and the spec's own examples are valid and accepted.

mod support;

use ledgerline_contracts::signing;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::downstream::start_downstream;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SPEC: &str = include_str!("../../docs/openapi.yaml");

/// The spec as JSON, with the look-ups the checks need.
struct Spec {
    doc: Value,
}

/// One HTTP answer, kept whole so it can be checked and then inspected.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The problem's `type` slug, if this is a problem document.
    fn problem_slug(&self) -> Option<String> {
        self.json()["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("https://ledgerline.dev/problems/"))
            .map(str::to_string)
    }
}

impl Spec {
    fn load() -> Spec {
        let doc: Value = serde_norway::from_str(SPEC).expect("docs/openapi.yaml is valid YAML");
        Spec { doc }
    }

    /// Follows local `$ref`s (`#/a/b`) until a value that is not a reference.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references are used: {reference}"));
            value = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {reference}"));
        }
        value
    }

    fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.push((path.clone(), method.to_ascii_uppercase()));
            }
        }
        out
    }

    fn operation(&self, template: &str, method: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(template)?
            .get(method.to_ascii_lowercase())
    }

    /// The documented path template `path` is an instance of, if any.
    fn template_of(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .find(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(t, s)| {
                        (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                    })
            })
            .cloned()
    }

    /// A validator for `schema`, whose references resolve inside the spec.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.doc["components"],
        });
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema}"))
    }

    fn assert_valid(&self, schema: &Value, instance: &Value, what: &str) {
        let validator = self.validator(schema);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not match its schema: {errors:#?}\n{instance:#}"
        );
    }

    /// Checks a response against a documented response object: media type, body schema and
    /// every documented header (present and matching its schema).
    fn assert_response_matches(&self, documented: &Value, answer: &Answer, what: &str) {
        let documented = self.resolve(documented);
        if let Some(headers) = documented["headers"].as_object() {
            for (name, header) in headers {
                let header = self.resolve(header);
                let value = answer
                    .headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("{what}: documented header {name} is missing"));
                self.assert_valid(
                    &header["schema"],
                    &Value::String(value.into()),
                    &format!("{what}: header {name}"),
                );
            }
        }
        let Some(content) = documented["content"].as_object() else {
            assert!(answer.body.is_empty(), "{what}: undocumented body");
            return;
        };
        let actual = answer.content_type();
        let essence = actual.split(';').next().unwrap_or_default().trim();
        let media = content
            .get(actual)
            .or_else(|| content.get(essence))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: content type {actual:?} is not documented (documented: {:?})",
                    content.keys().collect::<Vec<_>>()
                )
            });
        if essence.ends_with("json") {
            let body: Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
            self.assert_valid(&media["schema"], &body, what);
        }
    }

    /// Asserts that `answer` to `method path` is documented for that operation and matches it.
    fn assert_documented(&self, method: &str, path: &str, answer: &Answer) {
        let template = self
            .template_of(path.split('?').next().unwrap_or(path))
            .unwrap_or_else(|| panic!("{method} {path} answered but its path is undocumented"));
        let operation = self
            .operation(&template, method)
            .unwrap_or_else(|| panic!("{method} {template} answered but is undocumented"));
        let status = answer.status.to_string();
        let documented = operation["responses"].get(&status).unwrap_or_else(|| {
            panic!(
                "{method} {template} answered {status} ({:?}), which it does not document",
                answer.problem_slug()
            )
        });
        self.assert_response_matches(documented, answer, &format!("{method} {path} → {status}"));
    }

    /// Asserts that an answer to an undocumented method or path is the documented `404` or
    /// `405` that the spec promises for those.
    fn assert_undocumented_refused(&self, method: &str, path: &str, answer: &Answer) {
        let what = format!("{method} {path} → {}", answer.status);
        let under_transactions =
            path == "/v1/transactions" || path.starts_with("/v1/transactions/");
        let name = match answer.status {
            404 => "NotFound",
            405 if under_transactions => "MethodNotAllowed",
            _ => panic!("{what}: an undocumented operation must answer 404 or 405 ({answer:?})"),
        };
        if method == "HEAD" {
            // A HEAD answer has the headers of the GET but no body.
            return;
        }
        let documented = &self.doc["components"]["responses"][name];
        self.assert_response_matches(documented, answer, &what);
    }

    /// Every example of a request body of `POST /v1/transactions`, by name.
    fn request_examples(&self) -> Vec<(String, Value)> {
        let media = &self.doc["paths"]["/v1/transactions"]["post"]["requestBody"]["content"]
            ["application/json"];
        media["examples"]
            .as_object()
            .expect("request examples")
            .iter()
            .map(|(name, example)| (name.clone(), self.resolve(example)["value"].clone()))
            .collect()
    }
}

/// A request signed for `merchant-1` with any method, path and body.
fn signed(
    app: &TestApp,
    method: &str,
    path: &str,
    idempotency_key: Option<&str>,
    body: &str,
) -> reqwest::RequestBuilder {
    let ts = now().to_string();
    let key = idempotency_key.unwrap_or_default();
    let canonical = signing::canonical_string(method, path, &ts, key, body.as_bytes());
    let signature =
        signing::signature_header("k-new", &signing::sign(SECRET_NEW.as_bytes(), &canonical));
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("X-Merchant-Id", MERCHANT)
        .header("X-Timestamp", ts)
        .header("X-Signature", signature);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if !body.is_empty() {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    request
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    Answer::of(request.send().await.expect("request sent")).await
}

async fn signed_get(app: &TestApp, path: &str) -> Answer {
    send(signed(app, "GET", path, None, "")).await
}

/// Sends raw bytes and reads the answer's status line and body: for requests no HTTP client
/// sends (a body that never finishes).
async fn raw_exchange(app: &TestApp, request: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    // The server answers and then closes (the request cannot be completed), so read to EOF.
    loop {
        let n = stream.read(&mut buffer).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
        if let Some(at) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..at]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= at + 4 + length {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = serde_json::from_slice(&received[at + 4..at + 4 + length])
                    .unwrap_or(Value::Null);
                return (status, body);
            }
        }
    }
    panic!(
        "connection closed without a full answer: {}",
        String::from_utf8_lossy(&received)
    );
}

/// The request with `name` set to `value` (the builder's `header` appends a second copy).
fn replaced(builder: reqwest::RequestBuilder, name: &str, value: &str) -> reqwest::Request {
    let mut request = builder.build().unwrap();
    request.headers_mut().insert(
        reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    request
}

/// Asserts that `answer` is the problem `slug`, documented for its operation, and notes it.
fn record(
    spec: &Spec,
    seen: &mut BTreeSet<(String, u16, String)>,
    method: &str,
    path: &str,
    answer: &Answer,
    slug: &str,
) {
    assert_eq!(
        answer.problem_slug().as_deref(),
        Some(slug),
        "{method} {path}: {answer:?}"
    );
    spec.assert_documented(method, path, answer);
    let template = spec.template_of(path).unwrap();
    seen.insert((format!("{method} {template}"), answer.status, slug.into()));
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_spec_is_openapi_3_1_and_every_example_matches_its_schema() {
    let spec = Spec::load();
    assert_eq!(spec.doc["openapi"], "3.1.0");
    let mut checked = 0;
    // Media objects (request bodies and responses, inline or shared) and parameters.
    let mut media: Vec<(String, &Value)> = Vec::new();
    for (path, item) in spec.doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            for (kind, m) in operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                media.push((format!("{at} request {kind}"), m));
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                for (kind, m) in spec.resolve(response)["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    media.push((format!("{at} {status} {kind}"), m));
                }
            }
        }
    }
    for (name, response) in spec.doc["components"]["responses"].as_object().unwrap() {
        for (kind, m) in response["content"].as_object().into_iter().flatten() {
            media.push((format!("components.responses.{name} {kind}"), m));
        }
    }
    for (what, m) in media {
        let schema = &m["schema"];
        let mut examples: Vec<(String, Value)> = Vec::new();
        if let Some(example) = m.get("example") {
            examples.push((what.clone(), example.clone()));
        }
        for (name, example) in m["examples"].as_object().into_iter().flatten() {
            examples.push((format!("{what} example {name}"), example["value"].clone()));
        }
        for (name, example) in examples {
            if schema.get("type") == Some(&json!("string")) {
                assert!(example.is_string(), "{name}");
            } else {
                spec.assert_valid(schema, &example, &name);
            }
            checked += 1;
        }
    }
    for (name, parameter) in spec.doc["components"]["parameters"].as_object().unwrap() {
        if let Some(example) = parameter.get("example") {
            spec.assert_valid(&parameter["schema"], example, &format!("parameter {name}"));
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} examples found");
}

#[test]
fn every_signed_operation_documents_the_signature_headers() {
    let spec = Spec::load();
    for (path, method) in spec.operations() {
        let operation = spec.operation(&path, &method).unwrap();
        let names: BTreeSet<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                spec.resolve(p)["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let signed = path.starts_with("/v1/");
        for header in ["X-Merchant-Id", "X-Timestamp", "X-Signature"] {
            assert_eq!(
                names.contains(header),
                signed,
                "{method} {path}: {header} documented = {}",
                names.contains(header)
            );
        }
        assert_eq!(
            names.contains("Idempotency-Key"),
            method == "POST",
            "{method} {path}: Idempotency-Key belongs to POST only"
        );
        if signed {
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path}: a signed operation documents its 401"
            );
        }
    }
}

// The spec's request examples, signed, are accepted; every success answer of every operation
// — through the processor, the ledger-writer and the audit — matches its documented schema.
#[tokio::test]
async fn every_documented_operation_answers_as_its_schema_says_through_the_whole_pipeline() {
    let spec = Spec::load();
    let app = TestApp::start().await;
    let downstream = start_downstream(&app).await;

    // Every request example is accepted.
    let mut accepted = Vec::new();
    for (name, example) in spec.request_examples() {
        let body = serde_json::to_string(&example).unwrap();
        let key = unique_key();
        let answer = send(signed(&app, "POST", "/v1/transactions", Some(&key), &body)).await;
        assert_eq!(answer.status, 202, "example {name}: {answer:?}");
        spec.assert_documented("POST", "/v1/transactions", &answer);
        let id = answer.json()["transaction_id"]
            .as_str()
            .unwrap()
            .to_string();
        accepted.push((name, key, body, id));
    }
    assert!(accepted.len() >= 2, "the spec has several request examples");
    // A retry, so the status shows a DUPLICATE attempt too.
    let (_, key, body, first_id) = accepted[0].clone();
    let retry = send(signed(&app, "POST", "/v1/transactions", Some(&key), &body)).await;
    spec.assert_documented("POST", "/v1/transactions", &retry);
    assert_eq!(retry.json()["transaction_id"], first_id.as_str());

    // Each transaction reaches a final state; every status answer on the way is documented.
    for (name, _, _, id) in &accepted {
        let path = format!("/v1/transactions/{id}");
        let last = ledgerline_testkit::wait::until(name, Duration::from_secs(90), || async {
            let answer = signed_get(&app, &path).await;
            spec.assert_documented("GET", &path, &answer);
            let state = answer.json()["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            ["POSTED", "DECLINED", "REJECTED"]
                .contains(&state.as_str())
                .then_some(answer)
        })
        .await
        .unwrap();
        assert_eq!(last.json()["source"], "live");
    }

    // Events: all three stages recorded, and the retry's decision too.
    let events_path = format!("/v1/transactions/{first_id}/events");
    let events = ledgerline_testkit::wait::until("events", Duration::from_secs(90), || async {
        let answer = signed_get(&app, &events_path).await;
        spec.assert_documented("GET", &events_path, &answer);
        let events = answer.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let types: BTreeSet<String> = events
            .iter()
            .filter_map(|e| e["event_type"].as_str().map(str::to_string))
            .collect();
        // Requested and Decided for the original and the retry, then Posted.
        (events.len() == 5 && types.len() == 3).then_some(())
    })
    .await;
    assert!(events.is_ok(), "{events:?}");

    // Balances of an account that posted, and of one that never did.
    let account = accepted[0].2.clone();
    let account: Value = serde_json::from_str(&account).unwrap();
    for account in [account["account_id"].as_str().unwrap(), "acc-never-posted"] {
        let path = format!("/v1/accounts/{account}/balance");
        let answer = signed_get(&app, &path).await;
        assert_eq!(answer.status, 200);
        spec.assert_documented("GET", &path, &answer);
    }

    // The ledger answers once the read model has lost the transaction.
    let forgotten = app
        .env
        .forget_redis_matching(&format!("*{first_id}*"))
        .await
        .unwrap();
    assert!(forgotten > 0, "no read-model keys of {first_id}");
    let path = format!("/v1/transactions/{first_id}");
    let from_ledger = signed_get(&app, &path).await;
    spec.assert_documented("GET", &path, &from_ledger);
    assert_eq!(from_ledger.json()["source"], "ledger");

    // Operations endpoints.
    let ready = ledgerline_testkit::wait::until("ready", Duration::from_secs(30), || async {
        let answer = send(app.http.get(app.url("/readyz"))).await;
        spec.assert_documented("GET", "/readyz", &answer);
        (answer.status == 200).then_some(())
    })
    .await;
    assert!(ready.is_ok());
    for path in ["/healthz", "/metrics"] {
        let answer = send(app.http.get(app.url(path))).await;
        assert_eq!(answer.status, 200);
        spec.assert_documented("GET", path, &answer);
    }
    downstream.stop().await;
    app.stop().await;
}

// Signed probes of documented and undocumented methods and paths: documented operations answer
// as documented; everything else answers the 404 or 405 the spec promises.
#[tokio::test]
async fn every_route_the_server_answers_is_documented_and_nothing_else_answers() {
    let spec = Spec::load();
    let app = TestApp::start().await;
    let id = uuid::Uuid::new_v4();
    let paths = [
        "/".to_string(),
        "/v1".into(),
        "/v1/".into(),
        "/v1/transactions".into(),
        "/v1/transactions/".into(),
        format!("/v1/transactions/{id}"),
        format!("/v1/transactions/{id}/"),
        format!("/v1/transactions/{id}/events"),
        format!("/v1/transactions/{id}/events/"),
        format!("/v1/transactions/{id}/postings"),
        "/v1/accounts".into(),
        "/v1/accounts/acc-probe".into(),
        "/v1/accounts/acc-probe/balance".into(),
        "/v1/accounts/acc-probe/balance/".into(),
        "/v1/accounts/acc-probe/transactions".into(),
        "/v1/balance".into(),
        "/v2/transactions".into(),
        "/healthz".into(),
        "/healthz/".into(),
        "/readyz".into(),
        "/metrics".into(),
        "/metrics/ingress".into(),
        "/openapi.yaml".into(),
    ];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
    let body = body("acc-probe", "1.00");
    let mut documented_answers = BTreeSet::new();
    for path in &paths {
        for method in methods {
            let with_body = matches!(method, "POST" | "PUT" | "PATCH");
            let key = with_body.then(unique_key);
            let request = signed(
                &app,
                method,
                path,
                key.as_deref(),
                if with_body { &body } else { "" },
            );
            let answer = send(request).await;
            let template = spec.template_of(path);
            match template.as_deref().and_then(|t| spec.operation(t, method)) {
                Some(_) => {
                    spec.assert_documented(method, path, &answer);
                    documented_answers.insert((template.unwrap(), method.to_string()));
                }
                None => spec.assert_undocumented_refused(method, path, &answer),
            }
        }
    }
    // Every documented operation was among the probes.
    let operations: BTreeSet<(String, String)> = spec.operations().into_iter().collect();
    assert_eq!(documented_answers, operations);
    app.stop().await;
}

// Drives every client error the server can produce on each operation and checks that its
// status and `type` are documented for that operation and that the body matches the schema.
#[tokio::test]
async fn every_problem_the_server_produces_is_documented_for_its_operation() {
    let spec = Spec::load();
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut settings = settings(&env);
    // A one-token bucket makes 429 reachable; a short body deadline makes 408 quick.
    settings.merchants[1].rate_limit = Some(ingress::config::RateLimitSettings {
        per_second: 1,
        burst: 1,
    });
    settings.http.request_timeout_ms = 1_000;
    let app = TestApp::start_with(env, settings).await;
    let good = body("acc-problems", "1.00");
    let post = "/v1/transactions";
    let mut seen: BTreeSet<(String, u16, String)> = BTreeSet::new();

    // POST /v1/transactions: headers, signature, body, semantics.
    let cases: Vec<(reqwest::Request, &str)> =
        vec![
        (
            replaced(
                signed(&app, "POST", post, Some(&unique_key()), &good),
                "Content-Type",
                "text/plain",
            ),
            "unsupported-media-type",
        ),
        (
            signed(&app, "POST", post, None, &good).build().unwrap(),
            "missing-header",
        ),
        (
            signed(&app, "POST", post, Some("not a key"), &good)
                .build()
                .unwrap(),
            "invalid-header",
        ),
        (
            app.signed_post(
                MERCHANT,
                "k-new",
                "wrong-secret-0123456789abcdef0123",
                &unique_key(),
                &good,
                now(),
            )
            .build()
            .unwrap(),
            "invalid-signature",
        ),
        (
            app.signed_post(
                MERCHANT,
                "k-new",
                SECRET_NEW,
                &unique_key(),
                &good,
                now() - 3_600,
            )
            .build()
            .unwrap(),
            "stale-timestamp",
        ),
        (
            app.http
                .post(app.url(post))
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", unique_key())
                .body(good.clone())
                .build()
                .unwrap(),
            "authentication-required",
        ),
        (
            replaced(app.post(&unique_key(), &good), "X-Timestamp", "soon"),
            "malformed-authentication",
        ),
        (
            app.post(&unique_key(), &"x".repeat(20_000)).build().unwrap(),
            "payload-too-large",
        ),
        (
            app.post(&unique_key(), "{not json").build().unwrap(),
            "malformed-json",
        ),
        (
            app.post(
                &unique_key(),
                r#"{"amount":"1.00","currency":"EUR","type":"credit"}"#,
            )
            .build()
            .unwrap(),
            "missing-field",
        ),
        (
            app.post(
                &unique_key(),
                r#"{"account_id":"a","amount":"1.00","currency":"EUR","type":"credit","note":"x"}"#,
            )
            .build()
            .unwrap(),
            "unknown-field",
        ),
        (
            app.post(
                &unique_key(),
                r#"{"account_id":"a","amount":1,"currency":"EUR","type":"credit"}"#,
            )
            .build()
            .unwrap(),
            "invalid-field",
        ),
    ];
    for (request, slug) in cases {
        let answer = Answer::of(app.http.execute(request).await.unwrap()).await;
        record(&spec, &mut seen, "POST", post, &answer, slug);
    }
    for (amount, currency, reason) in [
        ("1.00", "XYZ", "CURRENCY_UNKNOWN"),
        ("0.00", "EUR", "AMOUNT_ZERO"),
        ("-1.00", "EUR", "AMOUNT_NEGATIVE"),
        ("1.001", "EUR", "AMOUNT_TOO_PRECISE"),
        ("99999999999999999999", "EUR", "AMOUNT_OVERFLOW"),
    ] {
        let b = format!(
            r#"{{"account_id":"a","amount":"{amount}","currency":"{currency}","type":"credit"}}"#
        );
        let answer = send(app.post(&unique_key(), &b)).await;
        record(
            &spec,
            &mut seen,
            "POST",
            post,
            &answer,
            "unprocessable-amount-or-currency",
        );
        assert_eq!(answer.json()["reason_code"], reason);
    }
    // 429: the second merchant's bucket holds one token, refilled once a second.
    let limited = ledgerline_testkit::wait::until("429", Duration::from_secs(30), || async {
        let answer = send(app.signed_post(
            OTHER_MERCHANT,
            "k1",
            SECRET_OTHER,
            &unique_key(),
            &good,
            now(),
        ))
        .await;
        (answer.status == 429).then_some(answer)
    })
    .await
    .unwrap();
    record(&spec, &mut seen, "POST", post, &limited, "rate-limited");
    // 408: a body that never finishes.
    let (status, problem) = raw_exchange(
        &app,
        "POST /v1/transactions HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{\"account_id\"",
    )
    .await;
    assert_eq!((status, problem["status"].as_u64()), (408, Some(408)));
    spec.assert_valid(
        &spec.resolve(&spec.operation(post, "POST").unwrap()["responses"]["408"])["content"]
            ["application/problem+json"]["schema"],
        &problem,
        "408",
    );
    seen.insert((format!("POST {post}"), 408, "request-timeout".into()));

    // The three GETs: signature problems, unknown resources, oversized and unfinished bodies.
    let id = uuid::Uuid::new_v4();
    for path in [
        format!("/v1/transactions/{id}"),
        format!("/v1/transactions/{id}/events"),
        "/v1/accounts/acc-problems/balance".to_string(),
    ] {
        let unsigned = send(app.http.get(app.url(&path))).await;
        record(
            &spec,
            &mut seen,
            "GET",
            &path,
            &unsigned,
            "authentication-required",
        );
        let mut stale = signed(&app, "GET", &path, None, "").build().unwrap();
        stale
            .headers_mut()
            .insert("X-Timestamp", "1717243200".parse().unwrap());
        let stale = Answer::of(app.http.execute(stale).await.unwrap()).await;
        record(&spec, &mut seen, "GET", &path, &stale, "stale-timestamp");
        let malformed = replaced(signed(&app, "GET", &path, None, ""), "X-Signature", "v1=00");
        let malformed = Answer::of(app.http.execute(malformed).await.unwrap()).await;
        record(
            &spec,
            &mut seen,
            "GET",
            &path,
            &malformed,
            "malformed-authentication",
        );
        let wrong_key = send(app.signed_get(MERCHANT, "k-retired", SECRET_NEW, &path)).await;
        record(
            &spec,
            &mut seen,
            "GET",
            &path,
            &wrong_key,
            "invalid-signature",
        );
        let huge = "x".repeat(20_000);
        let oversized = send(signed(&app, "GET", &path, None, &huge)).await;
        record(
            &spec,
            &mut seen,
            "GET",
            &path,
            &oversized,
            "payload-too-large",
        );
        let (status, problem) = raw_exchange(
            &app,
            &format!("GET {path} HTTP/1.1\r\nHost: ingress\r\nContent-Length: 100\r\n\r\n{{"),
        )
        .await;
        assert_eq!(status, 408, "{path}");
        assert_eq!(
            problem["type"],
            "https://ledgerline.dev/problems/request-timeout"
        );
        let template = spec.template_of(&path).unwrap();
        assert!(spec.operation(&template, "GET").unwrap()["responses"]["408"].is_object());
        seen.insert((format!("GET {template}"), 408, "request-timeout".into()));
    }
    for path in [
        format!("/v1/transactions/{id}"),
        "/v1/transactions/not-a-uuid".to_string(),
        format!("/v1/transactions/{id}/events"),
        "/v1/accounts/not%20an%20account/balance".to_string(),
    ] {
        let answer = signed_get(&app, &path).await;
        record(&spec, &mut seen, "GET", &path, &answer, "not-found");
    }

    // 405 on the transaction paths, with the methods each defines.
    for (method, path, allow) in [
        ("GET", "/v1/transactions", "POST"),
        ("DELETE", &*format!("/v1/transactions/{id}"), "GET"),
    ] {
        let answer = send(signed(&app, method, path, None, "")).await;
        assert_eq!(answer.problem_slug().as_deref(), Some("method-not-allowed"));
        assert_eq!(answer.headers["allow"], allow);
        spec.assert_response_matches(
            &spec.doc["components"]["responses"]["MethodNotAllowed"],
            &answer,
            "405",
        );
    }

    // Each operation produced every client error it can: 4 signature problems, 404/408/413.
    for operation in [
        "GET /v1/transactions/{transaction_id}",
        "GET /v1/transactions/{transaction_id}/events",
        "GET /v1/accounts/{account_id}/balance",
    ] {
        let slugs: BTreeSet<&str> = seen
            .iter()
            .filter(|(o, _, _)| o == operation)
            .map(|(_, _, s)| s.as_str())
            .collect();
        assert_eq!(slugs.len(), 7, "{operation}: {slugs:?}");
    }
    let post_slugs = seen
        .iter()
        .filter(|(o, _, _)| o.starts_with("POST"))
        .count();
    assert_eq!(post_slugs, 15, "{seen:#?}");
    app.stop().await;
}

// With every store out of reach, each operation answers the documented 503 with Retry-After,
// and readiness says so.
#[tokio::test]
async fn unreachable_stores_give_the_documented_503_on_every_operation() {
    let spec = Spec::load();
    let env = ledgerline_testkit::TestEnv::new().await.unwrap();
    let mut s = settings(&env);
    // Nothing listens on port 1.
    s.kafka.brokers = "127.0.0.1:1".into();
    s.kafka.message_timeout_ms = 1_000;
    s.publish.produce_timeout_ms = 1_500;
    s.redis.url = ledgerline_runtime::secret::Secret::new("redis://127.0.0.1:1/0".into());
    s.postgres.url =
        ledgerline_runtime::secret::Secret::new("postgres://postgres@127.0.0.1:1/none".into());
    s.postgres.acquire_timeout_ms = 500;
    s.mongo.uri = ledgerline_runtime::secret::Secret::new(
        "mongodb://127.0.0.1:1/?directConnection=true".into(),
    );
    s.mongo.server_selection_timeout_ms = 500;
    s.mongo.connect_timeout_ms = 500;
    let app = TestApp::start_with(env, s).await;

    let post = app.post(&unique_key(), &body("acc-down", "1.00"));
    let answer = send(post).await;
    assert_eq!(
        answer.problem_slug().as_deref(),
        Some("service-unavailable")
    );
    spec.assert_documented("POST", "/v1/transactions", &answer);
    let id = uuid::Uuid::new_v4();
    for path in [
        format!("/v1/transactions/{id}"),
        format!("/v1/transactions/{id}/events"),
        "/v1/accounts/acc-down/balance".to_string(),
    ] {
        let answer = signed_get(&app, &path).await;
        assert_eq!(
            answer.problem_slug().as_deref(),
            Some("service-unavailable"),
            "{path}"
        );
        spec.assert_documented("GET", &path, &answer);
    }
    let ready = send(app.http.get(app.url("/readyz"))).await;
    assert_eq!(ready.status, 503);
    spec.assert_documented("GET", "/readyz", &ready);
    app.stop().await;
}
