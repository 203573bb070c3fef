//! Reads from the PostgreSQL ledger: account balances, and the durable status of a
//! transaction once the Redis read model no longer has it (expired or lost).

use ledgerline_contracts::currency::Currency;
use ledgerline_contracts::money::format_minor;
use ledgerline_runtime::status::{State, StateEntry, TransactionFields, TransactionStatus};
use serde::Serialize;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

/// One currency's balance of an account.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Balance {
    /// ISO-4217 code.
    pub currency: String,
    /// Decimal string at the currency's scale.
    pub balance: String,
    /// The same in minor units.
    pub balance_minor: i64,
    /// Postings applied to it.
    pub postings_count: i64,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// Read-only access to the ledger.
#[derive(Debug, Clone)]
pub struct LedgerReader {
    pool: PgPool,
}

impl LedgerReader {
    /// A reader on `pool` (lazily connected).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The merchant's account balances, one per currency (empty: the account never posted).
    pub async fn balances(
        &self,
        merchant_id: &str,
        account_id: &str,
    ) -> Result<Vec<Balance>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT currency, balance_minor, postings_count, updated_at FROM balances
             WHERE merchant_id = $1 AND account_id = $2 AND postings_count > 0
             ORDER BY currency",
        )
        .bind(merchant_id)
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let code: String = r.try_get("currency")?;
                let minor: i64 = r.try_get("balance_minor")?;
                let updated_at: OffsetDateTime = r.try_get("updated_at")?;
                Ok(Balance {
                    balance: Currency::parse(&code)
                        .map(|c| format_minor(minor, c))
                        .unwrap_or_else(|_| minor.to_string()),
                    currency: code,
                    balance_minor: minor,
                    postings_count: r.try_get("postings_count")?,
                    updated_at: crate::routes::rfc3339(updated_at),
                })
            })
            .collect()
    }

    /// The transaction as the ledger recorded it, if it belongs to `merchant_id`.
    pub async fn transaction(
        &self,
        merchant_id: &str,
        transaction_id: uuid::Uuid,
    ) -> Result<Option<TransactionStatus>, sqlx::Error> {
        let Some(r) = sqlx::query(
            "SELECT request_id, account_id, txn_type, amount_minor, currency, result,
                    reason_code, balance_after_minor, correlation_id, received_at, decided_at,
                    posted_at
             FROM ledger_transactions WHERE transaction_id = $1 AND merchant_id = $2",
        )
        .bind(transaction_id)
        .bind(merchant_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let code: String = r.try_get("currency")?;
        let currency = Currency::parse(&code).map_err(|e| sqlx::Error::Decode(e.into()))?;
        let amount: i64 = r.try_get("amount_minor")?;
        let result: String = r.try_get("result")?;
        let state = if result == "POSTED" {
            State::Posted
        } else {
            State::Declined
        };
        let reason_code: Option<String> = r.try_get("reason_code")?;
        let at = |name: &str| -> Result<String, sqlx::Error> {
            Ok(crate::routes::rfc3339(
                r.try_get::<OffsetDateTime, _>(name)?,
            ))
        };
        let request_id: uuid::Uuid = r.try_get("request_id")?;
        Ok(Some(TransactionStatus {
            transaction_id: transaction_id.to_string(),
            merchant_id: merchant_id.to_string(),
            state,
            reason_code: reason_code.clone(),
            history: vec![
                entry(State::Received, at("received_at")?, None),
                entry(State::Accepted, at("decided_at")?, None),
                entry(state, at("posted_at")?, reason_code),
            ],
            balance_after: r
                .try_get::<Option<i64>, _>("balance_after_minor")?
                .map(|b| format_minor(b, currency)),
            fields: TransactionFields {
                request_id: request_id.to_string(),
                account_id: r.try_get("account_id")?,
                amount: format_minor(amount, currency),
                currency: code,
                txn_type: r.try_get("txn_type")?,
                description: None,
                metadata: Default::default(),
                correlation_id: r.try_get("correlation_id")?,
            },
            attempts: Vec::new(),
        }))
    }
}

fn entry(state: State, at: String, reason_code: Option<String>) -> StateEntry {
    StateEntry {
        state,
        at,
        reason_code,
    }
}
