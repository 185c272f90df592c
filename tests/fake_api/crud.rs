//! Create and update: server-populated fields, names, validation, conflicts, dry-run,
//! generation and the status subresource split.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube_changejob::api::{ChangeTriggeredJob, ChangeTriggeredJobStatus};
use serde_json::json;

use crate::helpers::{config_map, job, status_of};
use crate::support::fake_api::{FakeApi, Verb};

fn ctj(name: &str) -> ChangeTriggeredJob {
    serde_json::from_value(json!({
        "apiVersion": "triggers.changejob.dev/v1alpha",
        "kind": "ChangeTriggeredJob",
        "metadata": {"name": name},
        "spec": {
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}},
            "resources": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "watched", "namespace": "default"}],
        },
    }))
    .expect("a valid ChangeTriggeredJob")
}

#[tokio::test]
async fn create_fills_server_populated_fields() {
    let fake = FakeApi::new();
    let at: Timestamp = "2025-03-04T05:06:07.891Z".parse().expect("timestamp");
    fake.set_time(at);
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "kube-system");
    let created = api
        .create(&PostParams::default(), &config_map("a", &[], &[("k", "v")]))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("kube-system"));
    assert_eq!(meta.generation, Some(1));
    assert_eq!(
        meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        Some("2025-03-04T05:06:07Z".into())
    );
    let uid = meta.uid.clone().expect("uid");
    assert_eq!(uid.len(), 36);
    let rv: u64 = meta
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    assert_eq!(rv, fake.resource_version());

    let raw = fake
        .get_json("v1", "configmaps", Some("kube-system"), "a")
        .expect("stored");
    assert_eq!(raw["apiVersion"], "v1");
    assert_eq!(raw["kind"], "ConfigMap");
    assert_eq!(raw["metadata"]["creationTimestamp"], "2025-03-04T05:06:07Z");
    let other = api
        .create(&PostParams::default(), &config_map("b", &[], &[]))
        .await
        .expect("create b");
    assert_ne!(other.metadata.uid, Some(uid), "uids are unique");
}

#[tokio::test]
async fn resource_versions_come_from_one_global_counter() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let rv = |m: &ObjectMeta| {
        m.resource_version
            .as_deref()
            .expect("rv")
            .parse::<u64>()
            .expect("numeric")
    };
    let a = cms
        .create(&PostParams::default(), &config_map("a", &[], &[]))
        .await
        .expect("cm");
    let mut secret = Secret::default();
    secret.metadata.name = Some("s".into());
    let b = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let c = cms
        .create(&PostParams::default(), &config_map("c", &[], &[]))
        .await
        .expect("cm");
    assert!(rv(&a.metadata) < rv(&b.metadata) && rv(&b.metadata) < rv(&c.metadata));
    let list = cms.list(&Default::default()).await.expect("list");
    assert_eq!(list.metadata.resource_version, c.metadata.resource_version);
}

#[tokio::test]
async fn generate_name_gets_a_five_character_suffix() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut cm = config_map("", &[], &[]);
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let a = api.create(&PostParams::default(), &cm).await.expect("a");
    let b = api.create(&PostParams::default(), &cm).await.expect("b");
    let (a, b) = (
        a.metadata.name.expect("name"),
        b.metadata.name.expect("name"),
    );
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert!(
        a[4..]
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{a}"
    );
    assert_ne!(a, b);
}

#[tokio::test]
async fn names_must_be_dns_subdomains() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    for bad in ["Bad_Name".to_string(), "a".repeat(254), "-x".into()] {
        let status = status_of(
            api.create(&PostParams::default(), &config_map(&bad, &[], &[]))
                .await
                .expect_err("bad name"),
        );
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{bad}"
        );
        let details = status.details.expect("details");
        assert_eq!(details.kind, "ConfigMap");
        assert_eq!(details.causes[0].field, "metadata.name");
        assert_eq!(details.causes[0].reason, "FieldValueInvalid");
    }
    let mut nameless = config_map("", &[], &[]);
    nameless.metadata.name = None;
    let status = status_of(
        api.create(&PostParams::default(), &nameless)
            .await
            .expect_err("no name"),
    );
    assert_eq!(
        status.details.expect("details").causes[0].reason,
        "FieldValueRequired"
    );
    api.create(&PostParams::default(), &config_map("ok.name-1", &[], &[]))
        .await
        .expect("valid subdomain");
}

