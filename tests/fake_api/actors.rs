//! Writing and reading stored objects directly (other actors), and the controllable clock.

use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::helpers::{config_map, next};
use crate::support::fake_api::FakeApi;

fn kind_of(event: &WatchEvent<ConfigMap>) -> &'static str {
    match event {
        WatchEvent::Added(_) => "ADDED",
        WatchEvent::Modified(_) => "MODIFIED",
        WatchEvent::Deleted(_) => "DELETED",
        WatchEvent::Bookmark(_) => "BOOKMARK",
        WatchEvent::Error(_) => "ERROR",
    }
}

#[tokio::test]
async fn direct_writes_emit_watch_events_and_resource_versions() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let from = fake.resource_version().to_string();
    let mut events = api
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watch")
        .boxed();

    let inserted = fake.insert(&config_map("x", &[], &[("k", "1")]));
    assert_eq!(inserted["metadata"]["namespace"], "default");
    assert_eq!(inserted["metadata"]["generation"], 1);
    fake.put(&config_map("x", &[], &[("k", "2")]));
    fake.put(&config_map("x", &[], &[("k", "2")]));
    let removed = fake
        .remove("v1", "configmaps", Some("default"), "x")
        .expect("removed");
    assert_eq!(removed["data"]["k"], "2");

    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(kind_of(&next(&mut events).await.expect("event")));
    }
    assert_eq!(
        kinds,
        ["ADDED", "MODIFIED", "DELETED"],
        "the no-op put emits nothing"
    );
    assert!(
        fake.get_json("v1", "configmaps", Some("default"), "x")
            .is_none()
    );
}

#[tokio::test]
async fn stored_objects_can_be_inspected_as_json_or_typed() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "kube-system");
    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    fake.insert(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "kube-system"}}));
    let names: Vec<String> = fake
        .list_json("v1", "configmaps", Some("kube-system"))
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["a", "b"]);
    let typed = fake
        .get_object::<ConfigMap>(Some("kube-system"), "b")
        .expect("typed");
    assert_eq!(typed.metadata.namespace.as_deref(), Some("kube-system"));
    assert_eq!(fake.list_objects::<ConfigMap>(None).len(), 2);
    assert!(fake.get_json("v1", "nothings", None, "x").is_none());
}

#[tokio::test]
async fn timestamps_come_from_the_controllable_clock() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let start: Timestamp = "2030-01-01T00:00:00Z".parse().expect("timestamp");
    fake.set_time(start);
    let a = api
        .create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("a");
    fake.advance(Duration::from_secs(90));
    let b = api
        .create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("b");
    let at = |cm: &ConfigMap| {
        cm.metadata
            .creation_timestamp
            .as_ref()
            .expect("timestamp")
            .0
    };
    assert_eq!(at(&a), start);
    assert_eq!(at(&b).duration_since(at(&a)).as_secs(), 90);
    assert_eq!(fake.now(), at(&b));
}

#[tokio::test]
async fn clients_can_default_to_another_namespace() {
    let fake = FakeApi::new();
    let client = fake.client_in("kube-system");
    assert_eq!(client.default_namespace(), "kube-system");
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    assert!(
        fake.get_json("v1", "configmaps", Some("kube-system"), "x")
            .is_some()
    );
}
