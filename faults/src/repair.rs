//! `kill-reconciler`: the operator's repair must survive its own death. Drift is injected into
//! both stores (a ledger transaction removed behind the append-only triggers' back, an account
//! balance bent, a transaction's audit documents deleted), a reconciliation run finds it, and
//! `reconciler repair --apply` is SIGKILLed at random moments before it is let finish. The final
//! verification (with its own reconciliation over the whole window) must then be clean.

use mongodb::bson::doc;
use sqlx::PgPool;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::process::Command;

use crate::error::FaultError;
use crate::scenario::{Ctx, Injected};

/// Most time one reconciler command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// How far behind the present a reconciliation window ends, so transactions still in flight
/// are not taken for drift (longer than the reconciler's own settle time, which it covers).
const SETTLE: Duration = Duration::from_secs(5);
const _: () = assert!(SETTLE.as_secs() > crate::stack::RECONCILE_SETTLE.as_secs());

pub(crate) async fn kill_during_repair(ctx: &mut Ctx<'_>) -> Result<Injected, FaultError> {
    let from = OffsetDateTime::now_utc() - Duration::from_secs(30);
    ctx.wait(6, 8).await;
    let pool = ctx.stack.ledger.pool()?;
    // Credits only: a removed debit replayed later is decided against the balance of that
    // moment (a separate, known limitation of repair), which is not what this scenario tests.
    let victims: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT transaction_id FROM ledger_transactions \
         WHERE txn_type = 'credit' AND result = 'POSTED' ORDER BY posted_at LIMIT 2",
    )
    .fetch_all(&pool)
    .await?;
    let [(ledger_victim,), (audit_victim,)] = victims[..] else {
        return Err(FaultError::Load(
            "fewer than two credits were posted before the drift was due".into(),
        ));
    };
    tamper(&pool, ledger_victim).await?;
    let audit = ctx
        .stack
        .audit
        .database()
        .await
        .map_err(|e| FaultError::store("mongo", e))?;
    let deleted = audit
        .collection::<mongodb::bson::Document>("events")
        .delete_many(doc! { "transaction_id": audit_victim.to_string() })
        .await
        .map_err(|e| FaultError::store("mongo", e))?;
    ctx.timeline.mark(format!(
        "drift: ledger transaction {ledger_victim} removed and a balance bent; {} audit \
         documents of {audit_victim} deleted",
        deleted.deleted_count
    ));
    tokio::time::sleep(SETTLE).await;

    let to = OffsetDateTime::now_utc() - SETTLE;
    let env = ctx.stack.reconciler_env();
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let status = reconciler(ctx, &env, &["run", "--from", &fmt(from), "--to", &fmt(to)])
        .status()
        .await
        .map_err(|source| FaultError::Io {
            what: "running the reconciler".into(),
            source,
        })?;
    let mut injected = Injected {
        checked: vec![
            "the drift is found",
            "a repair killed part-way can be run again to the end",
        ],
        ..Injected::default()
    };
    if status.code() != Some(1) {
        injected.violations.push(format!(
            "the reconciliation run over injected drift exited {status}, not 1 (drift found)"
        ));
        return Ok(injected);
    }
    let run: (i64,) = sqlx::query_as("SELECT max(run_id) FROM reconciliation_runs")
        .fetch_one(&pool)
        .await?;
    let run = run.0.to_string();
    ctx.timeline
        .mark(format!("reconciliation run {run} found the drift"));

    for _ in 0..ctx.intensity.kills {
        let mut child = reconciler(ctx, &env, &["repair", "--run", &run, "--apply"])
            .spawn()
            .map_err(|source| FaultError::Io {
                what: "starting the repair".into(),
                source,
            })?;
        // A repair of this much drift takes 1–3 s here: the kill may land anywhere from the
        // reconciler's start-up to its re-check.
        let after = Duration::from_millis(rand::Rng::random_range(&mut ctx.rng, 100..=1_500));
        tokio::select! {
            _ = child.wait() => {
                ctx.timeline.mark("the repair finished before its kill was due");
                break;
            }
            () = tokio::time::sleep(after) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                injected.faults += 1;
                ctx.timeline.mark(format!(
                    "SIGKILL reconciler {:.1} s into its repair",
                    after.as_secs_f64()
                ));
            }
        }
    }
    let finished = tokio::time::timeout(
        COMMAND_TIMEOUT,
        reconciler(ctx, &env, &["repair", "--run", &run, "--apply"]).status(),
    )
    .await;
    match finished {
        Ok(Ok(status)) if status.success() => ctx.timeline.mark("the repair ran to the end"),
        Ok(Ok(status)) => injected
            .violations
            .push(format!("the repair run after the kills exited {status}")),
        Ok(Err(source)) => {
            return Err(FaultError::Io {
                what: "running the repair".into(),
                source,
            })
        }
        Err(_) => injected.violations.push(format!(
            "the repair did not finish within {} s",
            COMMAND_TIMEOUT.as_secs()
        )),
    }
    Ok(injected)
}

/// The reconciler binary with this pipeline's settings and its output in the scenario's log.
fn reconciler(ctx: &Ctx<'_>, env: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new(&ctx.stack.reconciler);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let log = ctx.stack.dir.join("reconciler.log");
    if let Ok(out) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        if let Ok(err) = out.try_clone() {
            command.stdout(out).stderr(err);
        }
    }
    command
}

/// Removes one ledger transaction (both legs) and bends its account's balance, with the
/// triggers that forbid it switched off, as an intruder with database rights could.
async fn tamper(pool: &PgPool, victim: uuid::Uuid) -> Result<(), FaultError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    let account: Option<(String,)> =
        sqlx::query_as("SELECT account_id FROM ledger_transactions WHERE transaction_id = $1")
            .bind(victim)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query("DELETE FROM postings WHERE transaction_id = $1")
        .bind(victim)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM ledger_transactions WHERE transaction_id = $1")
        .bind(victim)
        .execute(&mut *tx)
        .await?;
    if let Some((account,)) = account {
        sqlx::query("UPDATE balances SET balance_minor = balance_minor + 7 WHERE account_id = $1")
            .bind(account)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
