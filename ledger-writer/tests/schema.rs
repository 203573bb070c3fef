//! What the ledger's schema refuses by itself, whatever writes to it (real PostgreSQL, rows
//! written by hand so each case isolates one rule; the writer's own path is in `ledger.rs`).

mod support;

use ledgerline_testkit::TestEnv;
use sqlx::PgPool;
use support::quarantine;
use uuid::Uuid;

const FOREIGN_KEY_VIOLATION: &str = "23503";
const CHECK_VIOLATION: &str = "23514";

/// A transaction row as the writer records it: `result` POSTED (with a balance) or DECLINED.
async fn transaction(
    pool: &PgPool,
    account: &str,
    txn_type: &str,
    amount: i64,
    result: &str,
) -> Uuid {
    let id = Uuid::new_v4();
    let posted = result == "POSTED";
    sqlx::query(
        "INSERT INTO ledger_transactions (
            transaction_id, request_id, decided_event_id, posted_event_id, merchant_id,
            account_id, txn_type, amount_minor, currency, result, reason_code,
            balance_after_minor, correlation_id, received_at, decided_at, posted_at,
            source_topic, source_partition, source_offset)
         VALUES ($1, gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'm1', $2, $3, $4,
            'EUR', $5, $6, $7, 'c', now(), now(), now(), 't',
            0, (SELECT count(*) FROM ledger_transactions))",
    )
    .bind(id)
    .bind(account)
    .bind(txn_type)
    .bind(amount)
    .bind(result)
    .bind((!posted).then_some("INSUFFICIENT_FUNDS"))
    .bind(posted.then_some(amount))
    .execute(pool)
    .await
    .unwrap();
    id
}

/// The two legs of `id` in one statement, as the writer inserts them.
struct Legs<'a> {
    merchant: &'a str,
    account: &'a str,
    currency: &'a str,
    account_amount: i64,
    clearing_amount: i64,
}

impl Legs<'_> {
    fn credit(amount: i64) -> Self {
        Legs {
            merchant: "m1",
            account: "acc-1",
            currency: "EUR",
            account_amount: amount,
            clearing_amount: -amount,
        }
    }

    fn debit(amount: i64) -> Self {
        Legs {
            account_amount: -amount,
            clearing_amount: amount,
            ..Legs::credit(0)
        }
    }

    /// The SQLSTATE the schema refuses these legs of `id` with.
    async fn refused(&self, pool: &PgPool, id: Uuid) -> String {
        code(self.insert(pool, id).await)
    }

    async fn insert(&self, pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO postings (transaction_id, leg, merchant_id, account_id, currency,
                 amount_minor, source_topic, source_partition, source_offset)
             VALUES ($1, 'account', $2, $3, $4, $5, 't', 0, 0),
                    ($1, 'clearing', $2, '~clearing/0', $4, $6, 't', 0, 0)",
        )
        .bind(id)
        .bind(self.merchant)
        .bind(self.account)
        .bind(self.currency)
        .bind(self.account_amount)
        .bind(self.clearing_amount)
        .execute(pool)
        .await
        .map(drop)
    }
}

fn code(result: Result<(), sqlx::Error>) -> String {
    let error = result.expect_err("the schema refuses it");
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("not a database error: {error}"))
}

#[tokio::test]
async fn the_legs_of_a_posted_transaction_on_its_account_with_its_amount_are_accepted() {
    let env = TestEnv::new().await.unwrap();
    let credit = transaction(&env.pg, "acc-1", "credit", 10, "POSTED").await;
    Legs::credit(10).insert(&env.pg, credit).await.unwrap();
    let debit = transaction(&env.pg, "acc-1", "debit", 4, "POSTED").await;
    Legs::debit(4).insert(&env.pg, debit).await.unwrap();
}

#[tokio::test]
async fn legs_of_a_transaction_that_is_not_recorded_are_refused() {
    let env = TestEnv::new().await.unwrap();
    let refused = Legs::credit(10).refused(&env.pg, Uuid::new_v4()).await;
    assert_eq!(refused, FOREIGN_KEY_VIOLATION);
}

