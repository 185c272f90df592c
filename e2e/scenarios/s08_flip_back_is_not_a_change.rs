//! Scenario 8: A value changed and changed back before its deferred trigger fires is no change
//! at all: no Job runs when the cooldown ends, and the watched object is no longer pending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::ctx::Ctx;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{is_pending, status};
use crate::support::{JOB_TIMEOUT, Outcome};

pub const SCENARIO: Scenario = Scenario {
    number: 8,
    name: "flip_back_is_not_a_change",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

const COOLDOWN: Duration = Duration::from_secs(20);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("steady");
    let cm = ctx.name("flags");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with cooldown 20s");
    ctx.create(&config_map(&ns, &cm, &[("feature", "off")]))
        .await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("20s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("a first change runs a Job and starts the cooldown");
    let since = ctx.set_config(&cm, "feature", "on").await?;
    jobs.expect_new_job(since, "the first change").await?;
    let first_seen = Instant::now();

    ctx.step("changing the value inside the cooldown");
    ctx.set_config(&cm, "feature", "off").await?;
    ctx.wait_ctj(&name, "the ConfigMap pending", JOB_TIMEOUT, |c| {
        status(c).resource_hashes.iter().any(is_pending)
    })
    .await?;
    ctx.step("changing it back inside the cooldown");
    ctx.set_config(&cm, "feature", "on").await?;
    ctx.wait_ctj(&name, "the ConfigMap no longer pending", JOB_TIMEOUT, |c| {
        !status(c).resource_hashes.iter().any(is_pending)
    })
    .await?;

    ctx.step("checking no Job runs when the cooldown ends");
    jobs.expect_no_new_job_until(
        first_seen + COOLDOWN + Duration::from_secs(5),
        "a change undone inside the cooldown",
    )
    .await?;
    Ok(Verdict::Passed)
}
