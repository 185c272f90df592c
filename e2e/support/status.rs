//! Reading a ChangeTriggeredJob's status: conditions, watched-object fingerprints, and a short
//! summary for progress and failure messages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_changejob::api::{ChangeTriggeredJob, ChangeTriggeredJobStatus, ResourceHashStatus};

/// The status, or an empty one when the operator has not written any yet.
pub fn status(ctj: &ChangeTriggeredJob) -> ChangeTriggeredJobStatus {
    ctj.status.clone().unwrap_or_default()
}

/// The condition of this type, if present.
pub fn condition<'a>(ctj: &'a ChangeTriggeredJob, type_: &str) -> Option<&'a Condition> {
    ctj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Whether the condition has this status and reason.
pub fn has_condition(ctj: &ChangeTriggeredJob, type_: &str, status: &str, reason: &str) -> bool {
    condition(ctj, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// Whether a watched object has a pending change (fingerprint differs from its baseline).
pub fn is_pending(entry: &ResourceHashStatus) -> bool {
    entry.hash != entry.baseline
}

/// Whether the operator has recorded a fingerprint for each of the `count` watched objects.
pub fn observed(ctj: &ChangeTriggeredJob, count: usize) -> bool {
    let hashes = status(ctj).resource_hashes;
    hashes.len() == count && hashes.iter().all(|h| !h.hash.is_empty())
}

/// The status in one line: trigger bookkeeping, conditions, and each watched object.
pub fn summary(ctj: &ChangeTriggeredJob) -> String {
    let Some(s) = &ctj.status else {
        return "no status yet".into();
    };
    let conditions = s
        .conditions
        .iter()
        .map(|c| format!("{}={}/{} ({:?})", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join(", ");
    let objects = s
        .resource_hashes
        .iter()
        .map(|h| {
            format!(
                "{}/{}{} exists={} pending={}",
                h.kind,
                h.namespace
                    .as_deref()
                    .map(|ns| format!("{ns}/"))
                    .unwrap_or_default(),
                h.name,
                h.exists,
                is_pending(h)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "triggerSequence={:?} lastJobName={:?} lastJobStatus={:?} lastTriggeredTime={:?} nextTriggerTime={:?} lastManualTrigger={:?}; conditions: [{conditions}]; resourceHashes: [{objects}]",
        s.trigger_sequence,
        s.last_job_name,
        s.last_job_status,
        s.last_triggered_time.as_ref().map(|t| t.0.to_string()),
        s.next_trigger_time.as_ref().map(|t| t.0.to_string()),
        s.last_manual_trigger,
    )
}
