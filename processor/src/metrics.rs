//! Processor metrics, declared in one place and emitted per batch.

use ledgerline_contracts::events::Decision;
use metrics::{counter, histogram};
use std::collections::BTreeMap;
use std::time::Duration;

/// Decisions of one batch, counted by (decision, reason).
#[derive(Debug, Default)]
pub struct BatchTally {
    counts: BTreeMap<(&'static str, String), u64>,
}

impl BatchTally {
    /// Counts one decision.
    pub fn add(&mut self, decision: Decision, reason: Option<&str>) {
        let d = match decision {
            Decision::Accepted => "ACCEPTED",
            Decision::Rejected => "REJECTED",
            Decision::Duplicate => "DUPLICATE",
        };
        *self
            .counts
            .entry((d, reason.unwrap_or("").to_string()))
            .or_default() += 1;
    }

    /// Publishes the batch's counts.
    pub fn emit(&self) {
        for ((decision, reason), n) in &self.counts {
            counter!("ledgerline_processor_decisions_total", "decision" => *decision, "reason" => reason.clone())
                .increment(*n);
        }
    }
}

/// Messages per batch.
pub fn batch_size(n: usize) {
    histogram!("ledgerline_processor_batch_size").record(n as f64);
}

/// Time to process a batch end to end (decode → claim → produce → status → commit).
pub fn batch_duration(elapsed: Duration) {
    histogram!("ledgerline_processor_batch_duration_seconds").record(elapsed.as_secs_f64());
}

/// One Redis round trip for a batch.
pub fn redis_duration(operation: &'static str, elapsed: Duration) {
    histogram!("ledgerline_processor_redis_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
}

/// A message dead-lettered, by reason.
pub fn dead_lettered(reason: &'static str) {
    counter!("ledgerline_processor_dead_lettered_total", "reason" => reason).increment(1);
}

/// A dependency failure that caused a retry.
pub fn retry(dependency: &'static str) {
    counter!("ledgerline_processor_retries_total", "dependency" => dependency).increment(1);
}

/// Redeliveries of owning requests (the crash window of design §3 being healed).
pub fn redelivered(n: u64) {
    counter!("ledgerline_processor_redelivered_total").increment(n);
}
