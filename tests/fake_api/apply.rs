//! Server-side apply: upsert, field ownership, removal of dropped fields, conflicts, force,
//! status apply, and the Lease pattern leader election relies on.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube_changejob::api::ChangeTriggeredJob;
use serde_json::{Value, json};

use crate::helpers::status_of;
use crate::support::fake_api::FakeApi;

fn apply_params(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": data})
}

#[tokio::test]
async fn apply_creates_a_missing_object() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let applied = api
        .patch(
            "x",
            &apply_params("tester"),
            &Patch::Apply(cm(json!({"a": "1"}))),
        )
        .await
        .expect("apply");
    assert_eq!(applied.metadata.generation, Some(1));
    assert!(applied.metadata.uid.is_some());
    let managed = applied.metadata.managed_fields.expect("managed fields");
    assert_eq!(managed[0].manager.as_deref(), Some("tester"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    assert_eq!(
        api.get("x").await.expect("stored").data.expect("data")["a"],
        "1"
    );
}

#[tokio::test]
async fn apply_removes_fields_the_manager_stopped_applying() {
    let fake = FakeApi::new();
    let client = fake.client();
    let ctjs: Api<ChangeTriggeredJob> = Api::default_namespaced(client.clone());
    let ctj = json!({
        "apiVersion": "triggers.changejob.dev/v1alpha",
        "kind": "ChangeTriggeredJob",
        "metadata": {"name": "c"},
        "spec": {
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}},
            "resources": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "w", "namespace": "default"}],
        },
    });
    ctjs.create(
        &PostParams::default(),
        &serde_json::from_value(ctj).expect("ctj"),
    )
    .await
    .expect("create");
    let status = |fields: Value| json!({"apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob", "metadata": {"name": "c"}, "status": fields});
    let pp = apply_params("changejob-operator").force();
    ctjs.patch_status(
        "c",
        &pp,
        &Patch::Apply(status(
            json!({"lastJobName": "c-1", "nextTriggerTime": "2025-01-01T00:00:00Z"}),
        )),
    )
    .await
    .expect("first status apply");
    // Another writer owns a status field the operator never applied.
    ctjs.patch_status(
        "c",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"lastManualTrigger": "t"}})),
    )
    .await
    .expect("other writer");
    let after = ctjs
        .patch_status(
            "c",
            &pp,
            &Patch::Apply(status(json!({"lastJobName": "c-1"}))),
        )
        .await
        .expect("second");
    let status = after.status.expect("status");
    assert_eq!(
        status.next_trigger_time, None,
        "a field the manager stopped applying disappears"
    );
    assert_eq!(status.last_job_name.as_deref(), Some("c-1"));
    assert_eq!(
        status.last_manual_trigger.as_deref(),
        Some("t"),
        "fields of other managers stay"
    );
    assert!(
        after.spec.resources.len() == 1,
        "status apply leaves the spec alone"
    );
}

#[tokio::test]
async fn apply_conflicts_with_other_managers_unless_forced() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.patch(
        "x",
        &apply_params("alice"),
        &Patch::Apply(cm(json!({"shared": "1", "a": "1"}))),
    )
    .await
    .expect("alice");
    // Same value: shared ownership, no conflict.
    api.patch(
        "x",
        &apply_params("bob"),
        &Patch::Apply(cm(json!({"shared": "1"}))),
    )
    .await
    .expect("bob agrees");
    let err = api
        .patch(
            "x",
            &apply_params("bob"),
            &Patch::Apply(cm(json!({"a": "2"}))),
        )
        .await
        .expect_err("conflict");
    let status = status_of(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"alice\" using v1: .data.a"
    );
    let cause = &status.details.expect("details").causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".data.a")
    );

    let forced = api
        .patch(
            "x",
            &apply_params("bob").force(),
            &Patch::Apply(cm(json!({"a": "2"}))),
        )
        .await
        .expect("force");
    assert_eq!(forced.data.expect("data")["a"], "2");
    let managed = forced.metadata.managed_fields.expect("managed");
    let alice = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some("alice"))
        .expect("alice still owns shared");
    let alice_fields = serde_json::to_value(&alice.fields_v1).expect("fields");
    assert!(
        alice_fields.to_string().contains("f:shared")
            && !alice_fields.to_string().contains("f:a\"")
    );

    // Updates (non-apply) never conflict; they take ownership.
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"a": "3"}})),
    )
    .await
    .expect("update");
}

#[tokio::test]
async fn apply_requires_a_field_manager() {
    let fake = FakeApi::new();
    let client = fake.client();
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&cm(json!({}))).expect("body"))
        .expect("request");
    let status = status_of(
        client
            .request::<Value>(request)
            .await
            .expect_err("no field manager"),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("fieldManager: Required value"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn lease_holders_conflict_the_way_leader_election_expects() {
    let fake = FakeApi::new();
    let leases: Api<Lease> = Api::default_namespaced(fake.client());
    let claim = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}})
    };
    leases
        .patch("leader", &apply_params("a"), &Patch::Apply(claim("a")))
        .await
        .expect("a acquires");
    let err = leases
        .patch("leader", &apply_params("b"), &Patch::Apply(claim("b")))
        .await
        .expect_err("b conflicts");
    assert!(status_of(err).is_conflict());
    // The holder releases with a strategic merge patch that nulls its fields ...
    let release = json!({"spec": {"holderIdentity": null, "leaseDurationSeconds": null}});
    leases
        .patch(
            "leader",
            &PatchParams::default(),
            &Patch::Strategic(&release),
        )
        .await
        .expect("release");
    // ... after which the other candidate's apply goes through.
    let taken = leases
        .patch("leader", &apply_params("b"), &Patch::Apply(claim("b")))
        .await
        .expect("b acquires");
    assert_eq!(
        taken.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );
}
