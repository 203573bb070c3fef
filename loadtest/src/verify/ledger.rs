//! Reads from the PostgreSQL ledger (migrations/0002_ledger.sql) for the end-to-end check:
//! the ledger row of each transaction, its postings, and the balances of the accounts touched.

use sqlx::PgPool;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// Most ids bound to one `= ANY($1)` query.
pub const IDS_PER_QUERY_MAX: usize = 5_000;

/// One `ledger_transactions` row, with its postings summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The transaction.
    pub transaction_id: Uuid,
    /// Its merchant.
    pub merchant_id: String,
    /// Its account.
    pub account_id: String,
    /// `credit` or `debit`.
    pub txn_type: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO-4217 code.
    pub currency: String,
    /// `POSTED` or `DECLINED`.
    pub result: String,
    /// Why, for `DECLINED`.
    pub reason_code: Option<String>,
    /// When ingress received the request.
    pub received_at: OffsetDateTime,
    /// When the ledger committed.
    pub posted_at: OffsetDateTime,
    /// How many postings the transaction has.
    pub legs: i64,
    /// Sum of its postings (must be 0).
    pub legs_sum_minor: i64,
    /// Its account leg's amount (+amount for a credit, −amount for a debit).
    pub account_leg_minor: i64,
}

type Row = (
    Uuid,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    OffsetDateTime,
    OffsetDateTime,
    i64,
    i64,
    i64,
);

/// The ledger rows (with postings summarised) of `ids` that exist.
pub async fn rows(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT t.transaction_id, t.merchant_id, t.account_id, t.txn_type, t.amount_minor,
                    t.currency, t.result, t.reason_code, t.received_at, t.posted_at,
                    count(p.leg) AS legs,
                    coalesce(sum(p.amount_minor), 0)::bigint AS legs_sum,
                    coalesce(sum(p.amount_minor) FILTER (WHERE p.leg = 'account'), 0)::bigint
                        AS account_leg
             FROM ledger_transactions t
             LEFT JOIN postings p ON p.transaction_id = t.transaction_id
             WHERE t.transaction_id = ANY($1)
             GROUP BY t.transaction_id",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await?;
        out.extend(rows.into_iter().map(|r| LedgerRow {
            transaction_id: r.0,
            merchant_id: r.1,
            account_id: r.2,
            txn_type: r.3,
            amount_minor: r.4,
            currency: r.5,
            result: r.6,
            reason_code: r.7,
            received_at: r.8,
            posted_at: r.9,
            legs: r.10,
            legs_sum_minor: r.11,
            account_leg_minor: r.12,
        }));
    }
    Ok(out)
}

/// Which of `ids` have a ledger row (cheap: primary-key look-ups only).
pub async fn present(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let found: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT transaction_id FROM ledger_transactions WHERE transaction_id = ANY($1)",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await?;
        out.extend(found.into_iter().map(|(id,)| id));
    }
    Ok(out)
}

/// How many rows `ids` have in `ledger_transactions` (at most one each, by the primary key).
pub async fn row_count(pool: &PgPool, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    let mut total = 0;
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM ledger_transactions WHERE transaction_id = ANY($1)",
        )
        .bind(chunk)
        .fetch_one(pool)
        .await?;
        total += n;
    }
    Ok(total)
}

/// A balance row compared with the sum of its postings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceCheck {
    /// The account (or clearing shard).
    pub account_id: String,
    /// ISO-4217 code.
    pub currency: String,
    /// `balances.balance_minor` (`None`: no balance row).
    pub balance_minor: Option<i64>,
    /// `balances.postings_count`.
    pub postings_count: Option<i64>,
    /// Sum of the account's postings.
    pub postings_sum_minor: i64,
    /// Number of the account's postings.
    pub postings: i64,
}

impl BalanceCheck {
    /// Whether the balance row equals the sum of its postings.
    pub fn holds(&self) -> bool {
        self.balance_minor.unwrap_or(0) == self.postings_sum_minor
            && self.postings_count.unwrap_or(0) == self.postings
    }
}

type BalanceRow = (String, String, Option<i64>, Option<i64>, i64, i64);

/// Balance = sum of postings, for the accounts `ids` touched and every clearing shard of the
/// merchant.
pub async fn balances(
    pool: &PgPool,
    merchant_id: &str,
    accounts: &[(String, String)],
) -> Result<Vec<BalanceCheck>, sqlx::Error> {
    let (account_ids, currencies): (Vec<String>, Vec<String>) = accounts.iter().cloned().unzip();
    let rows: Vec<BalanceRow> = sqlx::query_as(
        "WITH touched AS (
             SELECT * FROM unnest($2::text[], $3::text[]) AS u(account_id, currency)
         ),
         b AS (
             SELECT account_id, currency, balance_minor, postings_count FROM balances
             WHERE merchant_id = $1
               AND (account_id LIKE '~clearing/%'
                    OR (account_id, currency) IN (SELECT account_id, currency FROM touched))
         ),
         s AS (
             SELECT account_id, currency, sum(amount_minor)::bigint AS total, count(*) AS n
             FROM postings
             WHERE merchant_id = $1
               AND (account_id LIKE '~clearing/%'
                    OR (account_id, currency) IN (SELECT account_id, currency FROM touched))
             GROUP BY account_id, currency
         )
         SELECT coalesce(b.account_id, s.account_id), coalesce(b.currency, s.currency),
                b.balance_minor, b.postings_count,
                coalesce(s.total, 0)::bigint, coalesce(s.n, 0)::bigint
         FROM b FULL OUTER JOIN s ON b.account_id = s.account_id AND b.currency = s.currency",
    )
    .bind(merchant_id)
    .bind(&account_ids)
    .bind(&currencies)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| BalanceCheck {
            account_id: r.0,
            currency: r.1,
            balance_minor: r.2,
            postings_count: r.3,
            postings_sum_minor: r.4,
            postings: r.5,
        })
        .collect())
}

/// Per currency, the sum of every balance of the merchant (accounts and clearing): a
/// double-entry ledger keeps it at zero.
pub async fn merchant_totals(
    pool: &PgPool,
    merchant_id: &str,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT currency, sum(balance_minor)::bigint FROM balances WHERE merchant_id = $1
         GROUP BY currency",
    )
    .bind(merchant_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Ledger transactions of the merchant decided since `since` (to find rows nobody recorded).
pub async fn decided_since(
    pool: &PgPool,
    merchant_id: &str,
    since: OffsetDateTime,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT transaction_id FROM ledger_transactions WHERE decided_at >= $2 AND merchant_id = $1",
    )
    .bind(merchant_id)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
