//! Scenario 4: With condition All, a Job runs only once every watched object has changed since
//! the last Job: after one and after two of three changes nothing runs and the status says how
//! many changed; the third change runs exactly one Job naming all three; a further change to
//! one of them starts the count again.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;
use serde_json::json;

use crate::support::ctx::Ctx;
use crate::support::jobs::{JobTracker, annotation};
use crate::support::manifests::{ALL, CtjBuilder, config_map, deployment, secret, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::condition;
use crate::support::wait::{Poll, wait_for};
use crate::support::{Context, JOB_TIMEOUT, Outcome, POLL, QUIET, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 4,
    name: "all_of_three",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

const REVISION: &str = "deployment.kubernetes.io/revision";

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("coordinated");
    let cm = ctx.name("config");
    let secret_name = ctx.name("secret");
    let deploy = ctx.name("web");

    ctx.step("creating a ConfigMap, a Secret and a Deployment");
    ctx.create(&config_map(&ns, &cm, &[("v", "1")])).await?;
    ctx.create(&secret(&ns, &secret_name, &[("v", "1")]))
        .await?;
    ctx.create(&deployment(&ns, &deploy, "registry.k8s.io/pause:3.9", 1))
        .await?;
    settle_deployment(&ctx, &deploy).await?;

    ctx.step("creating a ChangeTriggeredJob with condition All, cooldown 0s");
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .watch(watch("v1", "Secret", &ns, &secret_name))
            .watch(watch("apps/v1", "Deployment", &ns, &deploy))
            .condition(ALL)
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("changing the ConfigMap (1 of 3)");
    ctx.set_config(&cm, "v", "2").await?;
    expect_waiting(&ctx, &mut jobs, &name, 1).await?;

    ctx.step("changing the Secret (2 of 3)");
    ctx.merge_patch::<Secret>(
        &secret_name,
        json!({ "data": { "v": ByteString(b"2".to_vec()) } }),
    )
    .await?;
    expect_waiting(&ctx, &mut jobs, &name, 2).await?;

    ctx.step("changing the Deployment (3 of 3)");
    let since = ctx
        .merge_patch::<Deployment>(
            &deploy,
            json!({ "metadata": { "labels": { "e2e.changejob.dev/step": "3" } } }),
        )
        .await?;
    let job = jobs
        .expect_new_job(since, "the last of three changes")
        .await?;
    let mut changed: Vec<&str> = annotation(&job, CHANGED_RESOURCES_ANNOTATION)
        .unwrap_or_default()
        .split(',')
        .collect();
    changed.sort_unstable();
    let mut expected = [
        format!("ConfigMap/{ns}/{cm}"),
        format!("Deployment/{ns}/{deploy}"),
        format!("Secret/{ns}/{secret_name}"),
    ];
    expected.sort();
    expect_eq(
        "objects named in changed-resources of the Job",
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        changed,
    )?;
    jobs.expect_no_new_job(Duration::from_secs(2), "the Job for all three")
        .await?;

    ctx.step("changing the ConfigMap again (1 of 3 after the Job)");
    ctx.set_config(&cm, "v", "3").await?;
    expect_waiting(&ctx, &mut jobs, &name, 1).await?;
    jobs.expect_no_new_job(QUIET, "one change after the Job")
        .await?;
    Ok(Verdict::Passed)
}

/// Progressing=False/WaitingForAllChanges says "<n> of 3", and no Job runs.
async fn expect_waiting(ctx: &Ctx, jobs: &mut JobTracker, name: &str, n: usize) -> Outcome {
    let counted = format!("{n} of 3");
    ctx.wait_ctj(
        name,
        &format!("Progressing=False/WaitingForAllChanges saying {counted:?}"),
        JOB_TIMEOUT,
        |c| {
            condition(c, "Progressing").is_some_and(|p| {
                p.status == "False"
                    && p.reason == "WaitingForAllChanges"
                    && p.message.contains(&counted)
            })
        },
    )
    .await?;
    jobs.expect_no_new_job(Duration::from_secs(2), &format!("{counted} changes"))
        .await
}

/// The Deployment controller stamps a revision annotation shortly after creation; with the
/// whole object watched, that would look like a change, so wait for it first. A cluster
/// without a controller manager never stamps it, and then nothing changes it either.
async fn settle_deployment(ctx: &Ctx, deploy: &str) -> Outcome {
    let api = ctx.api::<Deployment>();
    let stamped = wait_for(
        &format!("the {REVISION} annotation on Deployment {deploy}"),
        Duration::from_secs(15),
        POLL,
        || async {
            let d = api
                .get(deploy)
                .await
                .context(format!("reading Deployment {deploy}"))?;
            let revision = d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION).cloned());
            Ok(match revision {
                Some(r) => Poll::Ready(r),
                None => Poll::Pending("no revision annotation".into()),
            })
        },
    )
    .await;
    if stamped.is_err() {
        ctx.note("the Deployment controller did not stamp a revision within 15s (no controller manager?); continuing");
    }
    Ok(())
}
