//! Reporting a round: the status (Job state, trigger state, conditions), events for what
//! changed since the last report, and the status write when anything differs.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::act::Outcome;
use super::error::Error;
use super::events::Severity;
use super::round::{Round, names};
use crate::api::{API_VERSION, ChangeTriggeredJob, ChangeTriggeredJobStatus, KIND};
use crate::detect::conditions::{self, Health, reasons};
use crate::detect::job_state::job_state;
use crate::detect::trigger::{Decision, Tracked};

/// Field manager of the status writes.
pub const FIELD_MANAGER: &str = "kube-changejob";

/// Completes the status, records transition events, and writes the status if it changed.
/// Returns the decision for requeueing.
pub(super) async fn report(
    round: &mut Round<'_>,
    previous: &ChangeTriggeredJobStatus,
    outcome: Outcome,
    owned: &[Arc<Job>],
    cooldown_shown: &str,
) -> Result<Decision, Error> {
    let Outcome {
        tracked,
        decision,
        mut status,
        created_job,
        replaced: _,
    } = outcome;
    let shared = round.shared();
    if created_job.is_none() {
        shared.pending_since(
            &round.uid,
            tracked.iter().any(Tracked::pending),
            false,
            round.started,
        );
    }

    // State of the last Job, from its conditions.
    if created_job.is_none()
        && let Some(last) = &status.last_job_name
        && let Some(job) = owned
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(last.as_str()))
    {
        status.last_job_status = Some(job_state(job));
    }
    if let Decision::Deferred { until, .. } = &decision {
        status.next_trigger_time = Some(Time(*until));
    }
    status.resource_hashes = tracked.iter().map(Tracked::to_status).collect();
    // A round woken (e.g. by its new Job) before the informer delivered the last status write
    // starts from that write, so it neither writes the same status again nor moves the
    // conditions' transition times.
    let informer_version = round.ctj.metadata.resource_version.clone();
    let shown = shared.written().shown(
        &round.uid,
        round.ctj.status.as_ref(),
        informer_version.as_deref(),
    );
    let shown_before = shown
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    status.conditions = conditions::conditions(
        &shown_before,
        &Health {
            generation: round.ctj.metadata.generation,
            problems: &round.problems,
            decision: &decision,
            last_job: status.last_job_name.as_deref().zip(status.last_job_status),
            watched: round.ctj.spec.resources.len(),
            cooldown_text: cooldown_shown,
        },
        round.now,
    );
    shared.metrics.ctj_conditions.record(
        round.ctj.metadata.namespace.as_deref().unwrap_or_default(),
        round.ctj.metadata.name.as_deref().unwrap_or_default(),
        status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str())),
    );

    // Events for transitions, not for every retry.
    if let Decision::Deferred { until, changed } = &decision
        && previous.next_trigger_time.as_ref().map(|t| t.0) != Some(*until)
    {
        shared.metrics.deferred_triggers.inc();
        let note = format!(
            "{} changed during the cooldown; the Job will be created at {}",
            names(changed),
            until.strftime("%Y-%m-%dT%H:%M:%SZ")
        );
        round
            .publish(
                Severity::Normal,
                "TriggerDeferred",
                "DeferTrigger",
                note,
                None,
            )
            .await;
    }
    if let Decision::WaitingForActiveJob {
        reason,
        changed,
        active,
    } = &decision
        && progressing_reason(&shown_before) != Some(reasons::WAITING_FOR_ACTIVE_JOB)
    {
        shared.metrics.deferred_triggers.inc();
        round
            .publish(
                Severity::Normal,
                reasons::WAITING_FOR_ACTIVE_JOB,
                "HoldTrigger",
                conditions::waiting_message(*reason, changed, active),
                None,
            )
            .await;
    }
    if let Some((reason, message)) = degraded(&status.conditions)
        && degraded(&shown_before).as_ref() != Some(&(reason.clone(), message.clone()))
    {
        round
            .publish(Severity::Warning, &reason, "Reconcile", message, None)
            .await;
    }

    if shown.as_ref() != Some(&status) {
        let api: Api<ChangeTriggeredJob> = Api::namespaced(shared.client.clone(), &round.namespace);
        let patch = json!({ "apiVersion": API_VERSION, "kind": KIND, "status": status });
        api.patch_status(
            &round.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Status {
            name: round.name.clone(),
            source,
        })?;
        shared
            .written()
            .wrote(&round.uid, &status, informer_version);
    }
    Ok(decision)
}

/// Reason of the Progressing condition.
fn progressing_reason(conditions: &[Condition]) -> Option<&str> {
    conditions
        .iter()
        .find(|c| c.type_ == conditions::types::PROGRESSING)
        .map(|c| c.reason.as_str())
}

/// Reason and message of a true Degraded condition.
fn degraded(conditions: &[Condition]) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == conditions::types::DEGRADED && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}
