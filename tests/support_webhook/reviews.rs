//! AdmissionReview requests for ChangeTriggeredJobs, the example manifests from the
//! documentation, and applying a mutating answer's JSON patch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde_json::{Value, json};

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// A fresh request uid.
pub fn uid() -> String {
    format!(
        "00000000-0000-4000-8000-{:012}",
        NEXT_UID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Who sends the request.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn named(name: &str) -> Self {
        User {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            groups: vec!["system:authenticated".to_string(), "developers".to_string()],
        }
    }
}

/// An AdmissionReview for a ChangeTriggeredJob.
pub fn review(operation: &str, object: Option<&Value>, old: Option<&Value>, user: &User) -> Value {
    let source = object.or(old);
    let name = source
        .and_then(|o| o.pointer("/metadata/name"))
        .cloned()
        .unwrap_or(json!(""));
    let namespace = source
        .and_then(|o| o.pointer("/metadata/namespace"))
        .cloned()
        .unwrap_or(json!("default"));
    let gvk = json!({ "group": "triggers.changejob.dev", "version": "v1alpha", "kind": "ChangeTriggeredJob" });
    let gvr = json!({ "group": "triggers.changejob.dev", "version": "v1alpha", "resource": "changetriggeredjobs" });
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid(),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": user.name,
                "uid": user.uid,
                "groups": user.groups,
                "extra": { "authentication.kubernetes.io/credential-id": ["X509SHA256=abc"] }
            },
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": format!("{}Options", title(operation)) }
        }
    })
}

fn title(operation: &str) -> String {
    let lower = operation.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// `review["request"]["uid"]`.
pub fn request_uid(review: &Value) -> String {
    review["request"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Applies the base64 JSON patch of an admission answer (if any) to `object`.
pub fn apply_patch(object: &Value, answer: &Value) -> Value {
    let mut out = object.clone();
    let Some(patch) = answer["response"]["patch"].as_str() else {
        return out;
    };
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap_or_else(|e| panic!("patch is not base64: {e}"));
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("patch is not a JSON patch: {e}"));
    json_patch::patch(&mut out, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    out
}

/// The decoded JSON patch of an answer, or an empty list.
pub fn patch_of(answer: &Value) -> Value {
    answer["response"]["patch"]
        .as_str()
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(json!([]))
}

/// A small valid ChangeTriggeredJob in `default`.
pub fn base_ctj(name: &str) -> Value {
    json!({
        "apiVersion": "triggers.changejob.dev/v1alpha",
        "kind": "ChangeTriggeredJob",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "notify", "image": "busybox:latest", "command": ["echo", "changed"] }],
                "restartPolicy": "Never"
            } } } },
            "resources": [
                { "apiVersion": "v1", "kind": "ConfigMap", "name": "app-config", "namespace": "default" }
            ]
        }
    })
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every complete ChangeTriggeredJob manifest of the API reference and the user guide, with
/// `metadata.namespace: default` added where missing (as kubectl does), by file name.
pub fn documented_manifests() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap_or_else(|e| panic!("fixtures: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut object = load(&path);
        if name.contains("job-template") {
            // A documented `spec.jobTemplate` fragment: put it into a complete manifest.
            let mut full = base_ctj(&format!("snippet-{}", out.len()));
            full["spec"]["jobTemplate"] = object["spec"]["jobTemplate"].take();
            object = full;
        }
        if object.pointer("/metadata/namespace").is_none() {
            object["metadata"]["namespace"] = json!("default");
        }
        out.push((name, object));
    }
    out
}
