//! Injected faults: one-off and persistent error answers, RBAC denials, transport errors,
//! subresource matching and latency.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_changejob::api::ChangeTriggeredJob;
use serde_json::json;

use crate::helpers::{config_map, status_of};
use crate::support::fake_api::{FakeApi, FakeError, Matcher, Verb};

#[tokio::test]
async fn fail_next_fails_only_the_next_matching_request() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    fake.fail_next(
        Matcher::any()
            .verb(Verb::Get)
            .resource("configmaps")
            .name("x"),
        FakeError::unavailable(),
    );
    api.list(&ListParams::default())
        .await
        .expect("other verbs unaffected");
    let status = status_of(api.get("x").await.expect_err("injected"));
    assert_eq!(
        (status.code, status.reason.as_str()),
        (503, "ServiceUnavailable")
    );
    api.get("x").await.expect("only once");
}

#[tokio::test]
async fn fail_always_fails_until_cleared() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    fake.fail_always(
        Matcher::any().verb(Verb::List),
        FakeError::too_many_requests(7),
    );
    for _ in 0..3 {
        let status = status_of(
            api.list(&ListParams::default())
                .await
                .expect_err("injected"),
        );
        assert_eq!(
            (status.code, status.reason.as_str()),
            (429, "TooManyRequests")
        );
    }
    fake.fail_times(Matcher::any().verb(Verb::Create), FakeError::timeout(), 2);
    for _ in 0..2 {
        let status = status_of(
            api.create(&PostParams::default(), &config_map("x", &[], &[]))
                .await
                .expect_err("504"),
        );
        assert_eq!((status.code, status.reason.as_str()), (504, "Timeout"));
    }
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("third create passes");
    fake.fail_next(
        Matcher::any(),
        FakeError::internal("etcdserver: leader changed"),
    );
    let status = status_of(api.get("x").await.expect_err("500"));
    assert_eq!(
        status.message,
        "Internal error occurred: etcdserver: leader changed"
    );
    fake.clear_faults();
    api.list(&ListParams::default()).await.expect("cleared");
}

#[tokio::test]
async fn deny_answers_forbidden_with_the_rbac_message() {
    let fake = FakeApi::new();
    fake.set_user("system:serviceaccount:kube-changejob:kube-changejob");
    let client = fake.client();
    fake.deny(Verb::Get, "", "configmaps", Some("default"));
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let status = status_of(api.get("x").await.expect_err("forbidden"));
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "configmaps \"x\" is forbidden: User \"system:serviceaccount:kube-changejob:kube-changejob\" cannot get \
         resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert!(status.is_forbidden());
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    assert_eq!(
        status_of(other.get("x").await.expect_err("not denied, missing")).code,
        404
    );

    fake.deny(
        Verb::List,
        "triggers.changejob.dev",
        "changetriggeredjobs",
        None,
    );
    let all: Api<ChangeTriggeredJob> = Api::all(client);
    let status = status_of(
        all.list(&ListParams::default())
            .await
            .expect_err("forbidden"),
    );
    assert_eq!(
        status.message,
        "changetriggeredjobs.triggers.changejob.dev is forbidden: User \"system:serviceaccount:kube-changejob:kube-changejob\" \
         cannot list resource \"changetriggeredjobs\" in API group \"triggers.changejob.dev\" at the cluster scope"
    );
}

#[tokio::test]
async fn connection_faults_fail_the_transport() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    fake.fail_next(Matcher::any(), FakeError::connection("connection refused"));
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Service(err)) => {
            assert!(err.to_string().contains("connection refused"), "{err}")
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    api.list(&ListParams::default())
        .await
        .expect("next request works");
}

#[tokio::test]
async fn matchers_can_target_the_status_subresource() {
    let fake = FakeApi::new();
    let api: Api<ChangeTriggeredJob> = Api::default_namespaced(fake.client());
    fake.insert(&json!({
        "apiVersion": "triggers.changejob.dev/v1alpha",
        "kind": "ChangeTriggeredJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {}, "resources": []},
    }));
    fake.fail_always(
        Matcher::any().verb(Verb::Patch).subresource("status"),
        FakeError::forbidden(),
    );
    let patch = Patch::Merge(json!({"status": {"lastJobName": "x"}}));
    let status = status_of(
        api.patch_status("c", &PatchParams::default(), &patch)
            .await
            .expect_err("denied"),
    );
    assert!(
        status
            .message
            .contains("cannot patch resource \"changetriggeredjobs/status\""),
        "{}",
        status.message
    );
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .expect("main resource unaffected");
    let main_only = Matcher::any().verb(Verb::Patch).main_resource();
    fake.clear_faults();
    fake.fail_next(main_only, FakeError::unavailable());
    api.patch_status("c", &PatchParams::default(), &patch)
        .await
        .expect("status unaffected");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_request_on_the_tokio_clock() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    fake.set_latency(Some(Duration::from_secs(10)));
    let started = tokio::time::Instant::now();
    api.list(&ListParams::default()).await.expect("list");
    assert!(started.elapsed() >= Duration::from_secs(10));
    fake.set_latency(None);
    let started = tokio::time::Instant::now();
    api.list(&ListParams::default()).await.expect("list");
    assert!(started.elapsed() < Duration::from_secs(1));
}
