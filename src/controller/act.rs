//! Carrying out a decision: adopting a Job that a crashed run created but never recorded,
//! applying the concurrency policy, creating the trigger's Job, and deleting Jobs beyond the
//! history limit.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tracing::info;

use super::admit::{Admitted, admit_trigger, replace_running};
use super::events::{Severity, job_reference};
use super::jobs::{self, CreateError, Created};
use super::round::{Round, names};
use crate::api::{ChangeTriggeredJobStatus, JobState, MANUAL_TRIGGER_ANNOTATION};
use crate::detect::concurrency::hold;
use crate::detect::conditions::{Problem, ProblemScope, reasons};
use crate::detect::history::{JobRecord, jobs_to_prune};
use crate::detect::job::{JobRequest, build_job, job_name};
use crate::detect::trigger::{
    Decision, Evaluation, Tracked, TriggerReason, manual_requested, rebaseline, trigger_stamp,
};

/// What the round ends with: trigger state, decision and the status fields about Jobs.
pub(super) struct Outcome {
    /// Trigger state per watched object.
    pub tracked: Vec<Tracked>,
    /// The decision, after acting on it (a carried-out trigger stays `Trigger`).
    pub decision: Decision,
    /// Status with the Job fields filled in (conditions and hashes come later).
    pub status: ChangeTriggeredJobStatus,
    /// The Job created in this round, if any.
    pub created_job: Option<String>,
    /// Running Jobs deleted in this round to make way for it (`concurrencyPolicy: Replace`).
    pub replaced: Vec<String>,
}

/// Records a Job an earlier run created for the next sequence number but never recorded.
fn adopt(
    outcome: &mut Outcome,
    existing: &Job,
    now: jiff::Timestamp,
    manual_request: Option<String>,
    previous: &ChangeTriggeredJobStatus,
) {
    let name = existing.metadata.name.clone().unwrap_or_default();
    info!(job = %name, "adopting a Job created before a restart");
    outcome.tracked = rebaseline(&outcome.tracked);
    outcome.status.trigger_sequence = Some(previous.trigger_sequence.unwrap_or(0) + 1);
    outcome.status.last_job_name = Some(name);
    outcome.status.last_triggered_time = existing
        .metadata
        .creation_timestamp
        .clone()
        .or(Some(Time(trigger_stamp(now))));
    outcome.status.last_manual_trigger = manual_request.or(previous.last_manual_trigger.clone());
    outcome.decision = Decision::Idle;
}

