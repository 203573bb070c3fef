//! Drill-down: record-by-record comparison of one bucket whose digests differed. The
//! comparisons are pure functions of what was read, so each kind of drift is unit-tested.

use crate::discrepancy::{Discrepancy, Kind};
use crate::ledger_side::LedgerRow;
use audit::chain::link_hash;
use audit::document::{check_document, Record};
use ledgerline_contracts::events::{Decision, TransactionDecided};
use mongodb::bson::Document;
use rdkafka::message::{Message, OwnedMessage};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// An accepted decision of the bucket, as the ledger must record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionView {
    /// Its offset on `txn.outcomes`.
    pub offset: i64,
    /// Transaction.
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
    /// When the processor decided.
    pub decided_at: OffsetDateTime,
}

impl DecisionView {
    /// The view of an ACCEPTED decision (`None` for the others, which post nothing).
    pub fn of(offset: i64, d: &TransactionDecided) -> Option<Self> {
        (d.decision == Decision::Accepted).then(|| Self {
            offset,
            transaction_id: *d.transaction_id.as_uuid(),
            merchant_id: d.merchant_id.as_str().to_string(),
            account_id: d.account_id.as_str().to_string(),
            currency: d.currency.code().to_string(),
            txn_type: d.txn_type.as_str().to_string(),
            amount_minor: d.amount_minor,
            decided_at: d.decided_at,
        })
    }

    fn fields(&self) -> serde_json::Value {
        json!({
            "transaction_id": self.transaction_id,
            "merchant_id": self.merchant_id,
            "account_id": self.account_id,
            "currency": self.currency,
            "txn_type": self.txn_type,
            "amount_minor": self.amount_minor,
        })
    }
}

fn row_fields(row: &LedgerRow) -> serde_json::Value {
    json!({
        "transaction_id": row.transaction_id,
        "merchant_id": row.merchant_id,
        "account_id": row.account_id,
        "currency": row.currency,
        "txn_type": row.txn_type,
        "amount_minor": row.amount_minor,
    })
}

/// Thresholds of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The time the run compares at.
    pub now: OffsetDateTime,
    /// Younger work is in flight.
    pub settle: Duration,
    /// Older unannounced work is stuck.
    pub stuck: Duration,
}

impl Clock {
    fn older_than(&self, at: OffsetDateTime, age: Duration) -> bool {
        (self.now - at) > age
    }
}

