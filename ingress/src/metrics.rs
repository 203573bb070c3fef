//! Ingress metrics, declared in one place. Label values come from small fixed sets (route
//! names, status classes, problem slugs), never from ids.

use metrics::{counter, gauge, histogram};
use std::time::Duration;

/// Route label of a request.
pub type Route = &'static str;

/// Counts a finished request and its latency.
pub fn request_finished(route: Route, status: u16, elapsed: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!("ledgerline_ingress_requests_total", "route" => route, "status_class" => class)
        .increment(1);
    histogram!("ledgerline_ingress_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
}

/// Counts a rejected request by problem slug.
pub fn rejected(reason: &'static str) {
    counter!("ledgerline_ingress_rejections_total", "reason" => reason).increment(1);
}

/// Records how long Kafka took to acknowledge a request.
pub fn produce_latency(elapsed: Duration) {
    histogram!("ledgerline_ingress_produce_duration_seconds").record(elapsed.as_secs_f64());
}

/// Counts a publish that did not end in an acknowledgement.
pub fn produce_failed(reason: &'static str) {
    counter!("ledgerline_ingress_produce_failures_total", "reason" => reason).increment(1);
}

/// Requests waiting for a Kafka acknowledgement right now.
pub fn in_flight(n: usize) {
    gauge!("ledgerline_ingress_in_flight_requests").set(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Counts status-model writes or reads that failed (Redis down or slow): the request still
/// succeeds, the read model catches up from the processor.
pub fn status_store_failed(operation: &'static str) {
    counter!("ledgerline_ingress_status_store_failures_total", "operation" => operation)
        .increment(1);
}

/// A ledger (PostgreSQL) read that failed or timed out.
pub fn ledger_read_failed() {
    metrics::counter!("ledgerline_ingress_ledger_read_failures_total").increment(1);
}

/// An audit-trail (MongoDB) read that failed or timed out.
pub fn audit_read_failed() {
    metrics::counter!("ledgerline_ingress_audit_read_failures_total").increment(1);
}
