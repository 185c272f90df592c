//! Scenario 18: A selector entry watches a set that may start empty. Creating an object whose
//! labels match runs exactly one Job, which names the new member; creating an object that does
//! not match runs none.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube_changejob::api::CHANGED_RESOURCES_ANNOTATION;

use crate::ensure;
use crate::support::ctx::Ctx;
use crate::support::jobs::annotation;
use crate::support::manifests::{CtjBuilder, labelled_config_map, watch_selected};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{status, summary};
use crate::support::{Outcome, expect_eq};

pub const SCENARIO: Scenario = Scenario {
    number: 18,
    name: "selector_object_created_runs_one_job",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let name = ctx.name("shop-sync");
    let app = ctx.name("shop");

    ctx.step("creating a ChangeTriggeredJob watching ConfigMaps labelled app=<unique>, none of which exist");
    let created = ctx
        .create_observed(
            &CtjBuilder::new(&ns, &name)
                .watch(watch_selected("v1", "ConfigMap", &ns, &[("app", &app)]))
                .cooldown("0s")
                .build(),
        )
        .await?;
    let entry = status(&created).resource_hashes.first().cloned();
    ensure!(
        entry.as_ref().is_some_and(
            |e| e.members == Some(0) && e.selector.as_deref() == Some(&format!("app={app}"))
        ),
        "status of an empty selector entry: expected selector app={app} with 0 members, saw {}",
        summary(&created)
    );
    let mut jobs = ctx.jobs(&name);

    ctx.step("creating a ConfigMap that does not match");
    let other = ctx.name("other");
    ctx.create(&labelled_config_map(
        &ns,
        &other,
        &[("app", "unrelated")],
        &[("k", "v")],
    ))
    .await?;
    jobs.expect_no_new_job(
        Duration::from_secs(5),
        "creating a ConfigMap that does not match",
    )
    .await?;

    ctx.step("creating a ConfigMap that matches");
    let member = ctx.name("web-config");
    let since = std::time::Instant::now();
    ctx.create::<ConfigMap>(&labelled_config_map(
        &ns,
        &member,
        &[("app", &app)],
        &[("k", "v")],
    ))
    .await?;
    let job = jobs
        .expect_new_job(
            since,
            "a matching ConfigMap created after the ChangeTriggeredJob",
        )
        .await?;
    expect_eq(
        &format!("annotation {CHANGED_RESOURCES_ANNOTATION} of the Job"),
        Some(format!("ConfigMap/{ns}/{member}").as_str()),
        annotation(&job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    ctx.wait_ctj(
        &name,
        "one member in status",
        crate::support::JOB_TIMEOUT,
        |c| status(c).resource_hashes.first().and_then(|e| e.members) == Some(1),
    )
    .await?;

    ctx.step("checking that one new member ran one Job");
    jobs.expect_no_new_job(Duration::from_secs(5), "the first Job")
        .await?;
    Ok(Verdict::Passed)
}
