//! GET and LIST: one object or a selected collection, as full objects or metadata only.

use serde_json::{Value, json};

use super::media::{self, Representation};
use super::patch::is_native;
use super::resources::ResourceType;
use super::route::Query;
use super::selector::{FieldSelector, LabelSelector, supported_fields};
use super::status::ApiError;
use super::store::{ObjectKey, State};

/// An object as served at `rt`'s version.
pub(crate) fn served(rt: &ResourceType, object: &Value) -> Value {
    let mut object = object.clone();
    object["apiVersion"] = json!(rt.api_version());
    object
}

pub(crate) fn get(
    state: &State,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let key = ObjectKey::new(rt, namespace, name);
    state
        .get(&key)
        .map(|s| served(rt, &s.object))
        .ok_or_else(|| ApiError::not_found(rt, name))
}

/// Objects of `rt` in `namespace` (or everywhere) matching the query's selectors.
pub(crate) fn select(
    state: &State,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Vec<(ObjectKey, Value)>, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or(""),
        &supported_fields(&rt.group, &rt.plural),
    )
    .map_err(ApiError::bad_request)?;
    let namespace = if rt.namespaced { namespace } else { None };
    Ok(state
        .objects
        .iter()
        .filter(|(k, _)| k.group == rt.group && k.plural == rt.plural)
        .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
        .filter(|(_, s)| labels.matches(&s.object) && fields.matches(&s.object))
        .map(|(k, s)| (k.clone(), served(rt, &s.object)))
        .collect())
}

/// LIST. `limit` and `continue` are ignored: everything comes in one page.
pub(crate) fn list(
    state: &State,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    representation: Representation,
) -> Result<Value, ApiError> {
    let items: Vec<Value> = select(state, rt, namespace, query)?
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    let rv = state.resource_version();
    if representation == Representation::PartialList {
        return Ok(media::partial_list(&items, rv));
    }
    // Built-in kinds leave apiVersion and kind out of list items; custom resources keep them.
    let items: Vec<Value> = if is_native(rt) {
        items
            .into_iter()
            .map(|mut o| {
                if let Some(map) = o.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                o
            })
            .collect()
    } else {
        items
    };
    Ok(json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    }))
}
