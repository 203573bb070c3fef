//! The reconciler's own records in PostgreSQL: runs, discrepancies, repairs, redrives.

use crate::discrepancy::{Discrepancy, Kind};
use serde::Serialize;
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// The advisory lock key that keeps two runs from overlapping (`"LLRC"`).
const RUN_LOCK_KEY: i64 = 0x4C4C_5243;

/// A recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Its id.
    pub run_id: i64,
    /// Window start.
    #[serde(with = "time::serde::rfc3339")]
    pub window_from: OffsetDateTime,
    /// Window end.
    #[serde(with = "time::serde::rfc3339")]
    pub window_to: OffsetDateTime,
    /// `running`, `clean`, `drift` or `failed`.
    pub status: String,
    /// `cli`, `daemon`, `recheck:<run>`.
    pub trigger: String,
    /// Per store counts.
    pub counts: serde_json::Value,
    /// Discrepancies by kind.
    pub discrepancies: serde_json::Value,
    /// How long it took.
    pub duration_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Starts a run record.
pub async fn start_run(
    pool: &PgPool,
    from: OffsetDateTime,
    to: OffsetDateTime,
    trigger: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO reconciliation_runs (window_from, window_to, trigger) \
         VALUES ($1, $2, $3) RETURNING run_id",
    )
    .bind(from)
    .bind(to)
    .bind(trigger)
    .fetch_one(pool)
    .await
}

/// Records a run's discrepancies (at most `max`) and closes it.
pub async fn finish_run(
    pool: &PgPool,
    run_id: i64,
    counts: &serde_json::Value,
    by_kind: &BTreeMap<&'static str, u64>,
    found: &[Discrepancy],
    max: usize,
    duration_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for chunk in found[..found.len().min(max)].chunks(1_000) {
        let kinds: Vec<&str> = chunk.iter().map(|d| d.kind.as_str()).collect();
        let transactions: Vec<Option<Uuid>> = chunk.iter().map(|d| d.transaction_id).collect();
        let topics: Vec<&str> = chunk.iter().map(|d| d.topic.as_str()).collect();
        let partitions: Vec<i32> = chunk.iter().map(|d| d.partition).collect();
        let offsets: Vec<i64> = chunk.iter().map(|d| d.offset).collect();
        let expected: Vec<Option<serde_json::Value>> =
            chunk.iter().map(|d| d.expected.clone()).collect();
        let found_values: Vec<Option<serde_json::Value>> =
            chunk.iter().map(|d| d.found.clone()).collect();
        let details: Vec<&str> = chunk.iter().map(|d| d.detail.as_str()).collect();
        sqlx::query(
            "INSERT INTO reconciliation_discrepancies (run_id, kind, transaction_id, \
                source_topic, source_partition, source_offset, expected, found, detail) \
             SELECT $1, * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::int[], \
                $6::bigint[], $7::jsonb[], $8::jsonb[], $9::text[])",
        )
        .bind(run_id)
        .bind(kinds)
        .bind(transactions)
        .bind(topics)
        .bind(partitions)
        .bind(offsets)
        .bind(expected)
        .bind(found_values)
        .bind(details)
        .execute(&mut *tx)
        .await?;
    }
    let status = if found.is_empty() { "clean" } else { "drift" };
    sqlx::query(
        "UPDATE reconciliation_runs SET finished_at = now(), status = $2, counts = $3, \
            discrepancies = $4, duration_ms = $5 WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(status)
    .bind(counts)
    .bind(serde_json::to_value(by_kind).unwrap_or_default())
    .bind(duration_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Marks a run failed.
pub async fn fail_run(pool: &PgPool, run_id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reconciliation_runs SET finished_at = now(), status = 'failed', error = $2 \
         WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(error)
    .execute(pool)
    .await
    .map(|_| ())
}

fn run_of(r: &sqlx::postgres::PgRow) -> RunRow {
    RunRow {
        run_id: r.get("run_id"),
        window_from: r.get("window_from"),
        window_to: r.get("window_to"),
        status: r.get("status"),
        trigger: r.get("trigger"),
        counts: r.get("counts"),
        discrepancies: r.get("discrepancies"),
        duration_ms: r.get("duration_ms"),
        error: r.get("error"),
    }
}

const RUN_COLUMNS: &str = "run_id, window_from, window_to, status, trigger, counts, \
     discrepancies, duration_ms, error";

/// One run.
pub async fn run(pool: &PgPool, run_id: i64) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE run_id = $1");
    Ok(sqlx::query(&sql)
        .bind(run_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(run_of))
}

/// The latest runs, newest first.
pub async fn latest_runs(pool: &PgPool, limit: i64) -> Result<Vec<RunRow>, sqlx::Error> {
    let sql =
        format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs ORDER BY run_id DESC LIMIT $1");
    Ok(sqlx::query(&sql)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(run_of)
        .collect())
}

/// The end of the newest clean window (daemon mode resumes from it).
pub async fn last_clean_end(pool: &PgPool) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(window_to) FROM reconciliation_runs WHERE status = 'clean' \
         AND trigger = 'daemon'",
    )
    .fetch_one(pool)
    .await
}

/// A run's recorded discrepancies.
pub async fn discrepancies(pool: &PgPool, run_id: i64) -> Result<Vec<Discrepancy>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, transaction_id, source_topic, source_partition, source_offset, expected, \
                found, detail \
         FROM reconciliation_discrepancies WHERE run_id = $1 ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Discrepancy {
                kind: Kind::parse(r.get::<&str, _>(0))?,
                transaction_id: r.get(1),
                topic: r.get(2),
                partition: r.get(3),
                offset: r.get(4),
                expected: r.get(5),
                found: r.get(6),
                detail: r.get(7),
            })
        })
        .collect())
}

