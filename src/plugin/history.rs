//! `kubectl changejob history`: the ChangeTriggeredJob's Jobs, newest first, with their state
//! and what made them run.

use std::fmt::Write;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;

use super::view::CtjView;
use super::why::when;
use crate::api::{CHANGED_RESOURCES_ANNOTATION, JobState, TRIGGER_REASON_ANNOTATION};
use crate::detect::job_state::job_state;

/// When the Job was created.
pub(super) fn job_time(job: &Job) -> Option<Timestamp> {
    job.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// `succeeded`, `failed` or `is still running`, as the rest of a sentence.
pub(super) fn job_state_text(job: &Job) -> &'static str {
    match job_state(job) {
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Active => "is still running",
    }
}

/// The history table.
pub fn history(view: &CtjView, jobs: &[Job], now: Timestamp) -> String {
    let mut jobs: Vec<&Job> = jobs.iter().collect();
    // Newest first; the name breaks ties of equal (whole-second) creation times.
    jobs.sort_by(|a, b| {
        job_time(b)
            .cmp(&job_time(a))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    if jobs.is_empty() {
        return format!(
            "ChangeTriggeredJob {}/{} has no Jobs (none ran yet, or all were deleted).\n",
            view.namespace, view.name
        );
    }
    let rows: Vec<[String; 4]> = jobs
        .iter()
        .map(|job| {
            let annotations = job.metadata.annotations.clone().unwrap_or_default();
            let state = match job_state(job) {
                JobState::Succeeded => "Succeeded",
                JobState::Failed => "Failed",
                JobState::Active => "Active",
            };
            let why = match annotations
                .get(TRIGGER_REASON_ANNOTATION)
                .map(String::as_str)
            {
                Some("manual") => "manual trigger".to_owned(),
                _ => annotations
                    .get(CHANGED_RESOURCES_ANNOTATION)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.replace(',', ", "))
                    .unwrap_or_else(|| "-".into()),
            };
            [
                job.metadata.name.clone().unwrap_or_default(),
                state.to_owned(),
                job_time(job)
                    .map(|t| when(t, now))
                    .unwrap_or_else(|| "-".into()),
                why,
            ]
        })
        .collect();
    let header = ["JOB", "STATE", "CREATED", "CHANGED"];
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].len())
            .chain([header[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out
}
