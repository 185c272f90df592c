//! Small builders and assertions shared by the fake API server tests.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec};
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use kube::core::{GroupVersionKind, Status};

use crate::support::fake_api::ResourceType;

/// A ConfigMap with labels and data.
pub fn config_map(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let map = |pairs: &[(&str, &str)]| -> Option<BTreeMap<String, String>> {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            ..Default::default()
        },
        data: map(data),
        ..Default::default()
    }
}

/// A Job the API server accepts.
pub fn job(name: &str) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The test CRD kind `example.com/v1 Widget`, namespaced, with a status subresource.
pub fn widget_type() -> ResourceType {
    ResourceType::namespaced("example.com", "v1", "Widget", "widgets")
        .with_status()
        .with_short_names(&["wd"])
}

pub fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

/// The `Status` of an API error; fails the test on any other error.
#[track_caller]
pub fn status_of(err: kube::Error) -> Box<Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

/// The next item of a stream, failing the test if none comes within 5 s.
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a stream item within 5s")
        .expect("the stream to continue")
}

/// A DynamicObject of the Widget kind.
pub fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    DynamicObject::new(name, &widget_resource()).data(serde_json::json!({ "spec": spec }))
}
