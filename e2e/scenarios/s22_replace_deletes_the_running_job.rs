//! Scenario 22: `concurrencyPolicy: Replace`. A change while the Job of an earlier change runs
//! deletes that Job (with background propagation, so its Pods go too; an Event JobReplaced
//! names it) and creates a new Job, which runs.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube_changejob::api::{ConcurrencyPolicy, JobState};
use kube_changejob::detect::job_state::job_state;

use crate::support::ctx::Ctx;
use crate::support::jobs::{job_pods, names, pod_job_name};
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::wait::{Poll, wait_for};
use crate::support::{Context, JOB_TIMEOUT, Outcome, POLL, QUIET};

pub const SCENARIO: Scenario = Scenario {
    number: 22,
    name: "replace_deletes_the_running_job",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

/// The Job's Pod sleeps far longer than the scenario, so only a replacement ends it.
const RUNS_FOR: u32 = 600;
/// Most a Job may take to get a running Pod (image pull, scheduling on a busy cluster).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Most the replaced Job's Pods may take to be garbage-collected.
const POD_GONE_TIMEOUT: Duration = Duration::from_secs(90);

/// Waits until the Job has a running Pod (`status.active`), and fails if it finished.
async fn wait_running(ctx: &Ctx, name: &str) -> Outcome<Job> {
    let api = ctx.api::<Job>();
    wait_for(
        &format!("Job {name} to run a Pod"),
        START_TIMEOUT,
        POLL,
        || async {
            let job = api.get(name).await.context(format!("reading Job {name}"))?;
            if job_state(&job) != JobState::Active {
                return Err(crate::support::Failure::new(format!(
                    "Job {name} finished although its Pod sleeps {RUNS_FOR}s"
                )));
            }
            let active = job.status.as_ref().and_then(|s| s.active).unwrap_or(0);
            Ok(if active > 0 {
                Poll::Ready(job)
            } else {
                Poll::Pending("no active Pod yet".into())
            })
        },
    )
    .await
}

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("latest-wins");
    let cm = ctx.name("release");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with concurrencyPolicy Replace");
    ctx.create(&config_map(&ns, &cm, &[("v", "0")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("0s")
            .concurrency(ConcurrencyPolicy::Replace)
            .job_runs_for(RUNS_FOR)
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("first change: runs a Job, which keeps running");
    let since = ctx.set_config(&cm, "v", "1").await?;
    let first = jobs.expect_new_job(since, "the first change").await?;
    let first_name = first.name_any();
    wait_running(&ctx, &first_name).await?;

    ctx.step("second change while it runs: the Job is replaced");
    let since = ctx.set_config(&cm, "v", "2").await?;
    let second = jobs.expect_new_job(since, "the second change").await?;
    let second_name = second.name_any();

    ctx.step("checking the first Job is gone and only the new one is left");
    let api = ctx.api::<Job>();
    wait_for(
        &format!("Job {first_name} to be deleted"),
        JOB_TIMEOUT,
        POLL,
        || async {
            let gone = match api.get_opt(&first_name).await {
                Ok(None) => true,
                Ok(Some(job)) => job.metadata.deletion_timestamp.is_some(),
                Err(e) => {
                    return Err(crate::support::Failure::new(format!(
                        "reading Job {first_name}: {e}"
                    )));
                }
            };
            Ok(if gone {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{first_name} still exists"))
            })
        },
    )
    .await?;
    let left = jobs.current().await?;
    let running: Vec<String> = left
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    crate::ensure!(
        running == vec![second_name.clone()],
        "only {second_name} should be left, found {:?}",
        names(&left)
    );

    ctx.step("checking the new Job runs");
    wait_running(&ctx, &second_name).await?;

    ctx.step("checking the JobReplaced event names the replaced Job");
    wait_for(
        &format!("an Event JobReplaced about {name}"),
        JOB_TIMEOUT,
        POLL,
        || async {
            let events = ctx.events(&ns, &name, "JobReplaced").await?;
            Ok(
                if events
                    .iter()
                    .any(|e| e.note.as_deref().unwrap_or("").contains(&first_name))
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{} such event(s)", events.len()))
                },
            )
        },
    )
    .await?;

    ctx.step("checking the replaced Job's Pods are deleted too (background propagation)");
    let client = ctx.client();
    wait_for(
        &format!("the Pods of {first_name} to go"),
        POD_GONE_TIMEOUT,
        POLL,
        || async {
            let pods = job_pods(client.clone(), &ns).await?;
            let left: Vec<String> = pods
                .iter()
                .filter(|p| pod_job_name(p).as_deref() == Some(first_name.as_str()))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(ResourceExt::name_any)
                .collect();
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("Pods {left:?} remain"))
            })
        },
    )
    .await?;
    jobs.expect_no_new_job(QUIET, "the replacement").await?;
    Ok(Verdict::Passed)
}
