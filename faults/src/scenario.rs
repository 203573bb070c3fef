//! The scenarios: one fault each, injected at seeded moments into a pipeline under load.
//!
//! | scenario | fault |
//! |---|---|
//! | `kill-ingress`, `kill-processor`, `kill-ledger-writer`, `kill-audit` | SIGKILL the service `kills` times at random moments, restart after a random pause |
//! | `kill-reconciler` | drift injected into both stores; `reconciler repair --apply` SIGKILLed mid-repair `kills` times, then run to the end |
//! | `kill-broker` | SIGKILL the broker, restart it on the same storage |
//! | `stop-postgres`, `stop-redis`, `stop-mongo` | the store down for `store_down` seconds, then started (Redis keeps its append-only file) |
//! | `empty-redis` | Redis killed and started with no data (every idempotency key forgotten) |
//! | `slow-broker`, `slow-postgres`, `slow-mongo` | the store frozen (SIGSTOP of its whole process tree) for seconds at a time, twice |
//! | `poison` | unreadable messages written straight to every pipeline topic |
//! | `hostile` | bad signatures, stale timestamps, malformed and oversized bodies, bad amounts and currencies, replayed requests, mixed into the load |
//! | `rolling-restart` | every service in turn stopped with SIGTERM and started again |

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use std::time::Duration;

use crate::error::FaultError;
use crate::hostile::{self, Poison};
use crate::load::Steer;
use crate::stack::{Part, Stack, TERMINATE_GRACE};
use crate::timeline::Timeline;
use loadtest::record::Recorder;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// SIGKILL ingress.
    KillIngress,
    /// SIGKILL the processor.
    KillProcessor,
    /// SIGKILL the ledger-writer.
    KillLedgerWriter,
    /// SIGKILL the audit writer.
    KillAudit,
    /// SIGKILL the reconciler in the middle of a repair.
    KillReconciler,
    /// SIGKILL the broker.
    KillBroker,
    /// PostgreSQL down, then up.
    StopPostgres,
    /// Redis down, then up with its data.
    StopRedis,
    /// Redis down, then up empty.
    EmptyRedis,
    /// MongoDB down, then up.
    StopMongo,
    /// The broker frozen.
    SlowBroker,
    /// PostgreSQL frozen.
    SlowPostgres,
    /// MongoDB frozen.
    SlowMongo,
    /// Poison on every topic.
    Poison,
    /// Hostile HTTP requests.
    Hostile,
    /// Graceful restart of every service.
    RollingRestart,
}

impl Scenario {
    /// Every scenario, in the order the suite runs them.
    pub const ALL: [Scenario; 16] = [
        Scenario::KillIngress,
        Scenario::KillProcessor,
        Scenario::KillLedgerWriter,
        Scenario::KillAudit,
        Scenario::KillReconciler,
        Scenario::KillBroker,
        Scenario::StopPostgres,
        Scenario::StopRedis,
        Scenario::EmptyRedis,
        Scenario::StopMongo,
        Scenario::SlowBroker,
        Scenario::SlowPostgres,
        Scenario::SlowMongo,
        Scenario::Poison,
        Scenario::Hostile,
        Scenario::RollingRestart,
    ];

    /// The scenarios a CI run covers: a crash in the middle of the pipeline, a dependency
    /// outage, and bad input.
    pub const FAST: [Scenario; 3] = [
        Scenario::KillLedgerWriter,
        Scenario::StopRedis,
        Scenario::Poison,
    ];

    /// The command-line name.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// How hard a run hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Kills per kill scenario.
    pub kills: u32,
    /// Seconds a stopped store stays down: a seeded choice in this range.
    pub store_down_secs: (u64, u64),
    /// Seconds a store stays frozen per pause, and how many pauses.
    pub freeze_secs: u64,
    /// Freezes per slow scenario.
    pub freezes: u32,
}

impl Intensity {
    /// What the issue asks for: several kills, stores down 10–30 s.
    pub const FULL: Intensity = Intensity {
        kills: 3,
        store_down_secs: (10, 30),
        freeze_secs: 8,
        freezes: 2,
    };
    /// The CI subset: one kill, stores down 10 s.
    pub const FAST: Intensity = Intensity {
        kills: 1,
        store_down_secs: (10, 10),
        freeze_secs: 6,
        freezes: 1,
    };
}

/// What a scenario needs while it injects.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The pipeline.
    pub stack: &'a mut Stack,
    /// The load.
    pub steer: &'a Steer,
    /// Where every action is noted.
    pub timeline: &'a Timeline,
    /// The scenario's random source (seeded).
    pub rng: StdRng,
    /// The record file (hostile replays are recorded too).
    pub recorder: &'a Recorder,
    /// How hard to hit.
    pub intensity: Intensity,
}

