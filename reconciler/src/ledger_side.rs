//! The ledger side of a run, all in PostgreSQL: digests per bucket computed by the database,
//! the rows of a bucket for a drill-down, the window's invariants, and the repairs' writes
//! (quarantine, balance rebuild).

use crate::digest::{Bucket, Digest, Digests};
use ledgerline_runtime::ranges::OffsetRange;
use serde::Serialize;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

/// A ledger transaction's fingerprint, computed by PostgreSQL exactly as
/// [`crate::digest::ledger_text`] + [`crate::digest::fingerprint`] compute it from the log.
const FINGERPRINT_SQL: &str = "('x' || left(encode(sha256(convert_to(concat_ws('|', \
     t.transaction_id::text, t.merchant_id, t.account_id, t.currency, t.txn_type, \
     t.amount_minor::text), 'UTF8')), 'hex'), 8))::bit(32)::bigint";

/// Joins `ledger_transactions t` to the window's ranges (`$1` topic, `$2..$4` arrays).
const IN_WINDOW_SQL: &str = "FROM ledger_transactions t \
     JOIN unnest($2::int[], $3::bigint[], $4::bigint[]) AS w(p, f, e) \
       ON t.source_partition = w.p AND t.source_offset >= w.f AND t.source_offset < w.e \
     WHERE t.source_topic = $1";

/// The window's ranges as three arrays (partition, from, to).
fn arrays(ranges: &[OffsetRange]) -> (Vec<i32>, Vec<i64>, Vec<i64>) {
    (
        ranges.iter().map(|r| r.partition).collect(),
        ranges.iter().map(|r| r.from).collect(),
        ranges.iter().map(|r| r.to).collect(),
    )
}

/// Digests of the ledger rows whose source is in `ranges` (of `txn.outcomes`).
pub async fn digests(
    pool: &PgPool,
    topic: &str,
    ranges: &[OffsetRange],
    bucket_offsets: i64,
) -> Result<Digests, sqlx::Error> {
    let (p, f, e) = arrays(ranges);
    let sql = format!(
        "SELECT t.source_partition, t.source_offset / $5 AS block, count(*) AS n, \
                sum(t.amount_minor)::text AS amount, sum({FINGERPRINT_SQL})::bigint AS fp, \
                count(*) FILTER (WHERE t.result = 'POSTED') AS posted \
         {IN_WINDOW_SQL} GROUP BY 1, 2"
    );
    let rows = sqlx::query(&sql)
        .bind(topic)
        .bind(p)
        .bind(f)
        .bind(e)
        .bind(bucket_offsets)
        .fetch_all(pool)
        .await?;
    let mut out = Digests::new();
    for row in rows {
        let bucket = Bucket {
            topic: topic.to_string(),
            partition: row.get(0),
            block: row.get(1),
        };
        let amount: String = row.get(3);
        out.insert(
            bucket,
            Digest {
                count: row.get(2),
                amount_sum: amount.parse().unwrap_or(i128::MIN),
                fingerprint_sum: row.get(4),
                posted: row.get(5),
            },
        );
    }
    Ok(out)
}

/// A ledger transaction as the reconciler compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    /// Its transaction.
    pub transaction_id: Uuid,
    /// Merchant.
    pub merchant_id: String,
    /// Account.
    pub account_id: String,
    /// Currency code.
    pub currency: String,
    /// `credit` / `debit`.
    pub txn_type: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// `POSTED` / `DECLINED`.
    pub result: String,
    /// Source partition of `txn.outcomes`.
    pub source_partition: i32,
    /// Source offset.
    pub source_offset: i64,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub posted_at: OffsetDateTime,
}

const ROW_COLUMNS: &str = "t.transaction_id, t.merchant_id, t.account_id, t.currency, \
     t.txn_type, t.amount_minor, t.result, t.source_partition, t.source_offset, t.posted_at";

fn row_of(row: &sqlx::postgres::PgRow) -> LedgerRow {
    LedgerRow {
        transaction_id: row.get(0),
        merchant_id: row.get(1),
        account_id: row.get(2),
        currency: row.get(3),
        txn_type: row.get(4),
        amount_minor: row.get(5),
        result: row.get(6),
        source_partition: row.get(7),
        source_offset: row.get(8),
        posted_at: row.get(9),
    }
}

/// The rows whose source is in `[from, to)` of one partition.
pub async fn rows_in(
    pool: &PgPool,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM ledger_transactions t WHERE t.source_topic = $1 \
         AND t.source_partition = $2 AND t.source_offset >= $3 AND t.source_offset < $4 \
         ORDER BY t.source_offset"
    );
    let rows = sqlx::query(&sql)
        .bind(topic)
        .bind(partition)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(row_of).collect())
}

