//! The audit side of a run, in MongoDB: digests per bucket computed by the server
//! (`$group`), the documents of a bucket for a drill-down, the chain's anchor before a window,
//! and the repairs' quarantine.

use crate::digest::{Bucket, Digest, Digests};
use audit::chain::GENESIS;
use audit::store::AuditStore;
use futures::TryStreamExt;
use ledgerline_runtime::ranges::OffsetRange;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::Collection;

/// Where a repair moves documents that contradict the log (evidence is kept, never deleted).
pub const QUARANTINE_COLLECTION: &str = "events_quarantine";

fn number(value: Option<&Bson>) -> i128 {
    match value {
        Some(Bson::Int32(v)) => i128::from(*v),
        Some(Bson::Int64(v)) => i128::from(*v),
        // `$floor` of a `$divide` is a double; offsets are far below 2^53.
        Some(Bson::Double(v)) => *v as i128,
        _ => 0,
    }
}

/// Digests of the documents whose source is in `ranges`: one `$group` per partition, run by
/// the server over the source index.
pub async fn digests(
    store: &AuditStore,
    ranges: &[OffsetRange],
    bucket_offsets: i64,
) -> mongodb::error::Result<Digests> {
    let mut out = Digests::new();
    for r in ranges.iter().filter(|r| !r.is_empty()) {
        let pipeline = vec![
            doc! { "$match": {
                "source.topic": &r.topic,
                "source.partition": r.partition,
                "source.offset": { "$gte": r.from, "$lt": r.to },
            }},
            doc! { "$group": {
                "_id": { "$floor": { "$divide": ["$source.offset", bucket_offsets] } },
                "n": { "$sum": 1 },
                "amount": { "$sum": "$event.amount_minor" },
                "fp": { "$sum": "$hash_fp" },
            }},
        ];
        let mut cursor = store.collection().aggregate(pipeline).await?;
        while let Some(group) = cursor.try_next().await? {
            let bucket = Bucket {
                topic: r.topic.clone(),
                partition: r.partition,
                block: i64::try_from(number(group.get("_id"))).unwrap_or(-1),
            };
            out.insert(
                bucket,
                Digest {
                    count: i64::try_from(number(group.get("n"))).unwrap_or(-1),
                    amount_sum: number(group.get("amount")),
                    fingerprint_sum: i64::try_from(number(group.get("fp"))).unwrap_or(-1),
                    posted: 0,
                },
            );
        }
    }
    Ok(out)
}

/// The chain hash just before `from` in a partition, as stored: the hash of the document at
/// `from - 1`; when that one is missing, the `prev_hash` the document at `from` carries;
/// genesis when neither exists. A break before the window is an earlier window's finding.
pub async fn anchor(
    store: &AuditStore,
    topic: &str,
    partition: i32,
    from: i64,
) -> mongodb::error::Result<String> {
    let find = |offset: i64| {
        store
            .collection()
            .find_one(doc! {
                "source.topic": topic, "source.partition": partition, "source.offset": offset,
            })
            .projection(doc! { "hash": 1, "prev_hash": 1 })
        // No hint: see audit::store::SOURCE_INDEX.
    };
    if from == 0 {
        // The partition's first offset: its first link starts at genesis.
        return Ok(GENESIS.to_string());
    }
    if let Some(before) = find(from - 1).await? {
        if let Ok(hash) = before.get_str("hash") {
            return Ok(hash.to_string());
        }
    }
    if let Some(first) = find(from).await? {
        if let Ok(prev) = first.get_str("prev_hash") {
            return Ok(prev.to_string());
        }
    }
    Ok(GENESIS.to_string())
}

/// The documents whose source is `[from, to)` of one partition, in no particular order: the
/// comparison indexes them by offset (`drill::compare_audit`), so neither the server nor this
/// function sorts them (the local server sorts in its own process even when the index gives the
/// order: ~1.7 s a bucket, against ~0.07 s unsorted). No hint: see audit::store::SOURCE_INDEX.
pub async fn documents_in(
    store: &AuditStore,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
) -> mongodb::error::Result<Vec<Document>> {
    store
        .collection()
        .find(doc! {
            "source.topic": topic,
            "source.partition": partition,
            "source.offset": { "$gte": from, "$lt": to },
        })
        .await?
        .try_collect()
        .await
}

/// Moves the documents with these `_id`s to [`QUARANTINE_COLLECTION`], stamped with the run
/// that found them. Copies first, deletes second: a crash in between leaves a copy, never a
/// loss. Returns the number moved.
pub async fn quarantine(
    store: &AuditStore,
    quarantine: &Collection<Document>,
    run_id: i64,
    ids: &[String],
) -> mongodb::error::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let documents: Vec<Document> = store
        .collection()
        .find(doc! { "_id": { "$in": ids } })
        .await?
        .try_collect()
        .await?;
    if documents.is_empty() {
        return Ok(0);
    }
    let copies: Vec<Document> = documents
        .iter()
        .map(|d| {
            doc! {
                "run_id": run_id,
                "quarantined_at": DateTime::now(),
                "document": d.clone(),
            }
        })
        .collect();
    quarantine.insert_many(copies).await?;
    let deleted = store
        .collection()
        .delete_many(doc! { "_id": { "$in": ids } })
        .await?;
    Ok(deleted.deleted_count)
}
