//! Readiness: named checks that components flip as their dependencies come and go.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A set of named readiness flags. `/readyz` is 200 only when every flag is up. Components
/// update their own flag from their run loops (e.g. after a successful produce or commit), so a
/// probe never blocks on a dependency.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<BTreeMap<&'static str, AtomicBool>>,
}

impl Readiness {
    /// Declares the checks this process has; all start not ready.
    pub fn new(names: &[&'static str]) -> Self {
        let checks = names.iter().map(|n| (*n, AtomicBool::new(false))).collect();
        Self {
            checks: Arc::new(checks),
        }
    }

    /// Sets one check. Unknown names are a programming error.
    pub fn set(&self, name: &'static str, ready: bool) {
        let flag = self.checks.get(name);
        debug_assert!(flag.is_some(), "undeclared readiness check {name}");
        if let Some(flag) = flag {
            flag.store(ready, Ordering::Relaxed);
        }
    }

    /// Whether every check is up.
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|f| f.load(Ordering::Relaxed))
    }

    /// Each check and its state, for the `/readyz` body.
    pub fn report(&self) -> BTreeMap<&'static str, bool> {
        self.checks
            .iter()
            .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is_up() {
        let r = Readiness::new(&["kafka", "postgres"]);
        assert!(!r.is_ready());
        r.set("kafka", true);
        assert!(!r.is_ready());
        r.set("postgres", true);
        assert!(r.is_ready());
        r.set("kafka", false);
        assert_eq!(r.report().get("kafka"), Some(&false));
    }
}
