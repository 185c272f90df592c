//! Scenario 14: A watched kind the cluster does not serve (a wrong-case `configmap`, or a
//! made-up kind in a made-up group) makes the ChangeTriggeredJob Degraded=True/KindNotFound and
//! Ready=False, with a message naming the `spec.resources[i]` entry; it runs nothing, and the
//! operator keeps serving every other ChangeTriggeredJob.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube_changejob::api::ChangeTriggeredJob;

use crate::ensure;
use crate::support::ctx::Ctx;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{condition, has_condition};
use crate::support::{Context, JOB_TIMEOUT, Outcome, QUIET};

pub const SCENARIO: Scenario = Scenario {
    number: 14,
    name: "unknown_kind_is_degraded",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let lowercase = ctx.name("lowercase-kind");
    let made_up = ctx.name("made-up-kind");
    let healthy = ctx.name("healthy");
    let cm = ctx.name("real");

    ctx.step("creating ChangeTriggeredJobs with a wrong-case kind and with a made-up kind");
    ctx.create(&config_map(&ns, &cm, &[("k", "1")])).await?;
    let wrong_case = CtjBuilder::new(&ns, &lowercase)
        .watch(watch("v1", "configmap", &ns, &cm))
        .cooldown("0s")
        .build();
    let unknown = CtjBuilder::new(&ns, &made_up)
        .watch(watch("v1", "ConfigMap", &ns, &cm))
        .watch(watch("e2e.changejob.dev/v1", "Gadget", &ns, "anything"))
        .cooldown("0s")
        .build();
    let lowercase_admitted = create_or_rejected(&ctx, &wrong_case, "configmap").await?;
    let made_up_admitted = create_or_rejected(&ctx, &unknown, "Gadget").await?;

    ctx.step("creating a healthy ChangeTriggeredJob next to them");
    ctx.create_observed(
        &CtjBuilder::new(&ns, &healthy)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("0s")
            .build(),
    )
    .await?;

    if lowercase_admitted {
        ctx.step("checking the wrong-case kind is reported");
        let degraded = expect_kind_not_found(&ctx, &lowercase, "spec.resources[0]").await?;
        if !degraded.contains("ConfigMap") {
            ctx.note(&format!(
                "the KindNotFound message does not suggest the right spelling ConfigMap: {degraded:?}"
            ));
        }
    }
    if made_up_admitted {
        ctx.step("checking the made-up kind is reported");
        expect_kind_not_found(&ctx, &made_up, "spec.resources[1]").await?;
    }

    ctx.step("changing the ConfigMap all three watch");
    let mut healthy_jobs = ctx.jobs(&healthy);
    let mut lowercase_jobs = ctx.jobs(&lowercase);
    let since = ctx.set_config(&cm, "k", "2").await?;
    healthy_jobs
        .expect_new_job(
            since,
            "a change watched by a healthy and two degraded ChangeTriggeredJobs",
        )
        .await?;
    lowercase_jobs
        .expect_no_new_job(
            QUIET,
            "a change to an object the wrong-case entry cannot watch",
        )
        .await?;
    ctx.env.operators.check_running().await?;
    Ok(Verdict::Passed)
}

/// Creates the object; when an installed admission webhook rejects it instead, checks the
/// rejection names the kind and returns false.
async fn create_or_rejected(ctx: &Ctx, ctj: &ChangeTriggeredJob, kind: &str) -> Outcome<bool> {
    let name = ctj.name_any();
    ctx.track_ctj(ctx.ns(), &name);
    let api: Api<ChangeTriggeredJob> = ctx.api();
    match api.create(&PostParams::default(), ctj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.message.contains("admission webhook") => {
            ensure!(
                status.message.contains(kind),
                "the admission webhook rejected {name} without naming kind {kind}: {}",
                status.message
            );
            ctx.note(&format!(
                "{name} was rejected at admission (an installed webhook is active): {}",
                status.message
            ));
            Ok(false)
        }
        Err(e) => Err(e).context(format!("creating ChangeTriggeredJob {name}")),
    }
}

/// Waits for Degraded=True/KindNotFound naming `entry`, Ready=False; returns the message.
async fn expect_kind_not_found(ctx: &Ctx, name: &str, entry: &str) -> Outcome<String> {
    let ctj = ctx
        .wait_ctj(
            name,
            &format!("Degraded=True/KindNotFound naming {entry}, Ready=False"),
            JOB_TIMEOUT,
            |c| {
                has_condition(c, "Degraded", "True", "KindNotFound")
                    && condition(c, "Degraded").is_some_and(|d| d.message.contains(entry))
                    && condition(c, "Ready").is_some_and(|r| r.status == "False")
            },
        )
        .await?;
    Ok(condition(&ctj, "Degraded")
        .map(|d| d.message.clone())
        .unwrap_or_default())
}
