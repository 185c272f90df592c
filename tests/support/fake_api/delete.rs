//! DELETE of one object or a collection: preconditions, propagation policy (query or
//! DeleteOptions body, defaulted per kind), finalizers and `deletionTimestamp`, and the answer
//! the API server gives (the object while it is pending, else a Status or the object).

use serde_json::{Value, json};

use super::commit::{self, str_at};
use super::read;
use super::resources::ResourceType;
use super::route::{Query, ResourcePath};
use super::status::{self, ApiError, Cause};
use super::store::{ObjectKey, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    Orphan,
    Background,
    Foreground,
}

/// What deleting did.
pub(crate) enum Deletion {
    /// Gone from storage (last state).
    Removed(Value),
    /// Marked with `deletionTimestamp`, waiting for finalizers.
    Pending(Value),
}

/// The options of a DELETE, from the query and the DeleteOptions body.
pub(crate) struct DeleteOptions {
    pub policy: Option<String>,
    pub dry_run: bool,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
}

impl DeleteOptions {
    pub fn parse(query: &Query, body: Option<&Value>) -> Self {
        let from_body = |pointer: &str| body.and_then(|b| str_at(b, pointer)).map(str::to_string);
        let orphan_legacy = body
            .and_then(|b| b.get("orphanDependents"))
            .and_then(Value::as_bool);
        let policy = query
            .get("propagationPolicy")
            .map(str::to_string)
            .or_else(|| from_body("/propagationPolicy"))
            .or_else(|| orphan_legacy.map(|o| if o { "Orphan" } else { "Background" }.to_string()));
        let body_dry_run = body
            .and_then(|b| b.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        DeleteOptions {
            policy,
            dry_run: query.get("dryRun") == Some("All") || body_dry_run,
            precondition_uid: from_body("/preconditions/uid"),
            precondition_rv: from_body("/preconditions/resourceVersion"),
        }
    }

    fn resolve_policy(&self, rt: &ResourceType) -> Result<Policy, ApiError> {
        match self.policy.as_deref() {
            Some("Orphan") => Ok(Policy::Orphan),
            Some("Background") => Ok(Policy::Background),
            Some("Foreground") => Ok(Policy::Foreground),
            // batch/v1 Jobs orphan their Pods by default, for backwards compatibility.
            None if rt.is("batch", "jobs") => Ok(Policy::Orphan),
            None => Ok(Policy::Background),
            Some(other) => Err(ApiError::invalid_kind(
                "DeleteOptions.meta.k8s.io",
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause::new(
                    "propagationPolicy",
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                )],
            )),
        }
    }
}

/// Kinds whose DELETE answers with the deleted object instead of a Status.
fn returns_deleted_object(rt: &ResourceType) -> bool {
    rt.is("", "pods") || rt.is("", "serviceaccounts")
}

pub(crate) fn delete(
    state: &mut State,
    rt: &ResourceType,
    path: &ResourcePath,
    name: &str,
    options: &DeleteOptions,
) -> Result<(u16, Value), ApiError> {
    let key = ObjectKey::new(rt, path.namespace.as_deref(), name);
    let stored = state
        .get(&key)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let object = &stored.object;
    if let Some(uid) = &options.precondition_uid {
        let actual = str_at(object, "/metadata/uid").unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if let Some(rv) = &options.precondition_rv {
        let actual = str_at(object, "/metadata/resourceVersion").unwrap_or("");
        if rv != actual {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            ));
        }
    }
    let policy = options.resolve_policy(rt)?;
    if options.dry_run {
        let (pending, marked) = marked_for_deletion(state, &key, object, policy);
        return Ok(answer(
            rt,
            name,
            if pending {
                Deletion::Pending(marked)
            } else {
                Deletion::Removed(marked)
            },
        ));
    }
    let deletion =
        delete_object(state, &key, policy).ok_or_else(|| ApiError::not_found(rt, name))?;
    Ok(answer(rt, name, deletion))
}

fn answer(rt: &ResourceType, name: &str, deletion: Deletion) -> (u16, Value) {
    match deletion {
        Deletion::Pending(object) => (200, object),
        Deletion::Removed(object) if returns_deleted_object(rt) => (200, object),
        Deletion::Removed(object) => (
            200,
            status::delete_success(rt, name, str_at(&object, "/metadata/uid").unwrap_or("")),
        ),
    }
}

/// The object as a delete with `policy` leaves it, and whether it stays (pending finalizers).
fn marked_for_deletion(
    state: &State,
    key: &ObjectKey,
    object: &Value,
    policy: Policy,
) -> (bool, Value) {
    let mut marked = object.clone();
    if commit::is_deleting(object) {
        return (true, marked);
    }
    let mut finalizers = commit::finalizers(object);
    let extra = match policy {
        Policy::Orphan => Some("orphan"),
        Policy::Foreground => Some("foregroundDeletion"),
        Policy::Background => None,
    };
    if let Some(f) = extra
        && !finalizers.iter().any(|x| x == f)
    {
        finalizers.push(f.to_string());
    }
    let is_namespace = key.group.is_empty() && key.plural == "namespaces";
    if finalizers.is_empty() && !is_namespace {
        return (false, marked);
    }
    let meta = &mut marked["metadata"];
    if !finalizers.is_empty() {
        meta["finalizers"] = json!(finalizers);
    }
    meta["deletionTimestamp"] = json!(state.clock.now_rfc3339());
    meta["deletionGracePeriodSeconds"] = json!(0);
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
        meta["generation"] = json!(generation.saturating_add(1));
    }
    if is_namespace {
        marked["status"] = json!({"phase": "Terminating"});
    }
    (true, marked)
}

/// Deletes a stored object with `policy`: removes it, or marks it for deletion when
/// finalizers (its own, or `orphan` / `foregroundDeletion` for the policy) must run first.
pub(crate) fn delete_object(
    state: &mut State,
    key: &ObjectKey,
    policy: Policy,
) -> Option<Deletion> {
    let stored = state.get(key)?.clone();
    if commit::is_deleting(&stored.object) {
        return Some(Deletion::Pending(stored.object));
    }
    let (pending, marked) = marked_for_deletion(state, key, &stored.object, policy);
    if pending {
        Some(Deletion::Pending(state.replace(
            key.clone(),
            marked,
            stored.managed,
        )))
    } else {
        state.remove(key, None).map(Deletion::Removed)
    }
}

/// DELETE on a collection: deletes every selected object, answers with the list of them.
pub(crate) fn delete_collection(
    state: &mut State,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let policy = options.resolve_policy(rt)?;
    let selected = read::select(state, rt, namespace, query)?;
    let mut items = Vec::new();
    for (key, object) in selected {
        if options.dry_run {
            items.push(object);
        } else if let Some(Deletion::Removed(o) | Deletion::Pending(o)) =
            delete_object(state, &key, policy)
        {
            items.push(o);
        }
    }
    Ok(json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": state.resource_version().to_string()},
        "items": items,
    }))
}