#[tokio::test]
async fn a_declined_transaction_has_no_legs() {
    let env = TestEnv::new().await.unwrap();
    let declined = transaction(&env.pg, "acc-1", "debit", 10, "DECLINED").await;
    let refused = Legs::debit(10).refused(&env.pg, declined).await;
    assert_eq!(refused, FOREIGN_KEY_VIOLATION);
}

#[tokio::test]
async fn legs_that_differ_from_their_transaction_in_account_amount_sign_merchant_or_currency_are_refused(
) {
    let env = TestEnv::new().await.unwrap();
    let credit = transaction(&env.pg, "acc-1", "credit", 10, "POSTED").await;
    let cases = [
        (
            "another account",
            Legs {
                account: "acc-2",
                ..Legs::credit(10)
            },
        ),
        ("another amount", Legs::credit(11)),
        ("the debit's sign", Legs::debit(10)),
        (
            "another merchant",
            Legs {
                merchant: "m2",
                ..Legs::credit(10)
            },
        ),
        (
            "another currency",
            Legs {
                currency: "USD",
                ..Legs::credit(10)
            },
        ),
    ];
    for (what, legs) in cases {
        let refused = legs.refused(&env.pg, credit).await;
        assert_eq!(refused, FOREIGN_KEY_VIOLATION, "{what}");
    }
}

#[tokio::test]
async fn legs_that_do_not_sum_to_zero_are_refused() {
    let env = TestEnv::new().await.unwrap();
    let credit = transaction(&env.pg, "acc-1", "credit", 10, "POSTED").await;
    let unbalanced = Legs {
        clearing_amount: -9,
        ..Legs::credit(10)
    };
    assert_eq!(unbalanced.refused(&env.pg, credit).await, CHECK_VIOLATION);
}

#[tokio::test]
async fn a_quarantine_deletes_a_transaction_only_after_its_postings() {
    let env = TestEnv::new().await.unwrap();
    let credit = transaction(&env.pg, "acc-1", "credit", 10, "POSTED").await;
    Legs::credit(10).insert(&env.pg, credit).await.unwrap();

    let orphaning = quarantine(&env.pg, credit, &["ledger_transactions"]).await;
    assert_eq!(code(orphaning), FOREIGN_KEY_VIOLATION);

    quarantine(&env.pg, credit, &["postings", "ledger_transactions"])
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
        .fetch_one(&env.pg)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn identifiers_compare_bytewise_whatever_the_database_locale() {
    let env = TestEnv::new().await.unwrap();
    let not_bytewise: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public'
           AND table_name IN ('ledger_transactions', 'postings', 'balances', 'account_limits')
           AND column_name IN ('merchant_id', 'account_id', 'currency', 'leg', 'source_topic')
           AND (table_name, column_name) <> ('postings', 'source_topic')
           AND collation_name IS DISTINCT FROM 'C'",
    )
    .fetch_all(&env.pg)
    .await
    .unwrap();
    assert_eq!(not_bytewise, vec![]);
    // The writer locks balance rows in the column's order and the reconciler's rebuild in
    // Rust's: they must agree (under en_US, 'acc1' sorts before 'acc-10').
    let mut keys = vec![
        "acc1".to_string(),
        "acc-10".into(),
        "Acc2".into(),
        "acc_3".into(),
    ];
    sqlx::query(
        "INSERT INTO balances (merchant_id, account_id, currency)
         SELECT 'm1', k, 'EUR' FROM UNNEST($1::text[]) AS k",
    )
    .bind(&keys)
    .execute(&env.pg)
    .await
    .unwrap();
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT account_id FROM balances ORDER BY merchant_id, account_id, currency FOR UPDATE",
    )
    .fetch_all(&env.pg)
    .await
    .unwrap();
    keys.sort();
    assert_eq!(locked, keys);
}
