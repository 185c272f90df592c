//! Which part of a watched object is fingerprinted.
//!
//! `"*"` is the whole object minus `status` and the metadata the server rewrites on its own
//! (resourceVersion, managedFields, generation, uid, creationTimestamp, selfLink, deletion
//! markers): hashing those made every heartbeat of a Node or every status update of a rolling
//! Deployment look like a change. Any other entry is a field path; a path that selects nothing
//! contributes an explicit "absent" marker, so a field appearing or disappearing is a change.

use serde_json::{Value, json};

use super::path::{FieldPath, PathError};
use crate::api::WHOLE_OBJECT;

/// Metadata fields maintained by the API server that never count as a change.
pub const SERVER_MANAGED_METADATA: &[&str] = &[
    "resourceVersion",
    "managedFields",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// One entry of a `fields` list.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldSpec {
    /// `"*"`: the whole object without status and server-managed metadata.
    WholeObject,
    /// A field path.
    Path(FieldPath),
}

impl FieldSpec {
    /// The stable name of this entry inside the fingerprinted content.
    fn key(&self) -> String {
        match self {
            FieldSpec::WholeObject => WHOLE_OBJECT.to_string(),
            FieldSpec::Path(path) => path.to_rfc9535(),
        }
    }
}

/// A parsed `fields` list.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    entries: Vec<(String, FieldSpec)>,
    written: Vec<String>,
}

/// A `fields` entry that could not be parsed, with its index in the list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fields[{index}]: {error}")]
pub struct FieldError {
    /// Index of the entry in the `fields` list.
    pub index: usize,
    /// The parse error.
    pub error: PathError,
}

/// What one `fields` entry selected, for display.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldReport {
    /// The entry as written.
    pub field: String,
    /// The selected content, or `None` when the path matched nothing.
    pub value: Option<Value>,
}

impl Selection {
    /// Parses a `fields` list; an empty list means `["*"]`.
    pub fn parse<S: AsRef<str>>(fields: &[S]) -> Result<Selection, FieldError> {
        let mut entries = Vec::new();
        let mut written = Vec::new();
        for (index, field) in fields.iter().enumerate() {
            let field = field.as_ref();
            let spec = if field.trim() == WHOLE_OBJECT {
                FieldSpec::WholeObject
            } else {
                FieldSpec::Path(
                    FieldPath::parse(field).map_err(|error| FieldError { index, error })?,
                )
            };
            written.push(field.to_string());
            entries.push((spec.key(), spec));
        }
        if entries.is_empty() {
            entries.push((WHOLE_OBJECT.to_string(), FieldSpec::WholeObject));
            written.push(WHOLE_OBJECT.to_string());
        }
        // Order and duplicates do not change what is watched.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(Selection { entries, written })
    }

    /// The selection as written by the user.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// The content to fingerprint: one `[name, ["present", value]]` or `[name, ["absent"]]`
    /// pair per entry, sorted by name.
    pub fn select(&self, object: &Value) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|(key, spec)| {
                    let marker = match select_one(spec, object) {
                        Some(value) => json!(["present", value]),
                        None => json!(["absent"]),
                    };
                    json!([key, marker])
                })
                .collect(),
        )
    }

    /// What each entry (as written) selects from `object`.
    pub fn report(&self, object: &Value) -> Vec<FieldReport> {
        self.written
            .iter()
            .map(|field| {
                let value = Selection::parse(std::slice::from_ref(field))
                    .ok()
                    .and_then(|single| single.entries.into_iter().next())
                    .and_then(|(_, spec)| select_one(&spec, object));
                FieldReport {
                    field: field.clone(),
                    value,
                }
            })
            .collect()
    }
}

/// The value one entry selects: the single value of a definite path, the list of matches of
/// any other path, or `None` when nothing matched.
fn select_one(spec: &FieldSpec, object: &Value) -> Option<Value> {
    match spec {
        FieldSpec::WholeObject => Some(strip_server_managed(object)),
        FieldSpec::Path(path) => {
            let found = path.select(object);
            if found.is_empty() {
                None
            } else if path.is_definite() {
                found.into_iter().next().cloned()
            } else {
                Some(Value::Array(found.into_iter().cloned().collect()))
            }
        }
    }
}

