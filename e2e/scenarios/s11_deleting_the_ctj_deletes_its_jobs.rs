//! Scenario 11: Jobs belong to their ChangeTriggeredJob: deleting it lets the garbage collector
//! delete its Jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_changejob::api::ChangeTriggeredJob;

use crate::support::ctx::Ctx;
use crate::support::jobs::names;
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::wait::{Poll, wait_for};
use crate::support::{Outcome, secs};

pub const SCENARIO: Scenario = Scenario {
    number: 11,
    name: "deleting_the_ctj_deletes_its_jobs",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

/// The garbage collector may first have to notice a freshly installed CRD (it rescans
/// discovery every 30s), hence more than the ~30s it usually needs.
const GC_TIMEOUT: Duration = Duration::from_secs(45);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("short-lived");
    let cm = ctx.name("input");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob");
    ctx.create(&config_map(&ns, &cm, &[("k", "1")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("running a Job");
    let since = ctx.set_config(&cm, "k", "2").await?;
    jobs.expect_new_job(since, "a ConfigMap change").await?;

    ctx.step("deleting the ChangeTriggeredJob");
    let deleted = ctx.delete::<ChangeTriggeredJob>(&name).await?;
    wait_for(
        &format!("the Jobs of {name} to be garbage-collected"),
        GC_TIMEOUT,
        Duration::from_millis(500),
        || async {
            let left = names(&jobs.current().await?);
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("Jobs {left:?}"))
            })
        },
    )
    .await?;
    ctx.note(&format!(
        "the Jobs were garbage-collected {} after the ChangeTriggeredJob was deleted",
        secs(Instant::now().duration_since(deleted))
    ));
    Ok(Verdict::Passed)
}
