//! The integrator's examples (`docs/examples/`) run as a merchant would run them — bash with
//! curl and openssl, and Python's standard library — against the real ingress and the
//! downstream stages in-process; their signers reproduce `docs/signing-vectors.json`; and every
//! snippet `docs/integrating.md` quotes is still in its file.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use support::downstream::start_downstream;
use support::*;

/// The longest an example may run: its wait polls for up to 120 s.
const EXAMPLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(repository().join("docs/signing-vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What one run of an example printed.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs an example with the merchant's credentials in its environment. Asynchronous, so the
/// in-process ingress keeps serving while the example waits for it.
async fn run(app: Option<&TestApp>, program: &str, args: &[&str], secret: &str) -> Run {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(repository())
        .env("LEDGERLINE_MERCHANT_ID", MERCHANT)
        .env("LEDGERLINE_KEY_ID", "k-new")
        .env("LEDGERLINE_SECRET", secret)
        .env("LEDGERLINE_ATTEMPTS_MAX", "3");
    if let Some(app) = app {
        command.env("LEDGERLINE_API_URL", format!("http://{}", app.addr));
    }
    // The examples bound each attempt and their polling; this only turns a hang into a failure.
    command.kill_on_drop(true);
    let output = tokio::time::timeout(EXAMPLE_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {EXAMPLE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn bash(app: Option<&TestApp>, args: &[&str]) -> Run {
    let mut all = vec!["docs/examples/ledgerline.sh"];
    all.extend_from_slice(args);
    run(app, "bash", &all, SECRET_NEW).await
}

async fn python(app: Option<&TestApp>, args: &[&str], secret: &str) -> Run {
    let mut all = vec!["docs/examples/ledgerline_client.py"];
    all.extend_from_slice(args);
    run(app, "python3", &all, secret).await
}

#[tokio::test]
async fn the_python_signer_reproduces_every_signing_vector() {
    let run = python(
        None,
        &["check-vectors", "docs/signing-vectors.json"],
        SECRET_NEW,
    )
    .await;
    assert!(run.success, "{run:?}");
    let ok = run.stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert_eq!(ok, vectors().len(), "{run:?}");
}

#[tokio::test]
async fn the_bash_signer_reproduces_every_signing_vector() {
    for v in vectors() {
        let field = |name: &str| v[name].as_str().unwrap().to_string();
        let mut command = tokio::process::Command::new("bash");
        let output = command
            .current_dir(repository())
            .env("LEDGERLINE_SECRET", field("secret"))
            .env("LEDGERLINE_KEY_ID", field("key_id"))
            .args([
                "docs/examples/ledgerline.sh",
                "sign",
                &field("method"),
                &field("path"),
                &field("timestamp"),
                &field("idempotency_key"),
                &field("body"),
            ])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let header = String::from_utf8(output.stdout).unwrap();
        // A valid vector is reproduced exactly; the tampered one must not verify.
        assert_eq!(
            header.trim() == field("signature_header"),
            v["valid"].as_bool().unwrap(),
            "{}: {header}",
            field("name")
        );
    }
}

// The bash example submits, retries with the same key (same transaction), waits for POSTED
// and reads events and the balance; a refused request exits 1 with the problem.
#[tokio::test]
async fn the_bash_example_submits_a_transaction_that_reaches_its_final_state() {
    let app = TestApp::start().await;
    let downstream = start_downstream(&app).await;
    let key = unique_key();
    let account = "acc-bash-example";

    let first = bash(
        Some(&app),
        &["submit", account, "12.50", "EUR", "credit", &key],
    )
    .await;
    assert!(first.success, "{first:?}");
    let first = first.json();
    assert_eq!(first["status"], "RECEIVED");
    let id = first["transaction_id"].as_str().unwrap().to_string();
    let retry = bash(
        Some(&app),
        &["submit", account, "12.50", "EUR", "credit", &key],
    )
    .await;
    assert_eq!(
        retry.json()["transaction_id"],
        id.as_str(),
        "a retry is the same transaction"
    );

    let done = bash(Some(&app), &["wait", &id]).await;
    assert!(done.success, "{done:?}");
    let done = done.json();
    assert_eq!(done["state"], "POSTED");
    assert_eq!(done["balance_after"], "12.50");
    let status = bash(Some(&app), &["status", &id]).await.json();
    assert_eq!(status["transaction_id"], id.as_str());
    let events = ledgerline_testkit::wait::until(
        "three event types",
        std::time::Duration::from_secs(60),
        || async {
            let run = bash(Some(&app), &["events", &id]).await;
            let events = run.success.then(|| run.json())?;
            let posted = events["events"]
                .as_array()?
                .iter()
                .any(|e| e["event_type"] == "TransactionPosted");
            posted.then_some(events)
        },
    )
    .await
    .unwrap();
    assert_eq!(events["transaction_id"], id.as_str());
    let balance = bash(Some(&app), &["balance", account]).await.json();
    assert_eq!(balance["balances"][0]["balance"], "12.50", "applied once");

    let refused = bash(Some(&app), &["submit", account, "0.00", "EUR", "credit"]).await;
    assert!(!refused.success);
    assert!(refused.stderr.contains("HTTP 422"), "{refused:?}");
    assert!(refused.stderr.contains("AMOUNT_ZERO"), "{refused:?}");
    downstream.stop().await;
    app.stop().await;
}

// The Python example submits and waits for POSTED, reads status, events and balance; a wrong
// secret is reported as the documented 401 problem.
#[tokio::test]
async fn the_python_example_submits_a_transaction_that_reaches_its_final_state() {
    let app = TestApp::start().await;
    let downstream = start_downstream(&app).await;
    let key = unique_key();
    let account = "acc-python-example";

    let args = [
        "submit",
        account,
        "7.25",
        "EUR",
        "credit",
        "--key",
        &key,
        "--description",
        "Café ☕ order",
        "--wait",
    ];
    let done = python(Some(&app), &args, SECRET_NEW).await;
    assert!(done.success, "{done:?}");
    let done = done.json();
    assert_eq!(done["state"], "POSTED");
    assert_eq!(done["fields"]["description"], "Café ☕ order");
    let id = done["transaction_id"].as_str().unwrap().to_string();
    let again = python(Some(&app), &args, SECRET_NEW).await;
    assert_eq!(
        again.json()["transaction_id"],
        id.as_str(),
        "a retry is the same transaction"
    );

    let status = python(Some(&app), &["status", &id], SECRET_NEW)
        .await
        .json();
    assert_eq!(status["state"], "POSTED");
    let events = ledgerline_testkit::wait::until(
        "three event types",
        std::time::Duration::from_secs(60),
        || async {
            let run = python(Some(&app), &["events", &id], SECRET_NEW).await;
            let events = run.success.then(|| run.json())?;
            let posted = events["events"]
                .as_array()?
                .iter()
                .any(|e| e["event_type"] == "TransactionPosted");
            posted.then_some(events)
        },
    )
    .await
    .unwrap();
    assert_eq!(events["transaction_id"], id.as_str());
    let balance = python(Some(&app), &["balance", account], SECRET_NEW)
        .await
        .json();
    assert_eq!(balance["balances"][0]["balance"], "7.25", "applied once");

    let refused = python(
        Some(&app),
        &["status", &id],
        "not-the-secret-0123456789abcdef01234",
    )
    .await;
    assert!(!refused.success);
    assert!(refused.stderr.contains("HTTP 401"), "{refused:?}");
    assert!(refused.stderr.contains("invalid-signature"), "{refused:?}");
    downstream.stop().await;
    app.stop().await;
}

#[test]
fn every_snippet_quoted_in_integrating_md_is_in_its_example_file() {
    // A quoted snippet is a fenced block whose first line is `# docs/examples/<file>`; the rest
    // of the block must appear in that file exactly, so the guide cannot drift from the code
    // the tests above run.
    let guide = std::fs::read_to_string(repository().join("docs/integrating.md")).unwrap();
    let mut quoted = 0;
    let mut blocks = guide.split("```").skip(1).step_by(2);
    for block in blocks.by_ref() {
        let mut lines = block.lines().skip(1); // the fence's language tag
        let Some(first) = lines.next() else { continue };
        let Some(file) = first.strip_prefix("# docs/examples/") else {
            continue;
        };
        let snippet: Vec<&str> = lines.collect();
        let source =
            std::fs::read_to_string(repository().join("docs/examples").join(file.trim())).unwrap();
        assert!(
            source.contains(&snippet.join("\n")),
            "docs/integrating.md quotes lines that are not in docs/examples/{file}:\n{}",
            snippet.join("\n")
        );
        quoted += 1;
    }
    assert!(quoted >= 4, "only {quoted} quoted snippets found");
}