/// The rows of these transactions, wherever their source is.
pub async fn rows_of(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM ledger_transactions t \
         WHERE t.transaction_id = ANY($1::uuid[])"
    );
    let rows = sqlx::query(&sql).bind(ids).fetch_all(pool).await?;
    Ok(rows.iter().map(row_of).collect())
}

/// A transaction whose postings are not two legs summing to zero (or a declined one with
/// postings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unbalanced {
    /// The transaction.
    pub transaction_id: Uuid,
    /// Its result.
    pub result: String,
    /// Source partition.
    pub source_partition: i32,
    /// Source offset.
    pub source_offset: i64,
    /// Its postings.
    pub legs: i64,
    /// Their sum.
    pub sum_minor: i64,
}

/// Transactions in the window that break the double-entry rule.
pub async fn unbalanced(
    pool: &PgPool,
    topic: &str,
    ranges: &[OffsetRange],
) -> Result<Vec<Unbalanced>, sqlx::Error> {
    let (p, f, e) = arrays(ranges);
    let sql = format!(
        "SELECT t.transaction_id, t.result, t.source_partition, t.source_offset, \
                count(x.leg) AS legs, coalesce(sum(x.amount_minor), 0)::bigint AS total \
         {IN_WINDOW_SQL_LEFT} \
         GROUP BY t.transaction_id, t.result, t.source_partition, t.source_offset \
         HAVING (t.result = 'POSTED' AND (count(x.leg) <> 2 \
                                          OR coalesce(sum(x.amount_minor), 0) <> 0)) \
             OR (t.result = 'DECLINED' AND count(x.leg) <> 0)",
        IN_WINDOW_SQL_LEFT = IN_WINDOW_SQL.replace(
            "WHERE t.source_topic",
            "LEFT JOIN postings x ON x.transaction_id = t.transaction_id WHERE t.source_topic"
        )
    );
    let rows = sqlx::query(&sql)
        .bind(topic)
        .bind(p)
        .bind(f)
        .bind(e)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Unbalanced {
            transaction_id: r.get(0),
            result: r.get(1),
            source_partition: r.get(2),
            source_offset: r.get(3),
            legs: r.get(4),
            sum_minor: r.get(5),
        })
        .collect())
}

/// An account whose balance row disagrees with its postings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceDrift {
    /// Merchant.
    pub merchant_id: String,
    /// Account (a clearing shard's name for the clearing side).
    pub account_id: String,
    /// Currency.
    pub currency: String,
    /// The balance row (`None`: no row).
    pub balance_minor: Option<i64>,
    /// The sum of its postings.
    pub postings_sum_minor: i64,
}

/// Accounts touched by the window whose balance is not the sum of their postings. Customer
/// accounts are summed from their postings; clearing shards, which every transaction of a
/// partition touches, are checked by the identity that a merchant's balances in a currency
/// sum to zero (every transaction does), so a clean run never sums a partition's history.
pub async fn balance_drift(
    pool: &PgPool,
    topic: &str,
    ranges: &[OffsetRange],
) -> Result<Vec<BalanceDrift>, sqlx::Error> {
    let (p, f, e) = arrays(ranges);
    let sql = format!(
        "WITH touched AS ( \
             SELECT DISTINCT t.merchant_id, t.account_id, t.currency {IN_WINDOW_SQL} \
         ) \
         SELECT k.merchant_id, k.account_id, k.currency, b.balance_minor, s.total \
         FROM touched k \
         LEFT JOIN balances b USING (merchant_id, account_id, currency) \
         CROSS JOIN LATERAL ( \
             SELECT coalesce(sum(x.amount_minor), 0)::bigint AS total FROM postings x \
             WHERE x.merchant_id = k.merchant_id AND x.account_id = k.account_id \
               AND x.currency = k.currency) s \
         WHERE b.balance_minor IS DISTINCT FROM s.total \
         UNION ALL \
         SELECT b.merchant_id, '~clearing/*', b.currency, sum(b.balance_minor)::bigint, 0 \
         FROM balances b \
         WHERE (b.merchant_id, b.currency) IN (SELECT DISTINCT merchant_id, currency FROM touched) \
         GROUP BY b.merchant_id, b.currency HAVING sum(b.balance_minor) <> 0"
    );
    let rows = sqlx::query(&sql)
        .bind(topic)
        .bind(p)
        .bind(f)
        .bind(e)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| BalanceDrift {
            merchant_id: r.get(0),
            account_id: r.get(1),
            currency: r.get(2),
            balance_minor: r.get(3),
            postings_sum_minor: r.get(4),
        })
        .collect())
}

