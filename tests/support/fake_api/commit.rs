//! The write pipeline for existing objects, shared by update, patch and apply (and the checks
//! create shares): type and name checks, the fields the server owns, the status-subresource
//! split, generation, validation, managed fields, dry-run, no-op detection, and storing with a
//! watch event.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::managed_fields::{Conflict, FieldPath};
use super::resources::ResourceType;
use super::status::{ApiError, Cause};
use super::store::{ObjectKey, State};
use super::validation;

/// Metadata the server sets and clients cannot change through writes.
const IMMUTABLE_METADATA: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
];

/// How a write changes field ownership.
pub(crate) enum Ownership {
    /// create, update and the non-apply patches
    Update { manager: String },
    /// server-side apply: the manager now owns exactly `leaves`; forced conflicts lose theirs
    Apply {
        manager: String,
        leaves: BTreeSet<FieldPath>,
        taken: Vec<Conflict>,
    },
}

/// The object a write addresses.
pub(crate) struct Target<'a> {
    pub rt: &'a ResourceType,
    pub key: ObjectKey,
    pub subresource: Option<&'a str>,
    pub dry_run: bool,
}

pub(crate) fn str_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn is_deleting(object: &Value) -> bool {
    str_at(object, "/metadata/deletionTimestamp").is_some()
}

pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// `apiVersion` and `kind` in a body must name the resource the URL addresses (any version of
/// its group: the server converts).
pub(crate) fn check_type_meta(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let kind = str_at(body, "/kind")
        .ok_or_else(|| ApiError::bad_request(format!("Object 'Kind' is missing in '{body}'")))?;
    let api_version = str_at(body, "/apiVersion").ok_or_else(|| {
        ApiError::bad_request(format!("Object 'apiVersion' is missing in '{body}'"))
    })?;
    if group_of(api_version) != rt.group {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

/// A body's `metadata.name` / `metadata.namespace` must agree with the URL.
pub(crate) fn check_name_and_namespace(
    rt: &ResourceType,
    url_namespace: Option<&str>,
    url_name: &str,
    body: &Value,
    name_required: bool,
) -> Result<(), ApiError> {
    let name = str_at(body, "/metadata/name");
    if name != Some(url_name) && (name_required || name.is_some()) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({url_name})",
            name.unwrap_or("")
        )));
    }
    if rt.namespaced
        && let Some(ns) = str_at(body, "/metadata/namespace")
        && Some(ns) != url_namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

pub(crate) fn ensure_metadata(object: &mut Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
}

fn set_or_remove(object: &mut Value, key: &str, value: Option<&Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(key.to_string(), v.clone());
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// The object a write to an existing object produces, before validation: server-owned
/// metadata kept, and `.status` split off according to the status subresource.
fn normalize(rt: &ResourceType, subresource: Option<&str>, old: &Value, candidate: Value) -> Value {
    let mut new = match subresource {
        Some(_) => {
            let mut n = old.clone();
            set_or_remove(&mut n, "status", candidate.get("status"));
            n
        }
        None => {
            let mut n = if candidate.is_object() {
                candidate
            } else {
                json!({})
            };
            if rt.has_status() {
                set_or_remove(&mut n, "status", old.get("status"));
            }
            n
        }
    };
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    ensure_metadata(&mut new);
    for field in IMMUTABLE_METADATA {
        let value = old.get("metadata").and_then(|m| m.get(field)).cloned();
        set_or_remove(&mut new["metadata"], field, value.as_ref());
    }
    new
}

/// Did anything the generation tracks change (everything but metadata, and but status when
/// status is a subresource)?
fn generation_tracked_change(rt: &ResourceType, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            if rt.has_status() {
                map.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// PUT / PATCH / apply of an existing object.
pub(crate) fn update_existing(
    state: &mut State,
    target: &Target<'_>,
    candidate: Value,
    ownership: Ownership,
) -> Result<Value, ApiError> {
    let rt = target.rt;
    let stored = state
        .get(&target.key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(rt, &target.key.name))?;
    let old = &stored.object;
    let mut new = normalize(rt, target.subresource, old, candidate);
    if is_deleting(old) {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let list = added
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::invalid(
                rt,
                &target.key.name,
                vec![Cause::new(
                    "metadata.finalizers",
                    format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"
                    ),
                )],
            ));
        }
    }
    let causes = validation::object_causes(&state.validators, rt, &new);
    if !causes.is_empty() {
        return Err(ApiError::invalid(rt, &target.key.name, causes));
    }
    if target.subresource.is_none() && generation_tracked_change(rt, old, &new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        new["metadata"]["generation"] = json!(generation.saturating_add(1));
    }
    let now = state.clock.now_rfc3339();
    let subresource = target.subresource.unwrap_or("");
    let mut managed = stored.managed.clone();
    match ownership {
        Ownership::Update { manager } => managed.record_update(
            &manager,
            subresource,
            &rt.api_version(),
            &now,
            Some(old),
            &new,
        ),
        Ownership::Apply {
            manager,
            leaves,
            taken,
        } => managed.record_apply(
            &manager,
            subresource,
            &rt.api_version(),
            &now,
            leaves,
            &taken,
            &new,
        ),
    }
    managed.stamp(&mut new);
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if new == *old {
        // The API server skips writes that change nothing: same resourceVersion, no event.
        return Ok(new);
    }
    if target.dry_run {
        return Ok(new);
    }
    if is_deleting(&new) && finalizers(&new).is_empty() {
        return Ok(state.remove(&target.key, Some(new)).unwrap_or_default());
    }
    Ok(state.replace(target.key.clone(), new, managed))
}

/// A write made by a cluster component (garbage collector, Job controller, ...): an Update
/// by `manager`, removing the object when it empties the finalizers of an object being deleted.
/// Returns whether anything changed.
pub(crate) fn controller_write(
    state: &mut State,
    key: &ObjectKey,
    manager: &str,
    subresource: &str,
    change: impl FnOnce(&mut Value),
) -> bool {
    let Some(stored) = state.get(key).cloned() else {
        return false;
    };
    let mut new = stored.object.clone();
    change(&mut new);
    if new == stored.object {
        return false;
    }
    let api_version = str_at(&new, "/apiVersion").unwrap_or("v1").to_string();
    let now = state.clock.now_rfc3339();
    let mut managed = stored.managed.clone();
    managed.record_update(
        manager,
        subresource,
        &api_version,
        &now,
        Some(&stored.object),
        &new,
    );
    if is_deleting(&new) && finalizers(&new).is_empty() && key.plural != "namespaces" {
        state.remove(key, Some(new));
    } else {
        state.replace(key.clone(), new, managed);
    }
    true
}

/// Removes `finalizer` from an object's `metadata.finalizers`.
pub(crate) fn without_finalizer(object: &mut Value, finalizer: &str) {
    if let Some(list) = object
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f.as_str() != Some(finalizer));
        if list.is_empty()
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("finalizers");
        }
    }
}
