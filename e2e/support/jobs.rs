//! The Jobs a ChangeTriggeredJob created, found by the owner label, and a tracker that notices
//! each new one, measures how long it took, and insists that nothing appears when nothing
//! should.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube_changejob::api::{OWNER_LABEL, TRIGGER_SEQUENCE_ANNOTATION};

use super::ctx::Ctx;
use super::env::LatencyKind;
use super::wait::{Poll, hold_for, hold_until, wait_for};
use super::{Context, JOB_TIMEOUT, Outcome, POLL, secs};

/// An annotation of a Job.
pub fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A label of a Job.
pub fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .labels
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The trigger sequence number the operator stamped on a Job.
pub fn sequence(job: &Job) -> Option<i64> {
    annotation(job, TRIGGER_SEQUENCE_ANNOTATION).and_then(|s| s.parse().ok())
}

/// Jobs carrying `changejob.dev/owner=<ctj>` in `namespace`, oldest trigger first.
pub async fn list_jobs(api: &Api<Job>, ctj: &str) -> Outcome<Vec<Job>> {
    let mut jobs = api
        .list(&ListParams::default().labels(&format!("{OWNER_LABEL}={ctj}")))
        .await
        .context(format!("listing Jobs with {OWNER_LABEL}={ctj}"))?
        .items;
    jobs.sort_by_key(|j| {
        (
            sequence(j),
            j.creation_timestamp().map(|t| t.0),
            j.name_any(),
        )
    });
    Ok(jobs)
}

/// Names of Jobs, for messages.
pub fn names(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(ResourceExt::name_any).collect()
}

/// The Jobs of one ChangeTriggeredJob as the scenario has seen them so far.
pub struct JobTracker {
    ctx: Arc<Ctx>,
    api: Api<Job>,
    ctj: String,
    seen: BTreeSet<String>,
}

impl JobTracker {
    /// Tracks the Jobs of `ctj` in `namespace`.
    pub fn new(ctx: Arc<Ctx>, namespace: &str, ctj: &str) -> Self {
        JobTracker {
            api: Api::namespaced(ctx.client(), namespace),
            ctx,
            ctj: ctj.to_string(),
            seen: BTreeSet::new(),
        }
    }

    /// The Jobs that exist now.
    pub async fn current(&self) -> Outcome<Vec<Job>> {
        list_jobs(&self.api, &self.ctj).await
    }

    /// Names of every Job seen so far, deleted ones included.
    pub fn seen(&self) -> &BTreeSet<String> {
        &self.seen
    }

    /// Waits (up to [`JOB_TIMEOUT`]) for exactly one Job not seen before, and records the time
    /// from `since` (taken just before the change was made) as a change→Job latency.
    pub async fn expect_new_job(&mut self, since: Instant, after: &str) -> Outcome<Job> {
        self.expect_new_job_within(since, JOB_TIMEOUT, LatencyKind::Change, after)
            .await
    }

    /// Like [`Self::expect_new_job`] with another timeout (counted from now) and kind of
    /// latency.
    pub async fn expect_new_job_within(
        &mut self,
        since: Instant,
        timeout: Duration,
        kind: LatencyKind,
        after: &str,
    ) -> Outcome<Job> {
        let what = format!("a new Job of {} after {after}", self.ctj);
        let fresh = wait_for(&what, timeout, POLL, || async {
            let jobs = self.current().await?;
            let fresh: Vec<Job> = jobs
                .iter()
                .filter(|j| !self.seen.contains(&j.name_any()))
                .cloned()
                .collect();
            Ok(if fresh.is_empty() {
                Poll::Pending(format!("only the known Jobs {:?}", names(&jobs)))
            } else {
                Poll::Ready(fresh)
            })
        })
        .await?;
        let took = since.elapsed();
        if fresh.len() > 1 {
            crate::fail!(
                "expected exactly one new Job of {} after {after}, saw {}: {:?}",
                self.ctj,
                fresh.len(),
                names(&fresh)
            );
        }
        let job = fresh
            .into_iter()
            .next()
            .ok_or_else(|| super::Failure::new(format!("the new Job of {} vanished", self.ctj)))?;
        self.seen.insert(job.name_any());
        self.ctx.record_latency(kind, after, took);
        self.ctx.trace(&format!(
            "Job {} after {} ({after})",
            job.name_any(),
            secs(took)
        ));
        Ok(job)
    }

    /// Fails if a Job not seen before appears during `during`.
    pub async fn expect_no_new_job(&mut self, during: Duration, after: &str) -> Outcome {
        let what = format!("no new Job of {} after {after}", self.ctj);
        hold_for(&what, during, POLL, || self.unexpected()).await
    }

    /// Fails if a Job not seen before appears before `until`.
    pub async fn expect_no_new_job_until(&mut self, until: Instant, after: &str) -> Outcome {
        let what = format!("no new Job of {} after {after}", self.ctj);
        hold_until(&what, until, POLL, || self.unexpected()).await
    }

    async fn unexpected(&self) -> Outcome<Option<String>> {
        let jobs = self.current().await?;
        let fresh = names(&jobs)
            .into_iter()
            .filter(|n| !self.seen.contains(n))
            .collect::<Vec<_>>();
        Ok((!fresh.is_empty()).then(|| format!("Job(s) {fresh:?} appeared")))
    }
}

/// Labels the Job controller puts on a Job's Pods (`job-name` before Kubernetes 1.27, both
/// since).
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

/// The name of the Job a Pod belongs to, from its labels.
pub fn pod_job_name(pod: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    JOB_NAME_LABELS
        .iter()
        .find_map(|key| labels.get(*key))
        .cloned()
}

/// Pods in `namespace` that belong to a Job (by label).
pub async fn job_pods(
    client: kube::Client,
    namespace: &str,
) -> Outcome<Vec<k8s_openapi::api::core::v1::Pod>> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, namespace);
    let mut pods = Vec::new();
    for key in JOB_NAME_LABELS {
        let found = api
            .list(&ListParams::default().labels(key))
            .await
            .context(format!("listing Pods labelled {key}"))?
            .items;
        for pod in found {
            if !pods
                .iter()
                .any(|p: &k8s_openapi::api::core::v1::Pod| p.metadata.uid == pod.metadata.uid)
            {
                pods.push(pod);
            }
        }
    }
    Ok(pods)
}
