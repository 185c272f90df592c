//! Scenario 12: A new value of the `changejob.dev/trigger` annotation runs the Job once,
//! ignoring the condition and the cooldown; the same value again runs nothing; another new
//! value runs it again. Such Jobs say they were manual.

use std::sync::Arc;

use kube_changejob::api::{
    ChangeTriggeredJob, MANUAL_TRIGGER_ANNOTATION, TRIGGER_REASON_ANNOTATION,
};
use serde_json::json;

use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::status;
use crate::support::{JOB_TIMEOUT, Outcome, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 12,
    name: "manual_trigger_annotation",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("on-demand");
    let cm = ctx.name("quiet");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with cooldown 1h");
    ctx.create(&config_map(&ns, &cm, &[("k", "v")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("1h")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("annotating changejob.dev/trigger=run-1");
    let since = annotate(&ctx, &name, "run-1", "1").await?;
    let job = jobs
        .expect_new_job(since, "trigger annotation run-1")
        .await?;
    expect_eq(
        &format!("annotation {TRIGGER_REASON_ANNOTATION} of the Job"),
        Some("manual"),
        annotation(&job, TRIGGER_REASON_ANNOTATION),
    )?;
    ctx.wait_ctj(&name, "lastManualTrigger run-1", JOB_TIMEOUT, |c| {
        status(c).last_manual_trigger.as_deref() == Some("run-1")
    })
    .await?;

    ctx.step("annotating run-1 again (with another annotation, so the object really changes)");
    annotate(&ctx, &name, "run-1", "2").await?;
    jobs.expect_no_new_job(QUIET, "repeating trigger value run-1")
        .await?;

    ctx.step("annotating changejob.dev/trigger=run-2 inside the 1h cooldown");
    let since = annotate(&ctx, &name, "run-2", "3").await?;
    let job = jobs
        .expect_new_job(since, "trigger annotation run-2")
        .await?;
    expect_eq(
        &format!("annotation {TRIGGER_REASON_ANNOTATION} of the Job"),
        Some("manual"),
        annotation(&job, TRIGGER_REASON_ANNOTATION),
    )?;
    ctx.wait_ctj(
        &name,
        "lastManualTrigger run-2 and triggerSequence 2",
        JOB_TIMEOUT,
        |c| {
            let st = status(c);
            st.last_manual_trigger.as_deref() == Some("run-2") && st.trigger_sequence == Some(2)
        },
    )
    .await?;
    jobs.expect_no_new_job(QUIET, "the run-2 Job").await?;
    Ok(Verdict::Passed)
}

/// Sets the trigger annotation and a counter annotation next to it.
async fn annotate(ctx: &Ctx, name: &str, value: &str, touch: &str) -> Outcome<std::time::Instant> {
    ctx.merge_patch::<ChangeTriggeredJob>(
        name,
        json!({ "metadata": { "annotations": {
            MANUAL_TRIGGER_ANNOTATION: value,
            "e2e.changejob.dev/touch": touch,
        } } }),
    )
    .await
}
