//! The CTJ's status conditions, derived from what the last reconcile found.
//!
//! `Ready` is the summary Flux and Argo CD (kstatus) look at; `Available`, `Progressing` and
//! `Degraded` say why. `lastTransitionTime` moves only when a condition's status flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::trigger::{Decision, TriggerReason, WatchedObject};
use crate::api::JobState;

/// Condition types.
pub mod types {
    /// Summary condition for kstatus, Flux and Argo CD.
    pub const READY: &str = "Ready";
    /// Every watched object can be observed and the spec is usable.
    pub const AVAILABLE: &str = "Available";
    /// A trigger is deferred or a Job is running.
    pub const PROGRESSING: &str = "Progressing";
    /// Something needs attention.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (CamelCase, as Kubernetes requires).
pub mod reasons {
    /// Ready=True.
    pub const RECONCILED: &str = "Reconciled";
    /// Available=True.
    pub const WATCHING: &str = "Watching";
    /// Degraded=False.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Progressing=True: a trigger waits for the cooldown to end.
    pub const COOLDOWN_ACTIVE: &str = "CooldownActive";
    /// Progressing=True: a trigger waits for running Jobs to finish (concurrencyPolicy Forbid).
    pub const WAITING_FOR_ACTIVE_JOB: &str = "WaitingForActiveJob";
    /// Progressing=True: the last Job is running.
    pub const JOB_ACTIVE: &str = "JobActive";
    /// Progressing=False: condition All, some objects changed.
    pub const WAITING_FOR_ALL: &str = "WaitingForAllChanges";
    /// Progressing=False: nothing to do.
    pub const NO_CHANGES: &str = "NoChangesDetected";
    /// Progressing=False, Ready=True: spec.suspend is set.
    pub const SUSPENDED: &str = "Suspended";
    /// A watched kind is not served by the cluster.
    pub const KIND_NOT_FOUND: &str = "KindNotFound";
    /// The operator may not read a watched object (RBAC).
    pub const FORBIDDEN: &str = "Forbidden";
    /// Reading a watched object failed for another reason.
    pub const OBSERVATION_FAILED: &str = "ObservationFailed";
    /// A selector entry matches more objects than the operator's maxSelectorMembers setting.
    pub const TOO_MANY_OBJECTS: &str = "TooManyObjects";
    /// A field path does not parse.
    pub const INVALID_FIELD_PATH: &str = "InvalidFieldPath";
    /// spec.cooldown does not parse.
    pub const INVALID_COOLDOWN: &str = "InvalidCooldown";
    /// The spec is unusable in another way (e.g. namespace on a cluster-scoped kind).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The API server rejected the Job built from jobTemplate.
    pub const INVALID_JOB_TEMPLATE: &str = "InvalidJobTemplate";
    /// Creating the Job failed for another reason.
    pub const JOB_CREATE_FAILED: &str = "JobCreateFailed";
    /// A Job with the expected name exists but belongs to something else.
    pub const JOB_NAME_CONFLICT: &str = "JobNameConflict";
    /// Listing the CTJ's Jobs for the concurrency policy failed.
    pub const JOB_LIST_FAILED: &str = "JobListFailed";
    /// Deleting a running Job for concurrencyPolicy Replace failed.
    pub const JOB_REPLACE_FAILED: &str = "JobReplaceFailed";
    /// Deleting old Jobs failed.
    pub const PRUNE_FAILED: &str = "PruneFailed";
}

/// What kind of problem a reconcile found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemScope {
    /// The spec cannot be acted on as written.
    Spec,
    /// A watched object could not be read.
    Observation,
    /// Creating or deleting Jobs failed.
    Action,
}

/// One problem, for the Degraded condition and an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where it belongs.
    pub scope: ProblemScope,
    /// Condition reason (one of [`reasons`]).
    pub reason: &'static str,
    /// A sentence naming the object and what to do.
    pub message: String,
}

/// What the reconcile found, as needed for conditions.
#[derive(Clone, Debug)]
pub struct Health<'a> {
    /// metadata.generation of the CTJ.
    pub generation: Option<i64>,
    /// Problems found, in spec order.
    pub problems: &'a [Problem],
    /// The trigger decision (after acting on it).
    pub decision: &'a Decision,
    /// Name and state of the last Job, if any.
    pub last_job: Option<(&'a str, JobState)>,
    /// Number of watched objects.
    pub watched: usize,
    /// The cooldown as written, for messages.
    pub cooldown_text: &'a str,
}

/// Kubernetes caps condition messages at 32768 bytes.
const MAX_MESSAGE: usize = 32 * 1024;

