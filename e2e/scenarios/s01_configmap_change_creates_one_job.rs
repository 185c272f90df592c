//! Scenario 1: Creating a ChangeTriggeredJob never runs a Job by itself; the first change to
//! the ConfigMap it watches runs exactly one. That Job is named `<ctj>-<10 characters>`,
//! labelled with its owner, garbage-collectable through a controller ownerReference, names the
//! object that changed (on the Job and on its Pods), carries the template's labels and
//! annotations but not the ChangeTriggeredJob's own, and the status follows it from Active to
//! Succeeded.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use kube_changejob::api::{
    API_VERSION, CHANGED_RESOURCES_ANNOTATION, JobState, KIND, OWNER_LABEL,
    TRIGGER_REASON_ANNOTATION,
};

use crate::support::ctx::Ctx;
use crate::support::jobs::{annotation, job_pods, label, pod_job_name};
use crate::support::manifests::{CtjBuilder, config_map, watch};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{has_condition, status, summary};
use crate::support::wait::{Poll, wait_for};
use crate::support::{Context, Failure, JOB_TIMEOUT, Outcome, expect_eq};
use crate::{ensure, fail};

pub const SCENARIO: Scenario = Scenario {
    number: 1,
    name: "configmap_change_creates_one_job",
    exclusive: false,
    needs_local_operator: false,
    run: |ctx| Box::pin(run(ctx)),
};

const CTJ_LABEL: &str = "e2e.changejob.dev/ctj-label";
const CTJ_ANNOTATION: &str = "e2e.changejob.dev/ctj-note";
const TEMPLATE_LABEL: &str = "e2e.changejob.dev/template-label";
const TEMPLATE_ANNOTATION: &str = "e2e.changejob.dev/template-note";
const POD_LABEL: &str = "e2e.changejob.dev/pod-label";

/// How long a Job may take to succeed (image pull on a cold node included).
const SUCCESS_TIMEOUT: Duration = Duration::from_secs(90);

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let ns = ctx.ns().to_string();
    let cm = ctx.name("settings");
    let name = ctx.name("reload");

    ctx.step("creating the watched ConfigMap and a ChangeTriggeredJob with the default cooldown");
    ctx.create(&config_map(&ns, &cm, &[("mode", "blue")]))
        .await?;
    let ctj = CtjBuilder::new(&ns, &name)
        .watch(watch("v1", "ConfigMap", &ns, &cm))
        .label(CTJ_LABEL, "not-copied")
        .annotation(CTJ_ANNOTATION, "not-copied")
        .job_label(TEMPLATE_LABEL, "copied")
        .job_annotation(TEMPLATE_ANNOTATION, "copied")
        .pod_label(POD_LABEL, "copied")
        .build();
    let created = ctx.create_observed(&ctj).await?;
    let uid = created
        .uid()
        .ok_or_else(|| Failure::new("the created ChangeTriggeredJob has no uid"))?;

    let mut jobs = ctx.jobs(&name);
    ctx.step("checking that creating the ChangeTriggeredJob runs no Job");
    jobs.expect_no_new_job(Duration::from_secs(3), "creating the ChangeTriggeredJob")
        .await?;

    ctx.step("changing the ConfigMap's data");
    let since = ctx.set_config(&cm, "mode", "green").await?;
    let job = jobs
        .expect_new_job(since, "a ConfigMap data change")
        .await?;
    let job_name = job.name_any();
    check_job(&job, &name, &uid, &format!("ConfigMap/{ns}/{cm}"))?;

    ctx.step("checking the status records the Job");
    let recorded = ctx
        .wait_ctj(
            &name,
            &format!("lastJobName {job_name}"),
            JOB_TIMEOUT,
            |c| status(c).last_job_name.as_deref() == Some(job_name.as_str()),
        )
        .await?;
    let st = status(&recorded);
    expect_eq("status.triggerSequence", Some(1), st.trigger_sequence)?;
    ensure!(
        st.last_triggered_time.is_some(),
        "status.lastTriggeredTime is not set: {}",
        summary(&recorded)
    );
    ensure!(
        matches!(
            st.last_job_status,
            Some(JobState::Active | JobState::Succeeded)
        ),
        "status.lastJobStatus of a Job just created: expected Active (or already Succeeded), saw {:?}",
        st.last_job_status
    );
    ctx.wait_ctj(&name, "Ready=True/Reconciled", JOB_TIMEOUT, |c| {
        has_condition(c, "Ready", "True", "Reconciled")
    })
    .await?;

    ctx.step("checking that one change ran one Job");
    jobs.expect_no_new_job(Duration::from_secs(3), "the first Job")
        .await?;

    ctx.step("waiting for the Job to succeed");
    wait_for_success(&ctx, &name, &job_name, &format!("ConfigMap/{ns}/{cm}")).await?;
    Ok(Verdict::Passed)
}

