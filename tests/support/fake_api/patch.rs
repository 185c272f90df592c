//! PATCH with `application/merge-patch+json` (RFC 7386), `application/json-patch+json`
//! (RFC 6902) and `application/strategic-merge-patch+json` (merge patch plus the keyed lists and
//! directives of the built-in types). Apply patches are handed to `apply`.

use serde_json::{Map, Value};

use super::apply;
use super::commit::{self, Ownership, Target};
use super::media;
use super::resources::ResourceType;
use super::route::{Query, ResourcePath};
use super::status::ApiError;
use super::store::{ObjectKey, State};
use super::update::check_preconditions;

#[derive(Clone, Copy, Debug, PartialEq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Built-in kinds: the only ones the API server accepts strategic merge patches for.
pub(crate) fn is_native(rt: &ResourceType) -> bool {
    !rt.group.contains('.') || rt.group.ends_with(".k8s.io")
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    state: &mut State,
    rt: &ResourceType,
    path: &ResourcePath,
    name: &str,
    content_type: Option<&str>,
    body: &[u8],
    query: &Query,
    manager: &str,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let media_type = media::media_type(content_type);
    let kind = match media_type.as_str() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" if is_native(rt) => PatchKind::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchKind::Apply,
        _ => return Err(ApiError::unsupported_media_type(&media_type)),
    };
    if kind == PatchKind::Apply {
        return apply::apply(state, rt, path, name, body, query, dry_run);
    }
    let key = ObjectKey::new(rt, path.namespace.as_deref(), name);
    let stored = state
        .get(&key)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let mut object = stored.object.clone();
    match kind {
        PatchKind::Json => {
            let operations: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the JSON patch could not be decoded: {e}"))
            })?;
            json_patch::patch(&mut object, &operations).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        PatchKind::Merge | PatchKind::Strategic => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the patch could not be decoded: {e}"))
            })?;
            let Some(patch) = patch.as_object() else {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            };
            if kind == PatchKind::Merge {
                merge_patch(&mut object, patch);
            } else {
                strategic_merge(&mut object, patch);
            }
        }
        PatchKind::Apply => unreachable!("apply patches are handled above"),
    }
    check_preconditions(rt, name, &stored.object, &object)?;
    let target = Target {
        rt,
        key,
        subresource: path.subresource.as_deref(),
        dry_run,
    };
    let updated = commit::update_existing(
        state,
        &target,
        object,
        Ownership::Update {
            manager: manager.to_string(),
        },
    )?;
    Ok((200, updated))
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Map<String, Value>) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch {
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(inner) => {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), inner)
            }
            other => {
                map.insert(key.clone(), other.clone());
            }
        }
    }
}

/// The merge key of a list the built-in types merge by key, if `field` is one.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "webhooks"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

/// Lists of strings the built-in types merge as sets.
fn is_primitive_merge_list(field: &str) -> bool {
    field == "finalizers"
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

/// Strategic merge patch: RFC 7386 plus keyed list merges, primitive set lists, and the
/// `$patch: replace|delete`, `$deleteFromPrimitiveList/<field>` and `$retainKeys` directives.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Map<String, Value>) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = without_directives(&Value::Object(patch.clone()));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                map.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(inner)
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                map.remove(key);
            }
            Value::Object(inner) => {
                strategic_merge(map.entry(key.clone()).or_insert(Value::Null), inner);
            }
            Value::Array(items) => {
                let merged = merge_list(map.get(key), key, items);
                map.insert(key.clone(), merged);
            }
            other => {
                map.insert(key.clone(), other.clone());
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        map.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
    }
}

fn merge_list(current: Option<&Value>, field: &str, items: &[Value]) -> Value {
    let mut list = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if is_primitive_merge_list(field) {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return Value::Array(list);
    }
    let Some(key) = merge_key(field, items) else {
        return without_directives(&Value::Array(items.to_vec()));
    };
    for item in items {
        let Some(patch) = item.as_object() else {
            list.push(item.clone());
            continue;
        };
        let id = patch.get(key);
        if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
            list.retain(|existing| existing.get(key) != id);
            continue;
        }
        match list
            .iter_mut()
            .find(|existing| id.is_some() && existing.get(key) == id)
        {
            Some(existing) => strategic_merge(existing, patch),
            None => list.push(without_directives(item)),
        }
    }
    Value::Array(list)
}
