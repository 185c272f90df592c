//! PUT (replace) of an object or its `/status`, with the optimistic-concurrency rule: a
//! `metadata.resourceVersion` in the body must be the stored one (empty: unconditional).

use serde_json::Value;

use super::commit::{self, Ownership, Target, str_at};
use super::resources::ResourceType;
use super::route::ResourcePath;
use super::status::ApiError;
use super::store::{ObjectKey, State};

pub(crate) fn replace(
    state: &mut State,
    rt: &ResourceType,
    path: &ResourcePath,
    name: &str,
    body: Value,
    manager: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    commit::check_type_meta(rt, &body)?;
    commit::check_name_and_namespace(rt, path.namespace.as_deref(), name, &body, true)?;
    let key = ObjectKey::new(rt, path.namespace.as_deref(), name);
    let stored = state
        .get(&key)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    check_preconditions(rt, name, &stored.object, &body)?;
    let target = Target {
        rt,
        key,
        subresource: path.subresource.as_deref(),
        dry_run,
    };
    commit::update_existing(
        state,
        &target,
        body,
        Ownership::Update {
            manager: manager.to_string(),
        },
    )
}

/// `metadata.resourceVersion` and `metadata.uid` in a written object are preconditions.
pub(crate) fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    stored: &Value,
    written: &Value,
) -> Result<(), ApiError> {
    if let Some(rv) = str_at(written, "/metadata/resourceVersion")
        && Some(rv) != str_at(stored, "/metadata/resourceVersion")
    {
        return Err(ApiError::stale(rt, name));
    }
    if let Some(uid) = str_at(written, "/metadata/uid") {
        let actual = str_at(stored, "/metadata/uid").unwrap_or("");
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
    Ok(())
}
