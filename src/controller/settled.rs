//! Which ChangeTriggeredJobs are settled, so that their safety resync costs a map lookup:
//! the epoch of each CTJ's inputs (moved by every wake-up of the CTJ and every event of its
//! Jobs) and what its last settled round was based on. The rule is `detect::resync`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::watches::CtjRef;
use crate::detect::resync::{Settled, unchanged};

#[derive(Default)]
struct Entry {
    epoch: u64,
    settled: Option<Settled>,
}

/// Settled state of every ChangeTriggeredJob of a leadership term.
#[derive(Default)]
pub struct SettledSet {
    entries: Mutex<HashMap<CtjRef, Entry>>,
}

impl SettledSet {
    /// Something `ctj` depends on moved: its next round must look again.
    pub fn invalidate(&self, ctj: &CtjRef) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(ctj)
        {
            entry.epoch = entry.epoch.wrapping_add(1);
            entry.settled = None;
        }
    }

    /// The epoch of `ctj`'s inputs; read it before observing them.
    pub fn epoch(&self, ctj: &CtjRef) -> u64 {
        self.entries
            .lock()
            .map(|mut entries| entries.entry(ctj.clone()).or_default().epoch)
            .unwrap_or(0)
    }

    /// Remembers a settled round that started at `epoch` and read `resource_version`; ignored
    /// when something moved meanwhile.
    pub fn settle(&self, ctj: &CtjRef, epoch: u64, resource_version: &str) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(ctj)
            && entry.epoch == epoch
        {
            entry.settled = Some(Settled {
                resource_version: resource_version.to_string(),
                epoch,
            });
        }
    }

    /// Whether `ctj` at `resource_version` has nothing new since its last settled round.
    pub fn unchanged(&self, ctj: &CtjRef, resource_version: &str) -> bool {
        self.entries.lock().is_ok_and(|entries| {
            entries
                .get(ctj)
                .is_some_and(|e| unchanged(e.settled.as_ref(), resource_version, e.epoch))
        })
    }

    /// Forgets a deleted CTJ.
    pub fn forget(&self, ctj: &CtjRef) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(ctj);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctj() -> CtjRef {
        CtjRef::new("watcher").within("apps")
    }

    #[test]
    fn a_settled_round_makes_the_next_resync_unchanged() {
        let set = SettledSet::default();
        let epoch = set.epoch(&ctj());
        set.settle(&ctj(), epoch, "7");
        assert!(set.unchanged(&ctj(), "7"));
        assert!(!set.unchanged(&ctj(), "8"));
    }

    #[test]
    fn a_wake_up_during_the_round_keeps_it_from_settling() {
        let set = SettledSet::default();
        let epoch = set.epoch(&ctj());
        set.invalidate(&ctj());
        set.settle(&ctj(), epoch, "7");
        assert!(!set.unchanged(&ctj(), "7"));
    }

    #[test]
    fn a_wake_up_after_the_round_ends_the_settled_state() {
        let set = SettledSet::default();
        let epoch = set.epoch(&ctj());
        set.settle(&ctj(), epoch, "7");
        set.invalidate(&ctj());
        assert!(!set.unchanged(&ctj(), "7"));
    }

    #[test]
    fn a_forgotten_ctj_is_not_settled() {
        let set = SettledSet::default();
        let epoch = set.epoch(&ctj());
        set.settle(&ctj(), epoch, "7");
        set.forget(&ctj());
        assert!(!set.unchanged(&ctj(), "7"));
    }
}
