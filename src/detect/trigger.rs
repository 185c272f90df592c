//! The trigger decision: given what was seen before, what is seen now and the clock, should a
//! Job be created now, later (cooldown), or not at all?
//!
//! Per watched object we keep `hash` (latest fingerprint) and `baseline` (fingerprint at the
//! last trigger, or at first observation). The object is *pending* when they differ. A change
//! that is undone before a trigger is therefore not pending; a change during the cooldown
//! stays pending and fires when the cooldown ends.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::fingerprint::Fingerprint;
use super::label_selector::Selector;
use crate::api::{ResourceHashStatus, ResourceReference, TriggerCondition};

/// Baseline given to an object that had a pending change when the fingerprint key changed:
/// its old fingerprints cannot be compared with new ones, but the change must not be lost.
pub const REKEYED_PENDING: &str = "rekeyed-pending";

/// Identity of a watched object entry. Changing any part of it (including `fields`) makes a
/// new entry, which gets a fresh baseline instead of counting as a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchedObject {
    /// API version as written in the spec.
    pub api_version: String,
    /// Kind as written in the spec.
    pub kind: String,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name; empty for a selector entry.
    pub name: String,
    /// The canonical text of a selector entry's label selector (empty when it selects
    /// everything); `None` for an entry that names one object.
    pub selector: Option<String>,
    /// Field paths, as written (defaulted to `["*"]`).
    pub fields: Vec<String>,
}

impl WatchedObject {
    /// The identity of a spec entry.
    pub fn from_reference(reference: &ResourceReference) -> Self {
        WatchedObject {
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            namespace: reference.namespace.clone().filter(|ns| !ns.is_empty()),
            name: reference.name.clone(),
            // An invalid selector keeps a readable identity; it is reported, never observed.
            selector: reference.selector.as_ref().map(|s| {
                Selector::from_api(s)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| crate::detect::label_selector::describe(s))
            }),
            fields: reference.fields_or_default(),
        }
    }

    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects; a selector entry
    /// shows its selector in brackets (`ConfigMap/shop/[app=shop]`).
    pub fn display_name(&self) -> String {
        let target = match &self.selector {
            Some(s) if s.is_empty() => "[everything]".to_string(),
            Some(s) => format!("[{s}]"),
            None => self.name.clone(),
        };
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, target),
            None => format!("{}/{}", self.kind, target),
        }
    }

    /// The object `name` of a selector entry's set, as its own watched object.
    pub fn member(&self, name: &str) -> WatchedObject {
        WatchedObject {
            name: name.to_string(),
            selector: None,
            ..self.clone()
        }
    }
}

/// Trigger state of one watched object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Which object.
    pub object: WatchedObject,
    /// Latest fingerprint.
    pub hash: Fingerprint,
    /// Fingerprint at the last trigger or first observation.
    pub baseline: Fingerprint,
    /// Whether the object existed at the latest observation (for a set: whether it had
    /// members).
    pub exists: bool,
    /// Number of members of a selector entry's set at the latest observation.
    pub members: Option<usize>,
}

impl Tracked {
    /// Whether the object changed since the last trigger.
    pub fn pending(&self) -> bool {
        self.hash != self.baseline
    }

    /// Reads an entry from status.
    pub fn from_status(entry: &ResourceHashStatus) -> Self {
        Tracked {
            object: WatchedObject {
                api_version: entry.api_version.clone(),
                kind: entry.kind.clone(),
                namespace: entry.namespace.clone().filter(|ns| !ns.is_empty()),
                name: entry.name.clone(),
                selector: entry.selector.clone(),
                fields: if entry.fields.is_empty() {
                    vec![crate::api::WHOLE_OBJECT.to_string()]
                } else {
                    entry.fields.clone()
                },
            },
            hash: Fingerprint(entry.hash.clone()),
            // An entry written without a baseline (older status) has no pending change.
            baseline: Fingerprint(if entry.baseline.is_empty() {
                entry.hash.clone()
            } else {
                entry.baseline.clone()
            }),
            exists: entry.exists,
            members: entry.members.and_then(|m| usize::try_from(m).ok()),
        }
    }

