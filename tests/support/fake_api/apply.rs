//! Server-side apply (`application/apply-patch+yaml`), approximated on top of
//! `managed_fields`: upserts, merges the applied configuration into the object, removes
//! fields the manager applied before but no longer does (unless someone else owns them),
//! and answers 409 on conflicts with other managers unless `force=true`.

use serde_json::{Value, json};

use super::commit::{self, Ownership, Target, str_at};
use super::create;
use super::managed_fields::{Conflict, overlaps, remove_at, tracked_leaves};
use super::resources::ResourceType;
use super::route::{Query, ResourcePath};
use super::status::{ApiError, Cause};
use super::store::{ObjectKey, State};

/// Applied metadata the server owns or derives from the URL; never merged.
const IGNORED_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    state: &mut State,
    rt: &ResourceType,
    path: &ResourcePath,
    name: &str,
    body: &[u8],
    query: &Query,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::invalid_kind(
            "PatchOptions.meta.k8s.io",
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::new(
                "fieldManager",
                "Required value: is required for apply patch",
            )],
        ));
    };
    let force = query.flag("force");
    let mut applied: Value = serde_json::from_slice(body)
        .or_else(|_| serde_saphyr::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    commit::check_type_meta(rt, &applied)?;
    commit::check_name_and_namespace(rt, path.namespace.as_deref(), name, &applied, false)?;
    strip_nulls(&mut applied);
    let precondition = str_at(&applied, "/metadata/resourceVersion").map(str::to_string);
    let subresource = path.subresource.as_deref();
    let config = applied_config(rt, subresource, &applied);
    let leaves = tracked_leaves(&config);
    let key = ObjectKey::new(rt, path.namespace.as_deref(), name);
    let Some(stored) = state.get(&key).cloned() else {
        if subresource.is_some() {
            return Err(ApiError::not_found(rt, name));
        }
        // Apply is an upsert: a missing object is created from the applied configuration.
        let mut object = config;
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        object["metadata"]["name"] = json!(name);
        let ownership = Ownership::Apply {
            manager: manager.to_string(),
            leaves,
            taken: vec![],
        };
        let created = create::create(
            state,
            rt,
            path.namespace.as_deref(),
            object,
            ownership,
            dry_run,
        )?;
        return Ok((201, created));
    };
    if let Some(rv) = precondition
        && Some(rv.as_str()) != str_at(&stored.object, "/metadata/resourceVersion")
    {
        return Err(ApiError::stale(rt, name));
    }
    let sub = subresource.unwrap_or("");
    let conflicts = stored
        .managed
        .conflicts(manager, sub, &stored.object, &config, &leaves);
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    let mut object = stored.object.clone();
    for previous in stored.managed.applied_by(manager, sub) {
        let still_applied = leaves.iter().any(|l| overlaps(l, &previous));
        if !still_applied && !stored.managed.owned_by_others(manager, sub, &previous) {
            remove_at(&mut object, &previous);
        }
    }
    deep_merge(&mut object, &config);
    let target = Target {
        rt,
        key,
        subresource,
        dry_run,
    };
    let taken = if force { conflicts } else { vec![] };
    let ownership = Ownership::Apply {
        manager: manager.to_string(),
        leaves,
        taken,
    };
    Ok((
        200,
        commit::update_existing(state, &target, object, ownership)?,
    ))
}

/// The part of an applied object that takes part in the merge: no server-owned metadata, and
/// only `.status` (on `/status`) or everything but `.status` (main resource, status subresource).
fn applied_config(rt: &ResourceType, subresource: Option<&str>, applied: &Value) -> Value {
    let mut config = applied.clone();
    if let Some(map) = config.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if subresource.is_some() {
            map.retain(|k, _| k == "status");
        } else if rt.has_status() {
            map.remove("status");
        }
    }
    if !config.get("metadata").is_some_and(Value::is_object) {
        config["metadata"] = json!({});
    }
    if let Some(meta) = config["metadata"].as_object_mut() {
        for field in IGNORED_METADATA {
            meta.remove(field);
        }
    }
    config
}

fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        for v in map.values_mut() {
            strip_nulls(v);
        }
    }
}

/// Maps merge key by key; anything else (lists included) is replaced.
fn deep_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(target), Some(applied)) => {
            for (key, value) in applied {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let describe =
        |c: &Conflict| format!("conflict with \"{}\" using {}", c.manager, c.api_version);
    let field = |c: &Conflict| format!(".{}", c.path.join("."));
    let message = if let [only] = conflicts {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            describe(only),
            field(only)
        )
    } else {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|c| format!("{}: {}", describe(c), field(c)))
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": describe(c), "field": field(c)}))
        .collect();
    ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
}