#[tokio::test]
async fn body_namespace_must_match_the_url() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut cm = config_map("x", &[], &[]);
    cm.metadata.namespace = Some("kube-system".into());
    let status = status_of(
        api.create(&PostParams::default(), &cm)
            .await
            .expect_err("mismatch"),
    );
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "the namespace of the provided object does not match the namespace sent on the request"
    );
}

#[tokio::test]
async fn creating_twice_is_already_exists() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("first");
    let status = status_of(
        api.create(&PostParams::default(), &config_map("x", &[], &[]))
            .await
            .expect_err("second"),
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(status.message, "configmaps \"x\" already exists");
    assert!(status.is_already_exists());
}

#[tokio::test]
async fn creating_in_a_missing_namespace_is_not_found_until_it_exists() {
    let fake = FakeApi::new();
    let client = fake.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let status = status_of(
        api.create(&PostParams::default(), &config_map("x", &[], &[]))
            .await
            .expect_err("no ns"),
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"team-a\" not found")
    );
    let namespaces: Api<Namespace> = Api::all(client);
    let mut ns = Namespace::default();
    ns.metadata.name = Some("team-a".into());
    let ns = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("now it exists");
}

#[tokio::test]
async fn dry_run_create_validates_and_fills_fields_without_storing() {
    let fake = FakeApi::new();
    let jobs: Api<Job> = Api::default_namespaced(fake.client());
    let before = fake.resource_version();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let would_be = jobs.create(&dry, &job("j")).await.expect("dry-run create");
    assert!(would_be.metadata.uid.is_some() && would_be.metadata.creation_timestamp.is_some());
    assert_eq!(would_be.metadata.resource_version, None);
    assert_eq!(fake.resource_version(), before);
    assert!(jobs.get_opt("j").await.expect("get").is_none());
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.verb == Verb::Create && r.dry_run)
    );

    let mut invalid = job("j");
    invalid
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod spec")
        .containers
        .clear();
    let status = status_of(jobs.create(&dry, &invalid).await.expect_err("invalid"));
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn update_requires_the_current_resource_version_unless_empty() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let created = api
        .create(&PostParams::default(), &config_map("x", &[], &[("k", "1")]))
        .await
        .expect("create");
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = api
        .replace("x", &PostParams::default(), &first)
        .await
        .expect("update with current rv");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let status = status_of(
        api.replace("x", &PostParams::default(), &stale)
            .await
            .expect_err("stale"),
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again"
    );

    stale.metadata.resource_version = None;
    let forced = api
        .replace("x", &PostParams::default(), &stale)
        .await
        .expect("unconditional update");
    assert_eq!(forced.data.as_ref().expect("data")["k"], "3");
    let mut renamed = forced.clone();
    renamed.metadata.name = Some("y".into());
    assert_eq!(
        status_of(
            api.replace("x", &PostParams::default(), &renamed)
                .await
                .expect_err("rename")
        )
        .code,
        400
    );
}

#[tokio::test]
async fn generation_moves_on_spec_changes_only_for_kinds_with_status_subresource() {
    let fake = FakeApi::new();
    let ctjs: Api<ChangeTriggeredJob> = Api::default_namespaced(fake.client());
    let created = ctjs
        .create(&PostParams::default(), &ctj("c"))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none());

    let mut labelled = created.clone();
    labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    labelled.status = Some(ChangeTriggeredJobStatus {
        last_job_name: Some("ignored".into()),
        ..Default::default()
    });
    let labelled = ctjs
        .replace("c", &PostParams::default(), &labelled)
        .await
        .expect("label");
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    assert!(
        labelled.status.is_none(),
        "main-resource updates ignore status"
    );

    let mut changed = labelled.clone();
    changed.spec.history = Some(3);
    let changed = ctjs
        .replace("c", &PostParams::default(), &changed)
        .await
        .expect("spec change");
    assert_eq!(changed.metadata.generation, Some(2));
}

