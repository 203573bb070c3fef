//! One run of one scenario, start to verdict:
//!
//! ```text
//! stack ← own broker, Redis, PostgreSQL, MongoDB; the four services, ready
//! load starts (recording every 202); memory sampled every 500 ms
//! warm-up, then the scenario injects its faults (seeded moments) and undoes them
//! recovery ← time from the last undo until every transaction accepted before it is in the ledger
//!     and its ledger result in the audit trail
//! settle, stop the load
//! verify (drain, ledger, audit, balances, reconciler over the window) + order + front door
//!     + the scenario's own invariants + no service died on its own + clean SIGTERM exits
//! ```

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use loadtest::record::Recorder;
use loadtest::verify::{self, reconciler::Choice, VerifySettings};

use crate::error::FaultError;
use crate::hostile;
use crate::invariants;
use crate::load::{Counts, Load, LoadSettings};
use crate::scenario::{self, Ctx, Injected, Intensity, Scenario};
use crate::stack::{Binaries, Part, Stack};
use crate::timeline::{self, Mark, Timeline};

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The fault.
    pub scenario: Scenario,
    /// Seed of the fault moments and of the load.
    pub seed: u64,
    /// Where this run's logs and record file go.
    pub dir: PathBuf,
    /// Where the service binaries are.
    pub binaries: Binaries,
    /// The load's shape (its seed is replaced by `seed`).
    pub load: LoadSettings,
    /// How hard the faults hit.
    pub intensity: Intensity,
    /// Load before the first fault.
    pub warmup: Duration,
    /// Load after the last fault was undone.
    pub settle: Duration,
    /// Most time the pipeline may take to finish every accepted transaction afterwards.
    pub drain_timeout: Duration,
    /// Each consumer stage is a static group member (`kafka.group_instance_id`).
    pub static_membership: bool,
}

/// A run's verdict and figures.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// Its seed (re-running with it repeats the same fault moments and load).
    pub seed: u64,
    /// Faults injected.
    pub faults: u32,
    /// What the load saw.
    pub counts: Counts,
    /// Distinct transactions verified.
    pub transactions: u64,
    /// Invariants checked.
    pub invariants: Vec<String>,
    /// Broken invariants, first first.
    pub violations: Vec<String>,
    /// Seconds from the last fault's undo until everything accepted before it was in the
    /// ledger and its ledger result in the audit trail.
    pub recovery_secs: Option<f64>,
    /// Peak resident memory per service, KiB.
    pub rss_peak_kib: BTreeMap<String, u64>,
    /// What happened when.
    pub timeline: Vec<Mark>,
    /// The verifier's summary.
    pub verify_summary: String,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// The run's directory (logs, record file).
    pub dir: PathBuf,
}

impl Outcome {
    /// No invariant broken.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The seed, the timeline and the first violated invariant: what a failure prints.
    pub fn failure(&self) -> String {
        format!(
            "scenario {} FAILED (seed {}; re-run: faults run --scenario {} --seed {})\n\
             first violated invariant: {}\nfault timeline:\n{}\nlogs: {}",
            self.scenario.name(),
            self.seed,
            self.scenario.name(),
            self.seed,
            self.violations.first().map_or("none", String::as_str),
            timeline::render(&self.timeline),
            self.dir.display()
        )
    }
}

/// The invariants every scenario checks.
const COMMON_INVARIANTS: [&str; 7] = [
    "every 202 reaches a terminal state",
    "one ledger transaction per accepted transaction, matching its request",
    "postings sum to zero; balances equal postings",
    "audit complete with intact chains (reconciler clean)",
    "retries decided DUPLICATE, no double effect",
    "per-account order kept",
    "valid requests get only 202 or a retriable answer, never a hang",
];