    /// The status form of this entry.
    pub fn to_status(&self) -> ResourceHashStatus {
        ResourceHashStatus {
            api_version: self.object.api_version.clone(),
            kind: self.object.kind.clone(),
            name: self.object.name.clone(),
            selector: self.object.selector.clone(),
            members: self.members.and_then(|m| i64::try_from(m).ok()),
            namespace: self.object.namespace.clone(),
            fields: self.object.fields.clone(),
            hash: self.hash.0.clone(),
            baseline: self.baseline.0.clone(),
            exists: self.exists,
        }
    }
}

/// What the reconciler saw of one watched object this time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The object exists; this is the fingerprint of its selected content.
    Found(Fingerprint),
    /// A selector entry's set: the fingerprint over its members and how many there are.
    Set {
        /// Keyed hash over the members' (name, fingerprint) pairs.
        fingerprint: Fingerprint,
        /// Number of members.
        members: usize,
    },
    /// The object does not exist (404).
    Missing,
    /// The object could not be read (unknown kind, RBAC denial, API error): keep what we knew.
    Unavailable,
}

/// Why a Job is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerReason {
    /// The trigger condition held.
    Change,
    /// A new value of the manual-trigger annotation.
    Manual,
}

impl TriggerReason {
    /// Lower-case name used in annotations and events.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerReason::Change => "change",
            TriggerReason::Manual => "manual",
        }
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create a Job now.
    Trigger {
        /// Why.
        reason: TriggerReason,
        /// Objects with a pending change (may be empty for a manual trigger).
        changed: Vec<WatchedObject>,
    },
    /// The condition holds but the cooldown has not ended; evaluate again at `until`.
    Deferred {
        /// When the cooldown ends.
        until: Timestamp,
        /// Objects with a pending change.
        changed: Vec<WatchedObject>,
    },
    /// The trigger is due but `concurrencyPolicy: Forbid` holds it until the CTJ's running
    /// Jobs finish; baselines stay pending, so the hold survives restarts.
    WaitingForActiveJob {
        /// Why the Job is due.
        reason: TriggerReason,
        /// Objects with a pending change.
        changed: Vec<WatchedObject>,
        /// Names of the running Jobs it waits for.
        active: Vec<String>,
    },
    /// `spec.suspend` is set; pending changes are kept.
    Suspended {
        /// Number of objects with a pending change.
        pending: usize,
    },
    /// Condition `All` and only some objects changed.
    Waiting {
        /// Number of objects with a pending change.
        pending: usize,
        /// Number of watched objects.
        of: usize,
    },
    /// Nothing changed.
    Idle,
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct TriggerInput<'a> {
    /// `spec.condition`.
    pub condition: TriggerCondition,
    /// `spec.cooldown`.
    pub cooldown: Duration,
    /// `spec.suspend`.
    pub suspended: bool,
    /// Current value of the manual-trigger annotation.
    pub manual_request: Option<&'a str>,
    /// The manual-trigger value handled last (from status).
    pub last_manual: Option<&'a str>,
    /// When the last Job was created (from status).
    pub last_triggered: Option<Timestamp>,
    /// Whether the fingerprint key differs from the one the previous state was made with.
    pub key_changed: bool,
    /// Trigger state from status.
    pub previous: &'a [Tracked],
    /// This round's observation of every spec entry, in spec order.
    pub observed: &'a [(WatchedObject, Observation)],
    /// The current time.
    pub now: Timestamp,
}

/// New trigger state and the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// State per spec entry, in spec order; entries never observed are absent.
    pub tracked: Vec<Tracked>,
    /// What to do.
    pub decision: Decision,
}

/// Whether the manual-trigger annotation asks for a run not yet handled.
pub fn manual_requested(request: Option<&str>, last_handled: Option<&str>) -> bool {
    match request.map(str::trim) {
        Some(value) if !value.is_empty() => Some(value) != last_handled.map(str::trim),
        _ => false,
    }
}

/// What `lastTriggeredTime` records for a Job that existed by `created_by` (a clock reading
/// taken once the create call returned): the whole second it falls in. Status keeps whole
/// seconds anyway, so recording exactly that makes the decisions after a restart the same as
/// before it.
pub fn trigger_stamp(created_by: Timestamp) -> Timestamp {
    whole_second(created_by)
}

