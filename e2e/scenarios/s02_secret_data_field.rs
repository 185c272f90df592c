//! Scenario 2: With `fields: ["data"]` only the Secret's data counts: labelling the Secret
//! changes nothing and runs no Job; changing a data entry runs one.

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;
use serde_json::json;

use crate::ensure;
use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, secret, watch, with_fields};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{is_pending, status, summary};
use crate::support::{Outcome, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 2,
    name: "secret_data_field",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("rotate");
    let secret_name = ctx.name("credentials");

    ctx.step("creating the Secret and a ChangeTriggeredJob watching only its data");
    ctx.create(&secret(&ns, &secret_name, &[("password", "first")]))
        .await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(with_fields(
                watch("v1", "Secret", &ns, &secret_name),
                &["data"],
            ))
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("labelling the Secret");
    ctx.merge_patch::<Secret>(
        &secret_name,
        json!({ "metadata": { "labels": { "e2e.changejob.dev/touched": "yes" } } }),
    )
    .await?;
    jobs.expect_no_new_job(QUIET, "labelling the Secret (data unchanged)")
        .await?;
    let ctj = ctx.ctj(&name).await?;
    ensure!(
        !status(&ctj).resource_hashes.iter().any(is_pending),
        "a label is outside fields [\"data\"], so the Secret must not be pending: {}",
        summary(&ctj)
    );

    ctx.step("changing the Secret's data");
    let since = ctx
        .merge_patch::<Secret>(
            &secret_name,
            json!({ "data": { "password": ByteString(b"second".to_vec()) } }),
        )
        .await?;
    let job = jobs.expect_new_job(since, "a Secret data change").await?;
    expect_eq(
        "changed-resources of the Job",
        Some(format!("Secret/{ns}/{secret_name}").as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    jobs.expect_no_new_job(QUIET, "the Job for the data change")
        .await?;
    Ok(Verdict::Passed)
}
