//! Scenario 9: `history: 2` keeps the two newest Jobs: five changes run five Jobs, the three
//! older ones are deleted, and their Pods go with them (the Jobs are deleted with background
//! propagation, not orphaned).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use crate::support::ctx::Ctx;
use crate::support::jobs::{job_pods, names, pod_job_name};
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::status;
use crate::support::wait::{Poll, wait_for};
use crate::support::{JOB_TIMEOUT, Outcome, POLL, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 9,
    name: "history_two_keeps_newest_two",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

const CHANGES: usize = 5;
const SPACING: Duration = Duration::from_secs(2);
/// How long the garbage collector gets to remove the Pods of deleted Jobs.
const POD_GC_TIMEOUT: Duration = Duration::from_secs(40);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("pruned");
    let cm = ctx.name("counter");

    ctx.step("creating a ConfigMap and a ChangeTriggeredJob with history 2, cooldown 0s");
    ctx.create(&config_map(&ns, &cm, &[("count", "0")])).await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch("v1", "ConfigMap", &ns, &cm))
            .history(2)
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    let mut created = Vec::new();
    for n in 1..=CHANGES {
        ctx.step(&format!("change {n} of {CHANGES}"));
        let since = ctx.set_config(&cm, "count", &n.to_string()).await?;
        let job = jobs.expect_new_job(since, &format!("change {n}")).await?;
        created.push(job.name_any());
        let pause = SPACING.saturating_sub(since.elapsed());
        if n < CHANGES && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }

    ctx.step("checking five triggers were counted and only the newest two Jobs remain");
    ctx.wait_ctj(
        &name,
        &format!("triggerSequence {CHANGES}"),
        JOB_TIMEOUT,
        |c| status(c).trigger_sequence == Some(CHANGES as i64),
    )
    .await?;
    expect_eq("distinct Jobs created", CHANGES, jobs.seen().len())?;
    let newest: Vec<String> = created[CHANGES - 2..].to_vec();
    let kept = wait_for(
        &format!("only the newest two Jobs {newest:?}"),
        JOB_TIMEOUT,
        POLL,
        || async {
            let current = names(&jobs.current().await?);
            Ok(if current == newest {
                Poll::Ready(current)
            } else {
                Poll::Pending(format!("Jobs {current:?}"))
            })
        },
    )
    .await?;
    ctx.trace(&format!("kept {kept:?}"));

    ctx.step("checking the Pods of the pruned Jobs are gone");
    let pruned: BTreeSet<String> = created[..CHANGES - 2].iter().cloned().collect();
    wait_for(
        &format!("no Pods left of the pruned Jobs {pruned:?}"),
        POD_GC_TIMEOUT,
        Duration::from_secs(1),
        || async {
            let left: Vec<String> = job_pods(ctx.client(), &ns)
                .await?
                .iter()
                .filter(|p| pod_job_name(p).is_some_and(|j| pruned.contains(&j)))
                .map(ResourceExt::name_any)
                .collect();
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("Pods {left:?}"))
            })
        },
    )
    .await?;
    let kept_have_pods = job_pods(ctx.client(), &ns)
        .await?
        .iter()
        .any(|p| pod_job_name(p).is_some_and(|j| newest.contains(&j)));
    if !kept_have_pods {
        ctx.note("the kept Jobs have no Pods (no Job controller?), so Pod removal was not really exercised");
    }
    Ok(Verdict::Passed)
}
