//! Lanes: groups of whole partitions, each written in a database transaction of its own, side
//! by side with the others.
//!
//! One transaction at a time keeps PostgreSQL on one core: a backend runs one statement at a
//! time, and on a ledger larger than its buffers the statements wait on evictions as much as
//! they compute. Two transactions on disjoint rows run in parallel. Lanes are disjoint because
//! Kafka keys by account, so an account's decisions all arrive on one partition, and each
//! partition has a clearing shard of its own (`migrations/0002_ledger.sql`). A lane holds whole
//! partitions, and a partition is in at most one lane in flight (`writer.rs`), so each
//! partition's decisions are still applied in offset order.
//!
//! Should two lanes ever touch the same balance row (an account moved to another partition by
//! a change of the partition count), each locks in the one global key order
//! (`plan::touched_keys`), so one waits for the other instead of deadlocking, and the
//! recorded-transactions check runs after the locks, as between two writers.

use std::collections::{BTreeMap, HashSet};

/// A topic and partition.
pub type Partition = (String, i32);

/// Splits `items` (in offset order within each partition) into at most `lanes_max` lanes of
/// whole partitions, balanced by item count, none empty. A partition's items keep their order
/// inside their lane.
pub fn split<T>(
    items: Vec<T>,
    lanes_max: usize,
    partition_of: impl Fn(&T) -> Partition,
) -> Vec<Vec<T>> {
    if items.is_empty() {
        return Vec::new();
    }
    if lanes_max <= 1 {
        return vec![items];
    }
    let mut partitions: BTreeMap<Partition, Vec<T>> = BTreeMap::new();
    for item in items {
        partitions
            .entry(partition_of(&item))
            .or_default()
            .push(item);
    }
    // Largest partition first, each to the lane with the fewest items so far: the lanes
    // finish close together.
    let mut parts: Vec<Vec<T>> = partitions.into_values().collect();
    parts.sort_by_key(|part| std::cmp::Reverse(part.len()));
    let mut lanes: Vec<Vec<T>> = Vec::with_capacity(lanes_max.min(parts.len()));
    for part in parts {
        if lanes.len() < lanes_max {
            lanes.push(part);
        } else if let Some(lightest) = lanes.iter_mut().min_by_key(|lane| lane.len()) {
            lightest.extend(part);
        }
    }
    lanes
}

/// The partitions a lane holds.
pub fn partitions<T>(lane: &[T], partition_of: impl Fn(&T) -> Partition) -> HashSet<Partition> {
    lane.iter().map(partition_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (partition, offset) pairs: `sizes[p]` per partition p, interleaved as a fetch of
    /// several partitions returns them.
    fn batch(sizes: &[usize]) -> Vec<(i32, i64)> {
        let longest = sizes.iter().copied().max().unwrap_or(0);
        let mut out = Vec::new();
        for offset in 0..longest {
            for (p, &n) in sizes.iter().enumerate() {
                if offset < n {
                    out.push((p as i32, offset as i64));
                }
            }
        }
        out
    }

    fn of(item: &(i32, i64)) -> Partition {
        ("t".to_string(), item.0)
    }

    #[test]
    fn one_lane_keeps_the_whole_batch_together_in_its_order() {
        let items = batch(&[3, 2, 4]);
        assert_eq!(split(items.clone(), 1, of), vec![items]);
    }

    #[test]
    fn a_single_partition_is_never_split() {
        let lanes = split(batch(&[5]), 4, of);
        assert_eq!(lanes, vec![(0..5).map(|o| (0, o)).collect::<Vec<_>>()]);
    }

    #[test]
    fn an_empty_batch_has_no_lanes() {
        assert!(split(Vec::new(), 2, of).is_empty());
    }

    #[test]
    fn lanes_are_balanced_by_item_count() {
        let lanes = split(batch(&[6, 1, 1, 1, 1, 1, 1]), 2, of);
        let sizes: Vec<usize> = lanes.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![6, 6]);
    }

    #[test]
    fn there_are_never_more_lanes_than_partitions() {
        assert_eq!(split(batch(&[2, 2]), 8, of).len(), 2);
    }

    #[test]
    fn a_lane_names_the_partitions_it_holds() {
        let lanes = split(batch(&[1, 1, 1]), 2, of);
        let held: Vec<usize> = lanes
            .iter()
            .map(|lane| partitions(lane, of).len())
            .collect();
        assert_eq!(held.iter().sum::<usize>(), 3);
    }

    proptest! {
        #[test]
        fn every_partition_lands_whole_and_in_offset_order_in_exactly_one_lane(
            sizes in proptest::collection::vec(0_usize..20, 1..12),
            lanes_max in 1_usize..5,
        ) {
            let total: usize = sizes.iter().sum();
            let lanes = split(batch(&sizes), lanes_max, of);
            prop_assert!(lanes.len() <= lanes_max);
            prop_assert!(lanes.iter().all(|lane| !lane.is_empty()));
            prop_assert_eq!(lanes.iter().map(Vec::len).sum::<usize>(), total);
            for (p, &n) in sizes.iter().enumerate() {
                let holding: Vec<Vec<i64>> = lanes
                    .iter()
                    .map(|lane| {
                        lane.iter()
                            .filter(|(partition, _)| *partition == p as i32)
                            .map(|(_, offset)| *offset)
                            .collect::<Vec<_>>()
                    })
                    .filter(|offsets| !offsets.is_empty())
                    .collect();
                if n == 0 {
                    prop_assert!(holding.is_empty());
                } else {
                    prop_assert_eq!(holding, vec![(0..n as i64).collect::<Vec<_>>()]);
                }
            }
        }
    }
}