/// What a scenario did, and what it still has to check once the load has stopped.
#[derive(Debug, Default)]
pub struct Injected {
    /// Faults injected.
    pub faults: u32,
    /// Violations found while injecting (scenario-specific invariants).
    pub violations: Vec<String>,
    /// Invariants this scenario checked besides the common ones.
    pub checked: Vec<&'static str>,
    /// Poison written (to be found in the dead-letter queues).
    pub poison: Vec<Poison>,
}

impl Ctx<'_> {
    pub(crate) fn secs(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.rng.random_range(low * 1_000..=high * 1_000))
    }

    pub(crate) async fn wait(&mut self, low: u64, high: u64) {
        let d = self.secs(low, high);
        tokio::time::sleep(d).await;
    }
}

/// Injects `scenario`'s faults; returns when the last one has been undone.
pub async fn inject(scenario: Scenario, ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    match scenario {
        Scenario::KillIngress => kill_service(ctx, Part::Ingress).await,
        Scenario::KillProcessor => kill_service(ctx, Part::Processor).await,
        Scenario::KillLedgerWriter => kill_service(ctx, Part::LedgerWriter).await,
        Scenario::KillAudit => kill_service(ctx, Part::Audit).await,
        Scenario::KillReconciler => crate::repair::kill_during_repair(ctx).await,
        Scenario::KillBroker => kill_broker(ctx).await,
        Scenario::StopPostgres | Scenario::StopRedis | Scenario::StopMongo => {
            stop_store(ctx, scenario).await
        }
        Scenario::EmptyRedis => empty_redis(ctx).await,
        Scenario::SlowBroker | Scenario::SlowPostgres | Scenario::SlowMongo => {
            freeze_store(ctx, scenario).await
        }
        Scenario::Poison => poison(ctx).await,
        Scenario::Hostile => hostile(ctx).await,
        Scenario::RollingRestart => rolling_restart(ctx).await,
    }
}

async fn kill_service(ctx: &mut Ctx<'_>, part: Part) -> Result<Injected, FaultError> {
    let mut injected = Injected::default();
    for _ in 0..ctx.intensity.kills {
        ctx.wait(2, 6).await;
        let down = ctx.secs(0, 3);
        ctx.timeline.mark(format!("SIGKILL {}", part.binary()));
        ctx.stack.service(part).kill().await;
        injected.faults += 1;
        tokio::time::sleep(down).await;
        let ready = ctx.stack.start_ready(part).await?;
        ctx.timeline.mark(format!(
            "{} restarted, ready after {:.1} s",
            part.binary(),
            ready.as_secs_f64()
        ));
    }
    Ok(injected)
}

async fn kill_broker(ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    let mut injected = Injected::default();
    for _ in 0..ctx.intensity.kills.min(2) {
        ctx.wait(3, 6).await;
        let down = ctx.secs(2, 5);
        ctx.timeline.mark("SIGKILL broker");
        ctx.stack.broker.kill();
        injected.faults += 1;
        tokio::time::sleep(down).await;
        ctx.stack
            .broker
            .restart()
            .await
            .map_err(|e| FaultError::store("broker", e))?;
        ctx.timeline.mark("broker restarted on the same storage");
    }
    Ok(injected)
}

async fn stop_store(ctx: &mut Ctx<'_>, scenario: Scenario) -> Result<Injected, FaultError> {
    ctx.wait(3, 5).await;
    let (low, high) = ctx.intensity.store_down_secs;
    let down = ctx.secs(low, high);
    let store = match scenario {
        Scenario::StopPostgres => "postgres",
        Scenario::StopRedis => "redis",
        _ => "mongo",
    };
    ctx.timeline
        .mark(format!("stop {store} for {:.1} s", down.as_secs_f64()));
    match scenario {
        Scenario::StopPostgres => ctx.stack.postgres.stop().await,
        Scenario::StopRedis => ctx.stack.redis.kill(),
        _ => ctx.stack.mongo.kill(),
    }
    tokio::time::sleep(down).await;
    let restarted = match scenario {
        Scenario::StopPostgres => ctx.stack.postgres.restart().await,
        Scenario::StopRedis => ctx.stack.redis.restart().await,
        _ => ctx.stack.mongo.restart().await,
    };
    restarted.map_err(|e| FaultError::store(store, e))?;
    ctx.timeline.mark(format!("{store} started again"));
    Ok(Injected {
        faults: 1,
        ..Injected::default()
    })
}

