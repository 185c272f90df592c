//! The mutating webhook's decisions: which spec defaults to fill in and when to stamp the
//! changed-at annotation, returned as an RFC 6902 JSON Patch. Pure: the caller passes `now`.

use jiff::Timestamp;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value, json};

use crate::api::{CHANGED_AT_ANNOTATION, DEFAULT_COOLDOWN, DEFAULT_HISTORY, WHOLE_OBJECT};

/// Default of `spec.condition`.
pub const DEFAULT_CONDITION: &str = "Any";

/// Default of `spec.concurrencyPolicy`: a new Job next to a running one, as before the field
/// existed.
pub const DEFAULT_CONCURRENCY_POLICY: &str = "Allow";

/// Which admission operation the object arrives with.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// A new object.
    Create,
    /// An existing object (`old`, as stored) being replaced.
    Update {
        /// The stored object.
        old: &'a Value,
    },
}

/// Why an object cannot be defaulted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MutateError {
    /// The object is not a JSON object.
    #[error("the object must be a JSON object with metadata and spec")]
    NotAnObject,
    /// `spec` is missing or is not an object.
    #[error(
        "spec: a ChangeTriggeredJob needs a spec object with jobTemplate and resources; add one"
    )]
    SpecNotAnObject,
    /// `metadata` is not an object.
    #[error("metadata: must be an object")]
    MetadataNotAnObject,
}

/// The changed-at value for `now`: RFC 3339 in UTC with whole seconds (`2025-01-15T10:30:00Z`).
pub fn changed_at_value(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The JSON Patch that defaults `object` and stamps the changed-at annotation when needed.
pub fn mutation(object: &Value, change: Change<'_>, now: Timestamp) -> Result<Patch, MutateError> {
    let Value::Object(fields) = object else {
        return Err(MutateError::NotAnObject);
    };
    let Some(Value::Object(spec)) = fields.get("spec") else {
        return Err(MutateError::SpecNotAnObject);
    };
    let mut ops = spec_defaults(spec);
    if let Some(value) = stamp(object, change, now) {
        ops.push(annotation_op(fields.get("metadata"), value)?);
    }
    Ok(Patch(ops))
}

/// `spec` with every default filled in, for comparing two specs as the user means them.
/// Non-object specs are returned unchanged.
pub fn defaulted_spec(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Value::Object(map) = &spec {
        let ops = spec_defaults(map);
        let mut root = json!({ "spec": spec });
        // Every op targets a member of `spec` that we just looked at, so applying cannot fail;
        // if it somehow did, comparing the undefaulted spec is the safe fallback.
        if json_patch::patch(&mut root, &ops).is_ok()
            && let Some(defaulted) = root.get_mut("spec")
        {
            spec = defaulted.take();
        }
    }
    spec
}

/// Whether `.spec` differs between the two objects once both are defaulted.
pub fn spec_changed(new: &Value, old: &Value) -> bool {
    let defaulted = |o: &Value| defaulted_spec(o.get("spec").unwrap_or(&Value::Null));
    defaulted(new) != defaulted(old)
}

/// The value to write into the changed-at annotation, if any.
///
/// CREATE: now. UPDATE with a changed spec: now. UPDATE without a spec change: nothing — except
/// that a replace that dropped our annotation gets the stored value back, so the object does
/// not change under GitOps tools that replace whole objects.
pub fn stamp(object: &Value, change: Change<'_>, now: Timestamp) -> Option<String> {
    match change {
        Change::Create => Some(changed_at_value(now)),
        Change::Update { old } if spec_changed(object, old) => Some(changed_at_value(now)),
        Change::Update { old } => {
            if changed_at(object).is_some() {
                return None;
            }
            changed_at(old).map(str::to_string)
        }
    }
}

/// The changed-at annotation of an object, if set.
pub fn changed_at(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(CHANGED_AT_ANNOTATION)?
        .as_str()
}

fn spec_defaults(spec: &Map<String, Value>) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let absent = |key: &str| spec.get(key).is_none_or(Value::is_null);
    if absent("condition") {
        ops.push(add(&["spec", "condition"], json!(DEFAULT_CONDITION)));
    }
    if absent("cooldown") {
        ops.push(add(&["spec", "cooldown"], json!(DEFAULT_COOLDOWN)));
    }
    if absent("history") {
        ops.push(add(&["spec", "history"], json!(DEFAULT_HISTORY)));
    }
    if absent("concurrencyPolicy") {
        ops.push(add(
            &["spec", "concurrencyPolicy"],
            json!(DEFAULT_CONCURRENCY_POLICY),
        ));
    }
    if let Some(Value::Array(resources)) = spec.get("resources") {
        for (i, resource) in resources.iter().enumerate() {
            let Value::Object(entry) = resource else {
                continue;
            };
            let empty = match entry.get("fields") {
                None | Some(Value::Null) => true,
                Some(Value::Array(list)) => list.is_empty(),
                Some(_) => false,
            };
            if empty {
                let index = i.to_string();
                ops.push(add(
                    &["spec", "resources", &index, "fields"],
                    json!([WHOLE_OBJECT]),
                ));
            }
        }
    }
    ops
}

