//! The audit collection in MongoDB: indexes, chain-head look-ups, and the idempotent insert.

use crate::document::{duplicate_id, Kind, COLLECTION};
use mongodb::bson::{doc, Document};
use mongodb::error::{ErrorKind, InsertManyError};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use std::collections::{BTreeMap, HashMap, HashSet};

/// MongoDB's duplicate-key error code.
pub const DUPLICATE_KEY: i32 = 11000;

/// Name of the unique index on the source position. Only a walk of a whole chain hints it
/// (`verify`): the local MongoDB-compatible server answers a hinted query by walking the whole
/// index (~15 s at 3×10⁵ documents, against ~1–10 ms unhinted), and its planner picks this index
/// by itself for a filter on the source position, so point and range reads give no hint.
pub const SOURCE_INDEX: &str = "source";

/// Why a batch could not be stored. All of these are retried with backoff: the batch is
/// idempotent, so a retry only finds the documents that did land already stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MongoDB failed (unreachable, timeout, a write error other than a duplicate key, a
    /// write-concern error).
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A document's `_id` exists with another source position and it is not an event that a
    /// producer re-sent: the store was edited. Retried (and logged) until an operator acts,
    /// rather than skipping a message the audit must record.
    #[error("document {id} collides with a stored document from another source position")]
    Collision {
        /// The colliding `_id`.
        id: String,
    },
}

/// The source position of a document about to be written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A linked document and what the writer knows about it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its source position.
    pub position: Position,
    /// Its kind (an event may become a duplicate while being stored).
    pub kind: Kind,
    /// Its `hash`.
    pub hash: String,
    /// The document.
    pub document: Document,
}

/// What storing a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Documents inserted, by kind.
    pub inserted: BTreeMap<Kind, u64>,
    /// Messages already stored at their position with the same hash (redelivery, replay).
    pub already_stored: u64,
    /// Positions stored with a different hash than this writer computed (the stored chain
    /// differs from the log); the writer re-reads those partitions' heads.
    pub conflicts: Vec<Position>,
}

/// The audit collection.
#[derive(Debug, Clone)]
pub struct AuditStore {
    events: Collection<Document>,
}

