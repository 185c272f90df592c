//! Stand-in for the Job controller: tests finish or fail Jobs by writing their status
//! conditions, in the order Kubernetes 1.31+ writes them.

use serde_json::{Value, json};

use super::FakeApi;
use super::commit::controller_write;
use super::gc;
use super::store::ObjectKey;

const JOB_CONTROLLER: &str = "kube-controller-manager";

fn job_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        group: "batch".into(),
        plural: "jobs".into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn reason_for(condition_type: &str) -> (&'static str, &'static str) {
    match condition_type {
        "SuccessCriteriaMet" | "Complete" => (
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ),
        "FailureTarget" | "Failed" => (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ),
        _ => ("", ""),
    }
}

/// Sets (or adds) one condition in `status.conditions`, keeping `lastTransitionTime` when the
/// status does not change.
fn upsert_condition(job: &mut Value, condition_type: &str, status: &str, now: &str) {
    if !job.get("status").is_some_and(Value::is_object) {
        job["status"] = json!({});
    }
    if !job["status"].get("conditions").is_some_and(Value::is_array) {
        job["status"]["conditions"] = json!([]);
    }
    let (reason, message) = reason_for(condition_type);
    let Some(conditions) = job["status"]["conditions"].as_array_mut() else {
        return;
    };
    match conditions.iter_mut().find(|c| c["type"] == condition_type) {
        Some(existing) => {
            if existing["status"] != status {
                existing["lastTransitionTime"] = json!(now);
            }
            existing["status"] = json!(status);
            existing["lastProbeTime"] = json!(now);
        }
        None => {
            let mut condition = json!({
                "type": condition_type,
                "status": status,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            });
            if !reason.is_empty() {
                condition["reason"] = json!(reason);
                condition["message"] = json!(message);
            }
            conditions.push(condition);
        }
    }
}

/// The Job controller's part, for tests.
impl FakeApi {
    /// Writes one condition of a Job's status (through the status subresource, so watchers see
    /// a MODIFIED event with a new resourceVersion). Panics if the Job does not exist.
    #[track_caller]
    pub fn set_job_condition(
        &self,
        namespace: &str,
        name: &str,
        condition_type: &str,
        status: &str,
    ) {
        self.write_job_status(namespace, name, |job, now| {
            upsert_condition(job, condition_type, status, now)
        });
    }

    /// Finishes a Job successfully as Kubernetes 1.31+ does: `SuccessCriteriaMet`, then (a
    /// second write) `Complete` with `completionTime` and `succeeded: 1`.
    #[track_caller]
    pub fn complete_job(&self, namespace: &str, name: &str) {
        self.write_job_status(namespace, name, |job, now| {
            upsert_condition(job, "SuccessCriteriaMet", "True", now);
        });
        self.write_job_status(namespace, name, |job, now| {
            upsert_condition(job, "Complete", "True", now);
            job["status"]["completionTime"] = json!(now);
            job["status"]["succeeded"] = json!(1);
            job["status"]["active"] = json!(0);
        });
    }

    /// Fails a Job as Kubernetes 1.31+ does: `FailureTarget`, then `Failed` with `failed: 1`.
    #[track_caller]
    pub fn fail_job(&self, namespace: &str, name: &str) {
        self.write_job_status(namespace, name, |job, now| {
            upsert_condition(job, "FailureTarget", "True", now);
        });
        self.write_job_status(namespace, name, |job, now| {
            upsert_condition(job, "Failed", "True", now);
            job["status"]["failed"] = json!(1);
            job["status"]["active"] = json!(0);
        });
    }

    #[track_caller]
    fn write_job_status(&self, namespace: &str, name: &str, change: impl FnOnce(&mut Value, &str)) {
        let mut state = self.lock();
        let key = job_key(namespace, name);
        assert!(
            state.get(&key).is_some(),
            "FakeApi: Job {namespace}/{name} does not exist"
        );
        let now = state.clock.now_rfc3339();
        controller_write(&mut state, &key, JOB_CONTROLLER, "status", |job| {
            if !job.get("status").is_some_and(Value::is_object) {
                job["status"] = json!({});
            }
            if job["status"].get("startTime").is_none() {
                job["status"]["startTime"] = json!(now);
            }
            change(job, &now);
        });
        gc::settle(&mut state);
    }
}
