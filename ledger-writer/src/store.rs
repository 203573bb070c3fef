//! PostgreSQL side of posting a batch: one database transaction per batch, set-based
//! statements (`UNNEST` of column arrays), locks taken in a fixed order.
//!
//! ```text
//! BEGIN
//!   INSERT balances (touched keys) ON CONFLICT DO NOTHING   -- rows exist, so they can be locked
//!   SELECT balances … ORDER BY key FOR UPDATE               -- lock in a fixed order
//!   SELECT transaction_id … = ANY(batch ids)                -- after the lock: sees any
//!                                                            -- concurrent writer's commit
//!   SELECT account_limits …
//!   plan (pure)
//!   INSERT ledger_transactions / postings / outbox, UPDATE balances   -- one statement each
//! COMMIT
//! ```
//! The primary key on `transaction_id` is the backstop: if two writers ever raced on the same
//! transaction despite the locks, the second's batch fails as a whole and is retried, and on
//! the retry it sees the first's rows and skips them.

use crate::plan::{self, Accepted, BalanceKey, Plan, Recorded, Snapshot};
use sqlx::{PgPool, Postgres, Row, Transaction};
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// Writes planned batches.
#[derive(Debug, Clone)]
pub struct LedgerStore {
    pool: PgPool,
    overdraft_default_minor: i64,
}

/// Column arrays of a set of balance keys, for `UNNEST`.
struct KeyColumns {
    merchants: Vec<String>,
    accounts: Vec<String>,
    currencies: Vec<String>,
}

impl KeyColumns {
    fn of<'a>(keys: impl Iterator<Item = &'a BalanceKey>) -> Self {
        let mut c = KeyColumns {
            merchants: Vec::new(),
            accounts: Vec::new(),
            currencies: Vec::new(),
        };
        for k in keys {
            c.merchants.push(k.merchant_id.clone());
            c.accounts.push(k.account_id.clone());
            c.currencies.push(k.currency.clone());
        }
        c
    }
}

impl LedgerStore {
    /// A store on `pool`; accounts without a row in `account_limits` may go down to
    /// `-overdraft_default_minor`.
    pub fn new(pool: PgPool, overdraft_default_minor: i64) -> Self {
        Self {
            pool,
            overdraft_default_minor,
        }
    }

    /// The pool (for readiness probes and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Posts `batch` (accepted decisions in offset order) in one database transaction and
    /// returns what was written. Safe to call again with the same batch: recorded
    /// transactions are skipped.
    pub async fn post(&self, batch: &[Accepted]) -> Result<Plan, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let keys = plan::touched_keys(batch);
        let snapshot = snapshot(&mut tx, batch, &keys).await?;
        let plan = plan::plan(
            batch.to_vec(),
            &snapshot,
            self.overdraft_default_minor,
            ledgerline_runtime::time::now(),
        );
        write(&mut tx, &plan).await?;
        tx.commit().await?;
        Ok(plan)
    }
}