/// Runs one scenario.
pub async fn run(settings: &RunSettings) -> Result<Outcome, FaultError> {
    let started = Instant::now();
    let mut stack = Stack::start(
        &settings.dir,
        &settings.binaries,
        settings.static_membership,
    )
    .await?;
    let record_file = settings.dir.join("accepted.jsonl");
    let recorder =
        Arc::new(Recorder::open(&record_file).map_err(|e| FaultError::Load(e.to_string()))?);
    // One second back: the window must hold every event of the run at second resolution.
    let since = OffsetDateTime::now_utc() - Duration::from_secs(1);
    let load_settings = LoadSettings {
        seed: settings.seed,
        ..settings.load.clone()
    };
    let timeline = Timeline::default();
    let load = Load::start(
        &load_settings,
        &stack.ingress_url,
        stack.merchant.clone(),
        recorder.clone(),
    );
    let steer = load.steer();
    timeline.mark("load started");
    let sampling = CancellationToken::new();
    let peaks = Arc::new(Mutex::new(BTreeMap::new()));
    let sampler = tokio::spawn(sample_memory(peaks.clone(), sampling.clone()));

    tokio::time::sleep(settings.warmup).await;
    let mut violations = Vec::new();
    let injected = {
        let mut ctx = Ctx {
            stack: &mut stack,
            steer: &steer,
            timeline: &timeline,
            rng: StdRng::seed_from_u64(settings.seed),
            recorder: &recorder,
            intensity: settings.intensity,
        };
        match scenario::inject(settings.scenario, &mut ctx).await {
            Ok(injected) => injected,
            Err(error) => {
                timeline.mark(format!("fault injection failed: {error}"));
                violations.push(format!("the pipeline did not come back: {error}"));
                Injected::default()
            }
        }
    };
    timeline.mark("last fault undone");
    let pool = stack.ledger.pool()?;
    let before_recovery = steer.accepted_so_far();
    let audit_db = stack
        .audit
        .database()
        .await
        .map_err(|e| FaultError::store("mongo", e))?;
    let recovery = {
        let pool = pool.clone();
        let timeout = settings.drain_timeout;
        tokio::spawn(async move {
            let Some(ledger) =
                invariants::until_in_ledger(&pool, &before_recovery, timeout).await?
            else {
                return Ok(None);
            };
            let left = timeout.saturating_sub(ledger);
            Ok::<_, FaultError>(
                invariants::until_audited(&audit_db, &before_recovery, left)
                    .await?
                    .map(|audit| ledger + audit),
            )
        })
    };
    tokio::time::sleep(settings.settle).await;
    let (counts, accepted) = load.stop().await;
    timeline.mark(format!(
        "load stopped: {} transactions accepted",
        counts.accepted
    ));
    let recovery_secs = match recovery.await {
        Ok(Ok(Some(d))) => Some(d.as_secs_f64()),
        Ok(Ok(None)) => {
            violations.push(format!(
                "transactions accepted before the fault ended were not all in the ledger and \
                 the audit trail {} s later",
                settings.drain_timeout.as_secs()
            ));
            None
        }
        Ok(Err(error)) => {
            violations.push(format!("recovery could not be measured: {error}"));
            None
        }
        Err(error) => {
            violations.push(format!("recovery watcher failed: {error}"));
            None
        }
    };

    let report = verify::run(&VerifySettings {
        record_file: record_file.clone(),
        since,
        postgres: stack.ledger.clone(),
        mongo: stack.audit.clone(),
        drain_timeout: settings.drain_timeout,
        poll_interval: Duration::from_millis(500),
        reconciler: Choice::Binary(stack.reconciler.clone()),
        reconciler_timeout: Duration::from_secs(300),
        reconciler_env: stack.reconciler_env(),
    })
    .await?;
    let found = verify_violations(&report, !injected.poison.is_empty());
    timeline.mark(format!(
        "verified: {}",
        match (report.passed, found.is_empty()) {
            (true, _) => "passed",
            (false, true) => "passed (the reconciler reports the dead letters, as it should)",
            (false, false) => "FAILED",
        }
    ));
    violations.extend(found);
    if let Some(broken) = invariants::order(&pool, &accepted).await? {
        violations.push(format!(
            "per-account order: on {} transaction {} was sent after {} yet posted before it",
            broken.account_id, broken.later, broken.earlier
        ));
    }
    if let Some(problem) = invariants::front_door(&counts) {
        violations.push(problem);
    }
    if !injected.poison.is_empty() {
        let missing =
            hostile::undead_lettered(&stack.kafka, &injected.poison, Duration::from_secs(20))
                .await?;
        for p in missing {
            violations.push(format!(
                "poison ({}) at {}[{}]@{} is in no dead-letter queue",
                p.what, p.topic, p.partition, p.offset
            ));
        }
    }
    violations.extend(injected.violations);
    for (part, service) in stack.services() {
        if let Some(status) = service.exited() {
            violations.push(format!(
                "{} died on its own ({status}); log: {}",
                part.binary(),
                service.log().display()
            ));
        }
    }
    sampling.cancel();
    let _ = sampler.await;
    let dir = stack.dir.clone();
    for unclean in stack.shutdown().await {
        violations.push(format!("graceful shutdown: {unclean}"));
    }
    let mut invariants: Vec<String> = COMMON_INVARIANTS.iter().map(|s| s.to_string()).collect();
    invariants.extend(injected.checked.iter().map(|s| s.to_string()));
    let rss_peak_kib = peaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Outcome {
        scenario: settings.scenario,
        seed: settings.seed,
        faults: injected.faults,
        counts,
        transactions: report.transactions,
        invariants,
        violations,
        recovery_secs,
        rss_peak_kib,
        timeline: timeline.marks(),
        verify_summary: report.summary(),
        duration_secs: started.elapsed().as_secs_f64(),
        dir,
    })
}

/// The verifier's findings as violations. With poison injected, the reconciler rightly reports
/// the dead letters (an operator must look at them); only that is tolerated.
fn verify_violations(report: &verify::VerifyReport, poisoned: bool) -> Vec<String> {
    let only_dead_letters = || {
        report
            .reconciler
            .output
            .as_ref()
            .and_then(|o| o.get("by_kind"))
            .and_then(|k| k.as_object())
            .is_some_and(|kinds| {
                kinds
                    .iter()
                    .all(|(kind, n)| kind == "dead_lettered" || n.as_u64() == Some(0))
            })
    };
    report
        .findings_by_kind
        .iter()
        .filter(|(kind, _)| !(poisoned && kind.as_str() == "reconciler" && only_dead_letters()))
        .map(|(kind, n)| {
            let first = report
                .findings
                .iter()
                .find(|f| &f.kind == kind)
                .map(|f| f.detail.clone())
                .unwrap_or_default();
            format!("verify: {n} × {kind} (first: {first})")
        })
        .collect()
}

/// Samples every service's resident memory until cancelled, keeping the peak per service.
async fn sample_memory(peaks: Arc<Mutex<BTreeMap<String, u64>>>, stop: CancellationToken) {
    let me = std::process::id();
    loop {
        for pid in crate::proc::with_descendants(me).into_iter().skip(1) {
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            let name = comm.trim();
            if !Part::ALL.iter().any(|p| p.binary() == name) {
                continue;
            }
            if let Some(kib) = crate::proc::rss_kib(pid) {
                let mut peaks = peaks.lock().unwrap_or_else(|p| p.into_inner());
                let peak = peaks.entry(name.to_string()).or_insert(0);
                *peak = (*peak).max(kib);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
