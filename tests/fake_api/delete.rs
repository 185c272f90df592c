//! DELETE: answers, finalizers, propagation policies and garbage collection, namespaces.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::helpers::{config_map, job, status_of};
use crate::support::fake_api::{FakeApi, Verb};

fn owned_by(owner: &impl Resource<DynamicType = ()>, block: bool) -> OwnerReference {
    let mut reference = owner
        .controller_owner_ref(&())
        .expect("owner has name and uid");
    reference.block_owner_deletion = Some(block);
    reference
}

fn pod(name: &str, owner: Option<OwnerReference>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn delete_answers_with_a_status_or_for_pods_the_object() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let created = cms
        .create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let answer = cms
        .delete("x", &DeleteParams::default())
        .await
        .expect("delete");
    let status = answer.right().expect("a Status for configmaps");
    assert!(status.is_success());
    let details = status.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("x", "configmaps")
    );
    assert_eq!(Some(details.uid), created.metadata.uid);
    assert!(cms.get_opt("x").await.expect("get").is_none());
    assert_eq!(
        status_of(
            cms.delete("x", &DeleteParams::default())
                .await
                .expect_err("again")
        )
        .code,
        404
    );

    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("p", None))
        .await
        .expect("pod");
    let deleted = pods
        .delete("p", &DeleteParams::default())
        .await
        .expect("delete pod");
    assert_eq!(deleted.left().expect("the pod").name_any(), "p");
}

#[tokio::test]
async fn finalizers_hold_an_object_until_they_are_removed() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut cm = config_map("x", &[], &[]);
    cm.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let pending = cms
        .delete("x", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("pending object");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        cms.get("x")
            .await
            .expect("still there")
            .metadata
            .deletion_timestamp
            .is_some()
    );

    let add = json!({"metadata": {"finalizers": ["example.com/cleanup", "other"]}});
    let status = status_of(
        cms.patch("x", &PatchParams::default(), &Patch::Merge(&add))
            .await
            .expect_err("no new finalizers"),
    );
    assert_eq!(status.code, 422);

    let clear = json!({"metadata": {"finalizers": null}});
    cms.patch("x", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .expect("remove finalizer");
    assert!(
        cms.get_opt("x").await.expect("get").is_none(),
        "gone once the finalizers are"
    );
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let fake = FakeApi::new();
    let client = fake.client();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let owner = jobs
        .create(&PostParams::default(), &job("j"))
        .await
        .expect("job");
    pods.create(
        &PostParams::default(),
        &pod("p", Some(owned_by(&owner, true))),
    )
    .await
    .expect("pod");
    pods.create(&PostParams::default(), &pod("unrelated", None))
        .await
        .expect("pod");
    jobs.delete("j", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(jobs.get_opt("j").await.expect("get").is_none());
    assert!(
        pods.get_opt("p").await.expect("get").is_none(),
        "the dependent was collected"
    );
    assert!(pods.get_opt("unrelated").await.expect("get").is_some());
    let recorded = fake
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Delete)
        .expect("delete recorded");
    assert_eq!(recorded.propagation_policy.as_deref(), Some("Background"));
}