/// How long a quarantine waits for the outbox relay's round to finish. The relay holds its lock
/// while the broker acknowledges, so during a broker outage the wait would have no end: the
/// repair fails instead (a lock timeout) and is finished by running it again.
const RELAY_LOCK_WAIT_MS: u32 = 30_000;

/// Moves these transactions' rows (transaction and postings) to `ledger_quarantine`, in one
/// database transaction, and deletes their unsent outbox rows: those announce what the log
/// contradicts, and the replay that re-posts a transaction writes a row of its own. Returns
/// the accounts they touched, to rebuild.
pub async fn quarantine(
    pool: &PgPool,
    run_id: i64,
    ids: &[Uuid],
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL ledgerline.quarantine = 'on'")
        .execute(&mut *tx)
        .await?;
    // The relay reads an outbox row and its ledger row in one statement, then sends; under its
    // lock, no row this deletes can be between that read and the send.
    sqlx::query(&format!("SET LOCAL lock_timeout = {RELAY_LOCK_WAIT_MS}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ledger_writer::relay::RELAY_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM outbox WHERE transaction_id = ANY($1::uuid[])")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    let touched: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT merchant_id, account_id, currency FROM postings \
         WHERE transaction_id = ANY($1::uuid[]) \
         UNION SELECT merchant_id, account_id, currency FROM ledger_transactions \
         WHERE transaction_id = ANY($1::uuid[])",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_quarantine (run_id, transaction_id, ledger_row, postings) \
         SELECT $1, t.transaction_id, to_jsonb(t), \
                coalesce((SELECT jsonb_agg(to_jsonb(x)) FROM postings x \
                          WHERE x.transaction_id = t.transaction_id), '[]'::jsonb) \
         FROM ledger_transactions t WHERE t.transaction_id = ANY($2::uuid[])",
    )
    .bind(run_id)
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM postings WHERE transaction_id = ANY($1::uuid[])")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM ledger_transactions WHERE transaction_id = ANY($1::uuid[])")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(touched)
}

/// Sets each account's balance (and postings count) to what its postings say. The balance
/// row is locked first, so a writer batch touching the account either committed before (its
/// postings are summed) or waits (and then applies its delta to the rebuilt balance).
pub async fn rebuild_balances(
    pool: &PgPool,
    accounts: &[(String, String, String)],
) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    let mut sorted = accounts.to_vec();
    // The writer's lock order, so a rebuild cannot deadlock with a batch.
    sorted.sort();
    sorted.dedup();
    let mut tx = pool.begin().await?;
    for (merchant, account, currency) in &sorted {
        sqlx::query(
            "INSERT INTO balances (merchant_id, account_id, currency) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(merchant)
        .bind(account)
        .bind(currency)
        .execute(&mut *tx)
        .await?;
        // Lock first, sum in the next statement: under READ COMMITTED each statement takes
        // a new snapshot, so the sum sees every batch that committed before the lock.
        sqlx::query(
            "SELECT 1 FROM balances WHERE merchant_id = $1 AND account_id = $2 \
             AND currency = $3 FOR UPDATE",
        )
        .bind(merchant)
        .bind(account)
        .bind(currency)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "WITH s AS (SELECT coalesce(sum(amount_minor), 0)::bigint AS total, count(*) AS n \
                        FROM postings WHERE merchant_id = $1 AND account_id = $2 \
                        AND currency = $3) \
             UPDATE balances b SET balance_minor = s.total, postings_count = s.n, \
                                   updated_at = now() \
             FROM s \
             WHERE b.merchant_id = $1 AND b.account_id = $2 AND b.currency = $3 \
               AND (b.balance_minor <> s.total OR b.postings_count <> s.n)",
        )
        .bind(merchant)
        .bind(account)
        .bind(currency)
        .execute(&mut *tx)
        .await?;
        changed += done.rows_affected();
    }
    tx.commit().await?;
    Ok(changed)
}

/// Every clearing shard of a merchant in a currency (for rebuilding the clearing side).
pub async fn clearing_shards(
    pool: &PgPool,
    merchant: &str,
    currency: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT merchant_id, account_id, currency FROM balances \
         WHERE merchant_id = $1 AND currency = $2 AND account_id LIKE '~clearing/%'",
    )
    .bind(merchant)
    .bind(currency)
    .fetch_all(pool)
    .await
}
