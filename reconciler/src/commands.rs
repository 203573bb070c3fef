//! What each command does and prints. `main` parses, loads settings and calls one of these;
//! each returns the process's exit status.

use crate::app::Context;
use crate::cli::{Command, DlqCommand};
use crate::config::Settings;
use crate::daemon::Daemon;
use crate::dlq::{self, Selection};
use crate::record::{self, RunLock};
use crate::repair;
use crate::run::{reconcile, RunError, RunReport};
use ledgerline_runtime::ranges::{self, Position};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Exit status: the run found drift (or a repair left some).
pub const EXIT_DRIFT: u8 = 1;
/// Exit status: the command could not complete.
pub const EXIT_FAILED: u8 = 2;

/// Runs `command`.
pub async fn execute(
    settings: Settings,
    command: Command,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    if let Command::Daemon = command {
        let daemon = Daemon::build(settings).await?;
        tracing::info!(admin = %daemon.admin_addr(), "reconciler daemon starting");
        daemon.run_until_stopped(shutdown).await;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Report { run, last, json } = command {
        let pool = settings.postgres.pool()?;
        return report(&pool, run, last, json).await;
    }
    let ctx = match Context::connect(settings).await {
        Ok(ctx) => ctx,
        Err(error) => {
            eprintln!("reconciler: cannot connect: {error}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    match command {
        Command::Run { window, deep, json } => {
            let window = match window.window(ledgerline_runtime::time::now()) {
                Ok(w) => w,
                Err(message) => {
                    eprintln!("reconciler: {message}");
                    return Ok(ExitCode::from(EXIT_FAILED));
                }
            };
            let mut ctx = ctx;
            ctx.settings.reconcile.deep_audit |= deep;
            let Some(lock) = RunLock::try_acquire(&ctx.pool).await? else {
                eprintln!("reconciler: {}", RunError::Busy);
                return Ok(ExitCode::from(EXIT_FAILED));
            };
            let result = reconcile(&ctx, window, "cli", &shutdown).await;
            lock.release().await;
            match result {
                Ok(report) => {
                    print_run(&report, json)?;
                    Ok(ExitCode::from(if report.status == "clean" {
                        0
                    } else {
                        EXIT_DRIFT
                    }))
                }
                Err(error) => {
                    eprintln!("reconciler: run failed: {error}");
                    Ok(ExitCode::from(EXIT_FAILED))
                }
            }
        }
        Command::Repair { run, apply, json } => {
            let Some(lock) = RunLock::try_acquire(&ctx.pool).await? else {
                eprintln!("reconciler: {}", RunError::Busy);
                return Ok(ExitCode::from(EXIT_FAILED));
            };
            let result = repair_run(&ctx, run, apply, json, &shutdown).await;
            lock.release().await;
            result
        }
        Command::Replay {
            topic,
            from_offset,
            from,
            partitions,
            store,
        } => {
            let from = match (from_offset, from) {
                (_, Some(t)) => Position::Time(t),
                (Some(o), None) => Position::Offset(o),
                (None, None) => Position::Offset(0),
            };
            replay(&ctx, &topic, from, &partitions, &store, &shutdown).await
        }
        Command::Dlq { command } => dlq_command(&ctx, command, &shutdown).await,
        Command::Daemon | Command::Report { .. } => unreachable!("handled above"),
    }
}

fn print_run(report: &RunReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "run {}  {} .. {}  {}  ({} ms)",
        report.run_id,
        report.window.from,
        report.window.to,
        report.status.to_uppercase(),
        report.duration_ms
    );
    println!("counts: {}", report.counts);
    for (kind, n) in report.by_kind.iter().filter(|(_, n)| **n > 0) {
        println!("  {kind:<24} {n}");
    }
    for d in report.discrepancies.iter().take(50) {
        println!(
            "  {:<24} {}:{}:{}  {}",
            d.kind.as_str(),
            d.topic,
            d.partition,
            d.offset,
            d.detail
        );
    }
    if report.discrepancies.len() > 50 {
        println!(
            "  … {} more: `reconciler report --run {}`",
            report.discrepancies.len() - 50,
            report.run_id
        );
    }
    Ok(())
}

async fn report(
    pool: &sqlx::PgPool,
    run: Option<i64>,
    last: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(run_id) = run {
        let Some(row) = record::run(pool, run_id).await? else {
            eprintln!("reconciler: run {run_id} not found");
            return Ok(ExitCode::from(EXIT_FAILED));
        };
        let found = record::discrepancies(pool, run_id).await?;
        if json {
            let out = serde_json::json!({ "run": row, "discrepancies": found });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "run {}  {} .. {}  {}  trigger={}  {} ms",
                row.run_id,
                row.window_from,
                row.window_to,
                row.status,
                row.trigger,
                row.duration_ms.unwrap_or(-1)
            );
            println!("counts: {}", row.counts);
            println!("by kind: {}", row.discrepancies);
            for d in &found {
                println!(
                    "  {:<24} {}:{}:{}  txn={}  {}",
                    d.kind.as_str(),
                    d.topic,
                    d.partition,
                    d.offset,
                    d.transaction_id.map_or("-".into(), |t| t.to_string()),
                    d.detail
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runs = record::latest_runs(pool, last.max(1)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        println!(
            "{:>6}  {:<25} {:<25} {:<8} {:<12} {:>9}  discrepancies",
            "run", "from", "to", "status", "trigger", "ms"
        );
        for r in runs {
            let total: u64 = r
                .discrepancies
                .as_object()
                .map(|o| o.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0);
            println!(
                "{:>6}  {:<25} {:<25} {:<8} {:<12} {:>9}  {}",
                r.run_id,
                r.window_from.to_string(),
                r.window_to.to_string(),
                r.status,
                r.trigger,
                r.duration_ms.unwrap_or(-1),
                total
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn repair_run(
    ctx: &Context,
    run: i64,
    apply: bool,
    json: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let plan = match repair::plan_for_run(ctx, run).await {
        Ok(p) => p,
        Err(error) => {
            eprintln!("reconciler: {error}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if !apply {
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            println!(
                "dry run for run {run} (nothing changed; add --apply to act):\n\
                 \x20 quarantine {} ledger transaction(s), rebuild {} balance(s) and the \
                 clearing side of {} merchant/currency pair(s)\n\
                 \x20 replay {} range(s) into the ledger and {} range(s) into the audit \
                 ({} messages)\n\
                 \x20 quarantine {} audit document(s)\n\
                 \x20 left to an operator: {}",
                plan.ledger_quarantine.len(),
                plan.rebuild_balances.len(),
                plan.rebuild_clearing.len(),
                plan.ledger_replay.len(),
                plan.audit_replay.len(),
                plan.replay_messages(),
                plan.audit_quarantine.len(),
                plan.operator.len()
            );
            for r in plan.ledger_replay.iter().chain(&plan.audit_replay) {
                println!("    {}:{} [{}, {})", r.topic, r.partition, r.from, r.to);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match repair::apply(ctx, &plan, shutdown).await {
        Ok(outcome) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                println!(
                    "repair {} of run {run}: {}  (ledger: {} quarantined, {} written; \
                     balances rebuilt: {}; audit: {} quarantined, {} written; re-check run {})",
                    outcome.repair_id,
                    outcome.status,
                    outcome.ledger_quarantined,
                    outcome.ledger_written,
                    outcome.balances_rebuilt,
                    outcome.audit_quarantined,
                    outcome.audit_written,
                    outcome.recheck.as_ref().map_or(-1, |r| r.run_id)
                );
            }
            Ok(ExitCode::from(if outcome.status == "repaired" {
                0
            } else {
                EXIT_DRIFT
            }))
        }
        Err(error) => {
            eprintln!("reconciler: repair failed: {error}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

async fn replay(
    ctx: &Context,
    topic: &str,
    from: Position,
    partitions: &[i32],
    store: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let prefixed = format!("{}{topic}", ctx.settings.kafka.topic_prefix);
    let full = if ctx.topics.all().contains(&prefixed) {
        prefixed
    } else {
        topic.to_string()
    };
    if !["ledger", "audit", "both"].contains(&store) {
        eprintln!("reconciler: --store must be ledger, audit or both");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let wanted = (!partitions.is_empty()).then_some(partitions);
    let ranges = ranges::between(&ctx.reader, &full, wanted, from, Position::End)?;
    let mut out = serde_json::Map::new();
    if full == ctx.topics.outcomes && store != "audit" {
        let app = ledger_writer::Application::build(ctx.settings.ledger_writer()).await?;
        let replayer = app.replayer(shutdown).await?;
        let report = replayer.replay(&ranges, shutdown).await;
        replayer.finish().await;
        out.insert("ledger".into(), serde_json::to_value(report?)?);
    }
    if store != "ledger" {
        let mut replayer = audit::app::replayer(ctx.settings.audit(), shutdown).await?;
        let report = replayer.replay(&ranges, shutdown).await?;
        out.insert("audit".into(), serde_json::to_value(report)?);
    }
    out.insert("ranges".into(), serde_json::to_value(&ranges)?);
    println!("{}", serde_json::Value::Object(out));
    Ok(ExitCode::SUCCESS)
}

async fn dlq_command(
    ctx: &Context,
    command: DlqCommand,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { topic, json } => {
            let entries = dlq::list(ctx, &dlq::topics(ctx, topic.as_deref()), shutdown).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!(
                    "{:<32} {:>4} {:>8}  {:<9} {:<12} {:<28} source",
                    "topic", "part", "offset", "redriven", "copy of", "reason"
                );
                for e in &entries {
                    let d = &e.dead_letter;
                    let copy_of = e
                        .first_copy
                        .map_or("-".into(), |f| format!("{}:{}", f.partition, f.offset));
                    println!(
                        "{:<32} {:>4} {:>8}  {:<9} {:<12} {:<28} {}:{}:{}",
                        d.topic,
                        d.partition,
                        d.offset,
                        e.redriven,
                        copy_of,
                        d.reason.as_deref().unwrap_or("-"),
                        d.source_topic.as_deref().unwrap_or("?"),
                        d.source_partition.map_or("?".into(), |p| p.to_string()),
                        d.source_offset.map_or("?".into(), |o| o.to_string()),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Redrive {
            topic,
            partition,
            offset,
            all,
        } => {
            let selection = match (partition, offset, all) {
                (Some(partition), Some(offset), false) => Selection::One { partition, offset },
                _ => Selection::All,
            };
            let topics = dlq::topics(ctx, Some(&topic));
            let sent = dlq::redrive(ctx, &topics[0], selection, shutdown).await?;
            println!("{}", serde_json::to_string_pretty(&sent)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
