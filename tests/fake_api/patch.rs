//! PATCH: merge patch, strategic merge patch, JSON patch, preconditions.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::helpers::{config_map, status_of, widget, widget_resource, widget_type};
use crate::support::fake_api::FakeApi;

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["a"]},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "proxy:1"},
                ]},
            },
        },
    }))
    .expect("deployment")
}

#[tokio::test]
async fn merge_patch_follows_rfc_7386() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(
        &PostParams::default(),
        &config_map("x", &[("keep", "1"), ("drop", "1")], &[("a", "1")]),
    )
    .await
    .expect("create");
    let patch = json!({"metadata": {"labels": {"drop": null, "new": "2"}}, "data": {"b": "2"}});
    let patched = api
        .patch("x", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let labels = patched.metadata.labels.expect("labels");
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["keep", "new"]);
    let data = patched.data.expect("data");
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("1", "2"));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.content_type.as_deref() == Some("application/merge-patch+json"))
    );
}

#[tokio::test]
async fn strategic_merge_patch_merges_keyed_lists() {
    let fake = FakeApi::new();
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &deployment())
        .await
        .expect("create");
    let patch = json!({
        "metadata": {"finalizers": ["b"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
            {"name": "sidecar", "$patch": "delete"},
        ]}}},
    });
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("patch");
    assert_eq!(
        patched.metadata.finalizers,
        Some(vec!["a".to_string(), "b".to_string()])
    );
    let containers = patched
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));
    let env: Vec<String> = containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["A", "B"]);

    let removal = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(&removal))
        .await
        .expect("remove finalizer");
    assert_eq!(patched.metadata.finalizers, Some(vec!["b".to_string()]));
}

#[tokio::test]
async fn strategic_merge_patch_is_refused_for_custom_resources() {
    let fake = FakeApi::new();
    fake.register(widget_type());
    let api: Api<DynamicObject> = Api::default_namespaced_with(fake.client(), &widget_resource());
    api.create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .expect("create");
    let err = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(&json!({"spec": {"size": 2}})),
        )
        .await;
    let status = status_of(err.expect_err("415"));
    assert_eq!(
        (status.code, status.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
}

#[tokio::test]
async fn json_patch_applies_operations_and_rejects_failed_tests() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("x", &[], &[("a", "1")]))
        .await
        .expect("create");
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "2"},
        {"op": "add", "path": "/data/b", "value": "3"},
    ]))
    .expect("ops");
    let patched = api
        .patch("x", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .expect("json patch");
    let data = patched.data.expect("data");
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("2", "3"));

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/a", "value": "1"}]))
            .expect("ops");
    let status = status_of(
        api.patch("x", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .expect_err("test op"),
    );
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn patches_carrying_a_stale_resource_version_conflict() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let created = api
        .create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let rv = created.metadata.resource_version.expect("rv");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"a": "1"}})),
    )
    .await
    .expect("move rv");
    let stale = json!({"metadata": {"resourceVersion": rv}, "data": {"a": "2"}});
    let status = status_of(
        api.patch("x", &PatchParams::default(), &Patch::Merge(&stale))
            .await
            .expect_err("stale"),
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    let missing = api
        .patch("nope", &PatchParams::default(), &Patch::Merge(&json!({})))
        .await;
    assert_eq!(status_of(missing.expect_err("missing")).code, 404);
}
