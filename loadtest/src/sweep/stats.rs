//! What one step observed: the counts of every outcome and the latency histograms, and the
//! serializable summary the reports are rendered from.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::scrape::StageDelta;

/// Highest latency the histograms resolve, in microseconds (60 s); longer ones saturate.
const LATENCY_US_MAX: u64 = 60_000_000;

/// A request dispatched later than this after its intended time counts as a late send: the
/// generator could not keep the schedule.
pub const LATE_SEND_THRESHOLD: Duration = Duration::from_millis(5);

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202.
    Accepted,
    /// 429.
    RateLimited,
    /// 503.
    Unavailable,
    /// Any other status.
    OtherStatus(u16),
    /// Connecting, writing or reading failed.
    Transport,
    /// No complete answer within the request timeout.
    Timeout,
}

/// The running counts of one step.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Requests the schedule called for.
    pub offered: u64,
    /// Requests handed to the HTTP client.
    pub sent: u64,
    /// Requests not sent because the in-flight cap was reached.
    pub unsent_in_flight_cap: u64,
    /// 202s.
    pub accepted: u64,
    /// 429s.
    pub rate_limited: u64,
    /// 503s.
    pub unavailable: u64,
    /// Other statuses, by code.
    pub other_status: BTreeMap<u16, u64>,
    /// Transport failures.
    pub transport_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// 202s whose body had no transaction id (so they could not be recorded).
    pub accepted_unrecorded: u64,
    /// Sends dispatched more than [`LATE_SEND_THRESHOLD`] after their intended time.
    pub late_sends: u64,
    /// The largest dispatch delay behind schedule.
    pub dispatch_lag_max: Duration,
    /// Latency of every answered request (any status), from its intended send time, µs.
    pub latency_all: Histogram<u64>,
    /// Latency of 202s from their intended send time, µs.
    pub latency_accepted: Histogram<u64>,
}

impl Default for StepStats {
    fn default() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("1 µs .. 60 s at 3 significant digits is a valid histogram")
        };
        StepStats {
            offered: 0,
            sent: 0,
            unsent_in_flight_cap: 0,
            accepted: 0,
            rate_limited: 0,
            unavailable: 0,
            other_status: BTreeMap::new(),
            transport_errors: 0,
            timeouts: 0,
            accepted_unrecorded: 0,
            late_sends: 0,
            dispatch_lag_max: Duration::ZERO,
            latency_all: histogram(),
            latency_accepted: histogram(),
        }
    }
}

impl StepStats {
    /// Counts one finished request and its latency from the intended send time.
    pub fn finish(&mut self, outcome: Outcome, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        match outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                self.latency_accepted.saturating_record(micros);
            }
            Outcome::RateLimited => self.rate_limited += 1,
            Outcome::Unavailable => self.unavailable += 1,
            Outcome::OtherStatus(code) => *self.other_status.entry(code).or_default() += 1,
            Outcome::Transport => self.transport_errors += 1,
            Outcome::Timeout => self.timeouts += 1,
        }
        // A timeout or a transport failure has no answer to time.
        if !matches!(outcome, Outcome::Transport | Outcome::Timeout) {
            self.latency_all.saturating_record(micros);
        }
    }

    /// Counts a dispatch `lag` behind schedule.
    pub fn dispatched(&mut self, lag: Duration) {
        self.sent += 1;
        if lag > LATE_SEND_THRESHOLD {
            self.late_sends += 1;
        }
        self.dispatch_lag_max = self.dispatch_lag_max.max(lag);
    }

    /// Every non-202/429/503 ending: other statuses, transport failures, timeouts.
    pub fn errors(&self) -> u64 {
        self.other_status.values().sum::<u64>() + self.transport_errors + self.timeouts
    }

    /// Requests that ended, one way or another.
    pub fn finished(&self) -> u64 {
        self.accepted + self.rate_limited + self.unavailable + self.errors()
    }
}

/// Latency percentiles in milliseconds (`None` when nothing was answered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Reads a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| Some(us as f64 / 1_000.0);
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The generator's own use of the machine during a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorUse {
    /// CPU seconds this process used (user + system).
    pub cpu_seconds: f64,
    /// That CPU as a share of all cores over the step, percent.
    pub cpu_share_percent: f64,
    /// CPU per request sent, microseconds.
    pub cpu_us_per_request: f64,
    /// Sends dispatched more than 5 ms late.
    pub late_sends: u64,
    /// The largest dispatch delay behind schedule, ms.
    pub dispatch_lag_max_ms: f64,
}

/// Another process's CPU during a step (`--watch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedUse {
    /// The name given on the command line.
    pub name: String,
    /// CPU seconds over the step.
    pub cpu_seconds: f64,
    /// Share of one core, percent (100 = one core busy).
    pub core_percent: f64,
}