/// Compares one `txn.outcomes` bucket with the ledger. `decisions` are the bucket's
/// ACCEPTED decisions (each transaction once, at its first offset); `rows` the ledger rows
/// whose source is in the bucket; `elsewhere` the rows of the bucket's transactions found at
/// another source offset (an earlier copy of a re-sent decision); `announced` each
/// transaction's result on `txn.postings` (`true`: POSTED).
pub fn compare_ledger(
    topic: &str,
    partition: i32,
    decisions: &[DecisionView],
    rows: &[LedgerRow],
    elsewhere: &[LedgerRow],
    announced: &HashMap<Uuid, bool>,
    clock: Clock,
) -> Vec<Discrepancy> {
    let mut out = Vec::new();
    let at = |kind, offset, txn: Option<Uuid>, expected, found, detail: String| Discrepancy {
        kind,
        transaction_id: txn,
        topic: topic.to_string(),
        partition,
        offset,
        expected,
        found,
        detail,
    };
    let by_offset: BTreeMap<i64, &LedgerRow> = rows.iter().map(|r| (r.source_offset, r)).collect();
    let by_transaction: HashMap<Uuid, &LedgerRow> =
        elsewhere.iter().map(|r| (r.transaction_id, r)).collect();
    let mut matched: Vec<i64> = Vec::new();
    for d in decisions {
        let row = match by_offset.get(&d.offset) {
            Some(row) => {
                matched.push(d.offset);
                Some(*row)
            }
            None => by_transaction.get(&d.transaction_id).copied(),
        };
        let Some(row) = row else {
            if clock.older_than(d.decided_at, clock.settle) {
                out.push(at(
                    Kind::MissingInLedger,
                    d.offset,
                    Some(d.transaction_id),
                    Some(d.fields()),
                    None,
                    format!(
                        "accepted at offset {} but the ledger has no transaction {}",
                        d.offset, d.transaction_id
                    ),
                ));
            }
            continue;
        };
        let (expected, found) = (d.fields(), row_fields(row));
        if expected != found {
            let differing: Vec<String> = expected
                .as_object()
                .into_iter()
                .flat_map(|o| o.iter())
                .filter(|(k, v)| found.get(k.as_str()) != Some(v))
                .map(|(k, _)| k.to_string())
                .collect();
            out.push(at(
                Kind::LedgerMismatch,
                d.offset,
                Some(d.transaction_id),
                Some(expected),
                Some(found),
                format!(
                    "ledger row differs from the decision in {}",
                    differing.join(", ")
                ),
            ));
            continue;
        }
        let posted = row.result == "POSTED";
        match announced.get(&row.transaction_id) {
            Some(said) if *said != posted => out.push(at(
                Kind::StatusMismatch,
                d.offset,
                Some(d.transaction_id),
                Some(json!({ "result": if *said { "POSTED" } else { "DECLINED" } })),
                Some(json!({ "result": row.result })),
                format!(
                    "txn.postings announced {} but the ledger records {}",
                    if *said { "POSTED" } else { "DECLINED" },
                    row.result
                ),
            )),
            Some(_) => {}
            None if clock.older_than(row.posted_at, clock.stuck) => out.push(at(
                Kind::StuckInFlight,
                d.offset,
                Some(d.transaction_id),
                Some(json!({ "txn.postings": "an event for this transaction" })),
                Some(json!({ "result": row.result })),
                "recorded in the ledger but never announced on txn.postings (outbox relay)"
                    .to_string(),
            )),
            None => {}
        }
    }
    for row in rows {
        if !matched.contains(&row.source_offset) {
            out.push(at(
                Kind::ExtraInLedger,
                row.source_offset,
                Some(row.transaction_id),
                None,
                Some(row_fields(row)),
                format!(
                    "ledger transaction {} claims offset {}, which holds no accepted decision \
                     for it",
                    row.transaction_id, row.source_offset
                ),
            ));
        }
    }
    out
}

/// The log offset an audit document records as its source (-1 when it records none, which
/// no message has).
pub fn source_offset(document: &Document) -> i64 {
    document
        .get_document("source")
        .and_then(|s| s.get_i64("offset"))
        .unwrap_or(-1)
}

