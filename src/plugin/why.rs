//! `kubectl changejob why`: why the last Job ran and why no Job runs now, in sentences, from
//! the ChangeTriggeredJob's status, its Jobs and the watched objects as they are now.

use std::fmt::Write;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;

use super::history::{job_state_text, job_time};
use super::view::CtjView;
use crate::api::JobState;
use crate::api::{CHANGED_RESOURCES_ANNOTATION, ResourceHashStatus, TRIGGER_REASON_ANNOTATION};
use crate::detect::conditions::{reasons, types};
use crate::detect::duration::parse_duration;
use crate::detect::job_state::job_state;
use crate::detect::trigger::cooldown_end;

/// Progressing reason of a trigger held by `concurrencyPolicy: Forbid` until the active Job
/// finishes.
pub const WAITING_FOR_ACTIVE_JOB: &str = "WaitingForActiveJob";

/// A watched object (or set) as read just now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveObject {
    /// What the read found.
    pub state: LiveState,
}

/// What reading a watched object found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveState {
    /// It exists; last written then (from managedFields), if known.
    Exists {
        /// Latest write time.
        last_written: Option<Timestamp>,
    },
    /// It does not exist.
    Absent,
    /// A set entry: this many objects match the selector.
    Members(usize),
    /// It could not be read (with the reason).
    Unreadable(String),
}

/// The explanation, as lines of text.
pub fn explain(view: &CtjView, jobs: &[Job], live: &[LiveObject], now: Timestamp) -> String {
    let mut out = String::new();
    let status = &view.status;
    let _ = writeln!(
        out,
        "ChangeTriggeredJob {}/{}: condition {}, cooldown {}, concurrencyPolicy {}{}.",
        view.namespace,
        view.name,
        view.condition,
        view.cooldown,
        view.concurrency_policy,
        if view.suspend { ", suspended" } else { "" }
    );
    if status.observed_generation.is_none() && status.conditions.is_empty() {
        let _ = writeln!(
            out,
            "The operator has not reported on it yet: is kube-changejob running, and does it watch namespace {}?",
            view.namespace
        );
    } else if status.observed_generation.is_some() && status.observed_generation < view.generation {
        let _ = writeln!(
            out,
            "The spec changed since the operator last reported (generation {} against {}); what follows may be out of date.",
            view.generation.unwrap_or_default(),
            status.observed_generation.unwrap_or_default()
        );
    }

    // Why the last Job ran.
    out.push_str("\nLast Job:\n");
    let mut sorted: Vec<&Job> = jobs.iter().collect();
    sorted.sort_by_key(|j| std::cmp::Reverse(job_time(j)));
    let last = status
        .last_job_name
        .as_deref()
        .and_then(|name| {
            jobs.iter()
                .find(|j| j.metadata.name.as_deref() == Some(name))
        })
        .or(sorted.first().copied());
    match (last, &status.last_job_name) {
        (Some(job), _) => {
            let name = job.metadata.name.as_deref().unwrap_or_default();
            let annotations = job.metadata.annotations.clone().unwrap_or_default();
            let created = job_time(job)
                .map(|t| format!(" at {}", when(t, now)))
                .unwrap_or_default();
            let reason = match annotations
                .get(TRIGGER_REASON_ANNOTATION)
                .map(String::as_str)
            {
                Some("manual") => {
                    "because it was triggered by hand (changejob.dev/trigger)".to_owned()
                }
                _ => match annotations
                    .get(CHANGED_RESOURCES_ANNOTATION)
                    .filter(|v| !v.is_empty())
                {
                    Some(changed) => format!("because {} changed", changed.replace(',', ", ")),
                    None => "because watched objects changed".to_owned(),
                },
            };
            let _ = writeln!(
                out,
                "  Job {name} was created{created} {reason}. It {}.",
                job_state_text(job)
            );
        }
        (None, Some(name)) => {
            let _ = writeln!(
                out,
                "  Job {name} was the last one created{}; it no longer exists (deleted, or pruned by history).",
                status
                    .last_triggered_time
                    .as_ref()
                    .map(|t| format!(" at {}", when(t.0, now)))
                    .unwrap_or_default()
            );
        }
        (None, None) => {
            out.push_str("  No Job has run yet: creating a ChangeTriggeredJob never triggers by itself; a change of a watched object (or kubectl changejob trigger) does.\n");
        }
    }

    // Why no Job runs now.
    out.push_str("\nNow:\n");
    for sentence in now_sentences(view, &sorted, now) {
        let _ = writeln!(out, "  {sentence}");
    }

    // Each watched object.
    out.push_str("\nWatched objects:\n");
    if view.watched.is_empty() {
        out.push_str("  none (spec.resources is empty)\n");
    }
    let since = status
        .last_triggered_time
        .as_ref()
        .map(|t| format!("since the last Job ({})", when(t.0, now)))
        .unwrap_or_else(|| "since it was first observed".into());
    for (i, entry) in view.watched.iter().enumerate() {
        let hash = matching_hash(view, i);
        let pending = match hash {
            Some(h) if h.hash != h.baseline => format!("changed {since}: pending"),
            Some(_) => format!("unchanged {since}: not pending"),
            None => "not observed yet".to_owned(),
        };
        let now_text = match live.get(i).map(|l| &l.state) {
            Some(LiveState::Exists {
                last_written: Some(t),
            }) => format!("; last written {}", when(*t, now)),
            Some(LiveState::Exists { last_written: None }) => String::new(),
            Some(LiveState::Absent) => {
                "; it does not exist now (its creation would count as a change)".into()
            }
            Some(LiveState::Members(n)) => format!("; {n} object(s) match now"),
            Some(LiveState::Unreadable(why)) => format!("; cannot read it now: {why}"),
            None => String::new(),
        };
        let _ = writeln!(out, "  - {}: {pending}{now_text}.", entry.describe());
    }

    // The last error.
    out.push_str("\nLast error:\n");
    match view.condition(types::DEGRADED) {
        Some(c) if c.status == "True" => {
            let _ = writeln!(
                out,
                "  {} (since {}): {}",
                c.reason,
                when(c.last_transition_time.0, now),
                c.message
            );
        }
        Some(c) => {
            let _ = writeln!(
                out,
                "  none: not Degraded since {}.",
                when(c.last_transition_time.0, now)
            );
        }
        None => out.push_str("  none reported.\n"),
    }
    out
}

