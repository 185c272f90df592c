//! kube-runtime end to end: watcher (list-watch and streaming lists), re-list after 410,
//! resuming after a closed watch, metadata-only watching, reflector and Controller.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, reflector};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::helpers::{config_map, next};
use crate::support::fake_api::{FakeApi, Verb};

/// A compact description of a watcher event, for asserting sequences.
fn describe<K: kube::Resource>(event: &Event<K>) -> String {
    match event {
        Event::Init => "Init".into(),
        Event::InitApply(o) => format!("InitApply {}", o.meta().name.clone().unwrap_or_default()),
        Event::InitDone => "InitDone".into(),
        Event::Apply(o) => format!("Apply {}", o.meta().name.clone().unwrap_or_default()),
        Event::Delete(o) => format!("Delete {}", o.meta().name.clone().unwrap_or_default()),
    }
}

async fn next_event<K: kube::Resource, S>(stream: &mut S) -> String
where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    describe(&next(stream).await.expect("a watcher event, not an error"))
}

#[tokio::test]
async fn watcher_lists_then_watches() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(next_event(&mut events).await, "Init");
    assert_eq!(next_event(&mut events).await, "InitApply a");
    assert_eq!(next_event(&mut events).await, "InitDone");
    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    assert_eq!(next_event(&mut events).await, "Apply b");
    api.delete("a", &Default::default()).await.expect("delete");
    assert_eq!(next_event(&mut events).await, "Delete a");
    assert_eq!(fake.count(Verb::List, "configmaps"), 1);
    assert_eq!(fake.count(Verb::Watch, "configmaps"), 1);
}

#[tokio::test]
async fn watcher_relists_after_410_gone() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    for expected in ["Init", "InitApply a", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    // The watcher has listed but not yet started its watch: history moves on and is compacted.
    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    fake.compact();
    match next(&mut events).await {
        Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
        other => panic!(
            "expected a 410 watch error, got {:?}",
            other.map(|e| describe(&e))
        ),
    }
    for expected in ["Init", "InitApply a", "InitApply b", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    assert_eq!(
        fake.count(Verb::List, "configmaps"),
        2,
        "the watcher re-listed"
    );
}

#[tokio::test]
async fn watcher_relists_when_open_watches_expire() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    for expected in ["Init", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    assert_eq!(next_event(&mut events).await, "Apply a");
    fake.expire_watches();
    assert!(matches!(next(&mut events).await, Err(watcher::Error::WatchError(s)) if s.code == 410));
    for expected in ["Init", "InitApply a", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
}

#[tokio::test]
async fn watcher_resumes_from_its_resource_version_after_a_closed_watch() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    for expected in ["Init", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    assert_eq!(next_event(&mut events).await, "Apply a");
    fake.close_watches();
    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    assert_eq!(
        next_event(&mut events).await,
        "Apply b",
        "changes while disconnected are replayed"
    );
    assert_eq!(fake.count(Verb::List, "configmaps"), 1, "no re-list");
    assert_eq!(fake.count(Verb::Watch, "configmaps"), 2);
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_and_the_end_bookmark() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    let mut events =
        watcher::watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    for expected in ["Init", "InitApply a", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    assert_eq!(next_event(&mut events).await, "Apply b");
    assert_eq!(fake.count(Verb::List, "configmaps"), 0);
    let watch = fake
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Watch)
        .expect("watch");
    assert_eq!(watch.query_param("sendInitialEvents"), Some("true"));
    assert_eq!(
        watch.query_param("resourceVersionMatch"),
        Some("NotOlderThan")
    );
}

#[tokio::test]
async fn metadata_watchers_see_partial_objects() {
    let fake = FakeApi::new();
    let client = fake.client();
    let full: Api<ConfigMap> = Api::default_namespaced(client.clone());
    full.create(
        &PostParams::default(),
        &config_map("a", &[("x", "y")], &[("k", "v")]),
    )
    .await
    .expect("create");

    let partial: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client.clone());
    let mut events = watcher::watcher(partial, watcher::Config::default()).boxed();
    assert_eq!(next_event(&mut events).await, "Init");
    match next(&mut events).await.expect("event") {
        Event::InitApply(meta) => {
            assert_eq!(meta.types.expect("types").kind, "PartialObjectMetadata");
            assert_eq!(meta.metadata.labels.expect("labels")["x"], "y");
        }
        other => panic!("expected InitApply, got {}", describe(&other)),
    }

    #[allow(deprecated)]
    // the brief's entry point; kube now prefers watcher(Api<PartialObjectMeta<K>>)
    let legacy = watcher::metadata_watcher(full.clone(), watcher::Config::default());
    let mut legacy = legacy.boxed();
    for expected in ["Init", "InitApply a", "InitDone"] {
        assert_eq!(next_event(&mut legacy).await, expected);
    }
    full.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    assert_eq!(next_event(&mut legacy).await, "Apply b");
    let metadata_lists = fake
        .requests()
        .iter()
        .filter(|r| {
            r.verb == Verb::List
                && r.accept
                    .as_deref()
                    .is_some_and(|a| a.contains("PartialObjectMetadataList"))
        })
        .count();
    assert_eq!(metadata_lists, 2);
}

#[tokio::test]
async fn reflector_store_follows_the_server() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("create");
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher::watcher(api.clone(), watcher::Config::default()),
    );
    let driver = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .expect("ready in time")
        .expect("ready");
    assert_eq!(reader.state().len(), 1);

    api.create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create");
    api.delete("a", &Default::default()).await.expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut names: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
        names.sort();
        if names == ["b"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store never converged: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    driver.abort();
}

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

#[tokio::test]
async fn controller_reconciles_objects_created_through_another_api() {
    let fake = FakeApi::new();
    let watched: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let controller = Controller::new(watched, watcher::Config::default()).run(
        |cm: Arc<ConfigMap>, tx: Arc<mpsc::UnboundedSender<String>>| async move {
            let _ = tx.send(cm.name_any());
            Ok::<_, Never>(Action::await_change())
        },
        |_, _, _| Action::await_change(),
        Arc::new(seen_tx),
    );
    let driver = tokio::spawn(controller.for_each(|_| async {}));

    let other: Api<ConfigMap> = Api::default_namespaced(fake.client());
    other
        .create(
            &PostParams::default(),
            &config_map("created-later", &[], &[]),
        )
        .await
        .expect("create");
    let reconciled = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("reconciled in time");
    assert_eq!(reconciled.as_deref(), Some("created-later"));
    driver.abort();
}

#[tokio::test]
async fn event_recorder_publishes_and_updates_series() {
    let fake = FakeApi::new();
    let client = fake.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm = api
        .create(&PostParams::default(), &config_map("watched", &[], &[]))
        .await
        .expect("create");
    let reporter = Reporter {
        controller: "kube-changejob".into(),
        instance: Some("pod-0".into()),
    };
    let recorder = Recorder::new(client, reporter);
    let event = RecordedEvent {
        type_: EventType::Normal,
        reason: "JobCreated".into(),
        note: Some("created job watched-1".into()),
        action: "Trigger".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder
        .publish(&event, &reference)
        .await
        .expect("first publish");
    recorder
        .publish(&event, &reference)
        .await
        .expect("second publish (series patch)");
    let events = fake.list_json("events.k8s.io/v1", "events", Some("default"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "JobCreated");
    assert_eq!(events[0]["series"]["count"], 2);
    assert_eq!(
        fake.count(Verb::Create, "events") + fake.count(Verb::Patch, "events"),
        2
    );
}