/// Compares one audit bucket with the log. `messages` are the log's messages of the bucket
/// (in offset order), `chain_before` the chain hash before the first of them, `documents`
/// the stored documents of the bucket.
pub fn compare_audit(
    topic: &str,
    partition: i32,
    messages: &[OwnedMessage],
    chain_before: &str,
    documents: &[Document],
) -> Vec<Discrepancy> {
    let mut out = Vec::new();
    let at = |kind, offset, expected, found, detail: String| Discrepancy {
        kind,
        transaction_id: None,
        topic: topic.to_string(),
        partition,
        offset,
        expected,
        found,
        detail,
    };
    let mut by_offset: BTreeMap<i64, &Document> = BTreeMap::new();
    for d in documents {
        by_offset.insert(source_offset(d), d);
    }
    let mut prev = chain_before.to_string();
    for m in messages {
        let record = Record::from_message(m);
        let hash = link_hash(&prev, &record.content);
        prev.clone_from(&hash);
        let Some(document) = by_offset.remove(&m.offset()) else {
            out.push(at(
                Kind::MissingInAudit,
                m.offset(),
                Some(json!({ "_id": record.id, "hash": hash })),
                None,
                format!("offset {} has no audit document", m.offset()),
            ));
            continue;
        };
        let id = document.get_str("_id").unwrap_or("?").to_string();
        let stored_hash = document.get_str("hash").unwrap_or("").to_string();
        let found = Some(json!({ "_id": id, "hash": stored_hash }));
        let expected = Some(json!({ "_id": record.id, "hash": hash }));
        match check_document(document) {
            Err((_, kind, detail)) => out.push(at(
                Kind::ChainBreak,
                m.offset(),
                expected,
                found,
                format!("{}: {detail}", kind.as_str()),
            )),
            Ok(checked) if checked.link.content != record.content => out.push(at(
                Kind::AuditMismatch,
                m.offset(),
                expected,
                found,
                "the stored raw message differs from the log's message".to_string(),
            )),
            Ok(_) if stored_hash != hash => out.push(at(
                Kind::ChainBreak,
                m.offset(),
                expected,
                found,
                "hash_mismatch: the stored hash is not the chain's hash at this offset".to_string(),
            )),
            Ok(checked) => {
                if let Err(detail) = checked.derived {
                    out.push(at(
                        Kind::ChainBreak,
                        m.offset(),
                        expected,
                        found,
                        format!("content_mismatch: {detail}"),
                    ));
                }
            }
        }
    }
    for (offset, document) in by_offset {
        out.push(at(
            Kind::ExtraInAudit,
            offset,
            None,
            Some(json!({ "_id": document.get_str("_id").unwrap_or("?") })),
            format!("audit document at offset {offset}, which the log does not hold there"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit::chain::GENESIS;
    use mongodb::bson::{doc, DateTime};
    use rdkafka::message::Timestamp;
    use time::macros::datetime;

    const T: &str = "txn.outcomes";

    fn decision(offset: i64, amount: i64) -> DecisionView {
        DecisionView {
            offset,
            transaction_id: Uuid::from_u128(offset as u128 + 1),
            merchant_id: "m".into(),
            account_id: "acc".into(),
            currency: "EUR".into(),
            txn_type: "credit".into(),
            amount_minor: amount,
            decided_at: datetime!(2026-01-01 00:00 UTC),
        }
    }

    fn row(d: &DecisionView, result: &str) -> LedgerRow {
        LedgerRow {
            transaction_id: d.transaction_id,
            merchant_id: d.merchant_id.clone(),
            account_id: d.account_id.clone(),
            currency: d.currency.clone(),
            txn_type: d.txn_type.clone(),
            amount_minor: d.amount_minor,
            result: result.into(),
            source_partition: 0,
            source_offset: d.offset,
            posted_at: d.decided_at,
        }
    }

    fn clock(minutes_later: i64) -> Clock {
        Clock {
            now: datetime!(2026-01-01 00:00 UTC) + time::Duration::minutes(minutes_later),
            settle: Duration::from_secs(60),
            stuck: Duration::from_secs(300),
        }
    }

    fn kinds(found: &[Discrepancy]) -> Vec<(Kind, i64)> {
        found.iter().map(|d| (d.kind, d.offset)).collect()
    }

    #[test]
    fn a_bucket_whose_rows_match_their_decisions_has_no_discrepancy() {
        let d = [decision(4, 100), decision(5, 200)];
        let rows = [row(&d[0], "POSTED"), row(&d[1], "DECLINED")];
        let announced = HashMap::from([(d[0].transaction_id, true), (d[1].transaction_id, false)]);
        let found = compare_ledger(T, 0, &d, &rows, &[], &announced, clock(10));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_decision_without_a_row_is_missing_only_after_the_settle_time() {
        let d = [decision(4, 100)];
        let fresh = compare_ledger(T, 0, &d, &[], &[], &HashMap::new(), clock(0));
        assert!(fresh.is_empty());
        let old = compare_ledger(T, 0, &d, &[], &[], &HashMap::new(), clock(10));
        assert_eq!(kinds(&old), vec![(Kind::MissingInLedger, 4)]);
    }

    #[test]
    fn a_re_sent_decision_recorded_at_its_first_offset_is_not_missing() {
        let d = [decision(9, 100)];
        let mut earlier = row(&d[0], "POSTED");
        earlier.source_offset = 2;
        let announced = HashMap::from([(d[0].transaction_id, true)]);
        let found = compare_ledger(T, 0, &d, &[], &[earlier], &announced, clock(10));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_edited_amount_is_a_mismatch_naming_the_field() {
        let d = [decision(4, 100)];
        let mut edited = row(&d[0], "POSTED");
        edited.amount_minor = 999;
        let announced = HashMap::from([(d[0].transaction_id, true)]);
        let found = compare_ledger(T, 0, &d, &[edited], &[], &announced, clock(10));
        assert_eq!(kinds(&found), vec![(Kind::LedgerMismatch, 4)]);
        assert!(found[0].detail.contains("amount_minor"));
    }

    #[test]
    fn a_row_without_its_decision_is_extra() {
        let d = decision(7, 100);
        let found = compare_ledger(
            T,
            0,
            &[],
            &[row(&d, "POSTED")],
            &[],
            &HashMap::new(),
            clock(10),
        );
        assert_eq!(kinds(&found), vec![(Kind::ExtraInLedger, 7)]);
    }

    #[test]
    fn a_result_that_contradicts_the_announcement_is_a_status_mismatch() {
        let d = [decision(4, 100)];
        let announced = HashMap::from([(d[0].transaction_id, false)]);
        let found = compare_ledger(
            T,
            0,
            &d,
            &[row(&d[0], "POSTED")],
            &[],
            &announced,
            clock(10),
        );
        assert_eq!(kinds(&found), vec![(Kind::StatusMismatch, 4)]);
    }

    #[test]
    fn a_result_never_announced_is_stuck_after_the_threshold() {
        let d = [decision(4, 100)];
        let rows = [row(&d[0], "POSTED")];
        assert!(compare_ledger(T, 0, &d, &rows, &[], &HashMap::new(), clock(2)).is_empty());
        let late = compare_ledger(T, 0, &d, &rows, &[], &HashMap::new(), clock(10));
        assert_eq!(kinds(&late), vec![(Kind::StuckInFlight, 4)]);
    }

    fn message(offset: i64, payload: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            Some(b"acc".to_vec()),
            "txn.requests.dlq".into(),
            Timestamp::CreateTime(1),
            0,
            offset,
            None,
        )
    }

    /// The documents the audit would store for `messages`, chained from `before`.
    fn stored(messages: &[OwnedMessage], before: &str) -> Vec<Document> {
        let mut prev = before.to_string();
        messages
            .iter()
            .map(|m| {
                let record = Record::from_message(m);
                let hash = link_hash(&prev, &record.content);
                let d = record.document(&prev, &hash, DateTime::from_millis(1));
                prev = hash;
                d
            })
            .collect()
    }

    #[test]
    fn an_intact_audit_bucket_has_no_discrepancy() {
        let messages = [message(0, "a"), message(1, "b")];
        let docs = stored(&messages, GENESIS);
        assert!(compare_audit("t", 0, &messages, GENESIS, &docs).is_empty());
    }

    #[test]
    fn a_deleted_document_is_missing_and_its_neighbours_stay_intact() {
        let messages = [message(0, "a"), message(1, "b"), message(2, "c")];
        let mut docs = stored(&messages, GENESIS);
        docs.remove(1);
        let found = compare_audit("t", 0, &messages, GENESIS, &docs);
        assert_eq!(kinds(&found), vec![(Kind::MissingInAudit, 1)]);
    }

    #[test]
    fn an_edited_hash_is_a_chain_break_at_its_offset() {
        let messages = [message(0, "a"), message(1, "b")];
        let mut docs = stored(&messages, GENESIS);
        docs[1].insert("hash", "f".repeat(64));
        let found = compare_audit("t", 0, &messages, GENESIS, &docs);
        assert_eq!(kinds(&found), vec![(Kind::ChainBreak, 1)]);
    }

    #[test]
    fn an_edited_raw_message_is_an_audit_mismatch() {
        let messages = [message(0, "a")];
        let mut docs = stored(&messages, GENESIS);
        let mut raw = docs[0].get_document("message").unwrap().clone();
        raw.insert("key", "other");
        docs[0].insert("message", raw);
        let found = compare_audit("t", 0, &messages, GENESIS, &docs);
        assert_eq!(kinds(&found), vec![(Kind::AuditMismatch, 0)]);
    }

    #[test]
    fn a_document_the_log_does_not_hold_is_extra() {
        let messages = [message(0, "a")];
        let mut docs = stored(&messages, GENESIS);
        let mut forged = docs[0].clone();
        forged.insert("_id", "forged");
        forged.insert(
            "source",
            doc! { "topic": "t", "partition": 0, "offset": 5_i64 },
        );
        docs.push(forged);
        let found = compare_audit("t", 0, &messages, GENESIS, &docs);
        assert_eq!(kinds(&found), vec![(Kind::ExtraInAudit, 5)]);
    }
}
