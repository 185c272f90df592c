//! Scenario 5: Watching `spec.template.spec.containers[*].image` of a Deployment, scaling it is
//! not a change and runs nothing; changing the image runs one Job.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::ensure;
use crate::support::ctx::Ctx;
use crate::support::manifests::{CtjBuilder, deployment, watch, with_fields};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{is_pending, status, summary};
use crate::support::{Context, Outcome, QUIET};

pub const SCENARIO: Scenario = Scenario {
    number: 5,
    name: "deployment_image_field",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("image-watcher");
    let deploy = ctx.name("web-app");

    ctx.step("creating a Deployment and a ChangeTriggeredJob watching its container images");
    ctx.create(&deployment(&ns, &deploy, "registry.k8s.io/pause:3.9", 1))
        .await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(with_fields(
                watch("apps/v1", "Deployment", &ns, &deploy),
                &["spec.template.spec.containers[*].image"],
            ))
            .cooldown("30s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("scaling the Deployment to 2 replicas");
    ctx.merge_patch::<Deployment>(&deploy, json!({ "spec": { "replicas": 2 } }))
        .await?;
    jobs.expect_no_new_job(QUIET, "scaling the Deployment (image unchanged)")
        .await?;
    let ctj = ctx.ctj(&name).await?;
    ensure!(
        !status(&ctj).resource_hashes.iter().any(is_pending),
        "replicas are outside the watched image field, so the Deployment must not be pending: {}",
        summary(&ctj)
    );

    ctx.step("changing the container image");
    // A strategic merge patch matches the container by name and changes only its image.
    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "app", "image": "registry.k8s.io/pause:3.10" }
    ] } } } });
    let since = Instant::now();
    ctx.api::<Deployment>()
        .patch(&deploy, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .context(format!("changing the image of Deployment {deploy}"))?;
    jobs.expect_new_job(since, "an image change").await?;
    jobs.expect_no_new_job(QUIET, "the Job for the image change")
        .await?;
    Ok(Verdict::Passed)
}
