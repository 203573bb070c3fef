//! Per-bucket digests: what a range of records adds up to, computed the same way from the log
//! and inside each store, so that a clean run compares a few numbers per bucket instead of
//! every record.
//!
//! A bucket is `(topic, partition, offset / bucket_offsets)`. Its digest is the count of
//! records, the sum of their amounts, and the sum of a 32-bit fingerprint of each record: an
//! order-independent hash (a sum commutes), so the stores can compute it with `GROUP BY` /
//! `$group` in any order. A missing, extra or edited record changes at least one of the three.

use ledgerline_contracts::events::TransactionDecided;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// A bucket: the source partition and the offset block its records came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bucket {
    /// Full topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// `offset / bucket_offsets`.
    pub block: i64,
}

impl Bucket {
    /// The bucket of an offset.
    pub fn of(topic: &str, partition: i32, offset: i64, bucket_offsets: i64) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            block: offset.div_euclid(bucket_offsets),
        }
    }

    /// Its offsets, `[from, to)`, before clipping to a window.
    pub fn offsets(&self, bucket_offsets: i64) -> (i64, i64) {
        let from = self.block * bucket_offsets;
        (from, from + bucket_offsets)
    }
}

/// What a bucket's records add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Records.
    pub count: i64,
    /// Sum of their amounts in minor units (exact: i128 cannot overflow on i64 amounts).
    pub amount_sum: i128,
    /// Sum of their 32-bit fingerprints (below 2^32 each, so a bucket cannot overflow).
    pub fingerprint_sum: i64,
    /// Ledger buckets: of the records, those the ledger posted (the rest were declined).
    pub posted: i64,
}

impl Digest {
    /// Adds one record.
    pub fn add(&mut self, amount_minor: i64, fingerprint: i64, posted: bool) {
        self.count += 1;
        self.amount_sum += i128::from(amount_minor);
        self.fingerprint_sum += fingerprint;
        self.posted += i64::from(posted);
    }
}

/// Digests by bucket.
pub type Digests = BTreeMap<Bucket, Digest>;

/// The buckets whose digests differ, in either direction (a bucket only one side has differs
/// from the other side's empty digest).
pub fn differing(expected: &Digests, found: &Digests) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = expected
        .iter()
        .filter(|(b, d)| found.get(*b).copied().unwrap_or_default() != **d)
        .map(|(b, _)| b.clone())
        .collect();
    out.extend(
        found
            .iter()
            .filter(|(b, d)| !expected.contains_key(*b) && **d != Digest::default())
            .map(|(b, _)| b.clone()),
    );
    out.sort();
    out.dedup();
    out
}

/// Differing buckets of one partition whose offsets touch, read from the log (and from each
/// store) in one pass: every read of the log starts with a seek that costs more than reading a
/// bucket, so a drill-down over many neighbouring buckets pays it once per span, not once per
/// bucket. Each bucket is still compared on its own, exactly as if read alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Full topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Each bucket with its offsets `[from, to)`, clipped to the window, in offset order.
    pub buckets: Vec<(Bucket, i64, i64)>,
}

impl Span {
    /// All of its offsets, `[from, to)`.
    pub fn offsets(&self) -> (i64, i64) {
        let from = self.buckets.first().map_or(0, |b| b.1);
        (from, self.buckets.last().map_or(from, |b| b.2))
    }
}

/// Groups clipped buckets (sorted, as [`differing`] returns them) into spans of neighbours:
/// same topic and partition, each starting where the previous one ends, at most
/// `buckets_max` per span (which bounds what one span holds in memory).
pub fn spans(clipped: Vec<(Bucket, i64, i64)>, buckets_max: usize) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for (bucket, from, to) in clipped {
        let joins = out.last().is_some_and(|s| {
            s.topic == bucket.topic
                && s.partition == bucket.partition
                && s.offsets().1 == from
                && s.buckets.len() < buckets_max.max(1)
        });
        if joins {
            if let Some(s) = out.last_mut() {
                s.buckets.push((bucket, from, to));
            }
        } else {
            out.push(Span {
                topic: bucket.topic.clone(),
                partition: bucket.partition,
                buckets: vec![(bucket, from, to)],
            });
        }
    }
    out
}

/// The first 32 bits of SHA-256 over `text`, as a number (what PostgreSQL computes with
/// `('x' || left(encode(sha256(…), 'hex'), 8))::bit(32)::bigint`).
pub fn fingerprint(text: &str) -> i64 {
    let hash = Sha256::digest(text.as_bytes());
    i64::from(u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]))
}

