//! The pure part of posting a batch: given the accepted decisions in offset order, the
//! balances and limits as the database holds them (locked), and which transactions are
//! already recorded, decide every transaction's result and the rows to write.
//!
//! No I/O here, so the accounting rules are unit-tested exhaustively; [`crate::store`] only
//! moves these rows in and out of PostgreSQL.

use ledgerline_contracts::events::{
    PostingResult, TransactionDecided, TransactionPosted, TxnType, SCHEMA_VERSION,
};
use ledgerline_contracts::ids::EventId;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// Why a debit is declined: it would take the account below its overdraft limit.
pub const INSUFFICIENT_FUNDS: &str = "INSUFFICIENT_FUNDS";
/// Why a transaction is declined: a balance would leave the `i64` range.
pub const BALANCE_OVERFLOW: &str = "BALANCE_OVERFLOW";

/// A balance row: (merchant, account, currency).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BalanceKey {
    /// Merchant the account belongs to.
    pub merchant_id: String,
    /// The account, or a clearing shard (`~clearing/<partition>`).
    pub account_id: String,
    /// ISO-4217 code.
    pub currency: String,
}

impl BalanceKey {
    /// The merchant's clearing shard for a source partition (see `migrations/0002_ledger.sql`).
    pub fn clearing(merchant_id: &str, partition: i32, currency: &str) -> Self {
        Self {
            merchant_id: merchant_id.to_string(),
            account_id: clearing_account(partition),
            currency: currency.to_string(),
        }
    }

    /// The customer account a decision posts to.
    pub fn account(decided: &TransactionDecided) -> Self {
        Self {
            merchant_id: decided.merchant_id.to_string(),
            account_id: decided.account_id.to_string(),
            currency: decided.currency.code().to_string(),
        }
    }
}

/// The clearing shard's account id for a partition.
pub fn clearing_account(partition: i32) -> String {
    format!("~clearing/{partition}")
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An accepted decision and where it was read.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The decision event.
    pub decided: TransactionDecided,
    /// Its position in `txn.outcomes`.
    pub source: Source,
}

/// One leg of a posted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The transaction.
    pub transaction_id: Uuid,
    /// `account` or `clearing`.
    pub leg: &'static str,
    /// The balance it moves.
    pub key: BalanceKey,
    /// Signed amount in minor units (never zero).
    pub amount_minor: i64,
}

/// One transaction's result and the event that reports it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The decision that was posted or declined.
    pub accepted: Accepted,
    /// What the relay will publish to `txn.postings`.
    pub posted: TransactionPosted,
}

/// Everything a batch writes.
#[derive(Debug, Default)]
pub struct Plan {
    /// New transactions (posted or declined), in offset order.
    pub transactions: Vec<Planned>,
    /// Two legs per posted transaction.
    pub postings: Vec<Posting>,
    /// Final balance and number of postings added, per touched balance.
    pub balances: HashMap<BalanceKey, (i64, i64)>,
    /// Decisions skipped because the transaction is already in the ledger (or earlier in
    /// the same batch): redeliveries, replays, re-emitted decisions.
    pub already_recorded: usize,
    /// The recorded results of those found in the database (not repeats within the batch).
    pub restated: Vec<Restated>,
}

impl Plan {
    /// Number of declined transactions.
    pub fn declined(&self) -> usize {
        self.transactions
            .iter()
            .filter(|t| t.posted.result == PostingResult::Declined)
            .count()
    }
}

/// A transaction the ledger already holds, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// POSTED (else DECLINED).
    pub posted: bool,
    /// Why it was declined.
    pub reason_code: Option<String>,
    /// Balance after, when posted.
    pub balance_after_minor: Option<i64>,
    /// When it was committed.
    pub posted_at: OffsetDateTime,
}

/// A decision for a transaction the ledger already holds: its recorded result, so the status
/// read model can be told again (it may have lost it, e.g. a Redis restart).
#[derive(Debug, Clone)]
pub struct Restated {
    /// The decision that arrived again.
    pub decided: TransactionDecided,
    /// What the ledger recorded the first time.
    pub recorded: Recorded,
}

