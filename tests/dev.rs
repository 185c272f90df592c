//! `kube-changejob dev`'s CRD step on the fake API server: server-side apply, then Established.

mod support;

use std::time::Duration;

use kube_changejob::dev::{FIELD_MANAGER, apply_crd, wait_established};
use support::fake_api::{FakeApi, Verb};

#[tokio::test]
async fn dev_applies_the_crd_server_side_and_waits_until_it_is_served() {
    let fake = FakeApi::new();
    let client = fake.client();
    let crd = apply_crd(&client).await.unwrap_or_else(|e| panic!("{e}"));
    let name = crd.metadata.name.clone().unwrap_or_default();
    assert_eq!(name, "changetriggeredjobs.triggers.changejob.dev");
    let managers: Vec<String> = crd
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, [FIELD_MANAGER]);
    wait_established(&client, &name, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Running it again is a no-op apply, not an error.
    apply_crd(&client).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fake.count(Verb::Patch, "customresourcedefinitions"), 2);
}

#[tokio::test]
async fn a_user_who_may_not_write_crds_gets_a_clear_error() {
    let fake = FakeApi::new();
    fake.deny(
        Verb::Patch,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        None,
    );
    let err = apply_crd(&fake.client())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(
            "applying the CustomResourceDefinition changetriggeredjobs.triggers.changejob.dev:"
        ),
        "{err}"
    );
}
