//! Server-side defaulting on create for the kinds where our code reads defaulted fields:
//! Jobs (selector and the `job-name`/`controller-uid` labels) and Namespaces.

use serde_json::{Value, json};

use super::resources::ResourceType;

pub(crate) fn apply_on_create(rt: &ResourceType, object: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => job(object),
        ("", "namespaces") => namespace(object),
        _ => {}
    }
}

fn set_default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.entry(key).or_insert(value);
    }
}

fn job(job: &mut Value) {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = job
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !job.get("spec").is_some_and(Value::is_object) {
        job["spec"] = json!({});
    }
    let spec = &mut job["spec"];
    let both_unset = spec.get("completions").is_none() && spec.get("parallelism").is_none();
    if both_unset {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if !spec.get("template").is_some_and(Value::is_object) {
        spec["template"] = json!({});
    }
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    // SetDefaults_Job copies the template labels to an unlabelled Job before the selector is
    // generated.
    if job
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(|l| l.is_empty())
        && template_labels.as_object().is_some_and(|l| !l.is_empty())
    {
        job["metadata"]["labels"] = template_labels;
    }
    let spec = &mut job["spec"];
    if !spec
        .get("manualSelector")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let template = &mut spec["template"];
        if !template.get("metadata").is_some_and(Value::is_object) {
            template["metadata"] = json!({});
        }
        if !template["metadata"]
            .get("labels")
            .is_some_and(Value::is_object)
        {
            template["metadata"]["labels"] = json!({});
        }
        let labels = &mut template["metadata"]["labels"];
        labels["batch.kubernetes.io/controller-uid"] = json!(uid);
        labels["batch.kubernetes.io/job-name"] = json!(name);
        labels["controller-uid"] = json!(uid);
        labels["job-name"] = json!(name);
    }
}

fn namespace(ns: &mut Value) {
    let name = ns
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !ns["metadata"].get("labels").is_some_and(Value::is_object) {
        ns["metadata"]["labels"] = json!({});
    }
    ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    if !ns.get("spec").is_some_and(Value::is_object) {
        ns["spec"] = json!({});
    }
    set_default(&mut ns["spec"], "finalizers", json!(["kubernetes"]));
    ns["status"] = json!({"phase": "Active"});
}
