//! Applying `spec.concurrencyPolicy` to a due trigger: hold it while the CTJ's Jobs run
//! (`Forbid`), or delete them first (`Replace`).
//!
//! Holding may rest on the informer (a Job it shows running may only have finished since, and
//! that completion wakes the CTJ again). Creating may not: the informer can lag behind a Job
//! created a moment ago, or not have listed yet after a restart or leader handover, so a Job is
//! created under `Forbid` or `Replace` only after a fresh list from the API server.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;

use super::events::Severity;
use super::jobs;
use super::round::Round;
use crate::api::ConcurrencyPolicy;
use crate::detect::concurrency::{Admission, OwnedJob, admit, running_jobs};
use crate::detect::conditions::{Problem, ProblemScope, reasons};

/// What the policy lets the round do with its due trigger.
pub(super) enum Admitted {
    /// Create the Job, after deleting these running Jobs.
    Create(Vec<String>),
    /// The Job of this trigger already exists (created before a restart): adopt it.
    Adopt(Box<Job>),
    /// `Forbid`: wait for these running Jobs.
    Hold(Vec<String>),
    /// The Jobs could not be listed; a problem was recorded and the trigger stays due.
    Unknown,
}

/// Applies the CTJ's concurrency policy to a due trigger whose Job would be `next_name`.
pub(super) async fn admit_trigger(
    round: &mut Round<'_>,
    owned: &[Arc<Job>],
    next_name: &str,
) -> Admitted {
    let policy = round.ctj.spec.concurrency_policy();
    if policy == ConcurrencyPolicy::Allow {
        return Admitted::Create(Vec::new());
    }
    if policy == ConcurrencyPolicy::Forbid {
        let cached: Vec<OwnedJob> = owned.iter().map(|j| OwnedJob::from_job(j)).collect();
        let running = running_jobs(&cached);
        if !running.is_empty() {
            return Admitted::Hold(running);
        }
    }
    let shared = round.shared();
    let current =
        match jobs::list_owned(&shared.client, &round.namespace, &round.name, &round.uid).await {
            Ok(current) => current,
            Err(message) => {
                round.transient = true;
                round.problems.push(Problem {
                    scope: ProblemScope::Action,
                    reason: reasons::JOB_LIST_FAILED,
                    message,
                });
                return Admitted::Unknown;
            }
        };
    if let Some(existing) = current
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(next_name))
    {
        return Admitted::Adopt(Box::new(existing.clone()));
    }
    let views: Vec<OwnedJob> = current.iter().map(OwnedJob::from_job).collect();
    match admit(policy, &views) {
        Admission::Create { replace } => Admitted::Create(replace),
        Admission::Hold { running } => Admitted::Hold(running),
    }
}

/// Deletes the running Jobs a `Replace` trigger makes way for (background propagation, so
/// their Pods go too). Returns whether every one is gone; otherwise a problem was recorded
/// and the new Job must wait, or two would run.
pub(super) async fn replace_running(round: &mut Round<'_>, running: &[String]) -> bool {
    if running.is_empty() {
        return true;
    }
    let shared = round.shared();
    let (deleted, errors) = jobs::delete(&shared.client, &round.namespace, running).await;
    if !deleted.is_empty() {
        shared.metrics.jobs_deleted.inc_by(deleted.len() as u64);
        let note = format!(
            "Deleted running Job(s) {} to replace them with a new one (concurrencyPolicy Replace)",
            deleted.join(", ")
        );
        round
            .publish(Severity::Normal, "JobReplaced", "DeleteJobs", note, None)
            .await;
    }
    if errors.is_empty() {
        return true;
    }
    round.transient = true;
    round.problems.push(Problem {
        scope: ProblemScope::Action,
        reason: reasons::JOB_REPLACE_FAILED,
        message: format!(
            "concurrencyPolicy Replace: {}; the new Job is created once the running one is deleted",
            errors.join("; ")
        ),
    });
    false
}
