//! Runs the `reconciler` binary over the verified window, when one is built:
//! `reconciler run --from <since> --to <now> --json`. A missing binary, or one that does not
//! support that command yet, is reported as such; it does not fail the verification.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Which reconciler to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Do not run one.
    Off,
    /// Look next to this executable and in `target/{release,debug}`.
    Auto,
    /// This binary.
    Binary(PathBuf),
}

/// What the reconciler said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcilerResult {
    /// `off`, `absent`, `unsupported`, `clean`, `not_clean` or `error`.
    pub status: String,
    /// The binary that ran.
    pub binary: Option<String>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Its JSON output, when it printed JSON.
    pub output: Option<serde_json::Value>,
    /// A sentence for people.
    pub detail: String,
}

impl ReconcilerResult {
    fn simple(status: &str, detail: String) -> ReconcilerResult {
        ReconcilerResult {
            status: status.into(),
            binary: None,
            exit_code: None,
            output: None,
            detail,
        }
    }

    /// Whether the result must fail the verification: the reconciler ran and found drift, or
    /// failed in a way that is not "not implemented yet".
    pub fn fails(&self) -> bool {
        matches!(self.status.as_str(), "not_clean" | "error")
    }
}

/// Where `Auto` looks, in order.
pub fn candidates() -> Vec<PathBuf> {
    sibling_binaries("reconciler")
}

/// Where a workspace binary called `name` may be, in order: next to this executable, one
/// directory up (test binaries live in `target/<profile>/deps`), then `target/release` and
/// `target/debug` under the working directory.
pub fn sibling_binaries(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(name));
            if let Some(parent) = dir.parent() {
                out.push(parent.join(name));
            }
        }
    }
    for profile in ["release", "debug"] {
        out.push(Path::new("target").join(profile).join(name));
    }
    out
}

/// Runs the reconciler (bounded by `timeout`) over `[from, to]`, with `env` added to its
/// environment.
pub async fn run(
    choice: &Choice,
    env: &[(String, String)],
    from: OffsetDateTime,
    to: OffsetDateTime,
    timeout: Duration,
) -> ReconcilerResult {
    let binary = match choice {
        Choice::Off => {
            return ReconcilerResult::simple("off", "not run (--reconciler off)".into());
        }
        Choice::Binary(path) => path.clone(),
        Choice::Auto => match candidates().into_iter().find(|p| p.is_file()) {
            Some(path) => path,
            None => {
                return ReconcilerResult::simple(
                    "absent",
                    "no reconciler binary is built (looked next to loadtest and in \
                     target/release, target/debug); reconciliation was not run"
                        .into(),
                );
            }
        },
    };
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let mut command = tokio::process::Command::new(&binary);
    command
        .args(["run", "--from", &fmt(from), "--to", &fmt(to), "--json"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let shown = binary.display().to_string();
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => {
            return ReconcilerResult {
                binary: Some(shown),
                ..ReconcilerResult::simple(
                    "error",
                    format!("did not finish within {} s", timeout.as_secs()),
                )
            }
        }
        Ok(Err(error)) => {
            return ReconcilerResult {
                binary: Some(shown),
                ..ReconcilerResult::simple("error", format!("could not start: {error}"))
            }
        }
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json: Option<serde_json::Value> = serde_json::from_str(stdout.trim()).ok().or_else(|| {
        stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
    });
    let (status, detail) = classify(output.status.code(), json.as_ref(), &stderr);
    ReconcilerResult {
        status: status.into(),
        binary: Some(shown),
        exit_code: output.status.code(),
        output: json,
        detail,
    }
}

/// Reads a reconciler's answer: JSON with a verdict (`clean`, `status`, or a discrepancy
/// count) wins; otherwise the exit code decides. A skeleton or an unknown subcommand is
/// `unsupported`.
pub fn classify(
    exit_code: Option<i32>,
    json: Option<&serde_json::Value>,
    stderr: &str,
) -> (&'static str, String) {
    if let Some(v) = json {
        if let Some(clean) = v.get("clean").and_then(|c| c.as_bool()) {
            return verdict(clean);
        }
        if let Some(status) = v.get("status").and_then(|s| s.as_str()) {
            let s = status.to_ascii_lowercase();
            if s == "clean" || s == "ok" {
                return verdict(true);
            }
            if s.contains("drift") || s.contains("discrep") || s == "not_clean" || s == "dirty" {
                return verdict(false);
            }
        }
        for key in ["discrepancies", "discrepancy_count", "discrepancies_total"] {
            match v.get(key) {
                Some(serde_json::Value::Number(n)) => return verdict(n.as_u64() == Some(0)),
                Some(serde_json::Value::Array(items)) => return verdict(items.is_empty()),
                _ => {}
            }
        }
    }
    let lower = stderr.to_ascii_lowercase();
    let unsupported = lower.contains("not yet implemented")
        || lower.contains("unrecognized subcommand")
        || lower.contains("unexpected argument")
        || lower.contains("unknown argument");
    match exit_code {
        Some(0) => ("clean", "exited 0".into()),
        _ if unsupported => (
            "unsupported",
            format!(
                "the reconciler does not support `run --from --to --json` yet: {}",
                telling_line(stderr)
            ),
        ),
        Some(code) if json.is_some() => ("not_clean", format!("exited {code}")),
        Some(code) => ("error", format!("exited {code}: {}", telling_line(stderr))),
        None => ("error", "killed by a signal".into()),
    }
}

/// The line of `stderr` that says what went wrong: log lines come first and the error last, so
/// the last line naming an error or a failure, else the last line.
fn telling_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("failed")
        })
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

