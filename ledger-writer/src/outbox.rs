//! Reading the outbox: each waiting row with the ledger row it names, rebuilt into the
//! `TransactionPosted` event the relay sends.
//!
//! An outbox row holds only the transaction's id (`migrations/0006_outbox_of_references.sql`):
//! every field of the event is a column of `ledger_transactions`, written in the same database
//! transaction, so the relay reads the event from there instead of from a second copy.

use ledgerline_contracts::events::{PostingResult, TransactionPosted, TxnType, SCHEMA_VERSION};
use ledgerline_contracts::ids::{AccountId, EventId, MerchantId, RequestId, TransactionId};
use ledgerline_contracts::Currency;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// One waiting row and what it announces.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// The outbox row's id (its place in the relay's order).
    pub id: i64,
    /// The transaction it names.
    pub transaction_id: Uuid,
    /// The event, or why there is none to send.
    pub event: Result<TransactionPosted, Unsendable>,
}

/// Why a waiting row cannot be announced. Either way the row is dropped (the outbox announces
/// what the ledger holds) and the reconciler reports the transaction: as missing from the
/// ledger until a replay re-posts it, or as recorded and never announced (`STUCK_IN_FLIGHT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unsendable {
    /// The ledger holds no such transaction: a repair moved it to quarantine before the row
    /// was sent (a quarantine of this version deletes the row itself; one of an earlier
    /// version did not). The replay that re-posts it writes a row of its own.
    NotInLedger,
    /// A column holds what no writer writes (the ledger row was changed outside the writer).
    Unreadable(String),
}

impl Unsendable {
    /// The metric label.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Unsendable::NotInLedger => "not_in_ledger",
            Unsendable::Unreadable(_) => "unreadable",
        }
    }
}

/// The columns of `ledger_transactions` an event is built from, as PostgreSQL returns them
/// (read by name from the joined row).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct LedgerColumns {
    pub posted_event_id: Uuid,
    pub request_id: Uuid,
    pub transaction_id: Uuid,
    pub merchant_id: String,
    pub account_id: String,
    pub txn_type: String,
    pub amount_minor: i64,
    pub currency: String,
    pub result: String,
    pub reason_code: Option<String>,
    pub balance_after_minor: Option<i64>,
    pub correlation_id: String,
    pub posted_at: OffsetDateTime,
}