async fn snapshot(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[Accepted],
    keys: &[BalanceKey],
) -> Result<Snapshot, sqlx::Error> {
    let k = KeyColumns::of(keys.iter());
    sqlx::query(
        "INSERT INTO balances (merchant_id, account_id, currency)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&k.merchants)
    .bind(&k.accounts)
    .bind(&k.currencies)
    .execute(&mut **tx)
    .await?;
    let rows = sqlx::query(
        "SELECT b.merchant_id, b.account_id, b.currency, b.balance_minor
         FROM balances b
         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k (m, a, c)
           ON (b.merchant_id, b.account_id, b.currency) = (k.m, k.a, k.c)
         ORDER BY b.merchant_id, b.account_id, b.currency
         FOR UPDATE OF b",
    )
    .bind(&k.merchants)
    .bind(&k.accounts)
    .bind(&k.currencies)
    .fetch_all(&mut **tx)
    .await?;
    let mut balances = HashMap::with_capacity(rows.len());
    for row in rows {
        balances.insert(key_of(&row)?, row.try_get::<i64, _>("balance_minor")?);
    }

    let ids: Vec<Uuid> = batch
        .iter()
        .map(|a| *a.decided.transaction_id.as_uuid())
        .collect();
    let rows = sqlx::query(
        "SELECT transaction_id, result, reason_code, balance_after_minor, posted_at
         FROM ledger_transactions WHERE transaction_id = ANY($1::uuid[])",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut recorded = HashMap::with_capacity(rows.len());
    for row in rows {
        let result: String = row.try_get("result")?;
        recorded.insert(
            row.try_get::<Uuid, _>("transaction_id")?,
            Recorded {
                posted: result == "POSTED",
                reason_code: row.try_get("reason_code")?,
                balance_after_minor: row.try_get("balance_after_minor")?,
                posted_at: row.try_get("posted_at")?,
            },
        );
    }

    let rows = sqlx::query(
        "SELECT l.merchant_id, l.account_id, l.currency, l.overdraft_minor
         FROM account_limits l
         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k (m, a, c)
           ON (l.merchant_id, l.account_id, l.currency) = (k.m, k.a, k.c)",
    )
    .bind(&k.merchants)
    .bind(&k.accounts)
    .bind(&k.currencies)
    .fetch_all(&mut **tx)
    .await?;
    let mut overdraft = HashMap::with_capacity(rows.len());
    for row in rows {
        overdraft.insert(key_of(&row)?, row.try_get::<i64, _>("overdraft_minor")?);
    }
    Ok(Snapshot {
        balances,
        overdraft,
        recorded,
    })
}

fn key_of(row: &sqlx::postgres::PgRow) -> Result<BalanceKey, sqlx::Error> {
    Ok(BalanceKey {
        merchant_id: row.try_get("merchant_id")?,
        account_id: row.try_get("account_id")?,
        currency: row.try_get("currency")?,
    })
}

async fn write(tx: &mut Transaction<'_, Postgres>, plan: &Plan) -> Result<(), sqlx::Error> {
    if plan.transactions.is_empty() {
        return Ok(());
    }
    insert_transactions(tx, plan).await?;
    insert_postings(tx, plan).await?;
    update_balances(tx, plan).await?;
    insert_outbox(tx, plan).await
}

async fn insert_transactions(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
) -> Result<(), sqlx::Error> {
    let n = plan.transactions.len();
    let mut transaction_id = Vec::with_capacity(n);
    let mut request_id = Vec::with_capacity(n);
    let mut decided_event_id = Vec::with_capacity(n);
    let mut posted_event_id = Vec::with_capacity(n);
    let mut merchant_id = Vec::with_capacity(n);
    let mut account_id = Vec::with_capacity(n);
    let mut txn_type = Vec::with_capacity(n);
    let mut amount_minor = Vec::with_capacity(n);
    let mut currency = Vec::with_capacity(n);
    let mut result = Vec::with_capacity(n);
    let mut reason_code: Vec<Option<String>> = Vec::with_capacity(n);
    let mut balance_after: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut correlation_id = Vec::with_capacity(n);
    let mut received_at: Vec<OffsetDateTime> = Vec::with_capacity(n);
    let mut decided_at: Vec<OffsetDateTime> = Vec::with_capacity(n);
    let mut posted_at: Vec<OffsetDateTime> = Vec::with_capacity(n);
    let mut topic = Vec::with_capacity(n);
    let mut partition = Vec::with_capacity(n);
    let mut offset = Vec::with_capacity(n);
    for t in &plan.transactions {
        let d = &t.accepted.decided;
        transaction_id.push(*d.transaction_id.as_uuid());
        request_id.push(*d.request_id.as_uuid());
        decided_event_id.push(*d.event_id.as_uuid());
        posted_event_id.push(*t.posted.event_id.as_uuid());
        merchant_id.push(d.merchant_id.to_string());
        account_id.push(d.account_id.to_string());
        txn_type.push(d.txn_type.as_str());
        amount_minor.push(d.amount_minor);
        currency.push(d.currency.code());
        result.push(t.posted.result.as_str());
        reason_code.push(t.posted.reason_code.clone());
        balance_after.push(t.posted.balance_after_minor);
        correlation_id.push(d.correlation_id.as_str());
        received_at.push(d.received_at);
        decided_at.push(d.decided_at);
        posted_at.push(t.posted.posted_at);
        topic.push(t.accepted.source.topic.as_str());
        partition.push(t.accepted.source.partition);
        offset.push(t.accepted.source.offset);
    }
    sqlx::query(
        "INSERT INTO ledger_transactions (
            transaction_id, request_id, decided_event_id, posted_event_id, merchant_id,
            account_id, txn_type, amount_minor, currency, result, reason_code,
            balance_after_minor, correlation_id, received_at, decided_at, posted_at,
            source_topic, source_partition, source_offset)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[],
            $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[],
            $12::int8[], $13::text[], $14::timestamptz[], $15::timestamptz[],
            $16::timestamptz[], $17::text[], $18::int4[], $19::int8[])",
    )
    .bind(&transaction_id)
    .bind(&request_id)
    .bind(&decided_event_id)
    .bind(&posted_event_id)
    .bind(&merchant_id)
    .bind(&account_id)
    .bind(&txn_type)
    .bind(&amount_minor)
    .bind(&currency)
    .bind(&result)
    .bind(&reason_code)
    .bind(&balance_after)
    .bind(&correlation_id)
    .bind(&received_at)
    .bind(&decided_at)
    .bind(&posted_at)
    .bind(&topic)
    .bind(&partition)
    .bind(&offset)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_postings(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
) -> Result<(), sqlx::Error> {
    if plan.postings.is_empty() {
        return Ok(());
    }
    let sources: HashMap<Uuid, &plan::Source> = plan
        .transactions
        .iter()
        .map(|t| {
            (
                *t.accepted.decided.transaction_id.as_uuid(),
                &t.accepted.source,
            )
        })
        .collect();
    let n = plan.postings.len();
    let mut transaction_id = Vec::with_capacity(n);
    let mut leg = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut topic = Vec::with_capacity(n);
    let mut partition = Vec::with_capacity(n);
    let mut offset = Vec::with_capacity(n);
    for p in &plan.postings {
        let source = sources[&p.transaction_id];
        transaction_id.push(p.transaction_id);
        leg.push(p.leg);
        amount.push(p.amount_minor);
        topic.push(source.topic.as_str());
        partition.push(source.partition);
        offset.push(source.offset);
    }
    let k = KeyColumns::of(plan.postings.iter().map(|p| &p.key));
    sqlx::query(
        "INSERT INTO postings (transaction_id, leg, merchant_id, account_id, currency,
            amount_minor, source_topic, source_partition, source_offset)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::int8[], $7::text[], $8::int4[], $9::int8[])",
    )
    .bind(&transaction_id)
    .bind(&leg)
    .bind(&k.merchants)
    .bind(&k.accounts)
    .bind(&k.currencies)
    .bind(&amount)
    .bind(&topic)
    .bind(&partition)
    .bind(&offset)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn update_balances(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
) -> Result<(), sqlx::Error> {
    if plan.balances.is_empty() {
        return Ok(());
    }
    let k = KeyColumns::of(plan.balances.keys());
    let (balance, count): (Vec<i64>, Vec<i64>) = plan.balances.values().copied().unzip();
    sqlx::query(
        "UPDATE balances b
         SET balance_minor = u.balance, postings_count = b.postings_count + u.n,
             updated_at = now()
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[])
              AS u (m, a, c, balance, n)
         WHERE (b.merchant_id, b.account_id, b.currency) = (u.m, u.a, u.c)",
    )
    .bind(&k.merchants)
    .bind(&k.accounts)
    .bind(&k.currencies)
    .bind(&balance)
    .bind(&count)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_outbox(tx: &mut Transaction<'_, Postgres>, plan: &Plan) -> Result<(), sqlx::Error> {
    let transaction_id: Vec<Uuid> = plan
        .transactions
        .iter()
        .map(|t| *t.posted.transaction_id.as_uuid())
        .collect();
    // WITH ORDINALITY keeps the batch's offset order in the outbox ids, which is the order
    // the relay publishes in. The row names the transaction; the relay reads the event from
    // the ledger row written just above (migrations/0006_outbox_of_references.sql).
    sqlx::query(
        "INSERT INTO outbox (transaction_id)
         SELECT t FROM UNNEST($1::uuid[]) WITH ORDINALITY AS u (t, i)
         ORDER BY i",
    )
    .bind(&transaction_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
