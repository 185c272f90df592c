//! The concurrency policy: may a due trigger create its Job while Jobs this CTJ created earlier
//! are still running, and which of them go first?
//!
//! CronJob's meaning: `Allow` runs the new Job next to the running ones, `Forbid` holds the
//! trigger until none runs, `Replace` deletes the running ones and then creates the new Job.
//! Every Job the CTJ owns counts, not only the last one (a switch from `Allow` can leave
//! several running). A Job runs until its conditions say it succeeded or failed; one that is
//! being deleted, or is gone (deleted by someone), has finished.

use k8s_openapi::api::batch::v1::Job;

use super::job_state::job_state;
use super::trigger::Decision;
use crate::api::{ConcurrencyPolicy, JobState};

/// What the policy needs to know about one Job the CTJ owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedJob {
    /// Job name.
    pub name: String,
    /// State from its conditions.
    pub state: JobState,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
}

impl OwnedJob {
    /// The policy's view of a Job.
    pub fn from_job(job: &Job) -> Self {
        OwnedJob {
            name: job.metadata.name.clone().unwrap_or_default(),
            state: job_state(job),
            deleting: job.metadata.deletion_timestamp.is_some(),
        }
    }

    /// Whether the Job still runs (not finished by its conditions, not being deleted).
    pub fn running(&self) -> bool {
        self.state == JobState::Active && !self.deleting
    }
}

/// Names of the running Jobs, sorted.
pub fn running_jobs(jobs: &[OwnedJob]) -> Vec<String> {
    let mut running: Vec<String> = jobs
        .iter()
        .filter(|j| j.running())
        .map(|j| j.name.clone())
        .collect();
    running.sort();
    running.dedup();
    running
}

/// Whether a due trigger may create its Job now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Create the Job, after deleting `replace` (empty unless the policy is `Replace`).
    Create {
        /// Running Jobs to delete first.
        replace: Vec<String>,
    },
    /// `Forbid`: hold the trigger until these Jobs finish.
    Hold {
        /// The running Jobs.
        running: Vec<String>,
    },
}

/// What `policy` makes of a due trigger, given the CTJ's Jobs as they are now.
pub fn admit(policy: ConcurrencyPolicy, jobs: &[OwnedJob]) -> Admission {
    let running = running_jobs(jobs);
    match policy {
        ConcurrencyPolicy::Allow => Admission::Create {
            replace: Vec::new(),
        },
        ConcurrencyPolicy::Forbid if running.is_empty() => Admission::Create {
            replace: Vec::new(),
        },
        ConcurrencyPolicy::Forbid => Admission::Hold { running },
        ConcurrencyPolicy::Replace => Admission::Create { replace: running },
    }
}

/// A `Trigger` decision held by `Forbid`: it becomes `WaitingForActiveJob` (other decisions
/// are returned unchanged).
pub fn hold(decision: Decision, running: Vec<String>) -> Decision {
    match decision {
        Decision::Trigger { reason, changed } => Decision::WaitingForActiveJob {
            reason,
            changed,
            active: running,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