/// The start of the whole second `at` falls in.
fn whole_second(at: Timestamp) -> Timestamp {
    let mut second = at.as_second();
    if at.subsec_nanosecond() < 0 {
        // Before 1970 `as_second` rounds towards zero, i.e. up.
        second -= 1;
    }
    Timestamp::from_second(second).unwrap_or(at)
}

/// When the cooldown after `last_triggered` ends, if it has not ended at `now`.
///
/// `lastTriggeredTime` has whole-second precision (ours, and a Job's `creationTimestamp` when
/// an orphaned Job is adopted), so the Job was created at some instant in the second after
/// the recorded value. The cooldown is a minimum gap, so it is counted from the end of that
/// second: the next Job comes between `cooldown` and `cooldown` + 1 s after the previous one,
/// never sooner.
pub fn cooldown_end(
    last_triggered: Option<Timestamp>,
    cooldown: Duration,
    now: Timestamp,
) -> Option<Timestamp> {
    let last = last_triggered?;
    if cooldown.is_zero() {
        return None;
    }
    let end = SignedDuration::try_from(cooldown)
        .ok()
        .and_then(|d| d.checked_add(SignedDuration::from_secs(1)))
        .and_then(|d| whole_second(last).checked_add(d).ok())
        .unwrap_or(Timestamp::MAX);
    (now < end).then_some(end)
}

/// Folds this round's observations into the trigger state and decides.
pub fn evaluate(input: &TriggerInput<'_>) -> Evaluation {
    let mut tracked = Vec::with_capacity(input.observed.len());
    for (object, observation) in input.observed {
        let previous = input.previous.iter().find(|p| &p.object == object);
        let (hash, exists, members) = match observation {
            Observation::Found(fp) => (fp.clone(), true, None),
            Observation::Set {
                fingerprint,
                members,
            } => (fingerprint.clone(), *members > 0, Some(*members)),
            Observation::Missing => (Fingerprint::absent(), false, None),
            Observation::Unavailable => {
                // Without a fresh fingerprint, keep the old state unless it was made with a
                // key we no longer have (then it cannot be compared and is dropped).
                if let Some(p) = previous.filter(|_| !input.key_changed) {
                    tracked.push(p.clone());
                }
                continue;
            }
        };
        let baseline = match previous {
            None => hash.clone(),
            Some(p) if input.key_changed => {
                if p.pending() {
                    Fingerprint(REKEYED_PENDING.to_string())
                } else {
                    hash.clone()
                }
            }
            Some(p) => p.baseline.clone(),
        };
        tracked.push(Tracked {
            object: object.clone(),
            hash,
            baseline,
            exists,
            members,
        });
    }

    let changed: Vec<WatchedObject> = tracked
        .iter()
        .filter(|t| t.pending())
        .map(|t| t.object.clone())
        .collect();

    let decision = decide(input, &tracked, changed);
    Evaluation { tracked, decision }
}

fn decide(input: &TriggerInput<'_>, tracked: &[Tracked], changed: Vec<WatchedObject>) -> Decision {
    if input.suspended {
        return Decision::Suspended {
            pending: changed.len(),
        };
    }
    if manual_requested(input.manual_request, input.last_manual) {
        return Decision::Trigger {
            reason: TriggerReason::Manual,
            changed,
        };
    }
    let watched = input.observed.len();
    let condition_met = match input.condition {
        TriggerCondition::Any => !changed.is_empty(),
        // Every spec entry must be known and pending.
        TriggerCondition::All => {
            watched > 0 && tracked.len() == watched && changed.len() == watched
        }
    };
    if !condition_met {
        return if changed.is_empty() {
            Decision::Idle
        } else {
            Decision::Waiting {
                pending: changed.len(),
                of: watched,
            }
        };
    }
    match cooldown_end(input.last_triggered, input.cooldown, input.now) {
        Some(until) => Decision::Deferred { until, changed },
        None => Decision::Trigger {
            reason: TriggerReason::Change,
            changed,
        },
    }
}

/// The state after a Job was created: every baseline moves to the latest fingerprint.
pub fn rebaseline(tracked: &[Tracked]) -> Vec<Tracked> {
    tracked
        .iter()
        .map(|t| Tracked {
            baseline: t.hash.clone(),
            ..t.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests;
