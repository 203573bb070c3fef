//! Reads the MongoDB audit trail (`events`, see audit/src/document.rs) for the end-to-end
//! check: per transaction, how many requests, decisions (by kind) and ledger results it holds.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::FindOptions;
use mongodb::Database;
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// The audit collection.
pub const COLLECTION: &str = "events";

/// Documents fetched per round trip.
const CURSOR_BATCH_DOCUMENTS: u32 = 2_000;

/// What the audit holds for one transaction (first-seen events only, not redelivered copies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// `TransactionRequested` events.
    pub requested: u32,
    /// Decisions `ACCEPTED`.
    pub accepted: u32,
    /// Decisions `DUPLICATE`.
    pub duplicate: u32,
    /// Decisions `REJECTED` with `IDEMPOTENCY_CONFLICT`.
    pub conflict: u32,
    /// Decisions `REJECTED` for another reason (rules).
    pub rejected: u32,
    /// `TransactionPosted` with `POSTED`.
    pub posted: u32,
    /// `TransactionPosted` with `DECLINED`.
    pub declined: u32,
}

impl Tally {
    /// Every decision.
    pub fn decided(&self) -> u32 {
        self.accepted + self.duplicate + self.conflict + self.rejected
    }

    fn add(&mut self, document: &Document) {
        let event = document.get_document("event").ok();
        let field = |name: &str| event.and_then(|e| e.get_str(name).ok());
        match document.get_str("event_type").unwrap_or_default() {
            "TransactionRequested" => self.requested += 1,
            "TransactionDecided" => match (field("decision"), field("reason_code")) {
                (Some("ACCEPTED"), _) => self.accepted += 1,
                (Some("DUPLICATE"), _) => self.duplicate += 1,
                (Some("REJECTED"), Some("IDEMPOTENCY_CONFLICT")) => self.conflict += 1,
                (Some("REJECTED"), _) => self.rejected += 1,
                _ => {}
            },
            "TransactionPosted" => match field("result") {
                Some("POSTED") => self.posted += 1,
                Some("DECLINED") => self.declined += 1,
                _ => {}
            },
            _ => {}
        }
    }
}

/// Tallies every first-seen event of `merchant_id` that occurred at or after `since`, for the
/// transactions in `wanted`. One range scan over the audit's `(merchant_id, occurred_at)` index.
pub async fn tallies(
    db: &Database,
    merchant_id: &str,
    since: OffsetDateTime,
    wanted: &std::collections::BTreeSet<Uuid>,
) -> mongodb::error::Result<HashMap<Uuid, Tally>> {
    let since_ms = i64::try_from(since.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let options = FindOptions::builder()
        .projection(doc! {
            "_id": 0, "transaction_id": 1, "event_type": 1,
            "event.decision": 1, "event.reason_code": 1, "event.result": 1,
        })
        .batch_size(CURSOR_BATCH_DOCUMENTS)
        .build();
    let mut cursor = db
        .collection::<Document>(COLLECTION)
        .find(doc! {
            "merchant_id": merchant_id,
            "occurred_at": { "$gte": Bson::DateTime(DateTime::from_millis(since_ms)) },
            "kind": "event",
        })
        .with_options(options)
        .await?;
    let mut out: HashMap<Uuid, Tally> = HashMap::new();
    while let Some(document) = cursor.try_next().await? {
        let Some(id) = document
            .get_str("transaction_id")
            .ok()
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            continue;
        };
        if wanted.contains(&id) {
            out.entry(id).or_default().add(&document);
        }
    }
    Ok(out)
}

/// How many first-seen events of `merchant_id` occurred at or after `since`: the same index
/// range as [`tallies`], counted inside the server.
pub async fn count(
    db: &Database,
    merchant_id: &str,
    since: OffsetDateTime,
) -> mongodb::error::Result<u64> {
    let since_ms = i64::try_from(since.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    db.collection::<Document>(COLLECTION)
        .count_documents(doc! {
            "merchant_id": merchant_id,
            "occurred_at": { "$gte": Bson::DateTime(DateTime::from_millis(since_ms)) },
            "kind": "event",
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, body: Document) -> Document {
        doc! { "event_type": event_type, "event": body }
    }

    #[test]
    fn decisions_are_tallied_by_kind_and_conflicts_apart_from_other_rejections() {
        let mut t = Tally::default();
        t.add(&event("TransactionRequested", doc! {}));
        t.add(&event(
            "TransactionDecided",
            doc! {"decision": "ACCEPTED", "reason_code": Bson::Null},
        ));
        t.add(&event("TransactionDecided", doc! {"decision": "DUPLICATE"}));
        t.add(&event(
            "TransactionDecided",
            doc! {"decision": "REJECTED", "reason_code": "IDEMPOTENCY_CONFLICT"},
        ));
        t.add(&event(
            "TransactionDecided",
            doc! {"decision": "REJECTED", "reason_code": "AMOUNT_OVER_LIMIT"},
        ));
        t.add(&event("TransactionPosted", doc! {"result": "DECLINED"}));
        assert_eq!(
            t,
            Tally {
                requested: 1,
                accepted: 1,
                duplicate: 1,
                conflict: 1,
                rejected: 1,
                posted: 0,
                declined: 1,
            }
        );
        assert_eq!(t.decided(), 4);
    }
}
