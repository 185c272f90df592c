//! CREATE (POST): naming (`name` / `generateName`), the fields the server fills, defaulting,
//! NamespaceLifecycle admission, validation and AlreadyExists.

use serde_json::{Value, json};

use super::commit::{Ownership, check_type_meta, ensure_metadata, is_deleting, str_at};
use super::defaults;
use super::managed_fields::ManagedFields;
use super::resources::ResourceType;
use super::status::{ApiError, Cause};
use super::store::{ObjectKey, State};
use super::validation;

/// POST: a new object from `object`, named by it (or by `generateName`).
pub(crate) fn create(
    state: &mut State,
    rt: &ResourceType,
    namespace: Option<&str>,
    mut object: Value,
    ownership: Ownership,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_type_meta(rt, &object)?;
    object["apiVersion"] = json!(rt.api_version());
    ensure_metadata(&mut object);
    if rt.namespaced {
        let ns = namespace.unwrap_or_default();
        if str_at(&object, "/metadata/namespace").is_some_and(|body_ns| body_ns != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        object["metadata"]["namespace"] = json!(ns);
    } else if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("namespace");
    }
    if str_at(&object, "/metadata/resourceVersion").is_some() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = match (
        str_at(&object, "/metadata/name"),
        str_at(&object, "/metadata/generateName"),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(base)) => {
            let base: String = base.chars().take(58).collect();
            format!("{base}{}", state.random_suffix())
        }
        (None, None) => {
            return Err(ApiError::invalid(
                rt,
                "",
                vec![Cause::new(
                    "metadata.name",
                    "Required value: name or generateName is required",
                )],
            ));
        }
    };
    let now = state.clock.now_rfc3339();
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
            "resourceVersion",
        ] {
            meta.remove(field);
        }
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(state.new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        meta.insert("generation".into(), json!(1));
    }
    if rt.has_status()
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    defaults::apply_on_create(rt, &mut object);
    if rt.namespaced && state.namespace_lifecycle {
        check_namespace_open(state, rt, namespace.unwrap_or_default(), &name)?;
    }
    let mut causes = validation::name_causes(rt, &name);
    causes.extend(validation::object_causes(&state.validators, rt, &object));
    if !causes.is_empty() {
        return Err(ApiError::invalid(rt, &name, causes));
    }
    let key = ObjectKey::new(rt, namespace, &name);
    if state.get(&key).is_some() {
        return Err(ApiError::already_exists(rt, &name));
    }
    let mut managed = ManagedFields::default();
    match ownership {
        Ownership::Update { manager } => {
            managed.record_update(&manager, "", &rt.api_version(), &now, None, &object)
        }
        Ownership::Apply {
            manager, leaves, ..
        } => managed.record_apply(&manager, "", &rt.api_version(), &now, leaves, &[], &object),
    }
    if dry_run {
        managed.stamp(&mut object);
        return Ok(object);
    }
    Ok(state.insert_new(key, object, managed))
}

/// NamespaceLifecycle admission: no new objects in a missing or terminating namespace.
fn check_namespace_open(
    state: &State,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let key = ObjectKey {
        group: String::new(),
        plural: "namespaces".into(),
        namespace: String::new(),
        name: namespace.into(),
    };
    match state.get(&key) {
        None => Err(ApiError::namespace_not_found(namespace)),
        Some(ns) if is_deleting(&ns.object) => Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                rt.qualified_resource()
            ),
        )
        .with_details(json!({
            "name": name,
            "group": rt.group,
            "kind": rt.plural,
            "causes": [{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {namespace} is being terminated"),
                "field": "metadata.namespace",
            }],
        }))),
        Some(_) => Ok(()),
    }
}
