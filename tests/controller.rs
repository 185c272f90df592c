//! The reconcile loop against the in-process fake API, scenario by scenario, mirroring the
//! user guide: apply, change, then assert Jobs, status, conditions and API calls.

#[path = "controller/concurrency.rs"]
mod concurrency;
#[path = "controller/harness.rs"]
mod harness;
#[path = "controller/recovery.rs"]
mod recovery;
#[path = "controller/selectors.rs"]
mod selectors;
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use harness::*;
use kube_changejob::api::{CHANGED_RESOURCES_ANNOTATION, JobState, OWNER_LABEL, TriggerCondition};
use kube_changejob::detect::job::job_name;
use support::fake_api::{FakeError, Matcher, Verb};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn configmap_change_creates_exactly_one_job_with_labels_owner_and_annotations() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("key", "value")]);
    let mut watcher = ctj("config-watcher", vec![cm("app-config")]);
    watcher.spec.cooldown = None; // default 60s; the first trigger has no cooldown to wait for
    h.create_ctj(&watcher).await;
    h.observed("config-watcher", 1).await;
    h.wait(5 * SEC).await;
    assert!(
        h.jobs("config-watcher").is_empty(),
        "creating a CTJ must not trigger"
    );

    h.patch_configmap("app-config", merge(&[("key", "newvalue")]))
        .await;
    let latency = h.expect_jobs("config-watcher", 1, 10 * SEC).await;
    assert!(
        latency < SEC,
        "the watch should wake the loop within a second, took {latency:?}"
    );
    h.wait(5 * SEC).await;
    let jobs = h.jobs("config-watcher");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    let ctj = h.ctj("config-watcher").expect("ctj");
    let uid = ctj.metadata.uid.clone().expect("uid");
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(job_name("config-watcher", &uid, 1).as_str())
    );
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(OWNER_LABEL).map(String::as_str),
        Some("config-watcher")
    );
    assert_eq!(labels.get("from-template").map(String::as_str), Some("yes"));
    assert!(
        !labels.contains_key("ctj-own-label"),
        "the CTJ's own labels are not copied"
    );
    assert_eq!(annotation(job, "template-note"), Some("kept"));
    assert_eq!(
        annotation(job, CHANGED_RESOURCES_ANNOTATION),
        Some("ConfigMap/default/app-config")
    );
    let pod_annotations = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        pod_annotations
            .get(CHANGED_RESOURCES_ANNOTATION)
            .map(String::as_str),
        Some("ConfigMap/default/app-config")
    );
    let owner = &job.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("ChangeTriggeredJob", uid.as_str(), Some(true))
    );

    let status = h.status("config-watcher");
    assert_eq!(status.last_job_name, job.metadata.name);
    assert_eq!(status.last_job_status, Some(JobState::Active));
    assert_eq!(status.trigger_sequence, Some(1));
    assert!(status.last_triggered_time.is_some());
    assert_eq!(status.observed_generation, ctj.metadata.generation);
    assert_eq!(
        h.condition("config-watcher", "Ready").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        h.condition("config-watcher", "Progressing").map(|c| c.1),
        Some("JobActive".into())
    );
    assert_eq!(h.metrics.jobs_created.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn secret_data_field_ignores_label_changes() {
    let h = Harness::start().await;
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": NS}, "data": {"password": "YQ=="}}));
    let mut r = resource("v1", "Secret", Some(NS), "app-secret");
    r.fields = Some(vec!["data".into()]);
    h.create_ctj(&ctj("secret-watcher", vec![r])).await;
    h.observed("secret-watcher", 1).await;
    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    api.patch(
        "app-secret",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .expect("label");
    h.wait(5 * SEC).await;
    assert!(
        h.jobs("secret-watcher").is_empty(),
        "a label change is not a data change"
    );
    api.patch(
        "app-secret",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"password": "Yg=="}})),
    )
    .await
    .expect("data");
    h.expect_jobs("secret-watcher", 1, 5 * SEC).await;
    let hash = &h.status("secret-watcher").resource_hashes[0];
    assert_eq!(hash.hash.len(), 64);
    assert_eq!(hash.hash, hash.baseline, "baseline moves on trigger");
}

