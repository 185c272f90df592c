//! Naming the members of a selector entry that changed. Status keeps one fingerprint per
//! set; to say *which* members joined, left or changed, the members at the baseline are kept
//! in memory. After a restart (or a leader handover) they are unknown until the next trigger,
//! and the Job annotation names the selector entry as a whole instead.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::detect::fingerprint::FingerprintKey;
use crate::detect::member_set::{Members, changes_since};
use crate::detect::trigger::{Decision, Tracked, WatchedObject};

/// Members at the baseline, per CTJ UID and selector entry.
#[derive(Default)]
pub struct SetBaselines {
    by_ctj: Mutex<HashMap<String, HashMap<WatchedObject, Members>>>,
}

impl SetBaselines {
    /// Replaces each pending selector entry in the decision's list of changed objects by the
    /// members that changed, when the members at its baseline are known.
    pub fn name_members(
        &self,
        uid: &str,
        key: &FingerprintKey,
        tracked: &[Tracked],
        now: &HashMap<WatchedObject, Members>,
        decision: &mut Decision,
    ) {
        let (Decision::Trigger { changed, .. } | Decision::Deferred { changed, .. }) = decision
        else {
            return;
        };
        let Ok(by_ctj) = self.by_ctj.lock() else {
            return;
        };
        let remembered = by_ctj.get(uid);
        let mut named = Vec::with_capacity(changed.len());
        for entry in changed.drain(..) {
            let members = entry
                .selector
                .as_ref()
                .and_then(|_| now.get(&entry))
                .zip(tracked.iter().find(|t| t.object == entry));
            let Some((members, state)) = members else {
                named.push(entry);
                continue;
            };
            let before = remembered.and_then(|r| r.get(&entry));
            match changes_since(key, &state.baseline, before, members) {
                Some(names) if !names.is_empty() => {
                    named.extend(names.iter().map(|name| entry.member(name)));
                }
                _ => named.push(entry),
            }
        }
        *changed = named;
    }

    /// Records the members of every selector entry whose baseline is its latest fingerprint
    /// (first observation, or a trigger just carried out); keeps the others.
    pub fn remember(&self, uid: &str, tracked: &[Tracked], now: &HashMap<WatchedObject, Members>) {
        let Ok(mut by_ctj) = self.by_ctj.lock() else {
            return;
        };
        let entry = by_ctj.entry(uid.to_string()).or_default();
        entry.retain(|object, _| tracked.iter().any(|t| &t.object == object));
        for t in tracked {
            if t.object.selector.is_some()
                && !t.pending()
                && let Some(members) = now.get(&t.object)
            {
                entry.insert(t.object.clone(), members.clone());
            }
        }
        if entry.is_empty() {
            by_ctj.remove(uid);
        }
    }

    /// Forgets a deleted CTJ.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut by_ctj) = self.by_ctj.lock() {
            by_ctj.remove(uid);
        }
    }
}
