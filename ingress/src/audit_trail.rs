//! Reads from the MongoDB audit trail: every event of a transaction, so a merchant can see
//! what happened to each attempt (including duplicates and conflicts) and when.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::FindOptions;
use mongodb::{Collection, Database};

/// The audit collection's name (written by the audit service).
const COLLECTION: &str = "events";

/// Read-only access to the audit trail.
#[derive(Debug, Clone)]
pub struct AuditReader {
    events: Collection<Document>,
    events_max: i64,
}

impl AuditReader {
    /// A reader on `database`; one answer lists at most `events_max` events.
    pub fn new(database: &Database, events_max: i64) -> Self {
        Self {
            events: database.collection(COLLECTION),
            events_max,
        }
    }

    /// The merchant's events of a transaction, oldest first, as JSON (amounts stay integers).
    /// Empty when the transaction is unknown or another merchant's.
    pub async fn events(
        &self,
        merchant_id: &str,
        transaction_id: &str,
    ) -> mongodb::error::Result<Vec<serde_json::Value>> {
        // The filter leads with `transaction_id`, which the audit indexes; the sort then
        // orders a handful of documents in memory.
        let options = FindOptions::builder()
            .sort(doc! { "occurred_at": 1, "source.topic": 1, "source.offset": 1 })
            .limit(self.events_max)
            .projection(doc! {
                "_id": 0, "event_type": 1, "event_id": 1, "occurred_at": 1, "source": 1,
                "event": 1,
            })
            .build();
        let cursor = self
            .events
            .find(doc! {
                "transaction_id": transaction_id,
                "merchant_id": merchant_id,
                "kind": "event",
            })
            .with_options(options)
            .await?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        Ok(docs
            .into_iter()
            .map(|d| Bson::Document(d).into_relaxed_extjson())
            .collect())
    }
}
