//! Admission warnings: specs that are legal but probably not what the author wants. kubectl
//! prints them; the request is still allowed.

use crate::api::{
    ChangeTriggeredJob, ConcurrencyPolicy, MANUAL_TRIGGER_ANNOTATION, ResourceReference,
    WHOLE_OBJECT,
};
use crate::detect::duration::parse_duration;
use crate::discovery::split_api_version;

/// Above this `history`, keeping the Jobs (and their Pods) becomes a burden.
pub const HISTORY_WARNING_ABOVE: i32 = 100;

/// Kinds whose objects change so often that watching them whole triggers Jobs constantly:
/// (API group, kind).
const BUSY_KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "Node"),
    ("", "Endpoints"),
    ("", "Event"),
    ("events.k8s.io", "Event"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("coordination.k8s.io", "Lease"),
];

/// Warnings for `ctj`; `old` is the stored object on UPDATE.
pub fn warnings(ctj: &ChangeTriggeredJob, old: Option<&ChangeTriggeredJob>) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &ctj.spec;

    if let Some(cooldown) = &spec.cooldown
        && parse_duration(cooldown).is_ok_and(|d| d.is_zero())
    {
        out.push(format!(
            "spec.cooldown: {cooldown} turns the cooldown off, so every change starts a Job at once"
        ));
    }

    let template_meta = spec.job_template.decode().ok().and_then(|t| t.metadata);
    if let Some(meta) = &template_meta {
        if meta.name.as_deref().is_some_and(|n| !n.is_empty()) {
            out.push(
                "spec.jobTemplate.metadata.name is ignored; Jobs are named after the \
                 ChangeTriggeredJob plus a suffix"
                    .to_string(),
            );
        }
        if meta.generate_name.as_deref().is_some_and(|n| !n.is_empty()) {
            out.push(
                "spec.jobTemplate.metadata.generateName is ignored; Jobs are named after the \
                 ChangeTriggeredJob plus a suffix"
                    .to_string(),
            );
        }
    }

    for (index, resource) in spec.resources.iter().enumerate() {
        if !watches_whole_object(resource) {
            continue;
        }
        let group = split_api_version(&resource.api_version)
            .map(|(g, _)| g)
            .unwrap_or_default();
        if group.is_empty() && resource.kind == "Secret" {
            out.push(format!(
                "spec.resources[{index}]: watching the whole Secret also reacts to label and \
                 annotation edits; set fields: [\"data\"] to react to its values only"
            ));
        } else if BUSY_KINDS
            .iter()
            .any(|(g, k)| *g == group && *k == resource.kind)
        {
            out.push(format!(
                "spec.resources[{index}]: a whole {} changes often; list only the fields you \
                 care about, or Jobs may run on nearly every change",
                resource.kind
            ));
        }
    }

    if let Some(history) = spec.history
        && history > HISTORY_WARNING_ABOVE
    {
        out.push(format!(
            "spec.history: keeping {history} Jobs (and their Pods) loads the API server; \
             {HISTORY_WARNING_ABOVE} or fewer is usually enough"
        ));
    }

    let manual = |c: &ChangeTriggeredJob| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MANUAL_TRIGGER_ANNOTATION))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(value) = manual(ctj)
        && old.and_then(manual).as_deref() != Some(value.as_str())
    {
        let when = match ctj.spec.concurrency_policy() {
            ConcurrencyPolicy::Forbid => {
                "ignoring condition and cooldown, as soon as no earlier Job of it runs \
                 (concurrencyPolicy Forbid)"
            }
            ConcurrencyPolicy::Replace => {
                "right away, ignoring condition and cooldown; a running Job is deleted first \
                 (concurrencyPolicy Replace)"
            }
            ConcurrencyPolicy::Allow => "right away, ignoring condition and cooldown",
        };
        out.push(format!(
            "metadata.annotations[{MANUAL_TRIGGER_ANNOTATION}]: the new value {value:?} runs the \
             Job once, {when}"
        ));
    }

    out
}

fn watches_whole_object(resource: &ResourceReference) -> bool {
    resource
        .fields_or_default()
        .iter()
        .any(|f| f.trim() == WHOLE_OBJECT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ctj(spec_patch: Value) -> ChangeTriggeredJob {
        let mut o = crate::webhook::fixtures::ctj_json(
            "default",
            crate::webhook::fixtures::one_configmap(),
        );
        if let (Some(spec), Value::Object(extra)) = (o["spec"].as_object_mut(), spec_patch) {
            spec.extend(extra);
        }
        serde_json::from_value(o).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_plain_spec_has_no_warnings() {
        assert!(warnings(&ctj(json!({ "cooldown": "60s" })), None).is_empty());
    }

    #[test]
    fn zero_cooldown_warns() {
        let w = warnings(&ctj(json!({ "cooldown": "0s" })), None);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("spec.cooldown: 0s turns the cooldown off"));
    }

    #[test]
    fn template_name_and_generate_name_warn() {
        let c = ctj(json!({ "jobTemplate": {
            "metadata": { "name": "fixed", "generateName": "x-" },
            "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "i" }] } } } } }));
        let w = warnings(&c, None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("spec.jobTemplate.metadata.name is ignored"));
        assert!(w[1].starts_with("spec.jobTemplate.metadata.generateName is ignored"));
    }

    #[test]
    fn whole_secret_warns_but_secret_data_does_not() {
        let c = ctj(json!({ "resources": [
            { "apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": "d" },
            { "apiVersion": "v1", "kind": "Secret", "name": "t", "namespace": "d", "fields": ["data"] }
        ] }));
        let w = warnings(&c, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("spec.resources[0]: watching the whole Secret"));
    }

    #[test]
    fn whole_busy_kinds_warn() {
        let c = ctj(json!({ "resources": [
            { "apiVersion": "v1", "kind": "Node", "name": "n" },
            { "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": "l", "namespace": "d", "fields": ["*"] },
            { "apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "d", "fields": ["spec.containers[*].image"] }
        ] }));
        let w = warnings(&c, None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("spec.resources[0]: a whole Node changes often"));
        assert!(w[1].starts_with("spec.resources[1]: a whole Lease changes often"));
    }

    #[test]
    fn large_history_warns() {
        assert!(warnings(&ctj(json!({ "history": 100 })), None).is_empty());
        let w = warnings(&ctj(json!({ "history": 101 })), None);
        assert!(w[0].starts_with("spec.history: keeping 101 Jobs"));
    }

    #[test]
    fn new_manual_trigger_value_warns_once() {
        let mut c = ctj(json!({}));
        c.metadata.annotations =
            Some([(MANUAL_TRIGGER_ANNOTATION.to_string(), "run-1".to_string())].into());
        let w = warnings(&c, None);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("runs the Job once, right away"));
        assert!(warnings(&c, Some(&c)).is_empty());
    }

    #[test]
    fn manual_trigger_under_forbid_says_it_waits_for_the_running_job() {
        let mut c = ctj(json!({ "concurrencyPolicy": "Forbid" }));
        c.metadata.annotations =
            Some([(MANUAL_TRIGGER_ANNOTATION.to_string(), "run-1".to_string())].into());
        let w = warnings(&c, None);
        assert!(
            w[0].contains("as soon as no earlier Job of it runs"),
            "{}",
            w[0]
        );
    }
}
