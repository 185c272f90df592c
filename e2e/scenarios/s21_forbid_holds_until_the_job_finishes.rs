//! Scenario 21: `concurrencyPolicy: Forbid`. A change while the Job of an earlier change runs is
//! held (Progressing=True/WaitingForActiveJob, an Event WaitingForActiveJob), however many
//! changes come meanwhile no second Job appears while the first runs, and exactly one new Job
//! appears when the real Job controller finishes the first one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube_changejob::api::{ConcurrencyPolicy, JobState};
use kube_changejob::detect::job_state::job_state;

use crate::support::ctx::Ctx;
use crate::support::env::LatencyKind;
use crate::support::jobs::names;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{has_condition, is_pending, status};
use crate::support::wait::{Poll, wait_for};
use crate::support::{Context, JOB_TIMEOUT, Outcome, POLL, QUIET};
use crate::{ensure, fail};

pub const SCENARIO: Scenario = Scenario {
    number: 21,
    name: "forbid_holds_until_the_job_finishes",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

/// How long the Job's Pod sleeps: long enough to make changes while it runs.
const RUNS_FOR: u32 = 20;
/// Most the first Job may take to finish: its run, plus image pull and Pod start on a busy
/// cluster.
const FINISH_TIMEOUT: Duration = Duration::from_secs(180);

/// When a Job finished, from the earliest terminal condition (1.31+ writes SuccessCriteriaMet
/// or FailureTarget before Complete or Failed), in whole seconds.
fn finished_at(job: &Job) -> Option<i64> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .filter(|c| c.status == "True")
        .filter(|c| {
            matches!(
                c.type_.as_str(),
                "Complete" | "SuccessCriteriaMet" | "Failed" | "FailureTarget"
            )
        })
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0.as_second()))
        .min()
}

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("one-at-a-time");
    let cm = ctx.name("catalog");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with concurrencyPolicy Forbid");
    ctx.create(&config_map(&ns, &cm, &[("n", "0")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("0s")
            .concurrency(ConcurrencyPolicy::Forbid)
            .job_runs_for(RUNS_FOR)
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("first change: runs a Job at once");
    let since = ctx.set_config(&cm, "n", "1").await?;
    let first = jobs.expect_new_job(since, "the first change").await?;
    let first_name = first.name_any();

    ctx.step("three more changes while the first Job runs");
    for n in ["2", "3", "4"] {
        ctx.set_config(&cm, "n", n).await?;
        ctx.sleep(Duration::from_millis(500), "between changes")
            .await;
    }

    ctx.step("checking the trigger is held: Progressing=True/WaitingForActiveJob");
    let held = ctx
        .wait_ctj(
            &name,
            "Progressing=True/WaitingForActiveJob",
            JOB_TIMEOUT,
            |c| has_condition(c, "Progressing", "True", "WaitingForActiveJob"),
        )
        .await?;
    ensure!(
        status(&held).resource_hashes.iter().any(is_pending),
        "the held change must stay pending in status.resourceHashes"
    );

    ctx.step("checking the WaitingForActiveJob event names the running Job");
    wait_for(
        &format!("an Event WaitingForActiveJob about {name}"),
        JOB_TIMEOUT,
        POLL,
        || async {
            let events = ctx.events(&ns, &name, "WaitingForActiveJob").await?;
            Ok(
                match events
                    .iter()
                    .find(|e| e.note.as_deref().unwrap_or("").contains(&first_name))
                {
                    Some(_) => Poll::Ready(()),
                    None => Poll::Pending(format!("{} such event(s)", events.len())),
                },
            )
        },
    )
    .await?;

    ctx.step("waiting for the first Job to finish; no other Job may start meanwhile");
    let api = ctx.api::<Job>();
    let done = wait_for(
        &format!("Job {first_name} to finish"),
        FINISH_TIMEOUT,
        POLL,
        || async {
            let current = jobs.current().await?;
            let others: Vec<String> = names(&current)
                .into_iter()
                .filter(|n| n != &first_name)
                .collect();
            let job = api
                .get(&first_name)
                .await
                .context(format!("reading Job {first_name}"))?;
            let state = job_state(&job);
            if state == JobState::Active && !others.is_empty() {
                return Err(crate::support::Failure::new(format!(
                    "Job(s) {others:?} started while {first_name} still runs"
                )));
            }
            Ok(if state == JobState::Active {
                Poll::Pending(format!("{first_name} is still running"))
            } else {
                Poll::Ready(job)
            })
        },
    )
    .await?;
    let finished_seen = Instant::now();

    ctx.step("checking exactly one Job follows for all the held changes");
    let second = jobs
        .expect_new_job_within(
            finished_seen,
            JOB_TIMEOUT,
            LatencyKind::Deferred,
            "the first Job finished",
        )
        .await?;
    if let (Some(finished), Some(created)) = (finished_at(&done), second.creation_timestamp()) {
        ensure!(
            created.0.as_second() >= finished,
            "Job {} was created at {} before {first_name} finished ({finished})",
            second.name_any(),
            created.0
        );
    }
    jobs.expect_no_new_job(QUIET, "the held trigger fired")
        .await?;
    let after = ctx.ctj(&name).await?;
    if status(&after).resource_hashes.iter().any(is_pending) {
        fail!("no change should be pending once the held trigger fired");
    }
    Ok(Verdict::Passed)
}
