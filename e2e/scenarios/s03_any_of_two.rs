//! Scenario 3: With condition Any and no cooldown, a change to any one of the watched objects
//! runs a Job: changing a ConfigMap and then a Secret runs two Jobs, each naming the object
//! that changed.

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;
use serde_json::json;

use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{ANY, CtjBuilder, config_map, secret, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::status;
use crate::support::{JOB_TIMEOUT, Outcome, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 3,
    name: "any_of_two",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("sync");
    let cm = ctx.name("app-config");
    let secret_name = ctx.name("app-secret");

    ctx.step(
        "creating a ConfigMap, a Secret and a ChangeTriggeredJob with condition Any, cooldown 0s",
    );
    ctx.create(&config_map(&ns, &cm, &[("level", "1")])).await?;
    ctx.create(&secret(&ns, &secret_name, &[("token", "a")]))
        .await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .watch(watch("v1", "Secret", &ns, &secret_name))
            .condition(ANY)
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("changing the ConfigMap");
    let since = ctx.set_config(&cm, "level", "2").await?;
    let first = jobs.expect_new_job(since, "a ConfigMap change").await?;
    expect_eq(
        "changed-resources of the first Job",
        Some(format!("ConfigMap/{ns}/{cm}").as_str()),
        annotation(&first, CHANGED_RESOURCES_ANNOTATION),
    )?;

    ctx.step("changing the Secret");
    let since = ctx
        .merge_patch::<Secret>(
            &secret_name,
            json!({ "data": { "token": ByteString(b"b".to_vec()) } }),
        )
        .await?;
    let second = jobs.expect_new_job(since, "a Secret change").await?;
    expect_eq(
        "changed-resources of the second Job",
        Some(format!("Secret/{ns}/{secret_name}").as_str()),
        annotation(&second, CHANGED_RESOURCES_ANNOTATION),
    )?;

    ctx.step("checking that two changes ran two Jobs");
    jobs.expect_no_new_job(QUIET, "the second Job").await?;
    ctx.wait_ctj(&name, "triggerSequence 2", JOB_TIMEOUT, |c| {
        status(c).trigger_sequence == Some(2)
    })
    .await?;
    Ok(Verdict::Passed)
}
