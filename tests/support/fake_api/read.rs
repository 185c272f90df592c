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
    Ok(selected(state, rt, namespace, query, None)?
        .map(|(k, s)| (k.clone(), served(rt, s)))
        .collect())
}

/// The stored objects `select` serves, in key order, after `after` (namespace, name) if given.
fn selected<'a>(
    state: &'a State,
    rt: &'a ResourceType,
    namespace: Option<&'a str>,
    query: &Query,
    after: Option<(&str, &str)>,
) -> Result<impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or(""),
        &supported_fields(&rt.group, &rt.plural),
    )
    .map_err(ApiError::bad_request)?;
    let namespace = if rt.namespaced { namespace } else { None };
    let start = ObjectKey {
        group: rt.group.clone(),
        plural: rt.plural.clone(),
        namespace: after
            .map_or(namespace.unwrap_or(""), |(ns, _)| ns)
            .to_string(),
        name: after.map_or("", |(_, name)| name).to_string(),
    };
    let bound = match after {
        Some(_) => std::ops::Bound::Excluded(start),
        None => std::ops::Bound::Included(start),
    };
    Ok(state
        .objects
        .range((bound, std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.group == rt.group && k.plural == rt.plural)
        .filter(move |(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
        .filter(move |(_, s)| labels.matches(&s.object) && fields.matches(&s.object))
        .map(|(k, s)| (k, &s.object)))
}

/// LIST, in pages of `limit` objects when it is set, as the API server pages a read from etcd:
/// every page but the last carries a `continue` token (the list's resourceVersion and the last
/// object served) and, without selectors, `remainingItemCount`; all pages report the first
/// page's resourceVersion. A token older than the last compaction gets `410 Expired`. Unlike a
/// real server, later pages show the objects as they are now rather than at that version.
pub(crate) fn list(
    state: &State,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    representation: Representation,
) -> Result<Value, ApiError> {
    let limit = match query.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let resume = query
        .get("continue")
        .filter(|t| !t.is_empty())
        .map(|t| Continue::decode(t, state))
        .transpose()?;
    let after = resume
        .as_ref()
        .map(|c| (c.namespace.as_str(), c.name.as_str()));
    let mut matching = selected(state, rt, namespace, query, after)?;
    let mut items: Vec<(ObjectKey, Value)> = Vec::new();
    for (k, object) in matching.by_ref() {
        items.push((k.clone(), served(rt, object)));
        if limit > 0 && items.len() == limit {
            break;
        }
    }
    let remaining = matching.count();
    let rv = resume
        .as_ref()
        .map_or(state.resource_version(), |c| c.resource_version);
    let next = if remaining > 0 {
        items.last().map(|(k, _)| Continue {
            resource_version: rv,
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        })
    } else {
        None
    };
    let items: Vec<Value> = items.into_iter().map(|(_, o)| o).collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = json!(next.encode());
        let selected = ["labelSelector", "fieldSelector"]
            .iter()
            .any(|s| query.get(s).is_some_and(|v| !v.is_empty()));
        if !selected {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    if representation == Representation::PartialList {
        let mut list = media::partial_list(&items, rv);
        list["metadata"] = metadata;
        return Ok(list);
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
        "metadata": metadata,
        "items": items,
    }))
}

/// Where the next page of a LIST starts: after `namespace`/`name`, at `resource_version`.
struct Continue {
    resource_version: u64,
    namespace: String,
    name: String,
}

impl Continue {
    fn encode(&self) -> String {
        use base64::Engine;
        let token =
            json!({"rv": self.resource_version, "namespace": self.namespace, "name": self.name});
        base64::engine::general_purpose::STANDARD.encode(token.to_string())
    }

    fn decode(token: &str, state: &State) -> Result<Self, ApiError> {
        use base64::Engine;
        let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| invalid())?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(resource_version), Some(namespace), Some(name)) = (
            value.get("rv").and_then(Value::as_u64),
            field("namespace"),
            field("name"),
        ) else {
            return Err(invalid());
        };
        if resource_version < state.compacted_at {
            return Err(ApiError::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ));
        }
        Ok(Continue {
            resource_version,
            namespace,
            name,
        })
    }
}
