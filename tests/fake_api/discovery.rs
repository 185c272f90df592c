//! Discovery: legacy and aggregated documents, subresources, short names, 404s, counting,
//! runtime registration and CRD installation.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::{GroupVersion, GroupVersionKind};
use kube::discovery::{self, Discovery, Scope, verbs};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::helpers::{status_of, widget, widget_resource, widget_type};
use crate::support::fake_api::FakeApi;

#[tokio::test]
async fn full_discovery_resolves_builtin_and_changejob_kinds() {
    let fake = FakeApi::new();
    let discovery = Discovery::new(fake.client())
        .run()
        .await
        .expect("discovery");

    let (cm, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"))
        .expect("ConfigMap served");
    assert_eq!(cm.plural, "configmaps");
    assert_eq!(caps.scope, Scope::Namespaced);
    let (_, node_caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
        .expect("Node served");
    assert_eq!(node_caps.scope, Scope::Cluster);
    let (job, job_caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("batch", "v1", "Job"))
        .expect("Job served");
    assert_eq!(job.plural, "jobs");
    assert!(
        job_caps
            .subresources
            .iter()
            .any(|(ar, _)| ar.plural == "status")
    );
    for (group, version, kind) in [
        ("apps", "v1", "Deployment"),
        ("apps", "v1", "StatefulSet"),
        ("batch", "v1", "CronJob"),
        ("coordination.k8s.io", "v1", "Lease"),
        ("events.k8s.io", "v1", "Event"),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        ("authorization.k8s.io", "v1", "SubjectAccessReview"),
        ("authentication.k8s.io", "v1", "TokenReview"),
        ("triggers.changejob.dev", "v1alpha", "ChangeTriggeredJob"),
    ] {
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
                .is_some(),
            "{group}/{version} {kind} should be discoverable"
        );
    }
    let (_, sar) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
        ))
        .expect("SAR served");
    assert_eq!(sar.operations, vec!["create".to_string()]);
}

#[tokio::test]
async fn group_version_documents_list_subresources_verbs_and_short_names() {
    let fake = FakeApi::new();
    let client = fake.client();
    let batch = client
        .list_api_group_resources("batch/v1")
        .await
        .expect("batch/v1");
    let status = batch
        .resources
        .iter()
        .find(|r| r.name == "jobs/status")
        .expect("jobs/status listed");
    assert_eq!(status.verbs, vec!["get", "patch", "update"]);
    assert!(status.namespaced);

    let gv: GroupVersion = "triggers.changejob.dev/v1alpha"
        .parse()
        .expect("group version");
    let group = discovery::pinned_group(&client, &gv)
        .await
        .expect("pinned group");
    let (ar, caps) = group.recommended_kind("ChangeTriggeredJob").expect("CTJ");
    assert_eq!(ar.plural, "changetriggeredjobs");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.supports_operation(verbs::PATCH) && caps.supports_operation(verbs::WATCH));
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );

    let raw = client
        .list_api_group_resources("triggers.changejob.dev/v1alpha")
        .await
        .expect("ctj group");
    let ctj = raw
        .resources
        .iter()
        .find(|r| r.name == "changetriggeredjobs")
        .expect("ctj resource");
    assert_eq!(
        ctj.short_names.as_deref(),
        Some(&["ctj".to_string(), "ctjs".to_string()][..])
    );
    assert_eq!(ctj.singular_name, "changetriggeredjob");
    assert_eq!(ctj.kind, "ChangeTriggeredJob");

    let core = client.list_core_api_versions().await.expect("/api");
    assert_eq!(core.versions, vec!["v1".to_string()]);
    let groups = client.list_api_groups().await.expect("/apis");
    let apps = groups
        .groups
        .iter()
        .find(|g| g.name == "apps")
        .expect("apps group");
    assert_eq!(
        apps.preferred_version
            .as_ref()
            .map(|v| v.group_version.as_str()),
        Some("apps/v1")
    );
}

#[tokio::test]
async fn unknown_group_versions_and_resources_are_404() {
    let fake = FakeApi::new();
    let client = fake.client();
    let err = client
        .list_api_group_resources("nope.example.com/v1")
        .await
        .expect_err("unknown group");
    let status = status_of(err);
    assert_eq!(status.code, 404);
    assert_eq!(status.reason, "NotFound");
    assert_eq!(
        status.message,
        "the server could not find the requested resource"
    );
    let gv: GroupVersion = "apps/v2".parse().expect("gv");
    let Err(err) = discovery::pinned_group(&client, &gv).await else {
        panic!("apps/v2 is not served")
    };
    assert_eq!(status_of(err).code, 404);
    let widgets: Api<DynamicObject> = Api::default_namespaced_with(client, &widget_resource());
    let status = status_of(
        widgets
            .list(&Default::default())
            .await
            .expect_err("unregistered kind"),
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "the server could not find the requested resource")
    );
}

#[tokio::test]
async fn registered_kinds_are_discovered_and_served_until_unregistered() {
    let fake = FakeApi::new();
    let client = fake.client();
    fake.register(widget_type());
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (ar, caps) = discovery::pinned_kind(&client, &gvk)
        .await
        .expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);
    let widgets: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    widgets
        .create(&PostParams::default(), &widget("w1", json!({"size": 1})))
        .await
        .expect("create widget");
    assert_eq!(
        widgets.get("w1").await.expect("get widget").data["spec"]["size"],
        1
    );

    assert!(fake.unregister("example.com", "v1", "widgets"));
    let Err(err) = discovery::pinned_kind(&client, &gvk).await else {
        panic!("Widget is gone")
    };
    assert_eq!(status_of(err).code, 404);
    assert_eq!(
        status_of(widgets.get("w1").await.expect_err("gone")).code,
        404
    );
}

