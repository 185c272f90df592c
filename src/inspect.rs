//! `kube-changejob fields`: evaluate `fields` paths and fingerprints on objects from a file,
//! so users can debug their paths without a cluster; with `--selector`, also which objects a
//! label selector matches and the fingerprint of that set.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::detect::fingerprint::{Fingerprint, FingerprintKey};
use crate::detect::label_selector::{ParseError, Selector};
use crate::detect::member_set::{Members, set_fingerprint};
use crate::detect::select::{FieldError, Selection};

/// Why the inspection could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The input is not YAML or JSON.
    #[error("{source_name}: not valid YAML/JSON: {message}")]
    Parse {
        /// File name or `-`.
        source_name: String,
        /// Parser message.
        message: String,
    },
    /// The input holds no object.
    #[error("{0}: no Kubernetes object found (expected a YAML/JSON object with kind and metadata)")]
    Empty(String),
    /// A `--field` does not parse.
    #[error("--field {field:?}: {}", .error.error)]
    Field {
        /// The field as given.
        field: String,
        /// Why.
        error: FieldError,
    },
    /// The `--selector` does not parse.
    #[error("--selector: {0}")]
    Selector(#[from] ParseError),
}

/// The report for a selector: the objects it matches (with their reports), the ones it does
/// not, and the fingerprint of the set as the operator would record it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetReport {
    /// The selector in canonical form (empty: everything).
    pub selector: String,
    /// Reports of the matching objects.
    pub members: Vec<ObjectReport>,
    /// `Kind namespace/name` of the objects that do not match.
    pub others: Vec<String>,
    /// Fingerprint of the set.
    pub fingerprint: String,
}

/// Parses a `--selector` value (kubectl's syntax).
pub fn parse_selector(text: &str) -> Result<Selector, InspectError> {
    Ok(Selector::parse(text)?)
}

/// Evaluates a selector entry on the objects: which match, and the set's fingerprint over the
/// members' fingerprints of `fields`.
pub fn inspect_set(
    objects: &[Value],
    selector: &Selector,
    fields: &[String],
    key: &FingerprintKey,
) -> Result<SetReport, InspectError> {
    let (matching, others): (Vec<&Value>, Vec<&Value>) = objects
        .iter()
        .partition(|object| selector.matches(&labels_of(object)));
    let matching: Vec<Value> = matching.into_iter().cloned().collect();
    let members = inspect(&matching, fields, key)?;
    let set: Members = matching
        .iter()
        .zip(&members)
        .map(|(object, report)| (name_of(object), Fingerprint(report.fingerprint.clone())))
        .collect();
    Ok(SetReport {
        selector: selector.to_string(),
        members,
        others: others.into_iter().map(describe).collect(),
        fingerprint: set_fingerprint(key, &set).0,
    })
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Human-readable rendering of a selector report.
pub fn render_set_text(report: &SetReport) -> String {
    let shown = if report.selector.is_empty() {
        "(empty: matches everything)"
    } else {
        report.selector.as_str()
    };
    let mut out = format!(
        "selector {shown}: {} of {} object(s) match\n",
        report.members.len(),
        report.members.len() + report.others.len()
    );
    for other in &report.others {
        out.push_str(&format!("does not match: {other}\n"));
    }
    out.push_str(&render_text(&report.members));
    out.push_str(&format!(
        "fingerprint of the set ({} member(s)) {}\n",
        report.members.len(),
        report.fingerprint
    ));
    out
}

/// JSON rendering of a selector report.
pub fn render_set_json(report: &SetReport) -> Value {
    json!({
        "selector": report.selector,
        "members": render_json(&report.members),
        "notMatching": report.others,
        "fingerprint": report.fingerprint,
    })
}

/// The report for one object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectReport {
    /// `Kind namespace/name` of the object.
    pub object: String,
    /// Per field: the field, what it selects (None = absent) and that field's own fingerprint.
    pub fields: Vec<(String, Option<Value>, String)>,
    /// The fingerprint over all fields, as the operator would record it.
    pub fingerprint: String,
}

