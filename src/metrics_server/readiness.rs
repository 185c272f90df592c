//! Named readiness checks behind `/readyz`: the replica is ready when every check passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The set of readiness checks. Clones share the same checks.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(String, ReadinessFlag)>>>,
}

/// One check's current result; starts failing until [`set`](ReadinessFlag::set) to true.
#[derive(Clone, Debug, Default)]
pub struct ReadinessFlag(Arc<AtomicBool>);

impl ReadinessFlag {
    /// Records whether the check passes.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the check passes.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Readiness {
    /// No checks yet (which counts as ready).
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Registers a check called `name`, failing until its flag is set.
    pub fn add_check(&self, name: impl Into<String>) -> ReadinessFlag {
        let flag = ReadinessFlag::default();
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), flag.clone()));
        flag
    }

    /// Whether every registered check passes.
    pub fn all_ready(&self) -> bool {
        self.failing().is_empty()
    }

    /// Names of the checks that do not pass, in registration order.
    pub fn failing(&self) -> Vec<String> {
        self.report()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect()
    }

    /// Every check with its result, in registration order.
    pub fn report(&self) -> Vec<(String, bool)> {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, flag)| (name.clone(), flag.get()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let readiness = Readiness::new();
        assert!(readiness.all_ready(), "no checks: ready");
        let tls = readiness.add_check("tls");
        let api = readiness.clone().add_check("api-server");
        assert_eq!(readiness.failing(), vec!["tls", "api-server"]);
        tls.set(true);
        assert_eq!(readiness.failing(), vec!["api-server"]);
        api.set(true);
        assert!(readiness.all_ready());
        tls.set(false);
        assert!(!readiness.all_ready());
    }
}
