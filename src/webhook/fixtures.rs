//! ChangeTriggeredJobs for the webhook's unit tests.

use serde_json::{Value, json};

use crate::api::ChangeTriggeredJob;

/// A valid ChangeTriggeredJob `w` in `namespace` (one busybox container) watching
/// `resources` (a JSON list).
pub fn ctj_json(namespace: &str, resources: Value) -> Value {
    json!({
        "apiVersion": "triggers.changejob.dev/v1alpha",
        "kind": "ChangeTriggeredJob",
        "metadata": { "name": "w", "namespace": namespace },
        "spec": {
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "c", "image": "busybox" }],
                "restartPolicy": "Never" } } } },
            "resources": resources
        }
    })
}

/// [`ctj_json`], typed.
pub fn ctj(namespace: &str, resources: Value) -> ChangeTriggeredJob {
    serde_json::from_value(ctj_json(namespace, resources)).unwrap_or_else(|e| panic!("{e}"))
}

/// One ConfigMap `a` in `default`, the usual watched object.
pub fn one_configmap() -> Value {
    json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "default" }])
}