/// Why no Job runs right now (or that one is about to).
fn now_sentences(view: &CtjView, jobs_newest_first: &[&Job], now: Timestamp) -> Vec<String> {
    let status = &view.status;
    let mut out = Vec::new();
    let pending = status
        .resource_hashes
        .iter()
        .filter(|h| h.hash != h.baseline)
        .count();
    let active: Vec<&str> = jobs_newest_first
        .iter()
        .filter(|j| job_state(j) == JobState::Active)
        .filter_map(|j| j.metadata.name.as_deref())
        .collect();

    if let Some(value) = &view.trigger_annotation
        && Some(value.trim()) != status.last_manual_trigger.as_deref().map(str::trim)
        && !value.trim().is_empty()
    {
        out.push(format!(
            "A manual trigger ({value:?}) is set and not handled yet: the operator creates a Job at its next reconcile."
        ));
    }
    if view.suspend {
        out.push(format!(
            "It is suspended (spec.suspend: true): no Job is created until kubectl changejob resume {}. {pending} pending change(s) are kept and fire on resume.",
            view.name
        ));
    }
    if let Some(c) = view
        .condition(types::DEGRADED)
        .filter(|c| c.status == "True")
    {
        out.push(format!(
            "The operator reports a problem ({}): {}",
            c.reason, c.message
        ));
    }
    let progressing = view.condition(types::PROGRESSING);
    let since = progressing
        .map(|c| format!(" (since {})", when(c.last_transition_time.0, now)))
        .unwrap_or_default();
    match progressing.map(|c| c.reason.as_str()) {
        Some(reasons::COOLDOWN_ACTIVE) => {
            let at = status
                .next_trigger_time
                .as_ref()
                .map(|t| format!(" The Job is created {}.", when(t.0, now)))
                .unwrap_or_default();
            out.push(format!(
                "A change is held by the cooldown of {}{since}.{at}",
                view.cooldown
            ));
        }
        Some(WAITING_FOR_ACTIVE_JOB) => out.push(format!(
            "A change is waiting{since}: concurrencyPolicy {} lets no new Job start while {} is active; it fires once when that Job finishes.",
            view.concurrency_policy,
            names_or(&active, "a Job")
        )),
        Some(reasons::WAITING_FOR_ALL) => out.push(format!(
            "Condition All waits for every watched object to change{since}: {pending} of {} have.",
            status.resource_hashes.len()
        )),
        Some(reasons::JOB_ACTIVE) => out.push(format!(
            "No change is pending; {} is still running.",
            names_or(&active, "the last Job")
        )),
        Some(reasons::NO_CHANGES) => out.push(format!("No watched object changed since the last trigger{since}.")),
        Some(reasons::SUSPENDED) if view.suspend => {}
        Some(other) => out.push(format!(
            "Progressing says {other}: {}",
            progressing.map(|c| c.message.as_str()).unwrap_or_default()
        )),
        None if pending == 0 => out.push("No watched object has a pending change.".into()),
        None => out.push(format!("{pending} watched object(s) have a pending change.")),
    }

    // The cooldown, whether or not it holds anything.
    let cooldown = parse_duration(&view.cooldown).ok();
    let last = status.last_triggered_time.as_ref().map(|t| t.0);
    match (cooldown, last) {
        (Some(d), _) if d.is_zero() => {
            out.push("The cooldown is 0s: Jobs may follow each other immediately.".into())
        }
        (Some(d), Some(last)) => match cooldown_end(Some(last), d, now) {
            Some(end) => out.push(format!(
                "The cooldown of {} runs until {}.",
                view.cooldown,
                when(end, now)
            )),
            None => out.push(format!(
                "The cooldown of {} is over: a change now triggers at once.",
                view.cooldown
            )),
        },
        (Some(_), None) => out.push(format!(
            "The cooldown of {} starts with the first Job.",
            view.cooldown
        )),
        (None, _) => out.push(format!("The cooldown {:?} cannot be read.", view.cooldown)),
    }

    // Concurrency, with the Jobs running now.
    let running = if active.is_empty() {
        "no Job is active".to_owned()
    } else {
        format!("active now: {}", active.join(", "))
    };
    let rule = match view.concurrency_policy.as_str() {
        "Forbid" => "a new Job waits until the active one finishes",
        "Replace" => "a new Job replaces (deletes) the active one",
        _ => "a new Job may run beside active ones",
    };
    out.push(format!(
        "concurrencyPolicy {}: {rule}; {running}.",
        view.concurrency_policy
    ));
    out
}

