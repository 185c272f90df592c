//! A ChangeTriggeredJob as the plugin reads it: from the raw JSON, field by field, so that a
//! plugin built before a spec field existed (or after one was added) still explains what it
//! can instead of failing to decode the object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::Value;

use crate::api::{ChangeTriggeredJobStatus, DEFAULT_COOLDOWN};

/// One `spec.resources` entry: a named object or a labelled set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedEntry {
    /// apiVersion of the kind.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name, for an entry that names one object.
    pub name: Option<String>,
    /// Namespace, for a namespaced kind.
    pub namespace: Option<String>,
    /// Label selector (as `kubectl -l` takes it), for an entry that names a set.
    pub selector: Option<String>,
}

impl WatchedEntry {
    /// `Kind namespace/name`, or `Kind objects labelled SELECTOR in namespace`.
    pub fn describe(&self) -> String {
        let place = self
            .namespace
            .as_deref()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default();
        match (&self.name, &self.selector) {
            (Some(name), _) => format!("{} {place}{name}", self.kind),
            (None, Some(selector)) => match &self.namespace {
                Some(ns) => format!("{} objects labelled {selector} in {ns}", self.kind),
                None => format!("{} objects labelled {selector}", self.kind),
            },
            (None, None) => format!("{} (no name)", self.kind),
        }
    }
}

/// What the plugin needs of a ChangeTriggeredJob.
#[derive(Clone, Debug, Default)]
pub struct CtjView {
    /// metadata.namespace.
    pub namespace: String,
    /// metadata.name.
    pub name: String,
    /// metadata.uid.
    pub uid: Option<String>,
    /// metadata.generation.
    pub generation: Option<i64>,
    /// spec.condition (Any when unset).
    pub condition: String,
    /// spec.cooldown as written (the default when unset).
    pub cooldown: String,
    /// spec.suspend.
    pub suspend: bool,
    /// spec.concurrencyPolicy (Allow when unset).
    pub concurrency_policy: String,
    /// The changejob.dev/trigger annotation, if set.
    pub trigger_annotation: Option<String>,
    /// spec.resources.
    pub watched: Vec<WatchedEntry>,
    /// The status, or the default when there is none or it cannot be read.
    pub status: ChangeTriggeredJobStatus,
}

impl CtjView {
    /// Reads the fields it knows from a ChangeTriggeredJob's JSON.
    pub fn from_json(raw: &Value) -> CtjView {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let meta = &raw["metadata"];
        let spec = &raw["spec"];
        let watched = spec["resources"]
            .as_array()
            .map(|entries| entries.iter().map(entry).collect())
            .unwrap_or_default();
        CtjView {
            namespace: text(&meta["namespace"]).unwrap_or_default(),
            name: text(&meta["name"]).unwrap_or_default(),
            uid: text(&meta["uid"]),
            generation: meta["generation"].as_i64(),
            condition: text(&spec["condition"]).unwrap_or_else(|| "Any".into()),
            cooldown: text(&spec["cooldown"]).unwrap_or_else(|| DEFAULT_COOLDOWN.into()),
            suspend: spec["suspend"].as_bool().unwrap_or(false),
            concurrency_policy: text(&spec["concurrencyPolicy"]).unwrap_or_else(|| "Allow".into()),
            trigger_annotation: text(&meta["annotations"][crate::api::MANUAL_TRIGGER_ANNOTATION]),
            watched,
            status: serde_json::from_value(raw["status"].clone()).unwrap_or_default(),
        }
    }

    /// The status condition of `type_`, if the operator wrote one.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }
}

fn entry(v: &Value) -> WatchedEntry {
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    WatchedEntry {
        api_version: text(&v["apiVersion"]).unwrap_or_default(),
        kind: text(&v["kind"]).unwrap_or_default(),
        name: text(&v["name"]),
        namespace: text(&v["namespace"]),
        selector: selector_text(&v["selector"]),
    }
}

/// A LabelSelector in kubectl's `-l` syntax: `app=web,tier in (a,b),!legacy`.
fn selector_text(selector: &Value) -> Option<String> {
    if !selector.is_object() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default();
        let values = expr["values"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        parts.push(match expr["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({values})"),
        });
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_the_plugin_does_not_know_yet_are_read_from_json() {
        let view = CtjView::from_json(&json!({
            "metadata": {"name": "build", "namespace": "ci", "uid": "u1",
                         "annotations": {"changejob.dev/trigger": "now"}},
            "spec": {
                "concurrencyPolicy": "Forbid",
                "resources": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "app", "namespace": "ci"},
                    {"apiVersion": "v1", "kind": "Secret", "namespace": "ci",
                     "selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                                       {"key": "legacy", "operator": "DoesNotExist"}]}}
                ]
            },
            "status": {"lastJobName": "build-x", "someFutureField": 1}
        }));
        assert_eq!(view.concurrency_policy, "Forbid");
        assert_eq!(view.condition, "Any");
        assert_eq!(view.cooldown, "60s");
        assert_eq!(view.trigger_annotation.as_deref(), Some("now"));
        assert_eq!(view.status.last_job_name.as_deref(), Some("build-x"));
        assert_eq!(view.watched[0].describe(), "ConfigMap ci/app");
        assert_eq!(
            view.watched[1].describe(),
            "Secret objects labelled app=web,tier in (a,b),!legacy in ci"
        );
    }

    #[test]
    fn a_missing_or_unreadable_status_reads_as_none() {
        let view = CtjView::from_json(&json!({"metadata": {"name": "x"}, "status": "garbage"}));
        assert!(view.status.conditions.is_empty());
        assert!(view.watched.is_empty());
        assert_eq!(view.concurrency_policy, "Allow");
    }
}
