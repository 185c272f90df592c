//! Scenario 16: With two replicas only the Lease holder acts: a change runs one Job, not two.
//! When the leader crashes, the standby takes the Lease once it expires and a change made
//! during the handover runs exactly one Job; when the leader is stopped with SIGTERM it
//! releases the Lease at once (exiting 0), so the holder changes within seconds, not a lease
//! period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::ctx::Ctx;
use crate::support::env::{LatencyKind, PRIMARY, SECONDARY};
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::operator::LEASE_DURATION;
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::status;
use crate::support::wait::{Poll, wait_for};
use crate::support::{Failure, JOB_TIMEOUT, Outcome, POLL, QUIET, secs};
use crate::{ensure, fail};

pub const SCENARIO: Scenario = Scenario {
    number: 16,
    name: "two_replicas_one_leader",
    exclusive: true,
    needs_local_operator: true,
    run: |ctx| Box::pin(run(ctx)),
};

/// Beyond the lease duration, how long the standby may take to notice the expired Lease.
const TAKEOVER_SLACK: Duration = Duration::from_secs(5);
/// How quickly a SIGTERMed leader must give the Lease up.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("replicated");
    let cm = ctx.name("shared");
    let env = ctx.env.clone();
    let operators = &env.operators;

    ctx.step("finding the leader and starting a second replica");
    let leader = env
        .lease_holder()
        .await?
        .ok_or_else(|| Failure::new("nobody holds the Lease before the scenario"))?;
    let standby = if leader == PRIMARY {
        SECONDARY
    } else {
        PRIMARY
    }
    .to_string();
    operators.start(&standby).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    operators.check_running().await?;
    let holder = env.lease_holder().await?;
    ensure!(
        holder.as_deref() == Some(leader.as_str()),
        "starting a second replica must not move the Lease: holder was {leader}, now {holder:?}"
    );

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with cooldown 0s");
    ctx.create(&config_map(&ns, &cm, &[("v", "0")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("a change with two replicas runs one Job");
    let since = ctx.set_config(&cm, "v", "1").await?;
    jobs.expect_new_job(since, "a change with two replicas")
        .await?;
    jobs.expect_no_new_job(QUIET, "one change with two replicas")
        .await?;

    ctx.step(&format!("killing the leader {leader} with SIGKILL"));
    let killed = Instant::now();
    operators.kill9(&leader).await?;
    ctx.step("changing the ConfigMap during the handover");
    let since = ctx.set_config(&cm, "v", "2").await?;
    wait_holder(&env, &standby, LEASE_DURATION + TAKEOVER_SLACK).await?;
    ctx.note(&format!(
        "after SIGKILL of the leader, {standby} took the Lease in {}",
        secs(killed.elapsed())
    ));
    jobs.expect_new_job_within(since, JOB_TIMEOUT, LatencyKind::Recovery, "a leader crash")
        .await?;
    jobs.expect_no_new_job(QUIET, "the Job after the handover")
        .await?;
    ctx.wait_ctj(&name, "triggerSequence 2", JOB_TIMEOUT, |c| {
        status(c).trigger_sequence == Some(2)
    })
    .await?;

    ctx.step(&format!("restarting {leader} as the standby"));
    operators.start(&leader).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    operators.check_running().await?;

    ctx.step(&format!("stopping the leader {standby} with SIGTERM"));
    let stopping = standby.clone();
    let released_what = format!("the Lease to leave {stopping} after SIGTERM");
    let (exit, released) = tokio::join!(
        operators.terminate(&stopping, Duration::from_secs(15)),
        wait_for(
            &released_what,
            RELEASE_TIMEOUT,
            Duration::from_millis(100),
            || async {
                let holder = env.lease_holder().await?;
                Ok(if holder.as_deref() == Some(stopping.as_str()) {
                    Poll::Pending(format!("holderIdentity {holder:?}"))
                } else {
                    Poll::Ready(holder)
                })
            },
        )
    );
    released?;
    let exit = exit?;
    if !exit.success() {
        fail!("operator {stopping} should exit 0 after SIGTERM, exited with {exit}");
    }
    wait_holder(&env, &leader, Duration::from_secs(10)).await?;

    ctx.step("a change after the SIGTERM handover runs one Job");
    let since = ctx.set_config(&cm, "v", "3").await?;
    jobs.expect_new_job(since, "a change after a SIGTERM handover")
        .await?;
    jobs.expect_no_new_job(QUIET, "the Job after the SIGTERM handover")
        .await?;
    ctx.wait_ctj(&name, "triggerSequence 3", JOB_TIMEOUT, |c| {
        status(c).trigger_sequence == Some(3)
    })
    .await?;
    Ok(Verdict::Passed)
}

async fn wait_holder(env: &crate::support::env::Env, identity: &str, timeout: Duration) -> Outcome {
    wait_for(
        &format!("{identity} to hold the Lease"),
        timeout,
        POLL,
        || async {
            let holder = env.lease_holder().await?;
            Ok(if holder.as_deref() == Some(identity) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("holderIdentity {holder:?}"))
            })
        },
    )
    .await
}
