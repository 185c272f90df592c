//! Scenario 13: A suspended ChangeTriggeredJob runs nothing (Ready=True/Suspended) but keeps
//! the changes it sees pending; setting `suspend: false` runs one Job for them.

use std::sync::Arc;

use kube_changejob::api::{CHANGED_RESOURCES_ANNOTATION, ChangeTriggeredJob};
use serde_json::json;

use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{has_condition, is_pending, status};
use crate::support::{JOB_TIMEOUT, Outcome, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 13,
    name: "suspend_keeps_changes_until_resume",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("paused");
    let cm = ctx.name("settings");

    ctx.step("creating a ConfigMap and a suspended ChangeTriggeredJob");
    ctx.create(&config_map(&ns, &cm, &[("k", "1")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .suspend(true)
            .build(),
    )
    .await?;
    ctx.wait_ctj(&name, "Ready=True/Suspended", JOB_TIMEOUT, |c| {
        has_condition(c, "Ready", "True", "Suspended")
    })
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("changing the ConfigMap while suspended");
    ctx.set_config(&cm, "k", "2").await?;
    ctx.wait_ctj(
        &name,
        "the change kept pending, Progressing=False/Suspended",
        JOB_TIMEOUT,
        |c| {
            status(c).resource_hashes.iter().any(is_pending)
                && has_condition(c, "Progressing", "False", "Suspended")
        },
    )
    .await?;
    jobs.expect_no_new_job(QUIET, "a change while suspended")
        .await?;

    ctx.step("resuming");
    let since = ctx
        .merge_patch::<ChangeTriggeredJob>(&name, json!({ "spec": { "suspend": false } }))
        .await?;
    let job = jobs.expect_new_job(since, "resuming").await?;
    expect_eq(
        "changed-resources of the Job",
        Some(format!("ConfigMap/{ns}/{cm}").as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    ctx.wait_ctj(&name, "Ready=True/Reconciled", JOB_TIMEOUT, |c| {
        has_condition(c, "Ready", "True", "Reconciled")
    })
    .await?;
    jobs.expect_no_new_job(QUIET, "the Job after resuming")
        .await?;
    Ok(Verdict::Passed)
}