/// The first `limit` waiting rows in id order (the order the batches wrote them in, so per
/// account the order of the log), each joined to its ledger row.
pub(crate) async fn waiting(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<Waiting>, sqlx::Error> {
    // One statement reads both: a batch writes its ledger rows and outbox rows in one database
    // transaction, so a statement's snapshot has either both or neither.
    let rows = sqlx::query(
        "SELECT o.id, o.transaction_id, t.transaction_id IS NOT NULL AS in_ledger,
                t.posted_event_id, t.request_id, t.merchant_id, t.account_id, t.txn_type,
                t.amount_minor, t.currency, t.result, t.reason_code, t.balance_after_minor,
                t.correlation_id, t.posted_at
         FROM outbox o
         LEFT JOIN ledger_transactions t ON t.transaction_id = o.transaction_id
         ORDER BY o.id
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(waiting_of).collect()
}

fn waiting_of(row: &PgRow) -> Result<Waiting, sqlx::Error> {
    let transaction_id: Uuid = row.try_get("transaction_id")?;
    // The ledger's columns are NULL when it has no row for the transaction.
    let event = if row.try_get("in_ledger")? {
        event_of(LedgerColumns::from_row(row)?).map_err(Unsendable::Unreadable)
    } else {
        Err(Unsendable::NotInLedger)
    };
    Ok(Waiting {
        id: row.try_get("id")?,
        transaction_id,
        event,
    })
}

/// The event a ledger row announces, or which column no writer would have written.
pub(crate) fn event_of(c: LedgerColumns) -> Result<TransactionPosted, String> {
    let bad = |column: &str, value: &str| format!("{column} {value:?}");
    let result = match c.result.as_str() {
        "POSTED" => PostingResult::Posted,
        "DECLINED" => PostingResult::Declined,
        other => return Err(bad("result", other)),
    };
    Ok(TransactionPosted {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::from_uuid(c.posted_event_id),
        request_id: RequestId::from_uuid(c.request_id),
        transaction_id: TransactionId::from_uuid(c.transaction_id),
        merchant_id: MerchantId::parse(&c.merchant_id)
            .map_err(|_| bad("merchant_id", &c.merchant_id))?,
        account_id: AccountId::parse(&c.account_id)
            .map_err(|_| bad("account_id", &c.account_id))?,
        txn_type: TxnType::parse(&c.txn_type).ok_or_else(|| bad("txn_type", &c.txn_type))?,
        amount_minor: c.amount_minor,
        currency: Currency::parse(&c.currency).map_err(|_| bad("currency", &c.currency))?,
        result,
        reason_code: c.reason_code,
        balance_after_minor: c.balance_after_minor,
        correlation_id: c.correlation_id,
        posted_at: c.posted_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerline_contracts::events;

    fn columns() -> LedgerColumns {
        LedgerColumns {
            posted_event_id: Uuid::from_u128(1),
            request_id: Uuid::from_u128(2),
            transaction_id: Uuid::from_u128(3),
            merchant_id: "m-1".into(),
            account_id: "acc.1".into(),
            txn_type: "debit".into(),
            amount_minor: 1_250,
            currency: "EUR".into(),
            result: "DECLINED".into(),
            reason_code: Some("INSUFFICIENT_FUNDS".into()),
            balance_after_minor: None,
            correlation_id: "corr-1".into(),
            posted_at: OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(),
        }
    }

    #[test]
    fn a_ledger_row_becomes_the_event_with_every_column_in_its_field() {
        let e = event_of(columns()).unwrap();
        assert_eq!(e.schema_version, SCHEMA_VERSION);
        assert_eq!(*e.event_id.as_uuid(), Uuid::from_u128(1));
        assert_eq!(*e.request_id.as_uuid(), Uuid::from_u128(2));
        assert_eq!(*e.transaction_id.as_uuid(), Uuid::from_u128(3));
        assert_eq!(e.merchant_id.as_str(), "m-1");
        assert_eq!(e.account_id.as_str(), "acc.1");
        assert_eq!(e.txn_type, TxnType::Debit);
        assert_eq!(e.amount_minor, 1_250);
        assert_eq!(e.currency.code(), "EUR");
        assert_eq!(e.result, PostingResult::Declined);
        assert_eq!(e.reason_code.as_deref(), Some("INSUFFICIENT_FUNDS"));
        assert_eq!(e.balance_after_minor, None);
        assert_eq!(e.correlation_id, "corr-1");
        assert_eq!(e.posted_at.unix_timestamp(), 1_767_225_600);
    }

    #[test]
    fn the_rebuilt_event_passes_the_contracts_own_decoder() {
        let e = event_of(columns()).unwrap();
        let decoded: TransactionPosted = events::decode(&events::encode(&e)).unwrap();
        assert_eq!(decoded, e);
    }

    #[test]
    fn a_column_no_writer_writes_is_named_rather_than_sent() {
        type Spoil = fn(&mut LedgerColumns);
        let cases: [(Spoil, &str); 5] = [
            (|c| c.result = "MAYBE".into(), "result"),
            (|c| c.merchant_id = "m 1".into(), "merchant_id"),
            (|c| c.account_id = "~clearing/0".into(), "account_id"),
            (|c| c.txn_type = "Credit".into(), "txn_type"),
            (|c| c.currency = "XXQ".into(), "currency"),
        ];
        for (spoil, column) in cases {
            let mut c = columns();
            spoil(&mut c);
            let error = event_of(c).unwrap_err();
            assert!(error.starts_with(column), "{error} names {column}");
        }
    }
}