fn annotation_op(metadata: Option<&Value>, value: String) -> Result<PatchOperation, MutateError> {
    match metadata {
        None | Some(Value::Null) => Ok(add(
            &["metadata"],
            json!({ "annotations": { CHANGED_AT_ANNOTATION: value } }),
        )),
        Some(Value::Object(meta)) => match meta.get("annotations") {
            Some(Value::Object(_)) => Ok(add(
                &["metadata", "annotations", CHANGED_AT_ANNOTATION],
                json!(value),
            )),
            // Absent, null, or (impossible after schema validation) not a map: set the whole map.
            _ => Ok(add(
                &["metadata", "annotations"],
                json!({ CHANGED_AT_ANNOTATION: value }),
            )),
        },
        Some(_) => Err(MutateError::MetadataNotAnObject),
    }
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-01-15T10:30:00.123456Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn minimal() -> Value {
        crate::webhook::fixtures::ctj_json(
            "default",
            json!([
                { "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "default" },
                { "apiVersion": "v1", "kind": "Secret", "name": "b", "namespace": "default",
                  "fields": ["data"] },
                { "apiVersion": "v1", "kind": "Node", "name": "n", "fields": [] }
            ]),
        )
    }

    fn apply(object: &Value, patch: &Patch) -> Value {
        let mut doc = object.clone();
        json_patch::patch(&mut doc, patch).unwrap_or_else(|e| panic!("patch failed: {e}"));
        doc
    }

    fn mutate(object: &Value, change: Change<'_>) -> Value {
        let patch = mutation(object, change, now()).unwrap_or_else(|e| panic!("{e}"));
        apply(object, &patch)
    }

    #[test]
    fn create_fills_every_default_and_stamps_changed_at() {
        let out = mutate(&minimal(), Change::Create);
        assert_eq!(out["spec"]["condition"], "Any");
        assert_eq!(out["spec"]["cooldown"], "60s");
        assert_eq!(out["spec"]["history"], 5);
        assert_eq!(out["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(out["spec"]["resources"][0]["fields"], json!(["*"]));
        assert_eq!(out["spec"]["resources"][1]["fields"], json!(["data"]));
        assert_eq!(out["spec"]["resources"][2]["fields"], json!(["*"]));
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2025-01-15T10:30:00Z"
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut obj = minimal();
        obj["spec"]["condition"] = json!("All");
        obj["spec"]["cooldown"] = json!("0s");
        obj["spec"]["history"] = json!(1);
        obj["spec"]["concurrencyPolicy"] = json!("Forbid");
        let out = mutate(&obj, Change::Create);
        assert_eq!(out["spec"]["concurrencyPolicy"], "Forbid");
        assert_eq!(out["spec"]["condition"], "All");
        assert_eq!(out["spec"]["cooldown"], "0s");
        assert_eq!(out["spec"]["history"], 1);
    }

    #[test]
    fn null_values_count_as_absent() {
        let mut obj = minimal();
        obj["spec"]["cooldown"] = Value::Null;
        obj["spec"]["resources"][0]["fields"] = Value::Null;
        let out = mutate(&obj, Change::Create);
        assert_eq!(out["spec"]["cooldown"], "60s");
        assert_eq!(out["spec"]["resources"][0]["fields"], json!(["*"]));
    }

    #[test]
    fn annotation_key_is_escaped_in_the_json_pointer() {
        let mut obj = minimal();
        obj["metadata"]["annotations"] = json!({ "team": "a" });
        let patch = mutation(&obj, Change::Create, now()).unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(&patch).unwrap_or_default();
        assert!(
            text.contains(
                "/metadata/annotations/changetriggeredjobs.triggers.changejob.dev~1changed-at"
            ),
            "{text}"
        );
        let out = apply(&obj, &patch);
        assert_eq!(out["metadata"]["annotations"]["team"], "a");
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2025-01-15T10:30:00Z"
        );
    }

    #[test]
    fn annotations_map_is_created_when_absent() {
        let patch = mutation(&minimal(), Change::Create, now()).unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(&patch).unwrap_or_default();
        assert!(
            text.contains("\"path\":\"/metadata/annotations\""),
            "{text}"
        );
    }

    #[test]
    fn metadata_is_created_when_absent() {
        let mut obj = minimal();
        if let Some(map) = obj.as_object_mut() {
            map.remove("metadata");
        }
        let out = mutate(&obj, Change::Create);
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2025-01-15T10:30:00Z"
        );
    }

    #[test]
    fn create_overwrites_a_changed_at_written_by_the_user() {
        let mut obj = minimal();
        obj["metadata"]["annotations"] = json!({ CHANGED_AT_ANNOTATION: "1999-01-01T00:00:00Z" });
        let out = mutate(&obj, Change::Create);
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2025-01-15T10:30:00Z"
        );
    }

    fn stored() -> Value {
        let mut old = mutate(&minimal(), Change::Create);
        old["metadata"]["annotations"][CHANGED_AT_ANNOTATION] = json!("2024-12-01T08:00:00Z");
        old
    }

    #[test]
    fn update_that_changes_the_spec_restamps() {
        let old = stored();
        let mut new = old.clone();
        new["spec"]["cooldown"] = json!("5m");
        let out = mutate(&new, Change::Update { old: &old });
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2025-01-15T10:30:00Z"
        );
    }

    #[test]
    fn metadata_only_update_is_a_no_op() {
        let old = stored();
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({ "team": "b" });
        let patch =
            mutation(&new, Change::Update { old: &old }, now()).unwrap_or_else(|e| panic!("{e}"));
        assert!(patch.0.is_empty(), "{patch:?}");
    }

    #[test]
    fn update_that_only_omits_defaulted_fields_is_a_no_op() {
        let old = stored();
        // The user re-applies the original manifest, which never had the defaults.
        let mut new = minimal();
        new["metadata"]["annotations"] = old["metadata"]["annotations"].clone();
        let patch =
            mutation(&new, Change::Update { old: &old }, now()).unwrap_or_else(|e| panic!("{e}"));
        let out = apply(&new, &patch);
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2024-12-01T08:00:00Z"
        );
        assert_eq!(out["spec"], old["spec"]);
    }

    #[test]
    fn replace_that_drops_the_annotation_gets_the_stored_value_back() {
        let old = stored();
        let mut new = old.clone();
        new["metadata"]["annotations"] = json!({});
        let out = mutate(&new, Change::Update { old: &old });
        assert_eq!(
            out["metadata"]["annotations"][CHANGED_AT_ANNOTATION],
            "2024-12-01T08:00:00Z"
        );
        assert_eq!(out, old);
    }

    #[test]
    fn explicit_default_equals_omitted_default() {
        let mut a = minimal();
        a["spec"]["history"] = json!(5);
        assert!(!spec_changed(&a, &minimal()));
        a["spec"]["history"] = json!(6);
        assert!(spec_changed(&a, &minimal()));
    }

    #[test]
    fn spelling_out_allow_is_no_spec_change() {
        let mut a = minimal();
        a["spec"]["concurrencyPolicy"] = json!("Allow");
        assert!(!spec_changed(&a, &minimal()));
        a["spec"]["concurrencyPolicy"] = json!("Forbid");
        assert!(spec_changed(&a, &minimal()));
    }

    #[test]
    fn objects_that_cannot_be_defaulted_are_errors() {
        assert_eq!(
            mutation(&json!("x"), Change::Create, now()).err(),
            Some(MutateError::NotAnObject)
        );
        assert_eq!(
            mutation(&json!({ "metadata": {} }), Change::Create, now()).err(),
            Some(MutateError::SpecNotAnObject)
        );
        assert_eq!(
            mutation(&json!({ "metadata": 3, "spec": {} }), Change::Create, now()).err(),
            Some(MutateError::MetadataNotAnObject)
        );
    }

    #[test]
    fn changed_at_has_whole_seconds_in_utc() {
        assert_eq!(changed_at_value(now()), "2025-01-15T10:30:00Z");
    }

    #[test]
    fn mutation_is_idempotent() {
        let once = mutate(&minimal(), Change::Create);
        let patch =
            mutation(&once, Change::Update { old: &once }, now()).unwrap_or_else(|e| panic!("{e}"));
        assert!(patch.0.is_empty(), "{patch:?}");
    }
}
