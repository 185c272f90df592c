//! Scenario 7: A change during the cooldown is deferred, not dropped: the status says when the
//! Job will run (lastTriggeredTime + cooldown) with Progressing=True/CooldownActive, an Event
//! TriggerDeferred is recorded, nothing runs before the cooldown ends, and the Job runs within
//! a few seconds after it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;

use crate::support::ctx::Ctx;
use crate::support::env::LatencyKind;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{has_condition, status, summary};
use crate::support::wait::{Poll, wait_for};
use crate::support::{JOB_TIMEOUT, Outcome, POLL, QUIET, secs};
use crate::{ensure, fail};

pub const SCENARIO: Scenario = Scenario {
    number: 7,
    name: "cooldown_defers_to_its_end",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

const COOLDOWN: Duration = Duration::from_secs(20);
/// The deferred Job may run at most this long after the cooldown ends.
const LATE: Duration = Duration::from_secs(3);
/// Allowance for the cooldown ending before `first Job seen + 20s`: the operator took "now"
/// for the first trigger before the suite's polling saw the Job, and lastTriggeredTime, from
/// which the cooldown is counted after a status round trip, has whole seconds.
const EARLY: Duration = Duration::from_millis(2500);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("throttled");
    let cm = ctx.name("settings");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with cooldown 20s");
    ctx.create(&config_map(&ns, &cm, &[("n", "0")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("20s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("first change: runs a Job at once and starts the cooldown");
    let since = ctx.set_config(&cm, "n", "1").await?;
    jobs.expect_new_job(since, "the first change").await?;
    let first_seen = Instant::now();
    let cooldown_end = first_seen + COOLDOWN;

    ctx.sleep(
        Duration::from_secs(2),
        "before changing again inside the cooldown",
    )
    .await;
    ctx.step("second change, 2s into the cooldown");
    ctx.set_config(&cm, "n", "2").await?;

    ctx.step("checking the status announces the deferred trigger");
    let deferred = ctx
        .wait_ctj(
            &name,
            "Progressing=True/CooldownActive with nextTriggerTime",
            JOB_TIMEOUT,
            |c| {
                has_condition(c, "Progressing", "True", "CooldownActive")
                    && status(c).next_trigger_time.is_some()
            },
        )
        .await?;
    let st = status(&deferred);
    let (Some(last), Some(next)) = (&st.last_triggered_time, &st.next_trigger_time) else {
        fail!(
            "lastTriggeredTime and nextTriggerTime must both be set: {}",
            summary(&deferred)
        );
    };
    let offset = next.0.as_second() - last.0.as_second();
    ensure!(
        (18..=22).contains(&offset),
        "nextTriggerTime should be lastTriggeredTime + cooldown (20s), saw {}s ({} → {})",
        offset,
        last.0,
        next.0
    );

    ctx.step("checking the TriggerDeferred event");
    wait_for(
        &format!("an Event TriggerDeferred about {name}"),
        JOB_TIMEOUT,
        POLL,
        || async {
            let events = ctx.events(&ns, &name, "TriggerDeferred").await?;
            Ok(if events.is_empty() {
                Poll::Pending("no TriggerDeferred event".into())
            } else {
                Poll::Ready(())
            })
        },
    )
    .await?;

    ctx.step("checking nothing runs before the cooldown ends");
    jobs.expect_no_new_job_until(
        cooldown_end - EARLY,
        "a change inside the cooldown (before it ends)",
    )
    .await?;

    ctx.step("checking the deferred Job runs when the cooldown ends");
    let remaining = cooldown_end.saturating_duration_since(Instant::now()) + LATE + POLL;
    let second = jobs
        .expect_new_job_within(
            cooldown_end,
            remaining,
            LatencyKind::Deferred,
            "the end of the cooldown",
        )
        .await?;
    let seen_at = first_seen.elapsed();
    ctx.trace(&format!(
        "deferred Job seen {} after the first Job (cooldown {})",
        secs(seen_at),
        secs(COOLDOWN)
    ));
    if let Some(created) = second.creation_timestamp() {
        let apart = created.0.as_second() - last.0.as_second();
        ensure!(
            apart >= 19,
            "the deferred Job {} was created {apart}s after the first trigger ({}), inside the 20s cooldown",
            second.name_any(),
            last.0
        );
    }
    jobs.expect_no_new_job(QUIET, "the deferred Job").await?;
    Ok(Verdict::Passed)
}
