//! What a run can find, and what a repair can do about it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The kinds of drift, each with a stable snake_case name (reports, metrics, the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An accepted decision in the log, older than the settle time, with no ledger row.
    MissingInLedger,
    /// A ledger row whose source offset holds no accepted decision for its transaction.
    ExtraInLedger,
    /// A ledger row that disagrees with its decision (amount, currency, account, merchant,
    /// type).
    LedgerMismatch,
    /// The ledger's result (POSTED / DECLINED) differs from what `txn.postings` announced.
    StatusMismatch,
    /// A ledger transaction whose postings are not two legs summing to zero.
    UnbalancedTransaction,
    /// An account's balance is not the sum of its postings.
    BalanceMismatch,
    /// A log message with no audit document.
    MissingInAudit,
    /// An audit document whose source position is not in the log.
    ExtraInAudit,
    /// An audit document whose raw message differs from the log's message at its position.
    AuditMismatch,
    /// An audit document whose hash is not the chain's hash at its position, or whose
    /// derived fields were edited.
    ChainBreak,
    /// A request without a decision, or a posted transaction without its `txn.postings`
    /// event, after the stuck threshold.
    StuckInFlight,
    /// A message on a dead-letter topic that was not redriven.
    DeadLettered,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 12] = [
        Kind::MissingInLedger,
        Kind::ExtraInLedger,
        Kind::LedgerMismatch,
        Kind::StatusMismatch,
        Kind::UnbalancedTransaction,
        Kind::BalanceMismatch,
        Kind::MissingInAudit,
        Kind::ExtraInAudit,
        Kind::AuditMismatch,
        Kind::ChainBreak,
        Kind::StuckInFlight,
        Kind::DeadLettered,
    ];

    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::MissingInLedger => "missing_in_ledger",
            Kind::ExtraInLedger => "extra_in_ledger",
            Kind::LedgerMismatch => "ledger_mismatch",
            Kind::StatusMismatch => "status_mismatch",
            Kind::UnbalancedTransaction => "unbalanced_transaction",
            Kind::BalanceMismatch => "balance_mismatch",
            Kind::MissingInAudit => "missing_in_audit",
            Kind::ExtraInAudit => "extra_in_audit",
            Kind::AuditMismatch => "audit_mismatch",
            Kind::ChainBreak => "chain_break",
            Kind::StuckInFlight => "stuck_in_flight",
            Kind::DeadLettered => "dead_lettered",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// What `repair --apply` does about it.
    pub fn remedy(&self) -> Remedy {
        match self {
            Kind::MissingInLedger => Remedy::ReplayLedger,
            Kind::ExtraInLedger
            | Kind::LedgerMismatch
            | Kind::StatusMismatch
            | Kind::UnbalancedTransaction => Remedy::QuarantineLedgerAndReplay,
            Kind::BalanceMismatch => Remedy::RebuildBalance,
            Kind::MissingInAudit => Remedy::ReplayAudit,
            Kind::ExtraInAudit | Kind::AuditMismatch | Kind::ChainBreak => {
                Remedy::QuarantineAuditAndReplay
            }
            Kind::StuckInFlight | Kind::DeadLettered => Remedy::Operator,
        }
    }
}

/// What a repair does for a kind of discrepancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Replay the decision's offset through the ledger-writer's path.
    ReplayLedger,
    /// Move the contradicting ledger rows to `ledger_quarantine`, then replay the offset.
    QuarantineLedgerAndReplay,
    /// Set the balance to the sum of its postings.
    RebuildBalance,
    /// Replay the offset through the audit's path.
    ReplayAudit,
    /// Move the document to the quarantine collection, then replay the offset.
    QuarantineAuditAndReplay,
    /// Nothing automatic: an operator looks (a stage is stuck; a dead letter needs
    /// `reconciler dlq redrive` once its cause is fixed).
    Operator,
}

/// One discrepancy: where in the log it is anchored, and what was expected and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discrepancy {
    /// What is wrong.
    pub kind: Kind,
    /// The transaction concerned, when known.
    pub transaction_id: Option<Uuid>,
    /// Source topic (full name); for a balance, the ledger's source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset (`-1` for a balance, which has no single offset).
    pub offset: i64,
    /// What the log (or the invariant) says.
    pub expected: Option<serde_json::Value>,
    /// What the store holds.
    pub found: Option<serde_json::Value>,
    /// A sentence for the operator.
    pub detail: String,
}

/// Counts by kind, every kind present (zero included) so reports and metrics are complete.
pub fn count_by_kind(found: &[Discrepancy]) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> =
        Kind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    for d in found {
        *counts.entry(d.kind.as_str()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }

    #[test]
    fn only_stuck_work_and_dead_letters_need_an_operator() {
        let manual: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| k.remedy() == Remedy::Operator)
            .collect();
        assert_eq!(manual, vec![Kind::StuckInFlight, Kind::DeadLettered]);
    }

    #[test]
    fn counts_name_every_kind_even_when_zero() {
        let counts = count_by_kind(&[]);
        assert_eq!(counts.len(), Kind::ALL.len());
        assert!(counts.values().all(|n| *n == 0));
    }
}