fn verdict(clean: bool) -> (&'static str, String) {
    if clean {
        ("clean", "no discrepancies".into())
    } else {
        ("not_clean", "the reconciler reported discrepancies".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_skeleton_reconciler_is_unsupported_not_a_failure() {
        let (status, _) = classify(
            Some(2),
            None,
            "not yet implemented: see the project's issues\n",
        );
        assert_eq!(status, "unsupported");
        let r = ReconcilerResult::simple(status, String::new());
        assert!(!r.fails());
    }

    #[test]
    fn json_verdicts_are_read_from_common_fields() {
        assert_eq!(
            classify(Some(0), Some(&json!({"clean": true})), "").0,
            "clean"
        );
        assert_eq!(
            classify(Some(1), Some(&json!({"clean": false})), "").0,
            "not_clean"
        );
        assert_eq!(
            classify(Some(0), Some(&json!({"status": "clean"})), "").0,
            "clean"
        );
        assert_eq!(
            classify(Some(0), Some(&json!({"discrepancies": []})), "").0,
            "clean"
        );
        assert_eq!(
            classify(
                Some(1),
                Some(&json!({"discrepancies": [{"kind": "x"}]})),
                ""
            )
            .0,
            "not_clean"
        );
        assert_eq!(
            classify(Some(1), Some(&json!({"discrepancy_count": 3})), "").0,
            "not_clean"
        );
    }

    #[test]
    fn a_failure_is_described_by_its_error_line_not_the_logs_before_it() {
        let stderr = "INFO sqlx::postgres::notice: relation already exists, skipping\n\
                      reconciler: run failed: mongodb: connection interrupted\n";
        let (status, detail) = classify(Some(2), None, stderr);
        assert_eq!(status, "error");
        assert_eq!(
            detail,
            "exited 2: reconciler: run failed: mongodb: connection interrupted"
        );
    }

    #[test]
    fn without_json_the_exit_code_decides() {
        assert_eq!(classify(Some(0), None, "").0, "clean");
        assert_eq!(classify(Some(3), None, "boom").0, "error");
        assert_eq!(
            classify(Some(1), Some(&json!({"window": 1})), "").0,
            "not_clean"
        );
        assert!(ReconcilerResult::simple("error", String::new()).fails());
    }

    #[tokio::test]
    async fn a_missing_binary_is_reported_as_an_error_to_start_it() {
        let r = run(
            &Choice::Binary("/nonexistent/reconciler".into()),
            &[],
            OffsetDateTime::now_utc(),
            OffsetDateTime::now_utc(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r.status, "error");
        assert!(r.detail.contains("could not start"));
        let off = run(
            &Choice::Off,
            &[],
            OffsetDateTime::now_utc(),
            OffsetDateTime::now_utc(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(off.status, "off");
    }
}
