//! Scenario 10: A watched object need not exist: it is recorded as absent and runs nothing;
//! creating it is a change that runs a Job, and deleting it is another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;

use crate::ensure;
use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{status, summary};
use crate::support::{JOB_TIMEOUT, Outcome, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 10,
    name: "missing_object_then_created_then_deleted",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("awaits-config");
    let cm = ctx.name("later");
    let changed = format!("ConfigMap/{ns}/{cm}");

    ctx.step("creating a ChangeTriggeredJob watching a ConfigMap that does not exist");
    let observed = ctx
        .create_observed(
            &CtjBuilder::new(&ns, &name)
                .watch(watch("v1", "ConfigMap", &ns, &cm))
                .cooldown("0s")
                .build(),
        )
        .await?;
    let entry = status(&observed).resource_hashes.into_iter().next();
    ensure!(
        entry.as_ref().is_some_and(|e| !e.exists),
        "a missing ConfigMap must be recorded with exists: false: {}",
        summary(&observed)
    );
    let mut jobs = ctx.jobs(&name);
    jobs.expect_no_new_job(Duration::from_secs(3), "watching a missing object")
        .await?;

    ctx.step("creating the ConfigMap");
    let since = Instant::now();
    ctx.create(&config_map(&ns, &cm, &[("ready", "yes")]))
        .await?;
    let job = jobs.expect_new_job(since, "creating the object").await?;
    expect_eq(
        "changed-resources of the Job",
        Some(changed.as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    ctx.wait_ctj(
        &name,
        "the ConfigMap recorded as existing",
        JOB_TIMEOUT,
        |c| status(c).resource_hashes.iter().all(|e| e.exists),
    )
    .await?;

    ctx.step("deleting the ConfigMap");
    let since = ctx.delete::<ConfigMap>(&cm).await?;
    let job = jobs.expect_new_job(since, "deleting the object").await?;
    expect_eq(
        "changed-resources of the Job",
        Some(changed.as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    ctx.wait_ctj(
        &name,
        "the ConfigMap recorded as absent",
        JOB_TIMEOUT,
        |c| status(c).resource_hashes.iter().all(|e| !e.exists),
    )
    .await?;
    jobs.expect_no_new_job(QUIET, "the deletion").await?;
    Ok(Verdict::Passed)
}
