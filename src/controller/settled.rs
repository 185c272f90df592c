//! Which ChangeTriggeredJobs are settled, so that their safety resync costs a map lookup:
//! the epoch of each CTJ's inputs (moved by every wake-up of the CTJ and every event of its
//! Jobs) and what its last settled round was based on. The rule is `detect::resync`.
//!
//! A settled CTJ whose resync found nothing new is parked: the controller forgets it until a
//! wake-up, and the term's resync sweep (`controller::resync_parked`) checks it again when its
//! next resync comes due, without a reconcile of its own.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use super::watches::CtjRef;
use crate::detect::resync::{Settled, unchanged};

#[derive(Default)]
struct Entry {
    epoch: u64,
    settled: Option<Settled>,
    /// Parked until this resync; the sweep checks it then.
    parked: Option<Instant>,
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
            entry.parked = None;
        }
    }

    /// The epoch of `ctj`'s inputs; read it before observing them. A round under way is not
    /// parked.
    pub fn epoch(&self, ctj: &CtjRef) -> u64 {
        self.entries
            .lock()
            .map(|mut entries| {
                let entry = entries.entry(ctj.clone()).or_default();
                entry.parked = None;
                entry.epoch
            })
            .unwrap_or(0)
    }

    /// Parks a settled `ctj` until its next resync at `due`; `false` (and nothing parked) if
    /// it is not settled.
    pub fn park(&self, ctj: &CtjRef, due: Instant) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        match entries.get_mut(ctj) {
            Some(entry) if entry.settled.is_some() => {
                entry.parked = Some(due);
                true
            }
            _ => false,
        }
    }

    /// The parked CTJs whose resync is due by `now`; they stay parked until re-parked,
    /// woken or forgotten.
    pub fn due(&self, now: Instant) -> Vec<CtjRef> {
        self.entries
            .lock()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(_, e)| e.parked.is_some_and(|due| due <= now))
                    .map(|(ctj, _)| ctj.clone())
                    .collect()
            })
            .unwrap_or_default()
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
    fn only_a_settled_ctj_parks_and_it_comes_due_at_its_resync() {
        let set = SettledSet::default();
        let now = Instant::now();
        let epoch = set.epoch(&ctj());
        assert!(!set.park(&ctj(), now), "not settled yet");
        set.settle(&ctj(), epoch, "7");
        assert!(set.park(&ctj(), now + std::time::Duration::from_secs(60)));
        assert!(set.due(now).is_empty());
        assert_eq!(
            set.due(now + std::time::Duration::from_secs(60)),
            vec![ctj()]
        );
    }

    #[test]
    fn a_wake_up_or_a_new_round_unparks() {
        let set = SettledSet::default();
        let due = Instant::now();
        let epoch = set.epoch(&ctj());
        set.settle(&ctj(), epoch, "7");
        set.park(&ctj(), due);
        set.invalidate(&ctj());
        assert!(set.due(due).is_empty(), "woken: the controller has it");

        let epoch = set.epoch(&ctj());
        set.settle(&ctj(), epoch, "7");
        set.park(&ctj(), due);
        set.epoch(&ctj());
        assert!(set.due(due).is_empty(), "a round under way");
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
