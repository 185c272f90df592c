//! WATCH through `Api::watch`: event order, history replay, 410 after compaction,
//! selectors, bookmarks, timeouts and metadata-only events.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use serde_json::json;

use crate::helpers::{config_map, next};
use crate::support::fake_api::FakeApi;

fn describe(event: &WatchEvent<ConfigMap>) -> String {
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn watch_streams_every_change_after_the_resource_version() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("before", &[], &[]))
        .await
        .expect("create");
    let from = fake.resource_version().to_string();
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let mut events = api
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watch")
        .boxed();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"a": "1"}})),
    )
    .await
    .expect("patch");
    api.delete("x", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut events).await.expect("event")));
    }
    assert_eq!(seen, ["ADDED x", "MODIFIED x", "DELETED x"]);
    let deleted_rv = fake.resource_version();
    assert!(deleted_rv > from.parse::<u64>().expect("rv"));
}

#[tokio::test]
async fn watch_from_zero_starts_with_the_current_objects() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert_eq!(
        describe(&next(&mut events).await.expect("event")),
        "ADDED a"
    );
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410_expired() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let old = fake.resource_version().to_string();
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    fake.compact();
    let mut events = api
        .watch(&WatchParams::default(), &old)
        .await
        .expect("watch")
        .boxed();
    match next(&mut events).await.expect("event") {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected 410, got {}", describe(&other)),
    }
    assert!(
        events.next().await.is_none(),
        "the server ends the watch after the error"
    );
    let current = fake.resource_version().to_string();
    let mut fresh = api
        .watch(&WatchParams::default(), &current)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    assert_eq!(describe(&next(&mut fresh).await.expect("event")), "ADDED b");
}

#[tokio::test]
async fn watch_selectors_report_objects_leaving_the_selection_as_deleted() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let from = fake.resource_version().to_string();
    let wp = WatchParams::default().labels("app=web");
    let mut events = api.watch(&wp, &from).await.expect("watch").boxed();
    api.create(
        &PostParams::default(),
        &config_map("other", &[("app", "db")], &[]),
    )
    .await
    .expect("create");
    api.create(
        &PostParams::default(),
        &config_map("x", &[("app", "web")], &[]),
    )
    .await
    .expect("create");
    let relabel = |app: &str| json!({"metadata": {"labels": {"app": app}}});
    api.patch("x", &PatchParams::default(), &Patch::Merge(&relabel("db")))
        .await
        .expect("leave");
    api.patch("x", &PatchParams::default(), &Patch::Merge(&relabel("web")))
        .await
        .expect("return");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut events).await.expect("event")));
    }
    assert_eq!(seen, ["ADDED x", "DELETED x", "ADDED x"]);
    let by_name = WatchParams::default().fields("metadata.name=other");
    let mut named = api.watch(&by_name, "0").await.expect("watch").boxed();
    assert_eq!(
        describe(&next(&mut named).await.expect("event")),
        "ADDED other"
    );
}

#[tokio::test]
async fn bookmarks_are_sent_to_watches_that_allow_them() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let from = fake.resource_version().to_string();
    let mut with = api
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watch")
        .boxed();
    let without_bookmarks = WatchParams::default().disable_bookmarks();
    let mut without = api
        .watch(&without_bookmarks, &from)
        .await
        .expect("watch")
        .boxed();
    fake.send_bookmarks();
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    assert_eq!(
        describe(&next(&mut with).await.expect("event")),
        format!("BOOKMARK {from}")
    );
    assert_eq!(
        describe(&next(&mut without).await.expect("event")),
        "ADDED x"
    );
}

#[tokio::test(start_paused = true)]
async fn watches_end_at_timeout_seconds() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let started = tokio::time::Instant::now();
    let events = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .expect("watch");
    let collected: Vec<_> = events.try_collect().await.expect("clean end");
    assert!(collected.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(fake.open_watches(), 0);
}

#[tokio::test]
async fn close_watches_ends_open_streams() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert_eq!(fake.open_watches(), 1);
    fake.close_watches();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("ends")
            .is_none()
    );
}

#[tokio::test]
async fn metadata_watches_carry_partial_objects() {
    let fake = FakeApi::new();
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(fake.client());
    let full: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let from = fake.resource_version().to_string();
    let mut events = api
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watch")
        .boxed();
    full.create(&PostParams::default(), &config_map("x", &[], &[("k", "v")]))
        .await
        .expect("create");
    match next(&mut events).await.expect("event") {
        WatchEvent::Added(partial) => {
            let types = partial.types.expect("types");
            assert_eq!(types.kind, "PartialObjectMetadata");
            assert_eq!(partial.metadata.name.as_deref(), Some("x"));
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    let watch_request = fake
        .requests()
        .into_iter()
        .find(|r| r.query_param("watch") == Some("true"))
        .expect("watch");
    assert_eq!(
        watch_request.accept.as_deref(),
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
    );
}

#[tokio::test]
async fn watching_a_named_object_sees_only_it() {
    let fake = FakeApi::new();
    let client = fake.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let request =
        http::Request::get("/api/v1/namespaces/default/configmaps/x?watch=true&resourceVersion=0")
            .body(vec![])
            .expect("request");
    let mut events = client
        .request_events::<ConfigMap>(request)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &config_map("y", &[], &[]))
        .await
        .expect("create");
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    assert_eq!(
        describe(&next(&mut events).await.expect("event")),
        "ADDED x"
    );
    let recorded = fake
        .requests()
        .into_iter()
        .find(|r| r.verb == crate::support::fake_api::Verb::Watch);
    assert_eq!(recorded.and_then(|r| r.name).as_deref(), Some("x"));
}