impl AuditStore {
    /// The store on `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            events: database.collection(COLLECTION),
        }
    }

    /// The collection (tests and verification read it directly).
    pub fn collection(&self) -> &Collection<Document> {
        &self.events
    }

    /// Creates the indexes (idempotent: an existing identical index is left alone).
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let index = |name: &str, keys: Document, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_string())
                        .unique(unique)
                        .build(),
                )
                .build()
        };
        self.events
            .create_indexes([
                // Chain order, head look-ups and redelivery detection; unique, so a position
                // is recorded once whatever the `_id`.
                index(
                    SOURCE_INDEX,
                    doc! { "source.topic": 1, "source.partition": 1, "source.offset": 1 },
                    true,
                ),
                index(
                    "transaction",
                    doc! { "transaction_id": 1, "source.offset": 1 },
                    false,
                ),
                index(
                    "account_time",
                    doc! { "account_id": 1, "occurred_at": 1 },
                    false,
                ),
                index(
                    "merchant_time",
                    doc! { "merchant_id": 1, "occurred_at": 1 },
                    false,
                ),
            ])
            .await?;
        Ok(())
    }

    /// The stored link with the highest offset below `offset` in a partition:
    /// `(offset, hash)`. One indexed look-up.
    pub async fn link_before(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> mongodb::error::Result<Option<(i64, String)>> {
        let found = self
            .events
            .find_one(doc! {
                "source.topic": topic,
                "source.partition": partition,
                "source.offset": { "$lt": offset },
            })
            .sort(doc! { "source.topic": -1, "source.partition": -1, "source.offset": -1 })
            .projection(doc! { "source.offset": 1, "hash": 1 })
            // No hint: see SOURCE_INDEX.
            .await?;
        Ok(found.and_then(|d| {
            let offset = d.get_document("source").ok()?.get_i64("offset").ok()?;
            Some((offset, d.get_str("hash").ok()?.to_string()))
        }))
    }

    /// Which of `ids` are stored (one `_id` look-up).
    pub async fn existing_ids(&self, ids: &[&str]) -> mongodb::error::Result<HashSet<String>> {
        use futures::TryStreamExt;
        let cursor = self
            .events
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "_id": 1 })
            .await?;
        let documents: Vec<Document> = cursor.try_collect().await?;
        Ok(documents
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
            .collect())
    }

    /// The hashes stored at the given positions of one partition.
    async fn hashes_at(
        &self,
        topic: &str,
        partition: i32,
        offsets: &[i64],
    ) -> mongodb::error::Result<HashMap<i64, String>> {
        use futures::TryStreamExt;
        let cursor = self
            .events
            .find(doc! {
                "source.topic": topic,
                "source.partition": partition,
                "source.offset": { "$in": offsets },
            })
            .projection(doc! { "source.offset": 1, "hash": 1 })
            // No hint: see SOURCE_INDEX.
            .await?;
        let documents: Vec<Document> = cursor.try_collect().await?;
        Ok(documents
            .iter()
            .filter_map(|d| {
                let offset = d.get_document("source").ok()?.get_i64("offset").ok()?;
                Some((offset, d.get_str("hash").ok()?.to_string()))
            })
            .collect())
    }

    /// Inserts the batch with one unordered `insert_many` and sorts out duplicate keys:
    ///
    /// - a position already stored with the same hash is a redelivery: success;
    /// - an event whose `event_id` is stored from another position was re-sent by its producer:
    ///   it is re-keyed as a [`Kind::Duplicate`] and inserted in a second round, so the chain
    ///   keeps every offset;
    /// - any other write error fails the batch (the caller retries it whole).
    pub async fn insert(&self, mut pending: Vec<Pending>) -> Result<Stored, StoreError> {
        let mut stored = Stored::default();
        // Round 0 inserts the batch; round 1 inserts re-keyed duplicates, whose `_id` is
        // derived from their position and so cannot collide with another position.
        for round in 0..2 {
            if pending.is_empty() {
                break;
            }
            let failed = match self
                .events
                .insert_many(pending.iter().map(|p| &p.document))
                .ordered(false)
                .await
            {
                Ok(_) => Vec::new(),
                Err(error) => duplicate_key_indexes(&error).ok_or(error)?,
            };
            let mut conflicting = Vec::with_capacity(failed.len());
            for (i, p) in pending.into_iter().enumerate() {
                if failed.binary_search(&i).is_ok() {
                    conflicting.push(p);
                } else {
                    *stored.inserted.entry(p.kind).or_default() += 1;
                }
            }
            pending = self.resolve(conflicting, round, &mut stored).await?;
        }
        debug_assert!(
            pending.is_empty(),
            "duplicates are resolved in the second round"
        );
        Ok(stored)
    }

    /// Sorts out documents refused with a duplicate key; returns those to insert again.
    async fn resolve(
        &self,
        conflicting: Vec<Pending>,
        round: usize,
        stored: &mut Stored,
    ) -> Result<Vec<Pending>, StoreError> {
        let mut by_partition: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
        for p in &conflicting {
            by_partition
                .entry((&p.position.topic, p.position.partition))
                .or_default()
                .push(p.position.offset);
        }
        let mut found: HashMap<(&str, i32), HashMap<i64, String>> = HashMap::new();
        for ((topic, partition), offsets) in by_partition {
            let hashes = self.hashes_at(topic, partition, &offsets).await?;
            found.insert((topic, partition), hashes);
        }
        let mut again = Vec::new();
        for p in &conflicting {
            let at = found
                .get(&(p.position.topic.as_str(), p.position.partition))
                .and_then(|h| h.get(&p.position.offset));
            match at {
                Some(hash) if *hash == p.hash => stored.already_stored += 1,
                Some(hash) => {
                    tracing::error!(
                        topic = p.position.topic,
                        partition = p.position.partition,
                        offset = p.position.offset,
                        stored = %hash,
                        computed = %p.hash,
                        "a stored link differs from the log; keeping the stored document"
                    );
                    stored.already_stored += 1;
                    stored.conflicts.push(p.position.clone());
                }
                None if p.kind == Kind::Event && round == 0 => {
                    let mut duplicate = p.clone();
                    duplicate.kind = Kind::Duplicate;
                    let id =
                        duplicate_id(&p.position.topic, p.position.partition, p.position.offset);
                    duplicate.document.insert("_id", id);
                    duplicate.document.insert("kind", Kind::Duplicate.as_str());
                    again.push(duplicate);
                }
                None => {
                    let id = p.document.get_str("_id").unwrap_or_default().to_string();
                    return Err(StoreError::Collision { id });
                }
            }
        }
        Ok(again)
    }
}

/// The (sorted) indexes of documents refused only because their key exists, when that is the
/// only failure; `None` for any other error (which fails the batch).
fn duplicate_key_indexes(error: &mongodb::error::Error) -> Option<Vec<usize>> {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(errors),
            write_concern_error: None,
            ..
        }) if !errors.is_empty() && errors.iter().all(|e| e.code == DUPLICATE_KEY) => {
            let mut indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
            indexes.sort_unstable();
            indexes.dedup();
            Some(indexes)
        }
        _ => None,
    }
}