/// Adopts a Job left by a crash, or creates the Job a `Trigger` decision asks for.
pub(super) async fn carry_out(
    round: &mut Round<'_>,
    previous: &ChangeTriggeredJobStatus,
    owned: &[Arc<Job>],
    evaluation: Evaluation,
) -> Outcome {
    let shared = round.shared();
    let manual_request = round
        .ctj
        .annotations()
        .get(MANUAL_TRIGGER_ANNOTATION)
        .cloned();
    let sequence = previous.trigger_sequence.unwrap_or(0);
    let mut outcome = Outcome {
        tracked: evaluation.tracked,
        decision: evaluation.decision,
        status: ChangeTriggeredJobStatus {
            observed_generation: round.ctj.metadata.generation,
            last_triggered_time: previous.last_triggered_time.clone(),
            last_job_name: previous.last_job_name.clone(),
            last_job_status: previous.last_job_status,
            trigger_sequence: previous.trigger_sequence,
            last_manual_trigger: previous.last_manual_trigger.clone(),
            fingerprint_key_id: Some(shared.key.id().to_string()),
            ..ChangeTriggeredJobStatus::default()
        },
        created_job: None,
        replaced: Vec::new(),
    };

    // A Job for the next sequence number already exists: an earlier run created it but crashed
    // (or lost the Lease) before recording it. Record it instead of firing again.
    let next_name = job_name(&round.name, &round.uid, sequence + 1);
    if let Some(existing) = owned
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(next_name.as_str()))
    {
        adopt(&mut outcome, existing, round.now, manual_request, previous);
        return outcome;
    }

    let Decision::Trigger { .. } = &outcome.decision else {
        return outcome;
    };
    // Decoded before any running Job is replaced, so a template that cannot be read stops the
    // trigger with nothing deleted.
    let template = match round.ctj.spec.job_template.decode() {
        Ok(template) => template,
        Err(error) => {
            round.problems.push(Problem {
                scope: ProblemScope::Action,
                reason: reasons::INVALID_JOB_TEMPLATE,
                message: format!("spec.jobTemplate cannot be read: {error}"),
            });
            return outcome;
        }
    };
    match admit_trigger(round, owned, &next_name).await {
        Admitted::Create(running) => {
            if !replace_running(round, &running).await {
                return outcome;
            }
            outcome.replaced = running;
        }
        Admitted::Adopt(existing) => {
            adopt(&mut outcome, &existing, round.now, manual_request, previous);
            return outcome;
        }
        Admitted::Hold(running) => {
            outcome.decision = hold(outcome.decision, running);
            return outcome;
        }
        Admitted::Unknown => return outcome,
    }
    let Decision::Trigger { reason, changed } = &outcome.decision else {
        return outcome;
    };
    let job = build_job(&JobRequest {
        ctj_name: &round.name,
        ctj_namespace: &round.namespace,
        ctj_uid: &round.uid,
        template: &template,
        sequence: sequence + 1,
        reason: *reason,
        changed,
    });
    let job = match jobs::create(&shared.client, &round.namespace, &round.uid, &job).await {
        Ok(Created::New(job) | Created::Existing(job)) => job,
        Err(error) => {
            let (reason, message, transient) = match error {
                CreateError::Invalid(m) => (reasons::INVALID_JOB_TEMPLATE, m, false),
                CreateError::NameTaken(m) => (reasons::JOB_NAME_CONFLICT, m, false),
                CreateError::Forbidden(m) | CreateError::Other(m) => {
                    (reasons::JOB_CREATE_FAILED, m, true)
                }
            };
            round.transient |= transient;
            round.problems.push(Problem {
                scope: ProblemScope::Action,
                reason,
                message,
            });
            return outcome;
        }
    };
    let created = job.metadata.name.clone().unwrap_or_default();
    outcome.tracked = rebaseline(&outcome.tracked);
    outcome.status.trigger_sequence = Some(sequence + 1);
    outcome.status.last_job_name = Some(created.clone());
    outcome.status.last_job_status = Some(JobState::Active);
    // After the create returned, so the recorded second is never before the Job existed (the
    // cooldown is counted from it).
    outcome.status.last_triggered_time = Some(Time(trigger_stamp((shared.clock)())));
    if manual_requested(
        manual_request.as_deref(),
        previous.last_manual_trigger.as_deref(),
    ) {
        outcome.status.last_manual_trigger = manual_request;
    }

    shared
        .metrics
        .triggers
        .with_label_values(&[reason.as_str()])
        .inc();
    shared.metrics.jobs_created.inc();
    if let Some(latency) = shared.pending_since(&round.uid, true, true, round.started) {
        shared
            .metrics
            .change_to_job_latency
            .observe(latency.as_secs_f64());
    }
    let what = match reason {
        TriggerReason::Manual => "the manual trigger annotation".to_string(),
        TriggerReason::Change => names(changed),
    };
    info!(job = %created, reason = reason.as_str(), "created Job");
    let related = job_reference(&round.namespace, &created, job.metadata.uid.clone());
    round
        .publish(
            Severity::Normal,
            "JobCreated",
            "CreateJob",
            format!("Created Job {created} for {what}"),
            Some(related),
        )
        .await;
    outcome.created_job = Some(created);
    outcome
}

/// Deletes the Jobs beyond `spec.history`, keeping the newest (including one just created).
pub(super) async fn prune_history(round: &mut Round<'_>, owned: &[Arc<Job>], outcome: &Outcome) {
    let mut records: Vec<JobRecord> = owned
        .iter()
        .map(|j| jobs::record(j))
        .filter(|r| !outcome.replaced.contains(&r.name))
        .collect();
    if let Some(job) = &outcome.created_job
        && !records.iter().any(|r| &r.name == job)
    {
        records.push(JobRecord {
            name: job.clone(),
            created: Some(round.now),
            sequence: outcome.status.trigger_sequence,
            deleting: false,
        });
    }
    let history = round.ctj.spec.history();
    let prune = jobs_to_prune(&records, history, outcome.status.last_job_name.as_deref());
    if prune.is_empty() {
        return;
    }
    let shared = round.shared();
    let (deleted, errors) = jobs::delete(&shared.client, &round.namespace, &prune).await;
    if !deleted.is_empty() {
        shared.metrics.jobs_deleted.inc_by(deleted.len() as u64);
        // Logged and counted, not an Event: an Event would cost one more request for every
        // Job once the history is full, from the budget Job creates need.
        tracing::info!(history, jobs = ?deleted, "deleted old Jobs beyond the history limit");
    }
    if !errors.is_empty() {
        round.transient = true;
        round.problems.push(Problem {
            scope: ProblemScope::Action,
            reason: reasons::PRUNE_FAILED,
            message: errors.join("; "),
        });
    }
}
