//! Dead letters as a run reports them: one finding per dead-lettered source message.
//!
//! The same source message can reach its DLQ more than once: a stage that crashes after the
//! DLQ acknowledged and before it committed sends it again, and an audit rebuilt into an empty
//! database dead-letters the pipeline's poison a second time. Each copy has its own DLQ
//! offset but names the same `dlq-source-*` position, and the operator has one thing to fix
//! and one message to redrive, so a run reports the copies as one finding.

use crate::discrepancy::{Discrepancy, Kind};
use crate::scan::DeadLetter;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A DLQ position: topic, partition, offset.
pub type DlqPosition = (String, i32, i64);

/// What the copies of one dead letter share: the DLQ and, when the headers name it, the
/// source position. A copy without its three source headers is a group of its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Source {
    Named {
        dlq: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    Unnamed(DlqPosition),
}

impl Source {
    /// The group `d` belongs to.
    pub(crate) fn of(d: &DeadLetter) -> Self {
        match (&d.source_topic, d.source_partition, d.source_offset) {
            (Some(topic), Some(partition), Some(offset)) => Source::Named {
                dlq: d.topic.clone(),
                topic: topic.clone(),
                partition,
                offset,
            },
            _ => Source::Unnamed(position(d)),
        }
    }
}

pub(crate) fn position(d: &DeadLetter) -> DlqPosition {
    (d.topic.clone(), d.partition, d.offset)
}

/// One `dead_lettered` finding per source message whose copies were none of them redriven
/// (a redrive of any copy puts the source message back in its topic). The finding sits at
/// the first copy's DLQ position; when there are several, `found.copies` lists them all.
pub fn findings(letters: &[DeadLetter], redriven: &HashSet<DlqPosition>) -> Vec<Discrepancy> {
    let mut out: Vec<Discrepancy> = groups(letters)
        .filter(|copies| !copies.iter().any(|d| redriven.contains(&position(d))))
        .map(|copies| finding(&copies))
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    out
}

/// Where a dead letter's first copy is on its (same) DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FirstCopy {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
}

/// For each dead letter that is a later copy of another, its group's first copy: the one a run
/// reports, and the one `dlq redrive --all` sends.
pub fn first_copies<'a>(
    letters: impl IntoIterator<Item = &'a DeadLetter>,
) -> HashMap<DlqPosition, FirstCopy> {
    let mut out = HashMap::new();
    for copies in groups(letters) {
        let first = FirstCopy {
            partition: copies[0].partition,
            offset: copies[0].offset,
        };
        out.extend(copies[1..].iter().map(|d| (position(d), first)));
    }
    out
}

/// The copies of each dead-lettered source message, each group in DLQ order (first copy first).
fn groups<'a>(
    letters: impl IntoIterator<Item = &'a DeadLetter>,
) -> impl Iterator<Item = Vec<&'a DeadLetter>> {
    let mut groups: BTreeMap<Source, Vec<&DeadLetter>> = BTreeMap::new();
    for d in letters {
        groups.entry(Source::of(d)).or_default().push(d);
    }
    groups.into_values().map(|mut copies| {
        copies.sort_by_key(|d| (d.partition, d.offset));
        copies
    })
}

fn finding(copies: &[&DeadLetter]) -> Discrepancy {
    let first = copies[0];
    let mut found = serde_json::to_value(first).unwrap_or_default();
    let mut detail = format!(
        "dead-lettered ({}) from {}:{}:{}",
        first.reason.as_deref().unwrap_or("no reason"),
        first.source_topic.as_deref().unwrap_or("?"),
        first.source_partition.map_or("?".into(), |p| p.to_string()),
        first.source_offset.map_or("?".into(), |o| o.to_string()),
    );
    if copies.len() > 1 {
        found["copies"] = copies
            .iter()
            .map(|d| json!({ "partition": d.partition, "offset": d.offset }))
            .collect();
        detail.push_str(&format!(
            ", {} copies on the DLQ (redrive one)",
            copies.len()
        ));
    }
    detail.push_str("; fix the cause, then `reconciler dlq redrive`");
    Discrepancy {
        kind: Kind::DeadLettered,
        transaction_id: None,
        topic: first.topic.clone(),
        partition: first.partition,
        offset: first.offset,
        expected: None,
        found: Some(found),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(partition: i32, offset: i64, source_offset: Option<i64>) -> DeadLetter {
        DeadLetter {
            topic: "p.txn.outcomes.dlq".into(),
            partition,
            offset,
            reason: Some("SCHEMA_INVALID".into()),
            source_topic: Some("p.txn.outcomes".into()),
            source_partition: Some(4),
            source_offset,
            failed_at: None,
        }
    }

    fn at(partition: i32, offset: i64) -> DlqPosition {
        ("p.txn.outcomes.dlq".into(), partition, offset)
    }

    #[test]
    fn copies_of_one_source_message_are_one_finding_at_the_first_copy() {
        let letters = [letter(1, 9, Some(17)), letter(0, 3, Some(17))];
        let found = findings(&letters, &HashSet::new());
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].partition, found[0].offset), (0, 3));
        assert_eq!(
            found[0].found.as_ref().unwrap()["copies"],
            json!([{ "partition": 0, "offset": 3 }, { "partition": 1, "offset": 9 }])
        );
        assert!(found[0].detail.contains("2 copies"), "{}", found[0].detail);
        assert!(found[0].detail.contains("p.txn.outcomes:4:17"));
    }

    #[test]
    fn only_later_copies_point_at_their_first_copy() {
        let letters = [
            letter(1, 9, Some(17)),
            letter(0, 3, Some(17)),
            letter(0, 4, Some(18)),
            letter(0, 6, None),
            letter(0, 7, None),
        ];
        let firsts = first_copies(&letters);
        let first = FirstCopy {
            partition: 0,
            offset: 3,
        };
        assert_eq!(firsts, HashMap::from([(at(1, 9), first)]));
    }

    #[test]
    fn different_source_messages_are_separate_findings_in_dlq_order() {
        let letters = [letter(0, 5, Some(18)), letter(0, 3, Some(17))];
        let found = findings(&letters, &HashSet::new());
        let offsets: Vec<i64> = found.iter().map(|d| d.offset).collect();
        assert_eq!(offsets, [3, 5]);
        assert!(found
            .iter()
            .all(|d| d.found.as_ref().unwrap()["copies"].is_null()));
    }

    #[test]
    fn a_redrive_of_any_copy_settles_the_source_message() {
        let letters = [
            letter(0, 3, Some(17)),
            letter(1, 9, Some(17)),
            letter(0, 4, Some(20)),
        ];
        let found = findings(&letters, &HashSet::from([at(1, 9)]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, 4);
    }

    #[test]
    fn copies_without_a_source_position_are_never_merged() {
        let letters = [letter(0, 3, None), letter(0, 4, None)];
        assert_eq!(findings(&letters, &HashSet::new()).len(), 2);
    }
}