/// The object without `status` and server-managed metadata.
pub fn strip_server_managed(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Value::Object(map) = &mut copy {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in SERVER_MANAGED_METADATA {
                meta.remove(*field);
            }
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::fingerprint::FingerprintKey;

    fn fp(fields: &[&str], obj: &Value) -> String {
        let key = FingerprintKey::development();
        match Selection::parse(fields) {
            Ok(sel) => key.fingerprint(&sel.select(obj)).0,
            Err(e) => format!("error: {e}"),
        }
    }

    fn configmap(data: Value, rv: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app", "namespace": "default", "resourceVersion": rv,
                         "uid": "u1", "creationTimestamp": "2025-01-01T00:00:00Z",
                         "labels": {"app": "x"}, "managedFields": [{"manager": rv}]},
            "data": data
        })
    }

    #[test]
    fn whole_object_ignores_status_and_server_metadata() {
        let a = configmap(json!({"k": "v"}), "1");
        let mut b = configmap(json!({"k": "v"}), "2");
        b["status"] = json!({"heartbeat": "now"});
        b["metadata"]["generation"] = json!(7);
        assert_eq!(fp(&["*"], &a), fp(&["*"], &b));
    }

    #[test]
    fn whole_object_sees_labels_annotations_and_data() {
        let a = configmap(json!({"k": "v"}), "1");
        let mut b = a.clone();
        b["metadata"]["labels"]["app"] = json!("y");
        assert_ne!(fp(&["*"], &a), fp(&["*"], &b));
        let mut c = a.clone();
        c["metadata"]["annotations"] = json!({"note": "1"});
        assert_ne!(fp(&["*"], &a), fp(&["*"], &c));
        assert_ne!(
            fp(&["*"], &a),
            fp(&["*"], &configmap(json!({"k": "w"}), "1"))
        );
    }

    #[test]
    fn empty_fields_mean_whole_object() {
        let a = configmap(json!({"k": "v"}), "1");
        assert_eq!(fp(&[], &a), fp(&["*"], &a));
    }

    #[test]
    fn data_field_ignores_label_changes() {
        let a = configmap(json!({"k": "v"}), "1");
        let mut b = a.clone();
        b["metadata"]["labels"]["app"] = json!("y");
        assert_eq!(fp(&["data"], &a), fp(&["data"], &b));
    }

    #[test]
    fn single_key_of_data_is_watched_alone() {
        let a = configmap(json!({"important-key": "1", "other": "a"}), "1");
        let b = configmap(json!({"important-key": "1", "other": "b"}), "1");
        let c = configmap(json!({"important-key": "2", "other": "a"}), "1");
        assert_eq!(
            fp(&["data.important-key"], &a),
            fp(&["data.important-key"], &b)
        );
        assert_ne!(
            fp(&["data.important-key"], &a),
            fp(&["data.important-key"], &c)
        );
    }

    #[test]
    fn missing_field_is_absent_and_its_appearance_is_a_change() {
        let without = configmap(json!({"a": "1"}), "1");
        let with = configmap(json!({"a": "1", "b": "2"}), "1");
        assert_ne!(fp(&["data.b"], &without), fp(&["data.b"], &with));
        let sel = Selection::parse(&["data.b"]).ok();
        assert_eq!(
            sel.map(|s| s.select(&without)),
            Some(json!([["$['data']['b']", ["absent"]]]))
        );
    }

    #[test]
    fn null_value_differs_from_absent() {
        let null = json!({"spec": {"x": null}});
        let absent = json!({"spec": {}});
        assert_ne!(fp(&["spec.x"], &null), fp(&["spec.x"], &absent));
    }

    #[test]
    fn field_order_and_duplicates_do_not_matter() {
        let obj = json!({"spec": {"replicas": 2, "paused": false}});
        assert_eq!(
            fp(&["spec.replicas", "spec.paused"], &obj),
            fp(&["spec.paused", "spec.replicas", "spec.paused"], &obj)
        );
        assert_eq!(
            fp(&["{.spec.replicas}"], &obj),
            fp(&["spec.replicas"], &obj)
        );
    }

    #[test]
    fn deployment_image_field_sees_only_images() {
        let dep = |image: &str, replicas: i64| json!({"spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        let f = ["spec.template.spec.containers[*].image"];
        assert_eq!(fp(&f, &dep("nginx:1", 1)), fp(&f, &dep("nginx:1", 3)));
        assert_ne!(fp(&f, &dep("nginx:1", 1)), fp(&f, &dep("nginx:2", 1)));
    }

    #[test]
    fn bad_field_names_its_index() {
        let err = Selection::parse(&["data", "spec["]).err();
        assert_eq!(err.map(|e| e.index), Some(1));
    }

    #[test]
    fn report_lists_each_field_as_written() {
        let obj = json!({"data": {"a": "1"}});
        let sel = Selection::parse(&["data.a", "data.missing"]).ok();
        let report = sel.map(|s| s.report(&obj)).unwrap_or_default();
        assert_eq!(report.len(), 2);
        assert_eq!(
            report[0],
            FieldReport {
                field: "data.a".into(),
                value: Some(json!("1"))
            }
        );
        assert_eq!(report[1].value, None);
    }
}