fn names_or(names: &[&str], otherwise: &str) -> String {
    if names.is_empty() {
        otherwise.to_owned()
    } else {
        format!("Job {}", names.join(", "))
    }
}

/// The status entry of spec entry `i`: the one naming the same object, else the same position.
fn matching_hash(view: &CtjView, i: usize) -> Option<&ResourceHashStatus> {
    let entry = view.watched.get(i)?;
    let hashes = &view.status.resource_hashes;
    hashes
        .iter()
        .find(|h| {
            entry.name.as_deref() == Some(h.name.as_str())
                && h.kind == entry.kind
                && h.api_version == entry.api_version
                && h.namespace == entry.namespace
        })
        .or_else(|| (hashes.len() == view.watched.len()).then(|| &hashes[i]))
}

/// `2026-05-01T10:00:00Z (3m ago)` or `(in 40s)`.
pub(super) fn when(t: Timestamp, now: Timestamp) -> String {
    let secs = t.as_second() - now.as_second();
    let span = |s: i64| match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    };
    let relative = match secs {
        0 => "now".to_owned(),
        s if s > 0 => format!("in {}", span(s)),
        s => format!("{} ago", span(-s)),
    };
    format!("{} ({relative})", t.strftime("%Y-%m-%dT%H:%M:%SZ"))
}