/// The four conditions for `health`, keeping transition times from `previous` where the
/// status did not change.
pub fn conditions(previous: &[Condition], health: &Health<'_>, now: Timestamp) -> Vec<Condition> {
    let make = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: shorten(message, MAX_MESSAGE),
            observed_generation: health.generation,
            last_transition_time,
        }
    };

    let problems = health.problems;
    let summary = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");

    let ready = match problems.first() {
        Some(p) => make(types::READY, false, p.reason, summary.clone()),
        None if matches!(health.decision, Decision::Suspended { .. }) => make(
            types::READY,
            true,
            reasons::SUSPENDED,
            "Suspended: no Jobs are created until spec.suspend is false".into(),
        ),
        None => make(
            types::READY,
            true,
            reasons::RECONCILED,
            format!("Watching {} object(s)", health.watched),
        ),
    };

    let unavailable = problems
        .iter()
        .filter(|p| p.scope != ProblemScope::Action)
        .collect::<Vec<_>>();
    let available = match unavailable.first() {
        Some(p) => make(
            types::AVAILABLE,
            false,
            p.reason,
            unavailable
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => make(
            types::AVAILABLE,
            true,
            reasons::WATCHING,
            format!("All {} watched object(s) can be observed", health.watched),
        ),
    };

    let progressing = match (health.decision, health.last_job) {
        (Decision::Deferred { until, changed }, _) => make(
            types::PROGRESSING,
            true,
            reasons::COOLDOWN_ACTIVE,
            format!(
                "{} changed; the Job will be created at {} when the cooldown of {} ends",
                names(changed),
                until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                health.cooldown_text
            ),
        ),
        (
            Decision::WaitingForActiveJob {
                reason,
                changed,
                active,
            },
            _,
        ) => make(
            types::PROGRESSING,
            true,
            reasons::WAITING_FOR_ACTIVE_JOB,
            waiting_message(*reason, changed, active),
        ),
        (Decision::Suspended { pending }, _) => make(
            types::PROGRESSING,
            false,
            reasons::SUSPENDED,
            format!("Suspended with {pending} pending change(s)"),
        ),
        (Decision::Waiting { pending, of }, _) => make(
            types::PROGRESSING,
            false,
            reasons::WAITING_FOR_ALL,
            format!("{pending} of {of} watched objects changed; condition All waits for every one"),
        ),
        // A running Job is reported after the trigger pipeline's own state, which is what users
        // debug when a Job does not appear (e.g. All still waiting for some objects).
        (_, Some((job, JobState::Active))) => make(
            types::PROGRESSING,
            true,
            reasons::JOB_ACTIVE,
            format!("Job {job} is running"),
        ),
        _ => make(
            types::PROGRESSING,
            false,
            reasons::NO_CHANGES,
            "No pending changes".into(),
        ),
    };

    let degraded = match problems.first() {
        Some(p) => make(types::DEGRADED, true, p.reason, summary),
        None => make(
            types::DEGRADED,
            false,
            reasons::AS_EXPECTED,
            "No problems".into(),
        ),
    };

    vec![ready, available, progressing, degraded]
}

/// The sentence explaining a trigger held by `concurrencyPolicy: Forbid`.
pub fn waiting_message(
    reason: TriggerReason,
    changed: &[WatchedObject],
    active: &[String],
) -> String {
    let what = match reason {
        TriggerReason::Manual => "A manual trigger".to_string(),
        TriggerReason::Change => format!("{} changed; the trigger", names(changed)),
    };
    let jobs = match active {
        [one] => format!("Job {one} finishes"),
        many => format!("Jobs {} finish", many.join(", ")),
    };
    format!("{what} waits until {jobs} (concurrencyPolicy Forbid); then one Job is created")
}