#[tokio::test]
async fn dependents_with_another_live_owner_only_lose_the_reference() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let a = cms
        .create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("a");
    let b = cms
        .create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("b");
    let pods: Api<Pod> = Api::default_namespaced(client);
    let mut shared = pod("p", Some(owned_by(&a, false)));
    let mut second = owned_by(&b, false);
    second.controller = Some(false);
    shared
        .metadata
        .owner_references
        .as_mut()
        .expect("refs")
        .push(second);
    pods.create(&PostParams::default(), &shared)
        .await
        .expect("pod");
    cms.delete("a", &DeleteParams::background())
        .await
        .expect("delete a");
    let remaining = pods.get("p").await.expect("still owned by b");
    assert_eq!(remaining.owner_references().len(), 1);
    assert_eq!(remaining.owner_references()[0].name, "b");
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let fake = FakeApi::new();
    let client = fake.client();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let owner = jobs
        .create(&PostParams::default(), &job("j"))
        .await
        .expect("job");
    pods.create(
        &PostParams::default(),
        &pod("p", Some(owned_by(&owner, true))),
    )
    .await
    .expect("pod");
    let answer = jobs
        .delete("j", &DeleteParams::foreground())
        .await
        .expect("delete");
    let pending = answer.left().expect("the owner, marked for deletion");
    assert!(
        pending
            .finalizers()
            .contains(&"foregroundDeletion".to_string())
    );
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(pods.get_opt("p").await.expect("get").is_none());
    assert!(
        jobs.get_opt("j").await.expect("get").is_none(),
        "the owner goes after its dependents"
    );
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
    let fake = FakeApi::new();
    let client = fake.client();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let owner = jobs
        .create(&PostParams::default(), &job("j"))
        .await
        .expect("job");
    pods.create(
        &PostParams::default(),
        &pod("p", Some(owned_by(&owner, true))),
    )
    .await
    .expect("pod");
    jobs.delete("j", &DeleteParams::orphan())
        .await
        .expect("delete");
    assert!(jobs.get_opt("j").await.expect("get").is_none());
    assert!(
        pods.get("p")
            .await
            .expect("orphaned pod")
            .owner_references()
            .is_empty()
    );
}

#[tokio::test]
async fn deleting_a_job_without_a_policy_orphans_its_pods() {
    let fake = FakeApi::new();
    let client = fake.client();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let owner = jobs
        .create(&PostParams::default(), &job("j"))
        .await
        .expect("job");
    pods.create(
        &PostParams::default(),
        &pod("p", Some(owned_by(&owner, true))),
    )
    .await
    .expect("pod");
    jobs.delete("j", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(
        pods.get_opt("p").await.expect("get").is_some(),
        "batch/v1 Jobs default to orphaning"
    );
    let recorded = fake
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Delete)
        .expect("delete recorded");
    assert_eq!(recorded.propagation_policy, None);
}

#[tokio::test]
async fn propagation_policy_is_read_from_the_query_too() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let request = http::Request::delete(
        "/api/v1/namespaces/default/configmaps/x?propagationPolicy=Foreground",
    )
    .body(vec![])
    .expect("request");
    let _: serde_json::Value = client.request(request).await.expect("delete");
    let recorded = fake
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Delete)
        .expect("delete recorded");
    assert_eq!(recorded.propagation_policy.as_deref(), Some("Foreground"));
    cms.create(&PostParams::default(), &config_map("y", &[], &[]))
        .await
        .expect("create");
    let request = http::Request::delete("/api/v1/namespaces/default/configmaps/y")
        .body(serde_json::to_vec(&json!({"propagationPolicy": "Sideways"})).expect("body"))
        .expect("request");
    let status = status_of(
        client
            .request::<serde_json::Value>(request)
            .await
            .expect_err("bad policy"),
    );
    assert_eq!(status.code, 422);
    assert!(
        cms.get_opt("y").await.expect("get").is_some(),
        "an invalid delete deletes nothing"
    );
}

#[tokio::test]
async fn dry_run_delete_changes_nothing() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(fake.client());
    cms.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let rv = fake.resource_version();
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    cms.delete("x", &dp).await.expect("dry-run delete");
    assert!(cms.get_opt("x").await.expect("get").is_some());
    assert_eq!(fake.resource_version(), rv);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.verb == Verb::Delete && r.dry_run)
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let fake = FakeApi::new();
    let client = fake.client();
    fake.create_namespace("team");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    cms.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let namespaces: Api<Namespace> = Api::all(client);
    let answer = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete namespace");
    let terminating = answer.left().expect("the namespace, terminating");
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(namespaces.get_opt("team").await.expect("get").is_none());
    assert!(
        cms.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn delete_collection_deletes_the_selected_objects() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(fake.client());
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        cms.create(
            &PostParams::default(),
            &config_map(name, &[("app", app)], &[]),
        )
        .await
        .expect("create");
    }
    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await;
    assert_eq!(
        deleted
            .expect("delete collection")
            .left()
            .expect("list")
            .items
            .len(),
        2
    );
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(left, ["c"]);
}
