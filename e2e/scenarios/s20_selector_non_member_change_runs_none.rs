//! Scenario 20: Changes to objects a selector does not match — of the same kind, in the same
//! namespace, so on the same shared watch — run no Job; a change to a member still runs one.

use std::sync::Arc;
use std::time::Duration;

use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;

use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, labelled_config_map, watch_selected};
use crate::support::runner::{Scenario, Verdict};
use crate::support::{Outcome, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 20,
    name: "selector_non_member_change_runs_none",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("shop-sync");
    let app = ctx.name("shop");
    let member = ctx.name("member");
    let outsider = ctx.name("outsider");
    let unlabelled = ctx.name("unlabelled");

    ctx.step("creating a member, a ConfigMap with another app label and one without labels");
    ctx.create(&labelled_config_map(
        &ns,
        &member,
        &[("app", &app)],
        &[("k", "v")],
    ))
    .await?;
    ctx.create(&labelled_config_map(
        &ns,
        &outsider,
        &[("app", "other")],
        &[("k", "v")],
    ))
    .await?;
    ctx.create(&labelled_config_map(&ns, &unlabelled, &[], &[("k", "v")]))
        .await?;
    ctx.create_observed(
        &CtjBuilder::new(&ns, &name)
            .watch(watch_selected("v1", "ConfigMap", &ns, &[("app", &app)]))
            .cooldown("0s")
            .build(),
    )
    .await?;
    let mut jobs = ctx.jobs(&name);

    ctx.step("changing the two ConfigMaps that do not match");
    ctx.set_config(&outsider, "k", "changed").await?;
    ctx.set_config(&unlabelled, "k", "changed").await?;
    jobs.expect_no_new_job(
        Duration::from_secs(8),
        "changes to objects the selector does not match",
    )
    .await?;

    ctx.step("changing the member runs one Job");
    let since = ctx.set_config(&member, "k", "changed").await?;
    let job = jobs.expect_new_job(since, "a change to a member").await?;
    expect_eq(
        &format!("annotation {CHANGED_RESOURCES_ANNOTATION} of the Job"),
        Some(format!("ConfigMap/{ns}/{member}").as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    jobs.expect_no_new_job(Duration::from_secs(3), "the member's Job")
        .await?;
    Ok(Verdict::Passed)
}