/// What the database said before planning.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Current balances (missing: zero).
    pub balances: HashMap<BalanceKey, i64>,
    /// Overdraft limits that differ from the default.
    pub overdraft: HashMap<BalanceKey, i64>,
    /// Transactions already recorded, with their results.
    pub recorded: HashMap<Uuid, Recorded>,
}

/// Every balance row a batch may touch: each account and its clearing shard.
pub fn touched_keys(batch: &[Accepted]) -> Vec<BalanceKey> {
    let mut keys: Vec<BalanceKey> = batch
        .iter()
        .flat_map(|a| {
            [
                BalanceKey::account(&a.decided),
                BalanceKey::clearing(
                    a.decided.merchant_id.as_str(),
                    a.source.partition,
                    a.decided.currency.code(),
                ),
            ]
        })
        .collect();
    // A fixed order is the lock order, so two writers never deadlock on the same rows.
    keys.sort();
    keys.dedup();
    keys
}

/// Posts `batch` (offset order) against `snapshot`.
pub fn plan(
    batch: Vec<Accepted>,
    snapshot: &Snapshot,
    overdraft_default_minor: i64,
    now: OffsetDateTime,
) -> Plan {
    let mut plan = Plan::default();
    let current = |key: &BalanceKey, plan: &Plan| -> i64 {
        plan.balances
            .get(key)
            .map(|(b, _)| *b)
            .or_else(|| snapshot.balances.get(key).copied())
            .unwrap_or(0)
    };
    let mut seen: HashSet<Uuid> = HashSet::new();
    for accepted in batch {
        let id = *accepted.decided.transaction_id.as_uuid();
        if let Some(recorded) = snapshot.recorded.get(&id) {
            plan.already_recorded += 1;
            if seen.insert(id) {
                plan.restated.push(Restated {
                    decided: accepted.decided,
                    recorded: recorded.clone(),
                });
            }
            continue;
        }
        if !seen.insert(id) {
            plan.already_recorded += 1;
            continue;
        }
        let d = &accepted.decided;
        let account = BalanceKey::account(d);
        let clearing = BalanceKey::clearing(
            d.merchant_id.as_str(),
            accepted.source.partition,
            d.currency.code(),
        );
        let (account_delta, clearing_delta) = match d.txn_type {
            TxnType::Credit => (d.amount_minor, -d.amount_minor),
            TxnType::Debit => (-d.amount_minor, d.amount_minor),
        };
        let balance = current(&account, &plan);
        let floor = -snapshot
            .overdraft
            .get(&account)
            .copied()
            .unwrap_or(overdraft_default_minor);
        let new_account = balance.checked_add(account_delta);
        let new_clearing = current(&clearing, &plan).checked_add(clearing_delta);
        let outcome = match (new_account, new_clearing) {
            (Some(a), _) if d.txn_type == TxnType::Debit && a < floor => Err(INSUFFICIENT_FUNDS),
            (Some(a), Some(c)) => Ok((a, c)),
            _ => Err(BALANCE_OVERFLOW),
        };
        let posted = match outcome {
            Ok((a, c)) => {
                for (key, delta, leg, after) in [
                    (account, account_delta, "account", a),
                    (clearing, clearing_delta, "clearing", c),
                ] {
                    plan.postings.push(Posting {
                        transaction_id: id,
                        leg,
                        key: key.clone(),
                        amount_minor: delta,
                    });
                    let entry = plan.balances.entry(key).or_insert((after, 0));
                    *entry = (after, entry.1 + 1);
                }
                posted_event(d, PostingResult::Posted, None, Some(a), now)
            }
            Err(reason) => posted_event(d, PostingResult::Declined, Some(reason), None, now),
        };
        plan.transactions.push(Planned { accepted, posted });
    }
    debug_assert_eq!(
        plan.postings
            .iter()
            .map(|p| i128::from(p.amount_minor))
            .sum::<i128>(),
        0,
        "a batch's postings sum to zero"
    );
    debug_assert_eq!(
        plan.postings.len(),
        2 * (plan.transactions.len() - plan.declined())
    );
    plan
}