#[tokio::test]
async fn discovery_requests_are_counted_so_tests_can_check_caching() {
    let fake = FakeApi::new();
    let client = fake.client();
    assert_eq!(fake.discovery_count(), 0);
    let gvk = GroupVersionKind::gvk("batch", "v1", "Job");
    discovery::pinned_kind(&client, &gvk)
        .await
        .expect("pinned kind");
    assert_eq!(fake.discovery_count(), 1);
    fake.clear_requests();
    Discovery::new(client).run().await.expect("full discovery");
    let group_versions = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/apis/"))
        .count();
    assert!(
        group_versions >= 10,
        "one request per group version, got {group_versions}"
    );
    // `/apis`, every group version, `/api`, `/api/v1`
    assert_eq!(fake.discovery_count(), group_versions + 3);
}

#[tokio::test]
async fn aggregated_discovery_serves_everything_in_two_requests() {
    let fake = FakeApi::new();
    let discovery = Discovery::new(fake.client())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    assert_eq!(fake.discovery_count(), 2);
    let (_, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("batch", "v1", "Job"))
        .expect("Job");
    assert!(
        caps.subresources
            .iter()
            .any(|(ar, _)| ar.plural == "status")
    );
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "triggers.changejob.dev",
            "v1alpha",
            "ChangeTriggeredJob",
        ))
        .expect("CTJ");
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("changetriggeredjobs", Scope::Namespaced)
    );
    let (_, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .expect("Namespace");
    assert_eq!(caps.scope, Scope::Cluster);
}

/// A kind defined by a CRD the test installs through the API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Gadget",
    plural = "gadgets",
    namespaced,
    status = "GadgetStatus"
)]
pub struct GadgetSpec {
    pub size: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct GadgetStatus {
    pub ready: bool,
}

#[tokio::test]
async fn creating_a_crd_serves_its_kind_and_deleting_it_removes_its_objects() {
    let fake = FakeApi::new();
    let client = fake.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Gadget::crd())
        .await
        .expect("create CRD");

    let stored = crds.get("gadgets.example.com").await.expect("CRD stored");
    let conditions = stored.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let gadgets: Api<Gadget> = Api::default_namespaced(client.clone());
    gadgets
        .create(
            &PostParams::default(),
            &Gadget::new("g1", GadgetSpec { size: 3 }),
        )
        .await
        .expect("create gadget");
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Gadget");
    let (_, caps) = discovery::pinned_kind(&client, &gvk)
        .await
        .expect("Gadget discovered");
    assert!(
        caps.subresources
            .iter()
            .any(|(ar, _)| ar.plural == "status")
    );

    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    assert_eq!(
        status_of(gadgets.get("g1").await.expect_err("kind gone")).code,
        404
    );
    assert!(fake.list_json("example.com/v1", "gadgets", None).is_empty());
}

#[tokio::test]
async fn crd_names_must_be_plural_dot_group() {
    let fake = FakeApi::new();
    let crds: Api<CustomResourceDefinition> = Api::all(fake.client());
    let mut crd = Gadget::crd();
    crd.metadata.name = Some("gadget.example.com".into());
    let status = status_of(
        crds.create(&PostParams::default(), &crd)
            .await
            .expect_err("bad name"),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .contains("must be spec.names.plural+\".\"+spec.group"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn install_crd_serves_a_kube_derive_kind() {
    let fake = FakeApi::new();
    let stored = fake.install_crd(&Gadget::crd());
    assert_eq!(stored["metadata"]["name"], "gadgets.example.com");
    let gadgets: Api<Gadget> = Api::default_namespaced(fake.client());
    let created = gadgets
        .create(
            &PostParams::default(),
            &Gadget::new("g", GadgetSpec { size: 1 }),
        )
        .await;
    assert_eq!(created.expect("served").spec.size, 1);
    let crd = fake.get_json(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        None,
        "gadgets.example.com",
    );
    let conditions = crd.expect("CRD stored")["status"]["conditions"].clone();
    assert!(
        conditions
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Established"))
    );
}

#[tokio::test]
async fn the_product_crd_installs_over_the_builtin_changejob_kind() {
    let fake = FakeApi::new();
    fake.install_crd(&kube_changejob::api::crd());
    let crds: Api<CustomResourceDefinition> = Api::all(fake.client());
    let crd = crds
        .get("changetriggeredjobs.triggers.changejob.dev")
        .await
        .expect("the CRD is stored");
    assert_eq!(
        crd.spec.names.short_names,
        Some(vec!["ctj".to_string(), "ctjs".to_string()])
    );
    let gvk = GroupVersionKind::gvk("triggers.changejob.dev", "v1alpha", "ChangeTriggeredJob");
    let (_, caps) = discovery::pinned_kind(&fake.client(), &gvk)
        .await
        .expect("still served");
    assert!(
        caps.subresources
            .iter()
            .any(|(ar, _)| ar.plural == "status")
    );
}
