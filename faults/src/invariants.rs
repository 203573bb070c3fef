//! The invariants a scenario is judged by, beyond the end-to-end verifier's own findings.
//!
//! - **order**: each account's transactions reach the ledger in the order they were sent. The
//!   load sends one account's transactions one at a time, so the order of their `txn.outcomes`
//!   offsets (one account, one partition) must be the order of their 202s.
//! - **recovery**: every transaction accepted before a fault ended reaches the ledger, and its
//!   ledger result reaches the audit trail (the last stage of the pipeline).
//! - **front door**: no answer other than 202 and the retriable 503/429 for valid requests, and
//!   no request left hanging until the client gave up.

use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::FaultError;
use crate::load::Counts;

/// The first pair of transactions of one account that the ledger holds in the wrong order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBreak {
    /// The account.
    pub account_id: String,
    /// Sent (and accepted) first.
    pub earlier: Uuid,
    /// Sent after `earlier`'s 202, yet posted before it.
    pub later: Uuid,
}

/// Where each transaction sits in the ledger: (partition, offset) of the outcome it came from.
async fn ledger_positions(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (i32, i64)>, FaultError> {
    let rows: Vec<(Uuid, i32, i64)> = sqlx::query_as(
        "SELECT transaction_id, source_partition, source_offset \
         FROM ledger_transactions WHERE transaction_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id, p, o)| (id, (p, o))).collect())
}

/// Checks per-account order over `accepted` (originals in acceptance order, with accounts).
pub async fn order(
    pool: &PgPool,
    accepted: &[(Uuid, String)],
) -> Result<Option<OrderBreak>, FaultError> {
    let ids: Vec<Uuid> = accepted.iter().map(|(id, _)| *id).collect();
    let positions = ledger_positions(pool, &ids).await?;
    Ok(first_order_break(accepted, &positions))
}

/// The pure part of [`order`]: walks each account's transactions in acceptance order and
/// returns the first one the ledger placed before its predecessor. Transactions without a
/// ledger row are skipped (their absence is the verifier's finding, not this one's).
pub fn first_order_break(
    accepted: &[(Uuid, String)],
    positions: &HashMap<Uuid, (i32, i64)>,
) -> Option<OrderBreak> {
    let mut last: HashMap<&str, (Uuid, (i32, i64))> = HashMap::new();
    for (id, account) in accepted {
        let Some(&position) = positions.get(id) else {
            continue;
        };
        if let Some(&(earlier, before)) = last.get(account.as_str()) {
            if earlier == *id {
                continue;
            }
            // One account is one key, so one partition: offsets are comparable.
            if position.0 == before.0 && position.1 < before.1 {
                return Some(OrderBreak {
                    account_id: account.clone(),
                    earlier,
                    later: *id,
                });
            }
        }
        last.insert(account, (*id, position));
    }
    None
}

/// Polls `present` with the ids still pending every `interval` until none is left; returns
/// how long that took, or `None` once `timeout` has passed. `present` answers `Ok(None)` when
/// its store cannot be read yet: the store being waited for may be the one recovering.
async fn until_all_present<F, Fut>(
    ids: &[Uuid],
    timeout: Duration,
    interval: Duration,
    mut present: F,
) -> Result<Option<Duration>, FaultError>
where
    F: FnMut(Vec<Uuid>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<HashSet<Uuid>>, FaultError>>,
{
    let started = Instant::now();
    let mut pending: Vec<Uuid> = ids.to_vec();
    loop {
        if let Some(found) = present(pending.clone()).await? {
            pending.retain(|id| !found.contains(id));
        }
        if pending.is_empty() {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits until every one of `ids` has a ledger row; returns how long that took, or `None` if
/// `timeout` passed first.
pub async fn until_in_ledger(
    pool: &PgPool,
    ids: &[Uuid],
    timeout: Duration,
) -> Result<Option<Duration>, FaultError> {
    until_all_present(
        ids,
        timeout,
        Duration::from_millis(200),
        |pending| async move {
            match loadtest::verify::ledger::present(pool, &pending).await {
                Ok(present) => Ok(Some(present.into_iter().collect())),
                Err(e) if ledgerline_runtime::postgres::is_retryable(&e) => Ok(None),
                Err(e) => Err(e.into()),
            }
        },
    )
    .await
}

/// Ids per audit query while waiting for the trail (an `$in` over its transaction index).
const AUDIT_QUERY_IDS_MAX: usize = 500;

/// Waits until the audit trail holds the ledger result (`TransactionPosted`) of every one of
/// `ids`; returns how long that took, or `None` if `timeout` passed first.
pub async fn until_audited(
    db: &mongodb::Database,
    ids: &[Uuid],
    timeout: Duration,
) -> Result<Option<Duration>, FaultError> {
    use futures::TryStreamExt;
    use mongodb::bson::{doc, Document};

    let events = &db.collection::<Document>(loadtest::verify::audit::COLLECTION);
    until_all_present(
        ids,
        timeout,
        Duration::from_millis(500),
        |pending| async move {
            let mut seen = HashSet::new();
            for chunk in pending.chunks(AUDIT_QUERY_IDS_MAX) {
                let chunk: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
                let found: mongodb::error::Result<Vec<Document>> = async {
                    events
                        .find(doc! {
                            "transaction_id": { "$in": chunk },
                            "event_type": "TransactionPosted",
                        })
                        .projection(doc! { "_id": 0, "transaction_id": 1 })
                        .await?
                        .try_collect()
                        .await
                }
                .await;
                // Any MongoDB error is "not yet": it may be the store that is recovering.
                let Ok(found) = found else { return Ok(None) };
                seen.extend(found.iter().filter_map(|d| {
                    d.get_str("transaction_id")
                        .ok()
                        .and_then(|s| s.parse::<Uuid>().ok())
                }));
            }
            Ok(Some(seen))
        },
    )
    .await
}

/// What the front door did wrong to valid requests, if anything.
pub fn front_door(counts: &Counts) -> Option<String> {
    if !counts.non_retriable.is_empty() {
        return Some(format!(
            "valid requests got non-retriable answers: {:?}",
            counts.non_retriable
        ));
    }
    if counts.timeouts > 0 {
        return Some(format!(
            "{} requests got no answer before the client's timeout (the front door must answer \
             503 within its produce deadline instead)",
            counts.timeouts
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn transactions_of_one_account_posted_in_sending_order_pass() {
        let accepted = vec![
            (id(1), "a".into()),
            (id(2), "b".into()),
            (id(3), "a".into()),
        ];
        let positions = HashMap::from([(id(1), (0, 5)), (id(2), (1, 1)), (id(3), (0, 9))]);
        assert_eq!(first_order_break(&accepted, &positions), None);
    }

    #[test]
    fn a_later_transaction_posted_before_an_earlier_one_of_its_account_is_named() {
        let accepted = vec![
            (id(1), "a".into()),
            (id(2), "b".into()),
            (id(3), "a".into()),
        ];
        let positions = HashMap::from([(id(1), (0, 9)), (id(2), (1, 1)), (id(3), (0, 5))]);
        assert_eq!(
            first_order_break(&accepted, &positions),
            Some(OrderBreak {
                account_id: "a".into(),
                earlier: id(1),
                later: id(3)
            })
        );
    }

    #[test]
    fn other_accounts_and_missing_rows_do_not_count_as_disorder() {
        // b's offsets are lower but on another account; id(4) never reached the ledger.
        let accepted = vec![
            (id(1), "a".into()),
            (id(4), "a".into()),
            (id(2), "b".into()),
            (id(3), "a".into()),
        ];
        let positions = HashMap::from([(id(1), (0, 5)), (id(2), (0, 1)), (id(3), (0, 6))]);
        assert_eq!(first_order_break(&accepted, &positions), None);
    }

    #[test]
    fn a_front_door_that_only_asked_to_retry_is_clean() {
        let counts = Counts {
            unavailable: 40,
            transport: 3,
            ..Counts::default()
        };
        assert_eq!(front_door(&counts), None);
        let broken = Counts {
            non_retriable: [(500, 1)].into(),
            ..Counts::default()
        };
        assert!(front_door(&broken).unwrap().contains("500"));
    }
}