/// Starts a repair record with its plan.
pub async fn start_repair(
    pool: &PgPool,
    run_id: i64,
    plan: &serde_json::Value,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO reconciliation_repairs (run_id, plan) VALUES ($1, $2) RETURNING repair_id",
    )
    .bind(run_id)
    .bind(plan)
    .fetch_one(pool)
    .await
}

/// Closes a repair record.
pub async fn finish_repair(
    pool: &PgPool,
    repair_id: i64,
    status: &str,
    outcome: &serde_json::Value,
    recheck_run: Option<i64>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reconciliation_repairs SET finished_at = now(), status = $2, outcome = $3, \
            recheck_run = $4, error = $5 WHERE repair_id = $1",
    )
    .bind(repair_id)
    .bind(status)
    .bind(outcome)
    .bind(recheck_run)
    .bind(error)
    .execute(pool)
    .await
    .map(|_| ())
}

/// The dead letters already redriven, as (topic, partition, offset).
pub async fn redriven(pool: &PgPool) -> Result<Vec<(String, i32, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT dlq_topic, dlq_partition, dlq_offset FROM dlq_redrives")
        .fetch_all(pool)
        .await
}

/// Records a redrive; `false` when that dead letter was redriven before.
pub async fn record_redrive(
    pool: &PgPool,
    dlq: (&str, i32, i64),
    target_topic: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO dlq_redrives (dlq_topic, dlq_partition, dlq_offset, target_topic) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(dlq.0)
    .bind(dlq.1)
    .bind(dlq.2)
    .bind(target_topic)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Holds the run lock on one connection until dropped: a second reconciler (CLI or daemon)
/// waits for it instead of comparing or repairing the same stores at once.
#[derive(Debug)]
pub struct RunLock {
    connection: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl RunLock {
    /// Takes the lock, or `None` when another run holds it.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<RunLock>, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RUN_LOCK_KEY)
            .fetch_one(&mut *connection)
            .await?;
        Ok(got.then_some(RunLock {
            connection: Some(connection),
        }))
    }

    /// Releases the lock.
    pub async fn release(mut self) {
        if let Some(mut c) = self.connection.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(RUN_LOCK_KEY)
                .execute(&mut *c)
                .await;
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // A lock still held (a panic or an early return): close the session, which frees it.
        if let Some(c) = self.connection.take() {
            drop(c.detach());
        }
    }
}
