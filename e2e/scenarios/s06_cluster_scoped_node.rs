//! Scenario 6: Cluster-scoped objects are watched like namespaced ones: with a Node's label
//! selected by `fields`, adding the label runs a Job and removing it runs another (a field that
//! appears or disappears is a change); the Node's own status heartbeats are not changes.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;
use serde_json::{Value, json};

use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, watch_cluster, with_fields};
use crate::support::runner::{Scenario, Verdict};
use crate::support::{Context, Outcome, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 6,
    name: "cluster_scoped_node",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("node-watcher");
    let nodes: Api<Node> = Api::all(ctx.client());

    ctx.step("finding a Node the test user may label");
    let Some(node) = nodes
        .list(&ListParams::default().limit(1))
        .await
        .context("listing Nodes")?
        .items
        .into_iter()
        .next()
    else {
        return Ok(Verdict::Skipped("the cluster has no Node".into()));
    };
    let node = node.name_any();
    if !may_patch_nodes(&ctx).await? {
        return Ok(Verdict::Skipped("the test user may not patch Nodes".into()));
    }
    // A label per run, so concurrent runs on one cluster do not see each other's changes.
    let key = format!("e2e.changejob.dev/{ns}");
    ctx.env.cleanup.node_label(&node, &key);

    ctx.step(&format!(
        "creating a ChangeTriggeredJob watching label {key} of Node {node}"
    ));
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(with_fields(
                watch_cluster("v1", "Node", &node),
                &[&format!("metadata.labels['{key}']")],
            ))
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);
    let changed = format!("Node/{node}");

    ctx.step("adding the label to the Node");
    let since = label_node(&nodes, &node, &key, json!("present")).await?;
    let job = jobs.expect_new_job(since, "a Node label appearing").await?;
    expect_eq(
        "changed-resources of the Job",
        Some(changed.as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;

    ctx.step("removing the label from the Node");
    let since = label_node(&nodes, &node, &key, Value::Null).await?;
    let job = jobs
        .expect_new_job(since, "a Node label disappearing")
        .await?;
    expect_eq(
        "changed-resources of the Job",
        Some(changed.as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    jobs.expect_no_new_job(QUIET, "removing the label").await?;
    Ok(Verdict::Passed)
}

/// Sets (or with `null` removes) one label; returns the instant before the request.
async fn label_node(
    nodes: &Api<Node>,
    node: &str,
    key: &str,
    value: Value,
) -> Outcome<std::time::Instant> {
    let started = std::time::Instant::now();
    let patch = json!({ "metadata": { "labels": { key: value } } });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context(format!("patching Node {node} with {patch}"))?;
    Ok(started)
}

async fn may_patch_nodes(ctx: &Ctx) -> Outcome<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("patch".into()),
                resource: Some("nodes".into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(ctx.client())
        .create(&PostParams::default(), &review)
        .await
        .context("asking whether the test user may patch Nodes")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