/// The ledger's result event. Its id is derived from the transaction, so a rebuild of the
/// ledger from the log publishes the same ids and every consumer deduplicates them.
fn posted_event(
    d: &TransactionDecided,
    result: PostingResult,
    reason: Option<&str>,
    balance_after_minor: Option<i64>,
    now: OffsetDateTime,
) -> TransactionPosted {
    let decided_ms = u64::try_from(d.decided_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut seed = b"posted:".to_vec();
    seed.extend_from_slice(d.transaction_id.as_uuid().as_bytes());
    TransactionPosted {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::derive(decided_ms, &seed),
        request_id: d.request_id,
        transaction_id: d.transaction_id,
        merchant_id: d.merchant_id.clone(),
        account_id: d.account_id.clone(),
        txn_type: d.txn_type,
        amount_minor: d.amount_minor,
        currency: d.currency,
        result,
        reason_code: reason.map(str::to_string),
        balance_after_minor,
        correlation_id: d.correlation_id.clone(),
        posted_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerline_contracts::currency::Currency;
    use ledgerline_contracts::events::Decision;
    use ledgerline_contracts::ids::{
        AccountId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
    };

    fn decided(key: &str, account: &str, txn_type: TxnType, amount: i64) -> Accepted {
        let merchant = MerchantId::parse("m1").unwrap();
        let idem = IdempotencyKey::parse(key).unwrap();
        let now = OffsetDateTime::now_utc();
        Accepted {
            decided: TransactionDecided {
                schema_version: SCHEMA_VERSION,
                event_id: EventId::new_v7(),
                request_id: RequestId::new_v7(),
                transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant, &idem),
                merchant_id: merchant,
                account_id: AccountId::parse(account).unwrap(),
                idempotency_key: idem,
                txn_type,
                amount_minor: amount,
                currency: Currency::EUR,
                decision: Decision::Accepted,
                reason_code: None,
                original_request_id: None,
                request_fingerprint: "f".into(),
                correlation_id: "c".into(),
                received_at: now,
                decided_at: now,
            },
            source: Source {
                topic: "txn.outcomes".into(),
                partition: 1,
                offset: 0,
            },
        }
    }

    fn run(batch: Vec<Accepted>, snapshot: &Snapshot) -> Plan {
        plan(batch, snapshot, 0, OffsetDateTime::now_utc())
    }

    fn results(plan: &Plan) -> Vec<(&'static str, Option<String>, Option<i64>)> {
        plan.transactions
            .iter()
            .map(|t| {
                (
                    t.posted.result.as_str(),
                    t.posted.reason_code.clone(),
                    t.posted.balance_after_minor,
                )
            })
            .collect()
    }

    #[test]
    fn a_credit_posts_two_legs_that_sum_to_zero() {
        let plan = run(
            vec![decided("k1", "a", TxnType::Credit, 500)],
            &Snapshot::default(),
        );
        assert_eq!(results(&plan), vec![("POSTED", None, Some(500))]);
        assert_eq!(plan.postings.len(), 2);
        assert_eq!(plan.postings.iter().map(|p| p.amount_minor).sum::<i64>(), 0);
        let clearing = BalanceKey::clearing("m1", 1, "EUR");
        assert_eq!(plan.balances[&clearing], (-500, 1));
    }

    #[test]
    fn a_debit_beyond_the_balance_is_declined_and_posts_nothing() {
        let batch = vec![
            decided("k1", "a", TxnType::Credit, 500),
            decided("k2", "a", TxnType::Debit, 501),
            decided("k3", "a", TxnType::Debit, 500),
        ];
        let plan = run(batch, &Snapshot::default());
        assert_eq!(
            results(&plan),
            vec![
                ("POSTED", None, Some(500)),
                ("DECLINED", Some(INSUFFICIENT_FUNDS.into()), None),
                ("POSTED", None, Some(0)),
            ]
        );
        assert_eq!(plan.postings.len(), 4);
        assert_eq!(plan.declined(), 1);
    }

    #[test]
    fn an_overdraft_limit_lets_a_debit_go_below_zero_down_to_the_limit() {
        let mut snapshot = Snapshot::default();
        let a = BalanceKey::account(&decided("x", "a", TxnType::Debit, 1).decided);
        snapshot.overdraft.insert(a, 100);
        let plan = run(
            vec![
                decided("k1", "a", TxnType::Debit, 60),
                decided("k2", "a", TxnType::Debit, 40),
                decided("k3", "a", TxnType::Debit, 1),
            ],
            &snapshot,
        );
        let r = results(&plan);
        assert_eq!(r[0], ("POSTED", None, Some(-60)));
        assert_eq!(r[1], ("POSTED", None, Some(-100)));
        assert_eq!(r[2].0, "DECLINED");
    }

    #[test]
    fn recorded_and_repeated_transactions_are_skipped() {
        let first = decided("k1", "a", TxnType::Credit, 5);
        let again = first.clone();
        let other = decided("k2", "a", TxnType::Credit, 7);
        let mut snapshot = Snapshot::default();
        snapshot.recorded.insert(
            *other.decided.transaction_id.as_uuid(),
            Recorded {
                posted: true,
                reason_code: None,
                balance_after_minor: Some(7),
                posted_at: OffsetDateTime::now_utc(),
            },
        );
        let plan = run(vec![first, again, other], &snapshot);
        assert_eq!(plan.transactions.len(), 1);
        assert_eq!(plan.already_recorded, 2);
        assert_eq!(
            plan.restated.len(),
            1,
            "the recorded one is restated, the repeat is not"
        );
        assert_eq!(plan.restated[0].recorded.balance_after_minor, Some(7));
    }

    #[test]
    fn a_credit_that_would_overflow_the_balance_is_declined() {
        let mut snapshot = Snapshot::default();
        let a = BalanceKey::account(&decided("x", "a", TxnType::Credit, 1).decided);
        snapshot.balances.insert(a, i64::MAX - 1);
        let plan = run(vec![decided("k1", "a", TxnType::Credit, 2)], &snapshot);
        assert_eq!(
            results(&plan),
            vec![("DECLINED", Some(BALANCE_OVERFLOW.into()), None)]
        );
        assert!(plan.postings.is_empty());
    }

    #[test]
    fn the_posted_event_id_depends_only_on_the_transaction() {
        let a = decided("k1", "a", TxnType::Credit, 5);
        let one = run(vec![a.clone()], &Snapshot::default());
        let two = run(vec![a], &Snapshot::default());
        assert_eq!(
            one.transactions[0].posted.event_id,
            two.transactions[0].posted.event_id
        );
    }

    #[test]
    fn lock_order_is_sorted_and_unique() {
        let keys = touched_keys(&[
            decided("k1", "b", TxnType::Credit, 5),
            decided("k2", "a", TxnType::Credit, 5),
            decided("k3", "a", TxnType::Credit, 5),
        ]);
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 3);
    }

    proptest::proptest! {
        /// Whatever the workload, the books balance: every balance equals the sum of its
        /// postings, all postings sum to zero, and no account goes below its floor.
        #[test]
        fn balances_equal_the_sum_of_postings_and_never_break_the_floor(
            ops in proptest::collection::vec((0usize..4, proptest::bool::ANY, 1i64..1_000), 1..200)
        ) {
            let batch: Vec<Accepted> = ops
                .iter()
                .enumerate()
                .map(|(i, (acc, credit, amount))| {
                    let t = if *credit { TxnType::Credit } else { TxnType::Debit };
                    decided(&format!("k{i}"), &format!("acc{acc}"), t, *amount)
                })
                .collect();
            let plan = run(batch, &Snapshot::default());
            let mut sums: HashMap<BalanceKey, i64> = HashMap::new();
            for p in &plan.postings {
                *sums.entry(p.key.clone()).or_default() += p.amount_minor;
            }
            proptest::prop_assert_eq!(plan.postings.iter().map(|p| p.amount_minor).sum::<i64>(), 0);
            for (key, (balance, _)) in &plan.balances {
                proptest::prop_assert_eq!(sums[key], *balance);
                if !key.account_id.starts_with('~') {
                    proptest::prop_assert!(*balance >= 0);
                }
            }
        }
    }
}