async fn empty_redis(ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    ctx.wait(3, 5).await;
    // No replay may straddle the loss: one sent just before could be decided just after, by a
    // Redis that no longer knows its original (then it is decided again, which is right, but
    // the record would call it a retry).
    ctx.steer.pause_replays(true);
    ctx.timeline.mark("replays paused");
    tokio::time::sleep(Duration::from_secs(5)).await;
    ctx.timeline.mark("kill redis and start it with no data");
    ctx.steer.redis_lost();
    ctx.stack
        .redis
        .restart_empty()
        .await
        .map_err(|e| FaultError::store("redis", e))?;
    ctx.timeline.mark("redis started empty");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctx.steer.pause_replays(false);
    ctx.timeline.mark("replays resumed");
    Ok(Injected {
        faults: 1,
        checked: vec!["a replay after the loss posts nothing twice"],
        ..Injected::default()
    })
}

async fn freeze_store(ctx: &mut Ctx<'_>, scenario: Scenario) -> Result<Injected, FaultError> {
    let (store, pid) = match scenario {
        Scenario::SlowBroker => ("broker", ctx.stack.broker.pid()),
        Scenario::SlowPostgres => ("postgres", ctx.stack.postgres.pid()),
        _ => ("mongo", ctx.stack.mongo.pid()),
    };
    let pid = pid.ok_or_else(|| FaultError::store(store, "not running"))?;
    let before = ctx.steer.counts();
    let mut injected = Injected::default();
    for _ in 0..ctx.intensity.freezes {
        ctx.wait(2, 4).await;
        let freeze = Duration::from_secs(ctx.intensity.freeze_secs);
        ctx.timeline.mark(format!(
            "SIGSTOP {store} (whole process tree) for {} s",
            freeze.as_secs()
        ));
        crate::proc::signal_tree(pid, Signal::SIGSTOP)?;
        injected.faults += 1;
        tokio::time::sleep(freeze).await;
        crate::proc::signal_tree(pid, Signal::SIGCONT)?;
        ctx.timeline.mark(format!("SIGCONT {store}"));
    }
    if scenario == Scenario::SlowBroker {
        // The front door cannot hand a request to a frozen broker: it must say so (503 with
        // Retry-After within its produce deadline) rather than queue without bound.
        injected
            .checked
            .push("backpressure reaches the front door as 503");
        let refused = ctx.steer.counts().unavailable - before.unavailable;
        if refused == 0 {
            injected.violations.push(
                "the broker was frozen yet the front door answered no 503: requests waited \
                 instead of being pushed back"
                    .into(),
            );
        }
    }
    Ok(injected)
}

async fn poison(ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    let mut injected = Injected {
        checked: vec!["every poison message is dead-lettered by source offset"],
        ..Injected::default()
    };
    for round in 0..2 {
        ctx.wait(2, 4).await;
        let written = hostile::inject_poison(&ctx.stack.kafka).await?;
        ctx.timeline.mark(format!(
            "poison round {round}: {} messages on {} topics",
            written.len(),
            ledgerline_contracts::topics::ALL.len()
        ));
        injected.faults += u32::try_from(written.len()).unwrap_or(u32::MAX);
        injected.poison.extend(written);
    }
    Ok(injected)
}

async fn hostile(ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    let mut injected = Injected {
        checked: vec![
            "every hostile request gets its documented status",
            "a replayed request is the same transaction",
        ],
        ..Injected::default()
    };
    let http = ctx.stack.http().clone();
    for round in 0..3 {
        ctx.wait(1, 3).await;
        let result = hostile::hostile_round(
            &http,
            &ctx.stack.ingress_url,
            &ctx.stack.merchant,
            ctx.recorder,
            round,
        )
        .await;
        ctx.timeline.mark(format!(
            "hostile round {round}: {} requests, {} answered wrongly",
            result.sent,
            result.wrong.len()
        ));
        injected.faults += u32::try_from(result.sent).unwrap_or(u32::MAX);
        injected.violations.extend(result.wrong);
    }
    Ok(injected)
}

async fn rolling_restart(ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    let mut injected = Injected {
        checked: vec!["every service exits 0 on SIGTERM"],
        ..Injected::default()
    };
    for part in Part::ALL {
        ctx.wait(2, 4).await;
        ctx.timeline.mark(format!("SIGTERM {}", part.binary()));
        match ctx.stack.service(part).terminate(TERMINATE_GRACE).await {
            Ok(status) if status.success() => {}
            Ok(status) => injected
                .violations
                .push(format!("{} exited {status} on SIGTERM", part.binary())),
            Err(error) => injected.violations.push(error.to_string()),
        }
        injected.faults += 1;
        ctx.timeline.mark(format!("{} exited", part.binary()));
        let ready = ctx.stack.start_ready(part).await?;
        ctx.timeline.mark(format!(
            "{} started, ready after {:.1} s",
            part.binary(),
            ready.as_secs_f64()
        ));
    }
    Ok(injected)
}
