//! A Job's state from its conditions.
//!
//! Since Kubernetes 1.31 the Job controller first adds `SuccessCriteriaMet` or `FailureTarget`
//! and only later (after its Pods terminate) `Complete` or `Failed`; earlier versions add only
//! the terminal ones. Reading either makes the answer right and early on every version.

use k8s_openapi::api::batch::v1::Job;

use crate::api::JobState;

/// The state of a Job.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten());
    let mut state = JobState::Active;
    for condition in conditions {
        if condition.status != "True" {
            continue;
        }
        match condition.type_.as_str() {
            // A failure verdict wins over anything else.
            "Failed" | "FailureTarget" => return JobState::Failed,
            "Complete" | "SuccessCriteriaMet" => state = JobState::Succeeded,
            _ => {}
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn job(conditions: &[(&str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| JobCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn job_without_status_is_active() {
        assert_eq!(job_state(&Job::default()), JobState::Active);
        assert_eq!(job_state(&job(&[])), JobState::Active);
    }

    #[test]
    fn complete_is_succeeded() {
        assert_eq!(
            job_state(&job(&[("Complete", "True")])),
            JobState::Succeeded
        );
    }

    #[test]
    fn success_criteria_met_is_succeeded_before_complete() {
        assert_eq!(
            job_state(&job(&[("SuccessCriteriaMet", "True")])),
            JobState::Succeeded
        );
    }

    #[test]
    fn failed_and_failure_target_are_failed() {
        assert_eq!(job_state(&job(&[("Failed", "True")])), JobState::Failed);
        assert_eq!(
            job_state(&job(&[("FailureTarget", "True")])),
            JobState::Failed
        );
    }

    #[test]
    fn false_conditions_are_ignored() {
        assert_eq!(
            job_state(&job(&[("Complete", "False"), ("Suspended", "True")])),
            JobState::Active
        );
    }

    #[test]
    fn pod_counters_do_not_decide() {
        let mut j = job(&[]);
        if let Some(s) = j.status.as_mut() {
            s.succeeded = Some(1);
            s.failed = Some(2);
        }
        assert_eq!(job_state(&j), JobState::Active);
    }
}
