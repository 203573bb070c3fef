//! Ledger-writer metrics, declared in one place (`ledgerline_ledger_writer_<what>_<unit>`).

use metrics::{counter, gauge, histogram};
use std::time::Duration;

/// Transactions written, by result (`POSTED` / `DECLINED`) and reason.
pub fn written(result: &'static str, reason: &str, n: u64) {
    counter!("ledgerline_ledger_writer_transactions_total", "result" => result, "reason" => reason.to_string())
        .increment(n);
}

/// Decisions not posted: `already_recorded` (redelivery, replay) or `not_accepted`.
pub fn skipped(why: &'static str, n: u64) {
    counter!("ledgerline_ledger_writer_skipped_total", "why" => why).increment(n);
}

/// Messages per batch.
pub fn batch_size(n: usize) {
    histogram!("ledgerline_ledger_writer_batch_size").record(n as f64);
}

/// Time to process a batch end to end (decode → database → commit offsets).
pub fn batch_duration(elapsed: Duration) {
    histogram!("ledgerline_ledger_writer_batch_duration_seconds").record(elapsed.as_secs_f64());
}

/// One database transaction (lock, plan, write, commit).
pub fn db_duration(elapsed: Duration) {
    histogram!("ledgerline_ledger_writer_db_duration_seconds").record(elapsed.as_secs_f64());
}

/// A message dead-lettered, by reason.
pub fn dead_lettered(reason: &'static str) {
    counter!("ledgerline_ledger_writer_dead_lettered_total", "reason" => reason).increment(1);
}

/// A dependency failure that caused a retry.
pub fn retry(dependency: &'static str) {
    counter!("ledgerline_ledger_writer_retries_total", "dependency" => dependency).increment(1);
}

/// Outbox rows published to `txn.postings`.
pub fn relayed(n: usize) {
    counter!("ledgerline_ledger_writer_relayed_total").increment(n as u64);
}

/// Outbox rows dropped without an announcement, by reason (`not_in_ledger`, `unreadable`).
pub fn outbox_dropped(reason: &'static str) {
    counter!("ledgerline_ledger_writer_outbox_dropped_total", "reason" => reason).increment(1);
}

/// Outbox rows waiting to be published (sampled every 10 s by the relay).
pub fn outbox_unsent(n: i64) {
    gauge!("ledgerline_ledger_writer_outbox_unsent").set(n as f64);
}

/// Where a relay round's time goes: `select`, `produce` (until every ack), `status`, `delete`
/// (of the sent rows, with the commit). An operator reads from it whether the broker, Redis or
/// PostgreSQL holds the outbox back.
pub fn relay_phase(phase: &'static str, elapsed: Duration) {
    histogram!("ledgerline_ledger_writer_relay_phase_seconds", "phase" => phase)
        .record(elapsed.as_secs_f64());
}
