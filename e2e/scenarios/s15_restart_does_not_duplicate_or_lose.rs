//! Scenario 15: An operator crash neither loses nor repeats a trigger: a change made while the
//! operator is down runs exactly one Job after it restarts, and a crash right after a change
//! (possibly between creating the Job and recording it) still ends with exactly one Job for it
//! — the Jobs are exactly those named for trigger sequence 1, 2, 3.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube_changejob::detect::job::job_name;

use crate::support::ctx::Ctx;
use crate::support::env::{LatencyKind, PRIMARY};
use crate::support::jobs::names;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{status, summary};
use crate::support::wait::{Poll, wait_for};
use crate::support::{Failure, JOB_TIMEOUT, Outcome, POLL, QUIET, expect_eq, secs};

pub const SCENARIO: Scenario = Scenario {
    number: 15,
    name: "restart_does_not_duplicate_or_lose",
    exclusive: true,
    needs_local_operator: true,
    run: |ctx| Box::pin(run(ctx)),
};

/// Most a restarted operator may take to act on a change made while it was down.
const RESTART_TIMEOUT: Duration = Duration::from_secs(15);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("survivor");
    let cm = ctx.name("state");
    let operators = &ctx.env.operators;
    let identity = operators
        .identities()
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| PRIMARY.to_string());

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with cooldown 0s");
    ctx.create(&config_map(&ns, &cm, &[("v", "0")])).await?;
    let created = ctx
        .create_observed(
            &CtjBuilder::new(&ns, &name)
                .watch(watch("v1", "ConfigMap", &ns, &cm))
                .cooldown("0s")
                .build(),
        )
        .await?;
    let uid = created
        .uid()
        .ok_or_else(|| Failure::new("the created ChangeTriggeredJob has no uid"))?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("a first change runs a Job");
    let since = ctx.set_config(&cm, "v", "1").await?;
    jobs.expect_new_job(since, "the first change").await?;
    ctx.wait_ctj(&name, "triggerSequence 1", JOB_TIMEOUT, |c| {
        status(c).trigger_sequence == Some(1)
    })
    .await?;

    ctx.step(&format!("killing operator {identity} with SIGKILL"));
    operators.kill9(&identity).await?;
    ctx.step("changing the ConfigMap while no operator runs");
    ctx.set_config(&cm, "v", "2").await?;
    jobs.expect_no_new_job(
        Duration::from_secs(2),
        "a change while the operator is down",
    )
    .await?;

    ctx.step("restarting the operator");
    let restarted = Instant::now();
    operators.start(&identity).await?;
    jobs.expect_new_job_within(
        restarted,
        RESTART_TIMEOUT,
        LatencyKind::Recovery,
        "a restart (change made while down)",
    )
    .await?;
    ctx.wait_ctj(&name, "triggerSequence 2", JOB_TIMEOUT, |c| {
        status(c).trigger_sequence == Some(2)
    })
    .await?;
    jobs.expect_no_new_job(QUIET, "the Job after the restart")
        .await?;

    ctx.step("changing the ConfigMap and killing the operator at once");
    let changed = ctx.set_config(&cm, "v", "3").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    operators.kill9(&identity).await?;
    ctx.note(&format!(
        "SIGKILL {} after the change was sent",
        secs(changed.elapsed())
    ));
    ctx.step("restarting the operator after a crash right after a change");
    let restarted = Instant::now();
    operators.start(&identity).await?;
    let expected: Vec<String> = (1..=3).map(|seq| job_name(&name, &uid, seq)).collect();
    wait_for(
        "exactly the Jobs of trigger sequence 1, 2, 3 and triggerSequence 3",
        RESTART_TIMEOUT,
        POLL,
        || async {
            let ctj = ctx.ctj(&name).await?;
            let mut current = names(&jobs.current().await?);
            current.sort();
            let mut wanted = expected.clone();
            wanted.sort();
            Ok(
                if current == wanted && status(&ctj).trigger_sequence == Some(3) {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("Jobs {current:?}; {}", summary(&ctj)))
                },
            )
        },
    )
    .await?;
    ctx.record_latency(
        LatencyKind::Recovery,
        "a crash right after a change",
        restarted.elapsed(),
    );

    ctx.step("checking nothing more runs");
    tokio::time::sleep(QUIET).await;
    let mut current = names(&jobs.current().await?);
    current.sort();
    let mut wanted = expected;
    wanted.sort();
    expect_eq(
        "Jobs after three triggers and two crashes (one per trigger sequence number)",
        wanted,
        current,
    )?;
    let ctj = ctx.ctj(&name).await?;
    expect_eq(
        "status.triggerSequence after three triggers",
        Some(3),
        status(&ctj).trigger_sequence,
    )?;
    Ok(Verdict::Passed)
}
