//! Audit metrics, declared in one place (`ledgerline_audit_<what>_<unit>`). Emitted per batch,
//! never per message. Consumer lag (`ledgerline_audit_consumer_lag_messages`) comes from the
//! runtime's lag reporter.

use metrics::{counter, histogram};
use std::time::Duration;

/// Retries of a failed dependency call, by `dependency` (`mongo`, `kafka`); the runtime's
/// `Retrier` increments it.
pub const RETRIES: &str = "ledgerline_audit_retries_total";

/// Documents inserted, by kind (`event`, `duplicate`, `poison`, `dead_letter`).
pub fn documents(kind: &'static str, n: u64) {
    counter!("ledgerline_audit_documents_total", "kind" => kind).increment(n);
}

/// Messages found already stored at their position (redelivery after a crash or rebalance,
/// a replay, a second group over the same database).
pub fn already_stored(n: u64) {
    // Incremented by 0 too, so the series exists from the first batch on.
    counter!("ledgerline_audit_duplicates_total").increment(n);
}

/// Messages per batch.
pub fn batch_size(n: usize) {
    histogram!("ledgerline_audit_batch_size").record(n as f64);
}

/// Time to process a batch end to end (derive → dead-letter → link → insert → commit).
pub fn batch_duration(elapsed: Duration) {
    histogram!("ledgerline_audit_batch_duration_seconds").record(elapsed.as_secs_f64());
}

/// One batch's `insert_many`, duplicate-key resolution included.
pub fn insert_duration(elapsed: Duration) {
    histogram!("ledgerline_audit_insert_duration_seconds").record(elapsed.as_secs_f64());
}

/// A poison message dead-lettered, by reason.
pub fn dead_lettered(reason: &'static str) {
    counter!("ledgerline_audit_dead_lettered_total", "reason" => reason).increment(1);
}

/// A partition chain checked by `verify`, by result (`ok`, `broken`).
pub fn chain_verification(result: &'static str) {
    counter!("ledgerline_audit_chain_verifications_total", "result" => result).increment(1);
}

/// Places where a partition's offsets jumped and the writer linked over the hole.
pub fn chain_gaps(n: usize) {
    // Incremented by 0 too, so the series exists (at 0) for alerts from the first batch on.
    counter!("ledgerline_audit_chain_gaps_total").increment(n as u64);
}

/// Positions already stored with a different hash than the log gives (the stored chain was
/// altered, or the log was rewritten): each is also logged as an error.
pub fn chain_conflicts(n: usize) {
    counter!("ledgerline_audit_chain_conflicts_total").increment(n as u64);
}
