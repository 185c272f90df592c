//! Tests of the in-process fake API server (`tests/support/fake_api`), each driving one
//! behaviour through a real `kube::Client`.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use support::fake_api::{FakeApi, Verb};

#[tokio::test]
async fn create_then_get_round_trips() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("x".into());
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let got = api.get("x").await.expect("get");
    assert_eq!(got.metadata.name.as_deref(), Some("x"));
    assert_eq!(fake.count(Verb::Create, "configmaps"), 1);
}
