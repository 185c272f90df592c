//! One reconcile of one ChangeTriggeredJob: observe, decide, create the Job, prune history,
//! write status.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use super::events::{Occurrence, Severity, job_reference};
use super::jobs::{self, CreateError, Created};
use super::observe;
use crate::api::{
    API_VERSION, ChangeTriggeredJob, ChangeTriggeredJobStatus, JobState, KIND,
    MANUAL_TRIGGER_ANNOTATION,
};
use crate::detect::conditions::{self, Health, Problem, ProblemScope, reasons};
use crate::detect::duration::{format_duration, parse_duration};
use crate::detect::history::jobs_to_prune;
use crate::detect::job::{JobRequest, build_job, is_owned_by, job_name};
use crate::detect::job_state::job_state;
use crate::detect::trigger::{
    Decision, Observation, Tracked, TriggerInput, TriggerReason, evaluate, manual_requested,
    rebaseline,
};

/// Field manager of the status writes.
pub const FIELD_MANAGER: &str = "kube-changejob";

/// How many watched objects of one CTJ are read at the same time.
const OBSERVE_CONCURRENCY: usize = 4;

/// Longest wait between retries of a failing CTJ.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Reconciles one CTJ (wrapped so a malformed object is reported instead of breaking the
/// watch).
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<ChangeTriggeredJob>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ctj = match &guarded.0 {
        Ok(ctj) => ctj,
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
            warn!(%namespace, %name, error = %invalid.error, "ChangeTriggeredJob cannot be decoded; skipping it");
            return Ok(Action::requeue(ctx.shared.settings.poll_interval));
        }
    };
    let started = Instant::now();
    let metrics = ctx.shared.metrics.clone();
    let result = reconcile_ctj(ctj, &ctx, started).await;
    metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => metrics.reconciles.with_label_values(&["ok"]).inc(),
        Err(e) => {
            metrics.reconciles.with_label_values(&["error"]).inc();
            metrics
                .reconcile_errors
                .with_label_values(&[e.metric_label()])
                .inc();
        }
    }
    result
}

