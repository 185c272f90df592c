//! Scenario 19: An object that leaves a selector entry's set — relabelled so it no longer
//! matches — is a change of the entry: exactly one Job runs, naming that object, and the set
//! has one member less.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;
use serde_json::json;

use crate::ensure;
use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, labelled_config_map, watch_selected};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{status, summary};
use crate::support::{JOB_TIMEOUT, Outcome, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 19,
    name: "selector_member_relabelled_out_runs_one_job",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("shop-sync");
    let app = ctx.name("shop");
    let stays = ctx.name("stays");
    let leaves = ctx.name("leaves");

    ctx.step(
        "creating two matching ConfigMaps and a ChangeTriggeredJob selecting them (fields: data)",
    );
    for cm in [&stays, &leaves] {
        ctx.create(&labelled_config_map(
            &ns,
            cm,
            &[("app", &app)],
            &[("k", "v")],
        ))
        .await?;
    }
    let mut reference = watch_selected("v1", "ConfigMap", &ns, &[("app", &app)]);
    reference.fields = Some(vec!["data".into()]);
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(reference)
            .cooldown("0s")
            .build(),
    )
    .await?;
    let observed = ctx
        .wait_ctj(&name, "two members in status", JOB_TIMEOUT, |c| {
            status(c).resource_hashes.first().and_then(|e| e.members) == Some(2)
        })
        .await?;
    ensure!(
        status(&observed).last_job_name.is_none(),
        "no Job may run before any change: {}",
        summary(&observed)
    );
    let mut jobs = ctx.jobs(&name);

    ctx.step("relabelling one member so it no longer matches");
    let since = ctx
        .merge_patch::<ConfigMap>(
            &leaves,
            json!({"metadata": {"labels": {"app": "elsewhere"}}}),
        )
        .await?;
    let job = jobs
        .expect_new_job(since, "a member relabelled out of the selector")
        .await?;
    expect_eq(
        &format!("annotation {CHANGED_RESOURCES_ANNOTATION} of the Job"),
        Some(format!("ConfigMap/{ns}/{leaves}").as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    ctx.wait_ctj(&name, "one member left in status", JOB_TIMEOUT, |c| {
        status(c).resource_hashes.first().and_then(|e| e.members) == Some(1)
    })
    .await?;

    ctx.step("checking that one departure ran one Job, and that the object is no longer watched");
    jobs.expect_no_new_job(Duration::from_secs(3), "the departure's Job")
        .await?;
    ctx.set_config(&leaves, "k", "changed").await?;
    jobs.expect_no_new_job(
        Duration::from_secs(5),
        "a change to the object that left the set",
    )
    .await?;
    Ok(Verdict::Passed)
}
