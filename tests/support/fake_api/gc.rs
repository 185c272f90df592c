//! What the cluster's controllers do after every write, run synchronously so tests need not
//! wait: the garbage collector (ownerReferences, `orphan` and `foregroundDeletion`
//! finalizers), the namespace controller (emptying terminating namespaces) and CRD
//! establishment (see `crds`).

use serde_json::Value;

use super::commit::{self, controller_write, is_deleting, without_finalizer};
use super::crds;
use super::delete::{Policy, delete_object};
use super::store::{ObjectKey, State};

const GC_MANAGER: &str = "generic-garbage-collector";

/// Runs the controllers until nothing changes (bounded, in case of a cycle).
pub(crate) fn settle(state: &mut State) {
    // Each pass scans every object; with nothing deleting, removed or CRD-related pending
    // there is nothing to find (this runs after every request).
    if state.deleting.is_empty() && state.gc_queue.is_empty() && !state.crds_changed {
        return;
    }
    for _ in 0..1000 {
        state.crds_changed = false;
        let progressed = orphan_dependents(state)
            | delete_foreground_dependents(state)
            | collect_dependents_of_removed(state)
            | empty_terminating_namespaces(state)
            | crds::reconcile(state);
        if !progressed {
            return;
        }
    }
}

fn uid(object: &Value) -> Option<String> {
    commit::str_at(object, "/metadata/uid").map(str::to_string)
}

fn owner_refs(object: &Value) -> Vec<Value> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Objects with an ownerReference to `owner_uid`.
fn dependents(state: &State, owner_uid: &str) -> Vec<ObjectKey> {
    state
        .objects
        .iter()
        .filter(|(_, s)| {
            owner_refs(&s.object)
                .iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn drop_owner_refs(object: &mut Value, remove: impl Fn(&str) -> bool) {
    if let Some(refs) = object
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| !remove(r.get("uid").and_then(Value::as_str).unwrap_or("")));
        if refs.is_empty()
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("ownerReferences");
        }
    }
}

/// Objects being deleted with keys carrying `finalizer`, with their UIDs.
fn deleting_with(state: &State, finalizer: &str) -> Vec<(ObjectKey, String)> {
    state
        .objects
        .iter()
        .filter(|(_, s)| {
            is_deleting(&s.object) && commit::finalizers(&s.object).iter().any(|f| f == finalizer)
        })
        .filter_map(|(k, s)| uid(&s.object).map(|u| (k.clone(), u)))
        .collect()
}

/// `orphan` finalizer: dependents lose their ownerReference, then the owner goes.
fn orphan_dependents(state: &mut State) -> bool {
    let owners = deleting_with(state, "orphan");
    for (owner, owner_uid) in &owners {
        for dependent in dependents(state, owner_uid) {
            controller_write(state, &dependent, GC_MANAGER, "", |o| {
                drop_owner_refs(o, |u| u == owner_uid)
            });
        }
        controller_write(state, owner, GC_MANAGER, "", |o| {
            without_finalizer(o, "orphan")
        });
    }
    !owners.is_empty()
}

/// `foregroundDeletion` finalizer: dependents are deleted (in the foreground too); the owner
/// goes once no dependent that blocks owner deletion is left.
fn delete_foreground_dependents(state: &mut State) -> bool {
    let mut progressed = false;
    for (owner, owner_uid) in deleting_with(state, "foregroundDeletion") {
        let mut blocking = false;
        for dependent in dependents(state, &owner_uid) {
            let Some(stored) = state.get(&dependent) else {
                continue;
            };
            let blocks = owner_refs(&stored.object).iter().any(|r| {
                r.get("uid").and_then(Value::as_str) == Some(owner_uid.as_str())
                    && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
            });
            if !is_deleting(&stored.object) {
                delete_object(state, &dependent, Policy::Foreground);
                progressed = true;
            }
            blocking |= blocks && state.get(&dependent).is_some();
        }
        if !blocking {
            progressed |= controller_write(state, &owner, GC_MANAGER, "", |o| {
                without_finalizer(o, "foregroundDeletion")
            });
        }
    }
    progressed
}

/// Dependents of removed objects: deleted (background) when no owner is left, otherwise the
/// dangling ownerReference is dropped.
fn collect_dependents_of_removed(state: &mut State) -> bool {
    let removed: Vec<String> = std::mem::take(&mut state.gc_queue);
    let mut progressed = false;
    for owner_uid in removed {
        for dependent in dependents(state, &owner_uid) {
            let Some(stored) = state.get(&dependent) else {
                continue;
            };
            let live_owners = owner_refs(&stored.object)
                .iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .filter(|u| *u != owner_uid && state.key_of_uid(u).is_some())
                .count();
            if live_owners > 0 {
                progressed |= controller_write(state, &dependent, GC_MANAGER, "", |o| {
                    drop_owner_refs(o, |u| u == owner_uid)
                });
            } else if !is_deleting(&stored.object) {
                delete_object(state, &dependent, Policy::Background);
                progressed = true;
            }
        }
    }
    progressed
}

/// A terminating namespace: its objects are deleted, then it goes.
fn empty_terminating_namespaces(state: &mut State) -> bool {
    let terminating: Vec<ObjectKey> = state
        .objects
        .iter()
        .filter(|(k, s)| k.group.is_empty() && k.plural == "namespaces" && is_deleting(&s.object))
        .map(|(k, _)| k.clone())
        .collect();
    let mut progressed = false;
    for ns in terminating {
        let contents: Vec<ObjectKey> = state
            .objects
            .keys()
            .filter(|k| k.namespace == ns.name)
            .cloned()
            .collect();
        for key in &contents {
            if state.get(key).is_some_and(|s| !is_deleting(&s.object)) {
                delete_object(state, key, Policy::Background);
                progressed = true;
            }
        }
        let remaining = state.objects.keys().any(|k| k.namespace == ns.name);
        if !remaining
            && commit::finalizers(&state.get(&ns).map(|s| s.object.clone()).unwrap_or_default())
                .is_empty()
        {
            state.remove(&ns, None);
            progressed = true;
        }
    }
    progressed
}