/// What the error policy does after a failed reconcile: retry with capped exponential
/// backoff.
pub fn error_policy(
    guarded: Arc<DeserializeGuard<ChangeTriggeredJob>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let uid = match &guarded.0 {
        Ok(ctj) => ctj.uid().unwrap_or_default(),
        Err(invalid) => invalid.metadata.uid.clone().unwrap_or_default(),
    };
    let wait = ctx.shared.backoff(&uid, MAX_BACKOFF);
    warn!(%error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

#[tracing::instrument(skip_all, fields(namespace = %ctj.namespace().unwrap_or_default(), name = %ctj.name_any()))]
async fn reconcile_ctj(
    ctj: &ChangeTriggeredJob,
    ctx: &Context,
    started: Instant,
) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let name = ctj.name_any();
    let (Some(namespace), Some(uid)) = (ctj.namespace(), ctj.uid()) else {
        return Err(Error::MissingMetadata(name));
    };
    let ctj_ref = super::watches::CtjRef::new(&name).within(&namespace);
    if ctj.metadata.deletion_timestamp.is_some() {
        // Its Jobs go with it through their owner references.
        shared.hub.forget(&ctj_ref);
        shared.forget(&uid);
        return Ok(Action::await_change());
    }

    let now = (shared.clock)();
    let spec = &ctj.spec;
    let status = shared.freshest_status(&uid, ctj.status.as_ref());
    let mut problems: Vec<Problem> = Vec::new();

    if name.len() > 63 {
        problems.push(Problem {
            scope: ProblemScope::Spec,
            reason: reasons::INVALID_SPEC,
            message: format!(
                "metadata.name is {} characters long; it becomes the {} label value of created Jobs, which allows at most 63",
                name.len(),
                crate::api::OWNER_LABEL
            ),
        });
    }
    let cooldown_text = spec
        .cooldown
        .clone()
        .unwrap_or_else(|| crate::api::DEFAULT_COOLDOWN.to_string());
    let cooldown = match parse_duration(&cooldown_text) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(Problem {
                scope: ProblemScope::Spec,
                reason: reasons::INVALID_COOLDOWN,
                message: format!("spec.cooldown: {e}"),
            });
            None
        }
    };

    // Resolve every entry, declare interest (so the watches know what to report), observe.
    let mut resolved = Vec::with_capacity(spec.resources.len());
    for (index, reference) in spec.resources.iter().enumerate() {
        resolved.push(observe::resolve(shared, index, reference).await);
    }
    // Kinds that cannot be listed and watched (some aggregated APIs) are read on every
    // reconcile instead of through a shared watch.
    let watchable = |verbs: &[String]| {
        ["list", "watch"]
            .iter()
            .all(|v| verbs.iter().any(|x| x == v))
    };
    let interest: HashSet<_> = resolved
        .iter()
        .filter_map(|r| r.target.as_ref())
        .filter(|(info, _, _)| watchable(&info.verbs))
        .map(|(_, key, _)| key.clone())
        .collect();
    shared.hub.set_interest(&ctj_ref, interest);
    shared
        .metrics
        .watched_objects
        .set(i64::try_from(shared.hub.watched_objects()).unwrap_or(i64::MAX));

    let reads: Vec<_> = resolved
        .iter()
        .enumerate()
        .map(|(index, r)| observe::observe(shared, index, r))
        .collect();
    let observations: Vec<(Observation, Option<Problem>)> = futures::stream::iter(reads)
        .buffered(OBSERVE_CONCURRENCY)
        .collect()
        .await;
    let mut observed = Vec::with_capacity(observations.len());
    for (r, (observation, problem)) in resolved.iter().zip(observations) {
        observed.push((r.object.clone(), observation));
        problems.extend(problem);
    }

    // Owned Jobs from the informer.
    let owned: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.metadata.namespace.as_deref() == Some(namespace.as_str()) && is_owned_by(j, &uid)
        })
        .collect();

    let previous: Vec<Tracked> = status
        .resource_hashes
        .iter()
        .map(Tracked::from_status)
        .collect();
    let key_changed = match &status.fingerprint_key_id {
        Some(id) => id != shared.key.id(),
        None => !previous.is_empty(),
    };
    let last_triggered = status.last_triggered_time.as_ref().map(|t| t.0);
    let manual_request = ctj.annotations().get(MANUAL_TRIGGER_ANNOTATION).cloned();
    let mut sequence = status.trigger_sequence.unwrap_or(0);

    let evaluation = evaluate(&TriggerInput {
        condition: spec.condition(),
        cooldown: cooldown.unwrap_or(Duration::ZERO),
        suspended: spec.suspended(),
        manual_request: manual_request.as_deref(),
        last_manual: status.last_manual_trigger.as_deref(),
        last_triggered,
        key_changed,
        previous: &previous,
        observed: &observed,
        now,
    });
    let mut tracked = evaluation.tracked;
    // An unusable cooldown or name must not fire Jobs; pending changes are kept.
    let mut decision = if cooldown.is_none() || name.len() > 63 {
        match evaluation.decision {
            Decision::Trigger { .. } | Decision::Deferred { .. } => Decision::Idle,
            other => other,
        }
    } else {
        evaluation.decision
    };

    let mut new_status = ChangeTriggeredJobStatus {
        observed_generation: ctj.metadata.generation,
        last_triggered_time: status.last_triggered_time.clone(),
        last_job_name: status.last_job_name.clone(),
        last_job_status: status.last_job_status,
        trigger_sequence: status.trigger_sequence,
        last_manual_trigger: status.last_manual_trigger.clone(),
        fingerprint_key_id: Some(shared.key.id().to_string()),
        ..ChangeTriggeredJobStatus::default()
    };
    let mut transient = false;
    let mut created_job: Option<String> = None;

    // A Job for the next sequence number already exists: an earlier reconcile created it but
    // crashed (or lost the Lease) before recording it. Record it now instead of firing again.
    let next_name = job_name(&name, &uid, sequence + 1);
    if let Some(existing) = owned
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(next_name.as_str()))
    {
        info!(job = %next_name, "adopting a Job created before a restart");
        sequence += 1;
        tracked = rebaseline(&tracked);
        new_status.trigger_sequence = Some(sequence);
        new_status.last_job_name = Some(next_name.clone());
        new_status.last_triggered_time = existing
            .metadata
            .creation_timestamp
            .clone()
            .or(Some(Time(now)));
        new_status.last_manual_trigger = manual_request
            .clone()
            .or(status.last_manual_trigger.clone());
        decision = Decision::Idle;
    } else if let Decision::Trigger { reason, changed } = &decision {
        let job = build_job(&JobRequest {
            ctj_name: &name,
            ctj_namespace: &namespace,
            ctj_uid: &uid,
            template: &spec.job_template,
            sequence: sequence + 1,
            reason: *reason,
            changed,
        });
        match jobs::create(&shared.client, &namespace, &uid, &job).await {
            Ok(outcome) => {
                let job = match outcome {
                    Created::New(job) | Created::Existing(job) => job,
                };
                let job_name = job.metadata.name.clone().unwrap_or_default();
                sequence += 1;
                tracked = rebaseline(&tracked);
                new_status.trigger_sequence = Some(sequence);
                new_status.last_job_name = Some(job_name.clone());
                new_status.last_job_status = Some(JobState::Active);
                new_status.last_triggered_time = Some(Time(now));
                if manual_requested(
                    manual_request.as_deref(),
                    status.last_manual_trigger.as_deref(),
                ) {
                    new_status.last_manual_trigger = manual_request.clone();
                }
                shared
                    .metrics
                    .triggers
                    .with_label_values(&[reason.as_str()])
                    .inc();
                shared.metrics.jobs_created.inc();
                if let Some(latency) = shared.pending_since(&uid, true, true, started) {
                    shared
                        .metrics
                        .change_to_job_latency
                        .observe(latency.as_secs_f64());
                }
                let what = if *reason == TriggerReason::Manual {
                    "the manual trigger annotation".to_string()
                } else {
                    changed
                        .iter()
                        .map(|o| o.display_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                info!(job = %job_name, reason = reason.as_str(), "created Job");
                let related = job_reference(&namespace, &job_name, job.metadata.uid.clone());
                publish(
                    ctx,
                    ctj,
                    Severity::Normal,
                    "JobCreated",
                    "CreateJob",
                    format!("Created Job {job_name} for {what}"),
                    Some(related),
                )
                .await;
                created_job = Some(job_name);
            }
            Err(error) => {
                let (reason, message, is_transient) = match error {
                    CreateError::Invalid(m) => (reasons::INVALID_JOB_TEMPLATE, m, false),
                    CreateError::NameTaken(m) => (reasons::JOB_NAME_CONFLICT, m, false),
                    CreateError::Forbidden(m) => (reasons::JOB_CREATE_FAILED, m, true),
                    CreateError::Other(m) => (reasons::JOB_CREATE_FAILED, m, true),
                };
                transient |= is_transient;
                problems.push(Problem {
                    scope: ProblemScope::Action,
                    reason,
                    message,
                });
            }
        }
    }
    let pending = tracked.iter().any(Tracked::pending);
    if created_job.is_none() {
        shared.pending_since(&uid, pending, false, started);
    }

    // History: the newest `history` Jobs stay, including the one just created.
    let mut records: Vec<_> = owned.iter().map(|j| jobs::record(j)).collect();
    if let Some(job) = &created_job
        && !records.iter().any(|r| &r.name == job)
    {
        records.push(crate::detect::history::JobRecord {
            name: job.clone(),
            created: Some(now),
            sequence: Some(sequence),
            deleting: false,
        });
    }
    let prune = jobs_to_prune(
        &records,
        spec.history(),
        new_status.last_job_name.as_deref(),
    );
    if !prune.is_empty() {
        let (deleted, errors) = jobs::delete(&shared.client, &namespace, &prune).await;
        if !deleted.is_empty() {
            shared.metrics.jobs_deleted.inc_by(deleted.len() as u64);
            publish(
                ctx,
                ctj,
                Severity::Normal,
                "JobsPruned",
                "DeleteJobs",
                format!(
                    "Deleted {} old Job(s) beyond history {}: {}",
                    deleted.len(),
                    spec.history(),
                    deleted.join(", ")
                ),
                None,
            )
            .await;
        }
        if !errors.is_empty() {
            transient = true;
            problems.push(Problem {
                scope: ProblemScope::Action,
                reason: reasons::PRUNE_FAILED,
                message: errors.join("; "),
            });
        }
    }

    // State of the last Job, from its conditions.
    if created_job.is_none()
        && let Some(last) = &new_status.last_job_name
        && let Some(job) = owned
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(last.as_str()))
    {
        new_status.last_job_status = Some(job_state(job));
    }

    if let Decision::Deferred { until, .. } = &decision {
        new_status.next_trigger_time = Some(Time(*until));
    }
    new_status.resource_hashes = tracked.iter().map(Tracked::to_status).collect();
    let cooldown_shown = cooldown.map(format_duration).unwrap_or(cooldown_text);
    new_status.conditions = conditions::conditions(
        ctj.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default(),
        &Health {
            generation: ctj.metadata.generation,
            problems: &problems,
            decision: &decision,
            last_job: new_status
                .last_job_name
                .as_deref()
                .zip(new_status.last_job_status),
            watched: spec.resources.len(),
            cooldown_text: &cooldown_shown,
        },
        now,
    );

    // Events for transitions, not for every retry.
    let previous_conditions = ctj
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Decision::Deferred { until, changed } = &decision {
        let was_deferred_until = status.next_trigger_time.as_ref().map(|t| t.0);
        if was_deferred_until != Some(*until) {
            shared.metrics.deferred_triggers.inc();
            let what = changed
                .iter()
                .map(|o| o.display_name())
                .collect::<Vec<_>>()
                .join(", ");
            publish(
                ctx,
                ctj,
                Severity::Normal,
                "TriggerDeferred",
                "DeferTrigger",
                format!(
                    "{what} changed during the cooldown; the Job will be created at {}",
                    until.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
                None,
            )
            .await;
        }
    }
    let degraded_message = |c: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        c.iter()
            .find(|c| c.type_ == conditions::types::DEGRADED && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let Some((reason, message)) = degraded_message(&new_status.conditions)
        && degraded_message(&previous_conditions).as_ref()
            != Some(&(reason.clone(), message.clone()))
    {
        publish(
            ctx,
            ctj,
            Severity::Warning,
            &reason,
            "Reconcile",
            message,
            None,
        )
        .await;
    }

    // Write status only when it changed.
    if ctj.status.as_ref() != Some(&new_status) {
        let api: Api<ChangeTriggeredJob> = Api::namespaced(shared.client.clone(), &namespace);
        let patch = json!({ "apiVersion": API_VERSION, "kind": KIND, "status": new_status });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Status {
            name: name.clone(),
            source,
        })?;
        shared.wrote_status(&uid, &new_status);
    }

    if transient {
        let wait = shared.backoff(
            &uid,
            MAX_BACKOFF.min(shared.settings.poll_interval.max(Duration::from_secs(1))),
        );
        return Ok(Action::requeue(wait));
    }
    let observation_trouble = problems
        .iter()
        .any(|p| p.scope == ProblemScope::Observation);
    if observation_trouble {
        let wait = shared.backoff(&uid, shared.settings.poll_interval);
        return Ok(Action::requeue(wait));
    }
    shared.succeeded(&uid);
    Ok(match &decision {
        Decision::Deferred { until, .. } => {
            let wait = until.duration_since((shared.clock)());
            let wait =
                Duration::try_from(wait).unwrap_or(Duration::ZERO) + Duration::from_millis(50);
            Action::requeue(wait.min(shared.settings.poll_interval))
        }
        _ => Action::requeue(shared.settings.poll_interval),
    })
}

async fn publish(
    ctx: &Context,
    ctj: &ChangeTriggeredJob,
    severity: Severity,
    reason: &str,
    action: &str,
    note: String,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
) {
    let shared = &ctx.shared;
    let now = (shared.clock)();
    let what = Occurrence {
        severity,
        reason: reason.to_string(),
        action: action.to_string(),
        note,
        related,
    };
    if let Err(error) = shared.events.publish(ctj, what, now).await {
        warn!(%error, reason, "could not record an event");
    }
}