/// The fields of a ledger transaction that the log decides, joined as PostgreSQL's
/// `concat_ws('|', …)` joins them (see `ledger_side.rs`).
pub fn ledger_text(
    transaction_id: &str,
    merchant_id: &str,
    account_id: &str,
    currency: &str,
    txn_type: &str,
    amount_minor: i64,
) -> String {
    format!("{transaction_id}|{merchant_id}|{account_id}|{currency}|{txn_type}|{amount_minor}")
}

/// The fingerprint a ledger row must have for an accepted decision.
pub fn decision_fingerprint(d: &TransactionDecided) -> i64 {
    fingerprint(&ledger_text(
        &d.transaction_id.to_string(),
        d.merchant_id.as_str(),
        d.account_id.as_str(),
        d.currency.code(),
        d.txn_type.as_str(),
        d.amount_minor,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bucket(block: i64) -> Bucket {
        Bucket {
            topic: "t".into(),
            partition: 0,
            block,
        }
    }

    #[test]
    fn the_fingerprint_is_the_first_four_bytes_of_sha256() {
        // sha256("abc") = ba7816bf…
        assert_eq!(fingerprint("abc"), 0xba78_16bf);
    }

    #[test]
    fn a_bucket_covers_a_block_of_offsets() {
        let b = Bucket::of("t", 2, 2_345, 1_000);
        assert_eq!(b.block, 2);
        assert_eq!(b.offsets(1_000), (2_000, 3_000));
    }

    #[test]
    fn identical_digests_differ_nowhere() {
        let mut a = Digests::new();
        a.entry(bucket(0)).or_default().add(5, 7, true);
        assert!(differing(&a, &a.clone()).is_empty());
    }

    #[test]
    fn a_bucket_only_one_side_has_differs() {
        let mut a = Digests::new();
        a.entry(bucket(0)).or_default().add(5, 7, true);
        let mut b = Digests::new();
        b.entry(bucket(1)).or_default().add(5, 7, true);
        assert_eq!(differing(&a, &b), vec![bucket(0), bucket(1)]);
    }

    #[test]
    fn an_empty_bucket_on_one_side_equals_a_missing_one() {
        let a = Digests::new();
        let mut b = Digests::new();
        b.insert(bucket(3), Digest::default());
        assert!(differing(&a, &b).is_empty());
    }

    fn clipped(partition: i32, block: i64) -> (Bucket, i64, i64) {
        let b = Bucket {
            topic: "t".into(),
            partition,
            block,
        };
        let (from, to) = b.offsets(10);
        (b, from, to)
    }

    #[test]
    fn neighbouring_buckets_of_a_partition_are_read_as_one_span() {
        let found = spans(vec![clipped(0, 1), clipped(0, 2), clipped(0, 3)], 32);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offsets(), (10, 40));
        assert_eq!(found[0].buckets.len(), 3);
    }

    #[test]
    fn a_gap_another_partition_or_the_size_bound_starts_a_new_span() {
        let found = spans(
            vec![
                clipped(0, 1),
                clipped(0, 3),
                clipped(0, 4),
                clipped(0, 5),
                clipped(1, 6),
            ],
            2,
        );
        let offsets: Vec<(i32, (i64, i64))> =
            found.iter().map(|s| (s.partition, s.offsets())).collect();
        assert_eq!(
            offsets,
            vec![(0, (10, 20)), (0, (30, 50)), (0, (50, 60)), (1, (60, 70))]
        );
    }

    #[test]
    fn a_bucket_clipped_by_the_window_ends_its_span() {
        let (b, from, _) = clipped(0, 1);
        let found = spans(vec![(b, from, 15), clipped(0, 2)], 32);
        assert_eq!(found.len(), 2);
    }

    proptest! {
        #[test]
        fn a_digest_does_not_depend_on_record_order(
            mut records in proptest::collection::vec((1i64..1_000_000, 0i64..(1 << 32), any::<bool>()), 0..50)
        ) {
            let mut forward = Digest::default();
            for (a, f, p) in &records { forward.add(*a, *f, *p); }
            records.reverse();
            let mut backward = Digest::default();
            for (a, f, p) in &records { backward.add(*a, *f, *p); }
            prop_assert_eq!(forward, backward);
        }

        #[test]
        fn changing_one_amount_changes_the_digest(
            records in proptest::collection::vec((1i64..1_000_000, 0i64..(1 << 32)), 1..50),
            which in any::<proptest::sample::Index>(),
            delta in 1i64..1_000,
        ) {
            let mut original = Digest::default();
            let mut edited = Digest::default();
            let i = which.index(records.len());
            for (k, (a, f)) in records.iter().enumerate() {
                original.add(*a, *f, true);
                edited.add(if k == i { a + delta } else { *a }, *f, true);
            }
            prop_assert_ne!(original, edited);
        }
    }
}