/// One step, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Offered arrival rate, requests per second.
    pub offered_rps: u32,
    /// Planned length of the step, seconds.
    pub duration_secs: u32,
    /// From the step's start to its last answer, seconds.
    pub elapsed_secs: f64,
    /// Requests the schedule called for.
    pub offered: u64,
    /// Requests actually sent.
    pub sent: u64,
    /// Not sent: the in-flight cap was reached.
    pub unsent_in_flight_cap: u64,
    /// 202s.
    pub accepted: u64,
    /// 429s.
    pub rate_limited: u64,
    /// 503s.
    pub unavailable: u64,
    /// Other statuses + transport failures + timeouts.
    pub errors: u64,
    /// Other statuses by code.
    pub other_status: BTreeMap<String, u64>,
    /// Transport failures.
    pub transport_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// 202s that could not be recorded (no transaction id in the body).
    pub accepted_unrecorded: u64,
    /// 202s per second of the planned step.
    pub accepted_rps: f64,
    /// Latency of every answered request from its intended send time.
    pub latency_ms: Percentiles,
    /// Latency of the 202s alone.
    pub accepted_latency_ms: Percentiles,
    /// The generator's CPU and schedule keeping.
    pub generator: GeneratorUse,
    /// Per-stage progress from `/metrics` over the step.
    pub stages: Vec<StageDelta>,
    /// Watched processes' CPU over the step.
    pub watched: Vec<WatchedUse>,
    /// Whether the step meets the knee rule.
    pub meets_knee_rule: bool,
    /// Whether the generator fell behind its own schedule (more than 1 % of sends late).
    pub generator_limited: bool,
}

impl StepReport {
    /// Summarises `stats` for a step of `offered_rps` × `duration_secs`.
    pub fn new(
        offered_rps: u32,
        duration_secs: u32,
        elapsed: Duration,
        stats: &StepStats,
        generator: GeneratorUse,
    ) -> StepReport {
        debug_assert_eq!(stats.sent, stats.finished(), "every sent request ends once");
        debug_assert_eq!(stats.offered, stats.sent + stats.unsent_in_flight_cap);
        let generator_limited = stats.late_sends * 100 > stats.sent;
        StepReport {
            offered_rps,
            duration_secs,
            elapsed_secs: elapsed.as_secs_f64(),
            offered: stats.offered,
            sent: stats.sent,
            unsent_in_flight_cap: stats.unsent_in_flight_cap,
            accepted: stats.accepted,
            rate_limited: stats.rate_limited,
            unavailable: stats.unavailable,
            errors: stats.errors(),
            other_status: stats
                .other_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            transport_errors: stats.transport_errors,
            timeouts: stats.timeouts,
            accepted_unrecorded: stats.accepted_unrecorded,
            accepted_rps: if duration_secs == 0 {
                0.0
            } else {
                stats.accepted as f64 / f64::from(duration_secs)
            },
            latency_ms: Percentiles::of(&stats.latency_all),
            accepted_latency_ms: Percentiles::of(&stats.latency_accepted),
            generator,
            stages: Vec::new(),
            watched: Vec::new(),
            meets_knee_rule: false,
            generator_limited,
        }
    }

    /// The reported counts add up: sent = 202 + 429 + 503 + errors, offered = sent + unsent.
    pub fn is_consistent(&self) -> bool {
        self.sent == self.accepted + self.rate_limited + self.unavailable + self.errors
            && self.offered == self.sent + self.unsent_in_flight_cap
            && self.errors
                == self.other_status.values().sum::<u64>() + self.transport_errors + self.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_counted_once_and_errors_group_the_rest() {
        let mut s = StepStats {
            offered: 8,
            ..StepStats::default()
        };
        for outcome in [
            Outcome::Accepted,
            Outcome::Accepted,
            Outcome::RateLimited,
            Outcome::Unavailable,
            Outcome::OtherStatus(500),
            Outcome::Transport,
            Outcome::Timeout,
        ] {
            s.dispatched(Duration::ZERO);
            s.finish(outcome, Duration::from_millis(3));
        }
        s.unsent_in_flight_cap = 1;
        assert_eq!(s.errors(), 3);
        assert_eq!(s.finished(), s.sent);
        let r = StepReport::new(8, 1, Duration::from_secs(1), &s, GeneratorUse::default());
        assert!(r.is_consistent(), "{r:?}");
        assert_eq!(r.accepted_rps, 2.0);
        // Timeouts and transport failures have no latency; the other five do.
        assert_eq!(s.latency_all.len(), 5);
        assert_eq!(s.latency_accepted.len(), 2);
    }

    #[test]
    fn percentiles_are_read_in_milliseconds() {
        let mut s = StepStats::default();
        for ms in 1..=100 {
            s.finish(Outcome::Accepted, Duration::from_millis(ms));
        }
        let p = Percentiles::of(&s.latency_all);
        let p50 = p.p50.unwrap();
        assert!((49.5..=50.5).contains(&p50), "{p50}");
        assert!(p.p99.unwrap() >= 98.9);
        assert!((p.max.unwrap() - 100.0).abs() < 0.1);
        assert_eq!(
            Percentiles::of(&StepStats::default().latency_all),
            Percentiles::default()
        );
    }

    #[test]
    fn a_step_with_more_than_one_percent_late_sends_is_generator_limited() {
        let mut s = StepStats {
            offered: 100,
            ..StepStats::default()
        };
        for i in 0..100 {
            let lag = if i < 2 {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            s.dispatched(lag);
            s.finish(Outcome::Accepted, Duration::from_millis(1));
        }
        let r = StepReport::new(100, 1, Duration::from_secs(1), &s, GeneratorUse::default());
        assert!(r.generator_limited);
        assert_eq!(s.dispatch_lag_max, Duration::from_millis(50));
    }
}