/// Reads every object in `text` (YAML or JSON, several documents and `kind: List` allowed).
pub fn read_objects(source_name: &str, text: &str) -> Result<Vec<Value>, InspectError> {
    let mut objects = Vec::new();
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| InspectError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
    for value in documents {
        match value {
            Value::Null => {}
            Value::Object(ref map)
                if map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                objects.extend(
                    map.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Value::Object(_) => objects.push(value),
            _ => {
                return Err(InspectError::Parse {
                    source_name: source_name.to_string(),
                    message: "a document is not an object".into(),
                });
            }
        }
    }
    if objects.is_empty() {
        return Err(InspectError::Empty(source_name.to_string()));
    }
    Ok(objects)
}

/// Evaluates `fields` (default `["*"]`) on each object.
pub fn inspect(
    objects: &[Value],
    fields: &[String],
    key: &FingerprintKey,
) -> Result<Vec<ObjectReport>, InspectError> {
    let fields: Vec<String> = if fields.is_empty() {
        vec!["*".into()]
    } else {
        fields.to_vec()
    };
    let mut singles = Vec::new();
    for field in &fields {
        let selection =
            Selection::parse(std::slice::from_ref(field)).map_err(|error| InspectError::Field {
                field: field.clone(),
                error,
            })?;
        singles.push((field.clone(), selection));
    }
    let all = Selection::parse(&fields).map_err(|error| InspectError::Field {
        field: fields.get(error.index).cloned().unwrap_or_default(),
        error,
    })?;
    Ok(objects
        .iter()
        .map(|object| ObjectReport {
            object: describe(object),
            fields: singles
                .iter()
                .map(|(field, selection)| {
                    let value = selection
                        .report(object)
                        .into_iter()
                        .next()
                        .and_then(|r| r.value);
                    (
                        field.clone(),
                        value,
                        key.fingerprint(&selection.select(object)).0,
                    )
                })
                .collect(),
            fingerprint: key.fingerprint(&all.select(object)).0,
        })
        .collect())
}

fn describe(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<no kind>");
    let meta = object.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Human-readable rendering of the reports.
pub fn render_text(reports: &[ObjectReport]) -> String {
    let mut out = String::new();
    for report in reports {
        out.push_str(&format!("{}\n", report.object));
        for (field, value, fingerprint) in &report.fields {
            out.push_str(&format!("  field {field}\n"));
            match value {
                Some(v) => {
                    let text = serde_json::to_string_pretty(v).unwrap_or_default();
                    for line in text.lines() {
                        out.push_str(&format!("    {line}\n"));
                    }
                }
                None => out.push_str("    <absent: the path matches nothing>\n"),
            }
            out.push_str(&format!("    fingerprint {fingerprint}\n"));
        }
        out.push_str(&format!(
            "  fingerprint (all fields) {}\n",
            report.fingerprint
        ));
    }
    out
}

/// JSON rendering of the reports.
pub fn render_json(reports: &[ObjectReport]) -> Value {
    Value::Array(
        reports
            .iter()
            .map(|r| {
                json!({
                    "object": r.object,
                    "fields": r.fields.iter().map(|(f, v, fp)| json!({
                        "field": f,
                        "present": v.is_some(),
                        "value": v,
                        "fingerprint": fp,
                    })).collect::<Vec<_>>(),
                    "fingerprint": r.fingerprint,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  annotations:
    example.com/x: "1"
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: a
          image: nginx:1
        - name: b
          image: redis:7
status:
  readyReplicas: 2
"#;

    #[test]
    fn reports_each_field_and_a_combined_fingerprint() {
        let objects = read_objects("d.yaml", DEPLOYMENT).unwrap_or_default();
        let fields = vec![
            "spec.template.spec.containers[*].image".to_string(),
            "metadata.annotations['example.com/x']".to_string(),
            "spec.missing".to_string(),
        ];
        let reports =
            inspect(&objects, &fields, &FingerprintKey::development()).unwrap_or_default();
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(r.object, "Deployment default/web");
        assert_eq!(r.fields[0].1, Some(json!(["nginx:1", "redis:7"])));
        assert_eq!(r.fields[1].1, Some(json!("1")));
        assert_eq!(r.fields[2].1, None);
        assert_eq!(r.fingerprint.len(), 64);
        assert!(render_text(&reports).contains("<absent"));
    }

    #[test]
    fn multi_document_and_list_input_is_expanded() {
        let text = format!(
            "{DEPLOYMENT}\n---\napiVersion: v1\nkind: List\nitems:\n- kind: ConfigMap\n  metadata: {{name: a}}\n- kind: ConfigMap\n  metadata: {{name: b}}\n"
        );
        assert_eq!(read_objects("x", &text).map(|o| o.len()).ok(), Some(3));
    }

    #[test]
    fn bad_path_is_an_error_naming_the_field() {
        let objects = read_objects("d.yaml", DEPLOYMENT).unwrap_or_default();
        let err = inspect(
            &objects,
            &["spec[".to_string()],
            &FingerprintKey::development(),
        )
        .err();
        assert!(matches!(err, Some(InspectError::Field { ref field, .. }) if field == "spec["));
    }

    const CONFIGMAPS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: shop, labels: {app: shop, tier: web}}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: db, namespace: shop, labels: {app: shop, tier: db}}
data: {a: "2"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: api, namespace: shop, labels: {app: shop, tier: api}}
data: {a: "3"}
"#;

    #[test]
    fn selector_reports_members_others_and_the_set_fingerprint() {
        let objects = read_objects("cm.yaml", CONFIGMAPS).unwrap_or_default();
        let key = FingerprintKey::development();
        let selector = parse_selector("app=shop,tier in (web,api)").ok();
        let report = selector.and_then(|s| inspect_set(&objects, &s, &[], &key).ok());
        let Some(report) = report else {
            panic!("the selector report failed");
        };
        let members: Vec<&str> = report.members.iter().map(|m| m.object.as_str()).collect();
        assert_eq!(members, vec!["ConfigMap shop/web", "ConfigMap shop/api"]);
        assert_eq!(report.others, vec!["ConfigMap shop/db"]);
        assert_eq!(report.fingerprint.len(), 64);
        // The same objects in another order give the same set fingerprint.
        let reversed: Vec<Value> = objects.iter().rev().cloned().collect();
        let again = parse_selector("tier in (api,web),app=shop")
            .ok()
            .and_then(|s| inspect_set(&reversed, &s, &[], &key).ok())
            .map(|r| r.fingerprint);
        assert_eq!(again.as_deref(), Some(report.fingerprint.as_str()));
        assert!(render_set_text(&report).contains("2 of 3 object(s) match"));
    }

    #[test]
    fn a_bad_selector_is_an_error() {
        assert!(matches!(
            parse_selector("tier in web"),
            Err(InspectError::Selector(_))
        ));
    }

    #[test]
    fn bad_file_is_an_error() {
        assert!(matches!(
            read_objects("x", "a: [unclosed"),
            Err(InspectError::Parse { .. })
        ));
        assert!(matches!(read_objects("x", ""), Err(InspectError::Empty(_))));
        assert!(matches!(
            read_objects("x", "- 1\n- 2\n"),
            Err(InspectError::Parse { .. })
        ));
    }
}
