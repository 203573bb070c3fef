//! The fault timeline of one run: what the harness did and when, in seconds from the start of
//! the load. Printed with a failure so it can be replayed from the seed.

use serde::Serialize;
use std::sync::Mutex;
use tokio::time::Instant;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    /// Seconds since the load started.
    pub at_secs: f64,
    /// What happened.
    pub what: String,
}

/// The marks of one run.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    marks: Mutex<Vec<Mark>>,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline {
            start: Instant::now(),
            marks: Mutex::new(Vec::new()),
        }
    }
}

impl Timeline {
    /// Notes `what` now (and logs it).
    pub fn mark(&self, what: impl Into<String>) {
        let what = what.into();
        let at_secs = (self.start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        tracing::info!(at_secs, "{what}");
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Mark { at_secs, what });
    }

    /// Every mark so far.
    pub fn marks(&self) -> Vec<Mark> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The marks as indented lines, for a failure message.
pub fn render(marks: &[Mark]) -> String {
    marks
        .iter()
        .map(|m| format!("  {:>7.1} s  {}", m.at_secs, m.what))
        .collect::<Vec<_>>()
        .join("\n")
}