fn names(changed: &[WatchedObject]) -> String {
    if changed.is_empty() {
        return "Nothing".into();
    }
    changed
        .iter()
        .map(|o| o.display_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts `message` to at most `max` bytes on a character boundary, ending it with "..." when
/// cut (Kubernetes rejects condition messages over 32 KiB and event notes over 1 KiB).
pub fn shorten(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut cut = max.saturating_sub(3);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn find<'a>(c: &'a [Condition], type_: &str) -> &'a Condition {
        c.iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"))
    }

    fn health<'a>(problems: &'a [Problem], decision: &'a Decision) -> Health<'a> {
        Health {
            generation: Some(3),
            problems,
            decision,
            last_job: None,
            watched: 2,
            cooldown_text: "60s",
        }
    }

    #[test]
    fn healthy_ctj_is_ready_available_and_not_degraded() {
        let c = conditions(&[], &health(&[], &Decision::Idle), t(0));
        assert_eq!(find(&c, types::READY).status, "True");
        assert_eq!(find(&c, types::AVAILABLE).status, "True");
        assert_eq!(find(&c, types::DEGRADED).status, "False");
        assert_eq!(find(&c, types::PROGRESSING).reason, reasons::NO_CHANGES);
        assert!(c.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn unknown_kind_is_degraded_and_unavailable_with_the_object_named() {
        let problems = [Problem {
            scope: ProblemScope::Spec,
            reason: reasons::KIND_NOT_FOUND,
            message: "resources[0]: kind Widgt is not served by example.com/v1".into(),
        }];
        let c = conditions(&[], &health(&problems, &Decision::Idle), t(0));
        let degraded = find(&c, types::DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", reasons::KIND_NOT_FOUND)
        );
        assert!(degraded.message.contains("Widgt"));
        assert_eq!(find(&c, types::AVAILABLE).status, "False");
        assert_eq!(find(&c, types::READY).status, "False");
    }

    #[test]
    fn job_create_failure_keeps_available_true() {
        let problems = [Problem {
            scope: ProblemScope::Action,
            reason: reasons::INVALID_JOB_TEMPLATE,
            message: "x".into(),
        }];
        let c = conditions(&[], &health(&problems, &Decision::Idle), t(0));
        assert_eq!(find(&c, types::AVAILABLE).status, "True");
        assert_eq!(
            find(&c, types::DEGRADED).reason,
            reasons::INVALID_JOB_TEMPLATE
        );
    }

    #[test]
    fn deferred_trigger_reports_cooldown_with_fire_time() {
        let changed = vec![WatchedObject {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: "app".into(),
            selector: None,
            fields: vec!["*".into()],
        }];
        let decision = Decision::Deferred {
            until: t(60),
            changed,
        };
        let c = conditions(&[], &health(&[], &decision), t(0));
        let p = find(&c, types::PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", reasons::COOLDOWN_ACTIVE)
        );
        assert!(p.message.contains("2023-11-14T22:14:20Z"), "{}", p.message);
        assert!(p.message.contains("ConfigMap/default/app"));
    }

    #[test]
    fn trigger_held_by_forbid_waits_for_the_running_job() {
        let changed = vec![WatchedObject {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: "app".into(),
            fields: vec!["*".into()],
            selector: None,
        }];
        let decision = Decision::WaitingForActiveJob {
            reason: TriggerReason::Change,
            changed,
            active: vec!["cw-abc".into()],
        };
        let mut h = health(&[], &decision);
        h.last_job = Some(("cw-abc", JobState::Active));
        let c = conditions(&[], &h, t(0));
        let p = find(&c, types::PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", reasons::WAITING_FOR_ACTIVE_JOB)
        );
        assert!(p.message.contains("ConfigMap/default/app"), "{}", p.message);
        assert!(p.message.contains("Job cw-abc finishes"), "{}", p.message);
        assert_eq!(find(&c, types::READY).status, "True");
    }

    #[test]
    fn held_manual_trigger_names_every_running_job() {
        let message = waiting_message(TriggerReason::Manual, &[], &["a".into(), "b".into()]);
        assert!(
            message.starts_with("A manual trigger waits until Jobs a, b finish"),
            "{message}"
        );
    }

    #[test]
    fn running_job_is_progressing() {
        let mut h = health(&[], &Decision::Idle);
        h.last_job = Some(("cw-abc", JobState::Active));
        let c = conditions(&[], &h, t(0));
        assert_eq!(find(&c, types::PROGRESSING).reason, reasons::JOB_ACTIVE);
    }

    #[test]
    fn waiting_for_all_is_shown_even_while_the_last_job_runs() {
        let mut h = health(&[], &Decision::Waiting { pending: 1, of: 3 });
        h.last_job = Some(("cw-abc", JobState::Active));
        let c = conditions(&[], &h, t(0));
        assert_eq!(
            find(&c, types::PROGRESSING).reason,
            reasons::WAITING_FOR_ALL
        );
    }

    #[test]
    fn waiting_for_all_is_explained() {
        let c = conditions(
            &[],
            &health(&[], &Decision::Waiting { pending: 1, of: 3 }),
            t(0),
        );
        let p = find(&c, types::PROGRESSING);
        assert_eq!(p.reason, reasons::WAITING_FOR_ALL);
        assert!(p.message.starts_with("1 of 3"));
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = conditions(&[], &health(&[], &Decision::Idle), t(0));
        let second = conditions(&first, &health(&[], &Decision::Idle), t(100));
        assert_eq!(find(&second, types::READY).last_transition_time, Time(t(0)));
        let problems = [Problem {
            scope: ProblemScope::Observation,
            reason: reasons::FORBIDDEN,
            message: "m".into(),
        }];
        let third = conditions(&second, &health(&problems, &Decision::Idle), t(200));
        assert_eq!(
            find(&third, types::READY).last_transition_time,
            Time(t(200))
        );
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let problems = [Problem {
            scope: ProblemScope::Spec,
            reason: reasons::INVALID_SPEC,
            message: "é".repeat(40_000),
        }];
        let c = conditions(&[], &health(&problems, &Decision::Idle), t(0));
        assert!(find(&c, types::DEGRADED).message.len() <= MAX_MESSAGE);
    }
}