/// Name, owner label and reference, changed-resources annotation, copied metadata.
fn check_job(job: &Job, ctj: &str, uid: &str, changed: &str) -> Outcome {
    let name = job.name_any();
    let suffix_ok = name.strip_prefix(&format!("{ctj}-")).is_some_and(|s| {
        s.len() == 10
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    ensure!(
        suffix_ok && name.len() <= 63,
        "Job name {name:?}: expected {ctj}-<10 lowercase letters or digits>, at most 63 characters"
    );
    expect_eq(
        &format!("label {OWNER_LABEL} of Job {name}"),
        Some(ctj),
        label(job, OWNER_LABEL),
    )?;
    let controllers: Vec<_> = job
        .owner_references()
        .iter()
        .filter(|o| o.controller == Some(true))
        .collect();
    let [owner] = controllers.as_slice() else {
        fail!(
            "Job {name}: expected exactly one controller ownerReference, saw {:?}",
            job.owner_references()
        );
    };
    expect_eq(
        &format!("controller ownerReference of Job {name} (apiVersion, kind, name, uid)"),
        (API_VERSION, KIND, ctj, uid),
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
        ),
    )?;
    expect_eq(
        &format!("annotation {CHANGED_RESOURCES_ANNOTATION} of Job {name}"),
        Some(changed),
        annotation(job, CHANGED_RESOURCES_ANNOTATION),
    )?;
    expect_eq(
        &format!("annotation {TRIGGER_REASON_ANNOTATION} of Job {name}"),
        Some("change"),
        annotation(job, TRIGGER_REASON_ANNOTATION),
    )?;
    let pod_meta = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .unwrap_or_default();
    let pod_labels = pod_meta.labels.unwrap_or_default();
    let pod_annotations = pod_meta.annotations.unwrap_or_default();
    expect_eq(
        &format!("annotation {CHANGED_RESOURCES_ANNOTATION} of Job {name}'s pod template"),
        Some(changed),
        pod_annotations
            .get(CHANGED_RESOURCES_ANNOTATION)
            .map(String::as_str),
    )?;
    expect_eq(
        &format!("jobTemplate label {TEMPLATE_LABEL} on Job {name}"),
        Some("copied"),
        label(job, TEMPLATE_LABEL),
    )?;
    expect_eq(
        &format!("jobTemplate annotation {TEMPLATE_ANNOTATION} on Job {name}"),
        Some("copied"),
        annotation(job, TEMPLATE_ANNOTATION),
    )?;
    expect_eq(
        &format!("pod template label {POD_LABEL} on Job {name}"),
        Some("copied"),
        pod_labels.get(POD_LABEL).map(String::as_str),
    )?;
    for key in [CTJ_LABEL, CTJ_ANNOTATION] {
        ensure!(
            label(job, key).is_none()
                && annotation(job, key).is_none()
                && !pod_labels.contains_key(key)
                && !pod_annotations.contains_key(key),
            "Job {name} carries {key}, which is metadata of the ChangeTriggeredJob itself and must not be copied"
        );
    }
    Ok(())
}

/// lastJobStatus goes to Succeeded once the Job's Pod ran; on a cluster where no Pod can be
/// scheduled (no Nodes) that part is noted and skipped. When the Pod's log can be read, it
/// shows the changed-resources annotation as the workload sees it through the downward API.
async fn wait_for_success(ctx: &Arc<Ctx>, ctj: &str, job: &str, changed: &str) -> Outcome {
    let nodes: Api<Node> = Api::all(ctx.client());
    let has_nodes = !nodes
        .list(&ListParams::default().limit(1))
        .await
        .context("listing Nodes")?
        .items
        .is_empty();
    if !has_nodes {
        ctx.note("the cluster has no Nodes, so the Job cannot run; lastJobStatus=Succeeded was not checked");
        return Ok(());
    }
    let waited = wait_for(
        &format!("status.lastJobStatus Succeeded for Job {job}"),
        SUCCESS_TIMEOUT,
        Duration::from_secs(1),
        || async {
            let c = ctx.ctj(ctj).await?;
            let st = status(&c);
            if st.last_job_name.as_deref() != Some(job) {
                fail!(
                    "status.lastJobName moved from {job} to {:?} without a change",
                    st.last_job_name
                );
            }
            Ok(match st.last_job_status {
                Some(JobState::Succeeded) => Poll::Ready(()),
                Some(JobState::Failed) => fail!(
                    "Job {job} failed (status.lastJobStatus=Failed); the Job only echoes a line, so its Pod could not run: {}",
                    summary(&c)
                ),
                other => Poll::Pending(format!("lastJobStatus {other:?}")),
            })
        },
    )
    .await;
    let pods: Vec<Pod> = job_pods(ctx.client(), ctx.ns())
        .await?
        .into_iter()
        .filter(|p| pod_job_name(p).as_deref() == Some(job))
        .collect();
    if let Err(timeout) = waited {
        let scheduled = pods
            .iter()
            .any(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
        if let Some(reason) = pods.iter().find_map(image_pull_problem) {
            ctx.note(&format!(
                "the Job's image {} cannot be pulled here ({reason}); lastJobStatus=Succeeded was not checked (set E2E_JOB_IMAGE to a reachable copy)",
                crate::support::manifests::job_image()
            ));
            return Ok(());
        }
        if scheduled {
            let phases: Vec<_> = pods
                .iter()
                .map(|p| {
                    (
                        p.name_any(),
                        p.status.as_ref().and_then(|s| s.phase.clone()),
                    )
                })
                .collect();
            return Err(Failure::new(format!("{timeout}; Pods: {phases:?}")));
        }
        ctx.note(&format!(
            "no Pod of Job {job} was ever scheduled within {SUCCESS_TIMEOUT:?}; lastJobStatus=Succeeded was not checked"
        ));
        return Ok(());
    }
    let Some(pod) = pods.first() else {
        ctx.note("the Job succeeded but its Pod is already gone; its log was not checked");
        return Ok(());
    };
    let api: Api<Pod> = ctx.api();
    match api.logs(&pod.name_any(), &LogParams::default()).await {
        Ok(log) => ensure!(
            log.contains(&format!("changed: {changed}")),
            "the Job's Pod should print the changed-resources annotation it reads through the downward API (\"changed: {changed}\"); its log is {log:?}"
        ),
        Err(e) => ctx.note(&format!(
            "could not read the log of Pod {}: {e}",
            pod.name_any()
        )),
    }
    Ok(())
}

/// Why a Pod's container waits for its image, if it does (an environment limit, e.g. an
/// air-gapped cluster, not a fault of the operator).
fn image_pull_problem(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find_map(|w| {
            let reason = w.reason.as_deref()?;
            matches!(
                reason,
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
            )
            .then(|| format!("{reason}: {}", w.message.clone().unwrap_or_default()))
        })
}