#[tokio::test]
async fn status_writes_change_only_status_and_keep_the_generation() {
    let fake = FakeApi::new();
    let ctjs: Api<ChangeTriggeredJob> = Api::default_namespaced(fake.client());
    let created = ctjs
        .create(&PostParams::default(), &ctj("c"))
        .await
        .expect("create");

    let mut with_status = created.clone();
    with_status.spec.history = Some(9);
    with_status.status = Some(ChangeTriggeredJobStatus {
        last_job_name: Some("c-1".into()),
        ..Default::default()
    });
    let replaced = ctjs
        .replace_status("c", &PostParams::default(), &with_status)
        .await
        .expect("replace status");
    assert_eq!(replaced.spec.history, None, "status writes ignore spec");
    assert_eq!(
        replaced
            .status
            .as_ref()
            .and_then(|s| s.last_job_name.as_deref()),
        Some("c-1")
    );
    assert_eq!(replaced.metadata.generation, Some(1));
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );

    let patch = json!({"spec": {"history": 4}, "status": {"lastJobName": "c-2"}});
    let patched = ctjs
        .patch_status("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch status");
    assert_eq!(
        (patched.spec.history, patched.metadata.generation),
        (None, Some(1))
    );
    assert_eq!(
        patched.status.and_then(|s| s.last_job_name).as_deref(),
        Some("c-2")
    );
    let got = ctjs.get_status("c").await.expect("get status");
    assert_eq!(
        got.status.and_then(|s| s.last_job_name).as_deref(),
        Some("c-2")
    );

    let main = ctjs
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastJobName": "x"}})),
        )
        .await;
    assert_eq!(
        main.expect("main patch")
            .status
            .and_then(|s| s.last_job_name)
            .as_deref(),
        Some("c-2")
    );
}

#[tokio::test]
async fn built_in_kinds_with_status_subresource_split_status_too() {
    let fake = FakeApi::new();
    let deployments: Api<Deployment> = Api::default_namespaced(fake.client());
    let mut d = Deployment::default();
    d.metadata.name = Some("web".into());
    d.spec = Some(DeploymentSpec {
        replicas: Some(1),
        ..Default::default()
    });
    d.status = Some(DeploymentStatus {
        replicas: Some(5),
        ..Default::default()
    });
    let created = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    assert!(created.status.is_none(), "status is reset on create");
    let scaled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}, "status": {"replicas": 3}})),
        )
        .await
        .expect("patch");
    assert_eq!((scaled.metadata.generation, scaled.status), (Some(2), None));
}

#[tokio::test]
async fn generation_counts_any_non_metadata_change_for_kinds_without_status_subresource() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("x", &[], &[("k", "1")]))
        .await
        .expect("create");
    let labelled = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(labelled.expect("label").metadata.generation, Some(1));
    let changed = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"k": "2"}})),
        )
        .await;
    assert_eq!(changed.expect("data").metadata.generation, Some(2));
}

#[tokio::test]
async fn writes_that_change_nothing_keep_the_resource_version() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let created = api
        .create(&PostParams::default(), &config_map("x", &[("a", "b")], &[]))
        .await
        .expect("create");
    let same = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(
        same.expect("no-op patch").metadata.resource_version,
        created.metadata.resource_version
    );
    let replaced = api
        .replace("x", &PostParams::default(), &created)
        .await
        .expect("no-op update");
    assert_eq!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        fake.resource_version().to_string(),
        created.metadata.resource_version.expect("rv")
    );
}
