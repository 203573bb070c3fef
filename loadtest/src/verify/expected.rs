//! What the record file says must have happened, per transaction: the original body, when its
//! first 202 arrived, and how many retries and conflicts followed.

use std::collections::BTreeMap;
use uuid::Uuid;

use crate::record::{Accepted, Role};
use crate::workload::TxnSpec;

/// One transaction as the load generator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The transaction.
    pub transaction_id: Uuid,
    /// Its merchant.
    pub merchant_id: String,
    /// The original body (`None` if only a retry or a conflict was recorded).
    pub original: Option<TxnSpec>,
    /// The earliest 202 of the original (or of any attempt, without one), unix ms.
    pub first_accepted_at_ms: i64,
    /// Every 202 recorded under this transaction.
    pub accepted_202s: u32,
    /// Retries with the same body.
    pub retries: u32,
    /// Retries with another body.
    pub conflicts: u32,
}

/// Records whose transaction id is not a UUID (counted, then ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grouped {
    /// One entry per transaction, by id.
    pub transactions: BTreeMap<Uuid, Expected>,
    /// Records with an unparsable transaction id.
    pub malformed_ids: u64,
}

/// Groups records by transaction.
pub fn group(records: &[Accepted]) -> Grouped {
    let mut out = Grouped::default();
    for r in records {
        let Ok(id) = r.transaction_id.parse::<Uuid>() else {
            out.malformed_ids += 1;
            continue;
        };
        let e = out.transactions.entry(id).or_insert_with(|| Expected {
            transaction_id: id,
            merchant_id: r.merchant_id.clone(),
            original: None,
            first_accepted_at_ms: r.accepted_at_ms,
            accepted_202s: 0,
            retries: 0,
            conflicts: 0,
        });
        e.accepted_202s += 1;
        match r.role {
            Role::Original => {
                // The original's time is the one that counts for 202 → POSTED.
                if e.original.is_none() {
                    e.first_accepted_at_ms = r.accepted_at_ms;
                } else {
                    e.first_accepted_at_ms = e.first_accepted_at_ms.min(r.accepted_at_ms);
                }
                e.original = Some(r.spec.clone());
            }
            Role::Retry => e.retries += 1,
            Role::Conflict => e.conflicts += 1,
        }
        if e.original.is_none() {
            e.first_accepted_at_ms = e.first_accepted_at_ms.min(r.accepted_at_ms);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerline_contracts::events::TxnType;

    fn rec(id: &str, role: Role, amount: i64, at: i64) -> Accepted {
        Accepted {
            transaction_id: id.into(),
            merchant_id: "m".into(),
            idempotency_key: "k".into(),
            role,
            spec: TxnSpec {
                account_id: "a".into(),
                amount_minor: amount,
                txn_type: TxnType::Credit,
                currency: "EUR".into(),
            },
            accepted_at_ms: at,
        }
    }

    const A: &str = "6f1c2a4e-8b3d-4c5e-9a7f-1d2e3f405162";

    #[test]
    fn retries_and_conflicts_group_under_their_original_and_keep_its_body() {
        let g = group(&[
            rec(A, Role::Original, 100, 10),
            rec(A, Role::Retry, 100, 20),
            rec(A, Role::Conflict, 101, 30),
            rec(A, Role::Retry, 100, 40),
        ]);
        let e = &g.transactions[&A.parse::<Uuid>().unwrap()];
        assert_eq!(e.original.as_ref().unwrap().amount_minor, 100);
        assert_eq!((e.accepted_202s, e.retries, e.conflicts), (4, 2, 1));
        assert_eq!(e.first_accepted_at_ms, 10);
    }

    #[test]
    fn the_original_time_counts_even_when_its_record_comes_after_a_retry() {
        let g = group(&[rec(A, Role::Retry, 100, 5), rec(A, Role::Original, 100, 9)]);
        let e = &g.transactions[&A.parse::<Uuid>().unwrap()];
        assert_eq!(e.first_accepted_at_ms, 9);
    }

    #[test]
    fn a_malformed_transaction_id_is_counted_not_grouped() {
        let g = group(&[rec("nope", Role::Original, 1, 1)]);
        assert!(g.transactions.is_empty());
        assert_eq!(g.malformed_ids, 1);
    }
}
