//! Reconciler metrics, declared in one place (`ledgerline_reconciler_<what>_<unit>`).

use crate::discrepancy::Kind;
use metrics::{counter, gauge, histogram};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// A run finished: its status, its discrepancies by kind (a gauge per kind: the last run's
/// figure), its duration, and, when clean, the end of the window it proved clean.
pub fn run_finished(
    status: &'static str,
    by_kind: &BTreeMap<&'static str, u64>,
    elapsed: Duration,
    window_end: OffsetDateTime,
) {
    counter!("ledgerline_reconciler_runs_total", "status" => status).increment(1);
    for kind in Kind::ALL {
        let n = by_kind.get(kind.as_str()).copied().unwrap_or(0);
        gauge!("ledgerline_reconciler_discrepancies", "kind" => kind.as_str()).set(n as f64);
    }
    histogram!("ledgerline_reconciler_run_duration_seconds").record(elapsed.as_secs_f64());
    if status == "clean" {
        gauge!("ledgerline_reconciler_last_clean_window_end_seconds")
            .set(window_end.unix_timestamp() as f64);
    }
}

/// A run could not complete.
pub fn run_failed() {
    counter!("ledgerline_reconciler_runs_total", "status" => "failed").increment(1);
}

/// A daemon tick found another run holding the lock.
pub fn run_skipped() {
    counter!("ledgerline_reconciler_runs_skipped_total").increment(1);
}

/// A repair finished with this status.
pub fn repair_finished(status: &'static str) {
    counter!("ledgerline_reconciler_repairs_total", "status" => status).increment(1);
}

/// Messages a repair replayed into a store (`ledger` / `audit`).
pub fn replayed(store: &'static str, n: u64) {
    counter!("ledgerline_reconciler_replayed_messages_total", "store" => store).increment(n);
}

/// Dead letters sent back to their source topic.
pub fn redriven(n: u64) {
    counter!("ledgerline_reconciler_redriven_total").increment(n);
}