#[tokio::test(start_paused = true)]
async fn any_of_two_triggers_on_each() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("a", "1")]);
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": NS}, "data": {"k": "YQ=="}}));
    h.create_ctj(&ctj(
        "multi-any",
        vec![
            cm("app-config"),
            resource("v1", "Secret", Some(NS), "app-secret"),
        ],
    ))
    .await;
    h.observed("multi-any", 2).await;
    h.patch_configmap("app-config", merge(&[("a", "2")])).await;
    h.expect_jobs("multi-any", 1, 5 * SEC).await;
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": NS}, "data": {"k": "Yg=="}}));
    h.expect_jobs("multi-any", 2, 5 * SEC).await;
    assert_eq!(
        annotation(&h.jobs("multi-any")[1], CHANGED_RESOURCES_ANNOTATION),
        Some("Secret/default/app-secret")
    );
}

#[tokio::test(start_paused = true)]
async fn all_of_three_needs_every_object_to_change() {
    let h = Harness::start().await;
    h.put_configmap("c1", &[("a", "1")]);
    h.put_configmap("c2", &[("a", "1")]);
    h.put_configmap("c3", &[("a", "1")]);
    let mut all = ctj("multi-all", vec![cm("c1"), cm("c2"), cm("c3")]);
    all.spec.condition = Some(TriggerCondition::All);
    h.create_ctj(&all).await;
    h.observed("multi-all", 3).await;
    h.put_configmap("c1", &[("a", "2")]);
    h.wait(3 * SEC).await;
    assert!(h.jobs("multi-all").is_empty());
    let progressing = h
        .condition("multi-all", "Progressing")
        .expect("progressing");
    assert_eq!(progressing.1, "WaitingForAllChanges");
    assert!(progressing.2.starts_with("1 of 3"), "{}", progressing.2);
    h.put_configmap("c2", &[("a", "2")]);
    h.wait(3 * SEC).await;
    assert!(h.jobs("multi-all").is_empty());
    h.put_configmap("c3", &[("a", "2")]);
    h.expect_jobs("multi-all", 1, 5 * SEC).await;
    assert_eq!(
        annotation(&h.jobs("multi-all")[0], CHANGED_RESOURCES_ANNOTATION),
        Some("ConfigMap/default/c1,ConfigMap/default/c2,ConfigMap/default/c3")
    );
    // After the trigger every object must change again.
    h.put_configmap("c1", &[("a", "3")]);
    h.wait(3 * SEC).await;
    assert_eq!(h.jobs("multi-all").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn deployment_image_field_ignores_replica_changes() {
    let h = Harness::start().await;
    let deployment = |image: &str, replicas: i32| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-app", "namespace": NS},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}})
    };
    h.fake.put(&deployment("nginx:1.25", 1));
    let mut r = resource("apps/v1", "Deployment", Some(NS), "web-app");
    r.fields = Some(vec!["spec.template.spec.containers[*].image".into()]);
    h.create_ctj(&ctj("image-watcher", vec![r])).await;
    h.observed("image-watcher", 1).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    api.patch(
        "web-app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scale");
    h.wait(5 * SEC).await;
    assert!(h.jobs("image-watcher").is_empty());
    h.fake.put(&deployment("nginx:1.26", 3));
    h.expect_jobs("image-watcher", 1, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn cluster_scoped_node_is_watched_without_namespace() {
    let h = Harness::start().await;
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1", "labels": {"a": "1"}}}));
    h.create_ctj(&ctj(
        "node-watcher",
        vec![resource("v1", "Node", None, "worker-1")],
    ))
    .await;
    h.observed("node-watcher", 1).await;
    // Status heartbeats are not changes.
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1", "labels": {"a": "1"}}, "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2027-01-01T00:00:00Z"}]}}));
    h.wait(5 * SEC).await;
    assert!(
        h.jobs("node-watcher").is_empty(),
        "a status heartbeat is not a change"
    );
    let api: Api<Node> = Api::all(h.client.clone());
    api.patch(
        "worker-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "2"}}})),
    )
    .await
    .expect("label");
    h.expect_jobs("node-watcher", 1, 5 * SEC).await;
    assert_eq!(
        annotation(&h.jobs("node-watcher")[0], CHANGED_RESOURCES_ANNOTATION),
        Some("Node/worker-1")
    );
    assert_eq!(h.status("node-watcher").resource_hashes[0].namespace, None);
}

#[tokio::test(start_paused = true)]
async fn change_during_cooldown_fires_when_the_cooldown_ends() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    let mut w = ctj("cooled", vec![cm("app-config")]);
    w.spec.cooldown = Some("60s".into());
    h.create_ctj(&w).await;
    h.observed("cooled", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("cooled", 1, 5 * SEC).await;
    let first = h.status("cooled").last_triggered_time.expect("triggered").0;

    h.wait(10 * SEC).await;
    h.put_configmap("app-config", &[("k", "3")]);
    h.wait(3 * SEC).await;
    assert_eq!(h.jobs("cooled").len(), 1, "inside the cooldown");
    let status = h.status("cooled");
    let fires = status.next_trigger_time.expect("nextTriggerTime").0;
    // lastTriggeredTime holds whole seconds: the cooldown counts from the end of that second.
    assert_eq!(fires, first + jiff::SignedDuration::from_secs(61));
    let progressing = h.condition("cooled", "Progressing").expect("progressing");
    assert_eq!(progressing.1, "CooldownActive");

    h.expect_jobs("cooled", 2, 60 * SEC).await;
    let second = h.status("cooled").last_triggered_time.expect("triggered").0;
    let late = second.duration_since(fires);
    assert!(
        late >= jiff::SignedDuration::ZERO && late < jiff::SignedDuration::from_secs(1),
        "fired {late:?} after the cooldown end"
    );
    assert!(h.status("cooled").next_trigger_time.is_none());
    assert_eq!(h.metrics.deferred_triggers.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn change_undone_during_cooldown_creates_no_job() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    let mut w = ctj("flip", vec![cm("app-config")]);
    w.spec.cooldown = Some("30s".into());
    h.create_ctj(&w).await;
    h.observed("flip", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("flip", 1, 5 * SEC).await;
    h.put_configmap("app-config", &[("k", "3")]);
    h.wait(2 * SEC).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.wait(60 * SEC).await;
    assert_eq!(h.jobs("flip").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn history_two_keeps_the_newest_two_of_five() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "0")]);
    let mut w = ctj("hist", vec![cm("app-config")]);
    w.spec.history = Some(2);
    h.create_ctj(&w).await;
    h.observed("hist", 1).await;
    for i in 1..=5 {
        h.put_configmap("app-config", &[("k", &i.to_string())]);
        h.eventually("trigger", 5 * SEC, || async {
            h.status("hist").trigger_sequence == Some(i)
        })
        .await;
        h.wait(SEC).await;
    }
    h.expect_jobs("hist", 2, 5 * SEC).await;
    let uid = h.ctj("hist").and_then(|c| c.metadata.uid).expect("uid");
    let names: Vec<String> = h
        .jobs("hist")
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        vec![job_name("hist", &uid, 4), job_name("hist", &uid, 5)]
    );
    let deletes: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Delete && r.resource == "jobs")
        .collect();
    assert_eq!(deletes.len(), 3);
    assert!(
        deletes
            .iter()
            .all(|r| r.propagation_policy.as_deref() == Some("Background")),
        "{deletes:?}"
    );
    assert_eq!(h.metrics.jobs_deleted.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn last_job_status_follows_job_conditions() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("tracked", vec![cm("app-config")])).await;
    h.observed("tracked", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("tracked", 1, 5 * SEC).await;
    let name = h.status("tracked").last_job_name.expect("job");
    h.fake
        .set_job_condition(NS, &name, "SuccessCriteriaMet", "True");
    h.eventually("Succeeded", 5 * SEC, || async {
        h.status("tracked").last_job_status == Some(JobState::Succeeded)
    })
    .await;
    assert_eq!(
        h.condition("tracked", "Progressing").map(|c| c.1),
        Some("NoChangesDetected".into())
    );

    h.put_configmap("app-config", &[("k", "3")]);
    h.expect_jobs("tracked", 2, 5 * SEC).await;
    let name = h.status("tracked").last_job_name.expect("job");
    h.fake.fail_job(NS, &name);
    h.eventually("Failed", 5 * SEC, || async {
        h.status("tracked").last_job_status == Some(JobState::Failed)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn missing_object_then_created_then_deleted() {
    let h = Harness::start().await;
    h.create_ctj(&ctj("late", vec![cm("not-yet")])).await;
    h.observed("late", 1).await;
    let entry = &h.status("late").resource_hashes[0];
    assert!(!entry.exists);
    assert_eq!(entry.hash, "absent");
    h.wait(3 * SEC).await;
    assert!(h.jobs("late").is_empty());
    h.put_configmap("not-yet", &[("a", "1")]);
    h.expect_jobs("late", 1, 5 * SEC).await;
    assert!(h.status("late").resource_hashes[0].exists);
    h.fake.remove("v1", "configmaps", Some(NS), "not-yet");
    h.expect_jobs("late", 2, 5 * SEC).await;
    assert!(!h.status("late").resource_hashes[0].exists);
}

#[tokio::test(start_paused = true)]
async fn deleting_the_ctj_deletes_its_jobs_and_stops_watching() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("doomed", vec![cm("app-config")])).await;
    h.observed("doomed", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("doomed", 1, 5 * SEC).await;
    h.delete_ctj("doomed").await;
    h.expect_jobs("doomed", 0, 5 * SEC).await;
    h.put_configmap("app-config", &[("k", "3")]);
    h.wait(5 * SEC).await;
    assert!(h.jobs("doomed").is_empty());
    // The sweep drops the watch interest within a poll interval.
    h.wait(70 * SEC).await;
    assert_eq!(h.metrics.watched_objects.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn status_write_failure_after_job_create_never_duplicates_the_job() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("crashy", vec![cm("app-config")])).await;
    h.observed("crashy", 1).await;
    h.fake.fail_times(
        Matcher::any()
            .verb(Verb::Patch)
            .resource("changetriggeredjobs")
            .subresource("status"),
        FakeError::unavailable(),
        3,
    );
    h.put_configmap("app-config", &[("k", "2")]);
    h.eventually("status to catch up", 30 * SEC, || async {
        h.status("crashy").trigger_sequence == Some(1)
    })
    .await;
    h.wait(10 * SEC).await;
    assert_eq!(h.jobs("crashy").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn restart_between_job_create_and_status_adopts_the_job() {
    let mut h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("adopt", vec![cm("app-config")])).await;
    h.observed("adopt", 1).await;
    // Every status write fails: the Job is created but never recorded; then the process dies.
    h.fake.fail_always(
        Matcher::any()
            .verb(Verb::Patch)
            .resource("changetriggeredjobs")
            .subresource("status"),
        FakeError::unavailable(),
    );
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("adopt", 1, 5 * SEC).await;
    h.stop().await;
    h.fake.clear_faults();
    // A change while the operator is down must not be lost either.
    h.restart().await;
    h.eventually("adoption", 10 * SEC, || async {
        h.status("adopt").trigger_sequence == Some(1)
    })
    .await;
    h.wait(5 * SEC).await;
    assert_eq!(
        h.jobs("adopt").len(),
        1,
        "the restart must not create a second Job for the same trigger"
    );
    h.put_configmap("app-config", &[("k", "3")]);
    h.expect_jobs("adopt", 2, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn restart_neither_refires_nor_loses_changes() {
    let mut h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("restarted", vec![cm("app-config")]))
        .await;
    h.observed("restarted", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("restarted", 1, 5 * SEC).await;
    h.wait(2 * SEC).await;
    h.stop().await;
    h.restart().await;
    h.wait(10 * SEC).await;
    assert_eq!(
        h.jobs("restarted").len(),
        1,
        "old changes must not fire again after a restart"
    );
    h.stop().await;
    h.put_configmap("app-config", &[("k", "3")]);
    h.restart().await;
    h.expect_jobs("restarted", 2, 10 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn unknown_kind_is_degraded_and_other_ctjs_keep_working() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj(
        "typo",
        vec![resource("v1", "configmap", Some(NS), "app-config")],
    ))
    .await;
    h.create_ctj(&ctj("fine", vec![cm("app-config")])).await;
    h.eventually("Degraded", 10 * SEC, || async {
        h.condition("typo", "Degraded")
            .is_some_and(|c| c.0 == "True" && c.1 == "KindNotFound")
    })
    .await;
    let message = h
        .condition("typo", "Degraded")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(
        message.contains("spec.resources[0]") && message.contains("did you mean \"ConfigMap\""),
        "{message}"
    );
    assert_eq!(
        h.condition("typo", "Ready").map(|c| c.0),
        Some("False".into())
    );
    h.observed("fine", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("fine", 1, 5 * SEC).await;
    assert!(h.jobs("typo").is_empty());
}

#[tokio::test(start_paused = true)]
async fn custom_resource_kind_installed_later_is_found_without_restart() {
    let h = Harness::start().await;
    h.create_ctj(&ctj(
        "widget-watch",
        vec![resource("example.com/v1", "Widget", Some(NS), "blue")],
    ))
    .await;
    h.eventually("KindNotFound", 10 * SEC, || async {
        h.condition("widget-watch", "Degraded")
            .is_some_and(|c| c.1 == "KindNotFound")
    })
    .await;
    h.fake.register(support::fake_api::ResourceType::namespaced(
        "example.com",
        "v1",
        "Widget",
        "widgets",
    ));
    h.fake.put(&json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "blue", "namespace": NS}, "spec": {"size": 1}}));
    h.eventually("recovered", 90 * SEC, || async {
        h.condition("widget-watch", "Degraded")
            .is_some_and(|c| c.0 == "False")
    })
    .await;
    h.fake.put(&json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "blue", "namespace": NS}, "spec": {"size": 2}}));
    h.expect_jobs("widget-watch", 1, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn rbac_denial_is_degraded_forbidden_and_recovers() {
    let h = Harness::start().await;
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "prod"}, "data": {"k": "YQ=="}}));
    h.fake.deny(Verb::Get, "", "secrets", Some("prod"));
    h.fake.deny(Verb::List, "", "secrets", Some("prod"));
    h.fake.deny(Verb::Watch, "", "secrets", Some("prod"));
    h.create_ctj(&ctj(
        "secretive",
        vec![resource("v1", "Secret", Some("prod"), "db")],
    ))
    .await;
    h.eventually("Forbidden", 10 * SEC, || async {
        h.condition("secretive", "Degraded")
            .is_some_and(|c| c.0 == "True" && c.1 == "Forbidden")
    })
    .await;
    let message = h
        .condition("secretive", "Degraded")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(message.contains("Secret/prod/db"), "{message}");
    assert_eq!(
        h.condition("secretive", "Available").map(|c| c.0),
        Some("False".into())
    );
    h.fake.clear_faults();
    h.eventually("recovered", 120 * SEC, || async {
        h.condition("secretive", "Degraded")
            .is_some_and(|c| c.0 == "False")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn invalid_job_template_is_degraded_and_the_change_stays_pending() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    let mut bad = ctj("badtemplate", vec![cm("app-config")]);
    bad.spec
        .job_template
        .edit(|t| {
            if let Some(pod) = t.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
                pod.restart_policy = Some("Always".into());
            }
        })
        .expect("the test template re-encodes");
    h.create_ctj(&bad).await;
    h.observed("badtemplate", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.eventually("InvalidJobTemplate", 10 * SEC, || async {
        h.condition("badtemplate", "Degraded")
            .is_some_and(|c| c.1 == "InvalidJobTemplate")
    })
    .await;
    let message = h
        .condition("badtemplate", "Degraded")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(
        message.contains("spec.jobTemplate.spec.template.spec.restartPolicy"),
        "{message}"
    );
    assert!(h.jobs("badtemplate").is_empty());
    let entry = &h.status("badtemplate").resource_hashes[0];
    assert_ne!(entry.hash, entry.baseline, "the change stays pending");
    h.patch_ctj("badtemplate", json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}}})).await;
    h.expect_jobs("badtemplate", 1, 10 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn manual_trigger_runs_once_per_value() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    let mut w = ctj("manual", vec![cm("app-config")]);
    w.spec.cooldown = Some("1h".into());
    h.create_ctj(&w).await;
    h.observed("manual", 1).await;
    h.patch_ctj(
        "manual",
        json!({"metadata": {"annotations": {"changejob.dev/trigger": "run-1"}}}),
    )
    .await;
    h.expect_jobs("manual", 1, 5 * SEC).await;
    assert_eq!(
        annotation(&h.jobs("manual")[0], "changejob.dev/trigger-reason"),
        Some("manual")
    );
    assert_eq!(
        h.status("manual").last_manual_trigger.as_deref(),
        Some("run-1")
    );
    h.wait(5 * SEC).await;
    assert_eq!(h.jobs("manual").len(), 1, "the same value runs once");
    h.patch_ctj(
        "manual",
        json!({"metadata": {"annotations": {"changejob.dev/trigger": "run-2"}}}),
    )
    .await;
    h.expect_jobs("manual", 2, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn suspend_keeps_changes_until_resume() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    let mut w = ctj("paused", vec![cm("app-config")]);
    w.spec.suspend = Some(true);
    h.create_ctj(&w).await;
    h.observed("paused", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.wait(5 * SEC).await;
    assert!(h.jobs("paused").is_empty());
    assert_eq!(
        h.condition("paused", "Ready").map(|c| c.1),
        Some("Suspended".into())
    );
    h.patch_ctj("paused", json!({"spec": {"suspend": false}}))
        .await;
    h.expect_jobs("paused", 1, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn steady_state_reads_no_watched_objects() {
    let h = Harness::start().await;
    for i in 0..5 {
        h.put_configmap(&format!("cm-{i}"), &[("k", "1")]);
    }
    let resources = (0..5).map(|i| cm(&format!("cm-{i}"))).collect();
    h.create_ctj(&ctj("quiet", resources)).await;
    h.observed("quiet", 5).await;
    h.wait(10 * SEC).await;
    h.fake.clear_requests();
    // Five safety resyncs.
    h.wait(300 * SEC).await;
    assert_eq!(
        h.fake.count(Verb::Get, "configmaps"),
        0,
        "resyncs must reuse fingerprints"
    );
    assert_eq!(
        h.fake.count(Verb::Patch, "changetriggeredjobs"),
        0,
        "unchanged status is not rewritten"
    );
    // A watch that expires and relists the same versions wakes nothing and fires nothing.
    h.fake.expire_watches();
    h.wait(10 * SEC).await;
    assert!(h.jobs("quiet").is_empty());
    h.put_configmap("cm-3", &[("k", "2")]);
    h.expect_jobs("quiet", 1, 5 * SEC).await;
    assert_eq!(
        h.fake.count(Verb::Get, "configmaps"),
        1,
        "only the changed object is read"
    );
}

#[tokio::test(start_paused = true)]
async fn losing_leadership_stops_reconciling_at_once() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("led", vec![cm("app-config")])).await;
    h.observed("led", 1).await;
    h.set_leader(false);
    h.wait(SEC).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.wait(10 * SEC).await;
    assert!(h.jobs("led").is_empty(), "a follower does not reconcile");
    h.set_leader(true);
    h.expect_jobs("led", 1, 10 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn fingerprint_key_change_rebaselines_without_triggering() {
    let mut h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("rekey", vec![cm("app-config")])).await;
    h.observed("rekey", 1).await;
    let old = h.status("rekey");
    h.stop().await;
    h.fake.put(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kube-changejob-fingerprint-key", "namespace": OPERATOR_NS}, "stringData": {}, "data": {"key": "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZm"}}));
    h.restart().await;
    h.eventually("new key id", 10 * SEC, || async {
        h.status("rekey").fingerprint_key_id != old.fingerprint_key_id
    })
    .await;
    let new = h.status("rekey");
    assert_ne!(new.resource_hashes[0].hash, old.resource_hashes[0].hash);
    assert_eq!(new.resource_hashes[0].hash, new.resource_hashes[0].baseline);
    h.wait(5 * SEC).await;
    assert!(h.jobs("rekey").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_malformed_ctj_does_not_break_the_others() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    // Written around the schema: resources is not a list.
    h.fake.put(&json!({"apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob",
                       "metadata": {"name": "broken", "namespace": NS}, "spec": {"resources": "nope", "jobTemplate": {}}}));
    h.create_ctj(&ctj("healthy", vec![cm("app-config")])).await;
    h.observed("healthy", 1).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("healthy", 1, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn namespaces_setting_limits_what_is_reconciled() {
    let h = Harness::start_with(|s| s.namespaces = vec!["prod".into()]).await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("outside", vec![cm("app-config")])).await;
    h.wait(10 * SEC).await;
    assert!(
        h.ctj("outside").and_then(|c| c.status).is_none(),
        "CTJs outside the configured namespaces are left alone"
    );
}

#[tokio::test(start_paused = true)]
async fn api_errors_are_retried_with_backoff() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.fake.fail_times(
        Matcher::any().verb(Verb::Get).resource("configmaps"),
        FakeError::internal("etcd is sad"),
        3,
    );
    h.create_ctj(&ctj("flaky", vec![cm("app-config")])).await;
    h.observed("flaky", 1).await;
    h.eventually("healthy", 60 * SEC, || async {
        h.condition("flaky", "Degraded")
            .is_some_and(|c| c.0 == "False")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn every_job_created_gets_its_own_event_naming_it() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.create_ctj(&ctj("noted", vec![cm("app-config")])).await;
    h.observed("noted", 1).await;
    for i in 2..=3 {
        h.put_configmap("app-config", &[("k", &i.to_string())]);
        h.expect_jobs("noted", usize::try_from(i - 1).unwrap_or(0), 5 * SEC)
            .await;
    }
    let events = h.fake.list_json("events.k8s.io/v1", "events", Some(NS));
    let created: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["reason"] == "JobCreated")
        .collect();
    assert_eq!(created.len(), 2, "{events:#?}");
    for job in h.jobs("noted") {
        let name = job.metadata.name.clone().unwrap_or_default();
        let event = created
            .iter()
            .find(|e| e["related"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no JobCreated event for {name}"));
        assert!(event["note"].as_str().unwrap_or_default().contains(&name));
        assert_eq!(event["regarding"]["kind"], "ChangeTriggeredJob");
        assert_eq!(event["reportingController"], "kube-changejob");
        assert_eq!(event["type"], "Normal");
    }
}

#[tokio::test(start_paused = true)]
async fn kinds_without_watch_are_read_on_every_reconcile() {
    let h = Harness::start_with(|s| s.poll_interval = Duration::from_secs(10)).await;
    h.fake.register(
        support::fake_api::ResourceType::namespaced(
            "metrics.example.com",
            "v1",
            "Sample",
            "samples",
        )
        .with_verbs(&["get"]),
    );
    h.fake.put(&json!({"apiVersion": "metrics.example.com/v1", "kind": "Sample", "metadata": {"name": "s", "namespace": NS}, "value": 1}));
    h.create_ctj(&ctj(
        "polled",
        vec![resource("metrics.example.com/v1", "Sample", Some(NS), "s")],
    ))
    .await;
    h.observed("polled", 1).await;
    h.wait(3 * SEC).await;
    assert_eq!(
        h.fake.count(Verb::List, "samples") + h.fake.count(Verb::Watch, "samples"),
        0,
        "no watch on a kind that does not support it"
    );
    h.fake.put(&json!({"apiVersion": "metrics.example.com/v1", "kind": "Sample", "metadata": {"name": "s", "namespace": NS}, "value": 2}));
    // Noticed by the next resync, without a watch.
    h.expect_jobs("polled", 1, 15 * SEC).await;
    assert_eq!(
        h.condition("polled", "Degraded").map(|c| c.0),
        Some("False".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_status_the_informer_has_not_delivered_yet_is_not_written_again() {
    let h = Harness::start().await;
    h.put_configmap("lagging", &[("k", "1")]);
    h.create_ctj(&ctj("lagging", vec![cm("lagging")])).await;
    h.observed("lagging", 1).await;
    h.wait(2 * SEC).await;
    // The ChangeTriggeredJob informer stops hearing from the server (its watch and relists
    // fail), so it keeps the status from before the next write.
    for verb in [Verb::List, Verb::Watch] {
        h.fake.fail_always(
            Matcher::any().verb(verb).resource("changetriggeredjobs"),
            FakeError::unavailable(),
        );
    }
    h.fake.close_watches();
    h.wait(2 * SEC).await;
    h.fake.clear_requests();
    h.put_configmap("lagging", &[("k", "2")]);
    h.expect_jobs("lagging", 1, 5 * SEC).await;
    // The new Job wakes the CTJ again; that round computes the status just written.
    h.wait(10 * SEC).await;
    for r in h.fake.requests().iter().filter(|r| r.verb == Verb::Patch) {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&r.body).unwrap_or_default()
        );
    }
    assert_eq!(
        h.fake.count(Verb::Patch, "changetriggeredjobs"),
        1,
        "one status write for one trigger"
    );
    assert_eq!(h.jobs("lagging").len(), 1);
}
