//! Jobs: the API server's validation and defaulting, test validators, and the Job
//! controller stand-in that writes conditions.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::helpers::{job, next, status_of};
use crate::support::fake_api::FakeApi;

#[tokio::test]
async fn jobs_without_containers_or_with_restart_policy_always_are_invalid() {
    let fake = FakeApi::new();
    let jobs: Api<Job> = Api::default_namespaced(fake.client());
    let mut bad = job("bad");
    let pod = bad
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod spec");
    pod.containers.clear();
    pod.restart_policy = None;
    let status = status_of(
        jobs.create(&PostParams::default(), &bad)
            .await
            .expect_err("invalid"),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "Job.batch \"bad\" is invalid: [spec.template.spec.containers: Required value, \
         spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"]"
    );
    let details = status.details.expect("details");
    assert_eq!(
        (
            details.group.as_str(),
            details.kind.as_str(),
            details.name.as_str()
        ),
        ("batch", "Job", "bad")
    );
    let causes: Vec<(String, String, String)> = details
        .causes
        .into_iter()
        .map(|c| (c.field, c.reason, c.message))
        .collect();
    assert_eq!(
        causes,
        [
            (
                "spec.template.spec.containers".into(),
                "FieldValueRequired".into(),
                "Required value".into()
            ),
            (
                "spec.template.spec.restartPolicy".into(),
                "FieldValueNotSupported".into(),
                "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into()
            ),
        ]
    );
}

#[tokio::test]
async fn job_names_longer_than_63_characters_are_invalid() {
    let fake = FakeApi::new();
    let jobs: Api<Job> = Api::default_namespaced(fake.client());
    let name = "j".repeat(64);
    let status = status_of(
        jobs.create(&PostParams::default(), &job(&name))
            .await
            .expect_err("too long"),
    );
    assert_eq!(status.code, 422);
    assert_eq!(
        status.details.expect("details").causes[0].field,
        "metadata.name"
    );
    jobs.create(&PostParams::default(), &job(&"j".repeat(63)))
        .await
        .expect("63 is fine");
}

#[tokio::test]
async fn jobs_get_the_api_server_defaults() {
    let fake = FakeApi::new();
    let jobs: Api<Job> = Api::default_namespaced(fake.client());
    let created = jobs
        .create(&PostParams::default(), &job("j"))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    let spec = created.spec.expect("spec");
    assert_eq!(
        (spec.backoff_limit, spec.completions, spec.parallelism),
        (Some(6), Some(1), Some(1))
    );
    let selector = spec
        .selector
        .and_then(|s| s.match_labels)
        .expect("generated selector");
    assert_eq!(selector["batch.kubernetes.io/controller-uid"], uid);
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("template labels");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "j");
    assert_eq!(labels["job-name"], "j");
}

#[tokio::test]
async fn test_validators_reject_with_causes() {
    let fake = FakeApi::new();
    fake.set_validator("configmaps", |cm| {
        match cm.pointer("/data/mode").and_then(|m| m.as_str()) {
            Some("fast") | None => Ok(()),
            Some(other) => Err(vec![(
                "data.mode".to_string(),
                format!("Unsupported value: \"{other}\": supported values: \"fast\""),
            )]),
        }
    });
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(fake.client());
    let cm = serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"mode": "slow"}}))
        .expect("cm");
    let status = status_of(
        api.create(&PostParams::default(), &cm)
            .await
            .expect_err("rejected"),
    );
    assert_eq!(
        status.message,
        "ConfigMap \"x\" is invalid: data.mode: Unsupported value: \"slow\": supported values: \"fast\""
    );
    assert_eq!(
        status.details.expect("details").causes[0].reason,
        "FieldValueNotSupported"
    );
    fake.clear_validator("configmaps");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("accepted without the validator");
}

#[tokio::test]
async fn job_conditions_are_written_like_the_job_controller_does() {
    let fake = FakeApi::new();
    let jobs: Api<Job> = Api::default_namespaced(fake.client());
    jobs.create(&PostParams::default(), &job("j"))
        .await
        .expect("create");
    let from = fake.resource_version().to_string();
    let mut events = jobs
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watch")
        .boxed();

    fake.complete_job("default", "j");
    let mut seen = Vec::new();
    for _ in 0..2 {
        match next(&mut events).await.expect("event") {
            WatchEvent::Modified(j) => {
                let conditions = j.status.and_then(|s| s.conditions).unwrap_or_default();
                seen.push(
                    conditions
                        .into_iter()
                        .map(|c| c.type_)
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            other => panic!("expected MODIFIED, got {other:?}"),
        }
    }
    assert_eq!(seen, ["SuccessCriteriaMet", "SuccessCriteriaMet,Complete"]);
    let done = jobs.get("j").await.expect("get");
    assert_eq!(
        done.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    let status = done.status.expect("status");
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert_eq!(status.succeeded, Some(1));

    jobs.create(&PostParams::default(), &job("k"))
        .await
        .expect("create");
    fake.set_job_condition("default", "k", "Failed", "True");
    let failed = fake.get_object::<Job>(Some("default"), "k").expect("job k");
    let condition = failed
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .remove(0);
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("Failed", "True")
    );
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
}
