//! What the informer caches keep of ChangeTriggeredJobs and Jobs: only what rounds read.
//! The leader holds every CTJ and every owned Job in memory, so at 10,000 CTJs the parts
//! nothing reads (managedFields, kubectl's last-applied copy of the whole spec, the Jobs' pod
//! templates) were most of the operator's memory. The watchers strip them before the objects
//! are stored (`WatchStreamExt::modify`).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::{CHANGED_RESOURCES_ANNOTATION, ChangeTriggeredJob};

/// kubectl's client-side apply keeps a full copy of the applied object here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations of the operator's own (`changejob.dev/...`) are the only ones rounds read on Jobs.
const OWN_ANNOTATION_PREFIX: &str = "changejob.dev/";

/// Drops what no round reads from a cached ChangeTriggeredJob: its managedFields and kubectl's
/// last-applied copy. The spec (Job template included: a trigger builds the Job from it),
/// status, labels and the other annotations (the manual trigger) stay.
pub fn slim_ctj(ctj: &mut ChangeTriggeredJob) {
    ctj.metadata.managed_fields = None;
    if let Some(annotations) = ctj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Drops what no round reads from a cached Job: managedFields, the pod template, and the
/// annotations that are not the operator's bookkeeping (the trigger sequence). Name, owner
/// references, labels, timestamps and status (its conditions give the Job's state) stay.
pub fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(annotations) = job.metadata.annotations.as_mut() {
        annotations.retain(|key, _| {
            key.starts_with(OWN_ANNOTATION_PREFIX) && key != CHANGED_RESOURCES_ANNOTATION
        });
    }
    if let Some(spec) = job.spec.as_mut() {
        spec.template = PodTemplateSpec::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OWNER_LABEL, TRIGGER_SEQUENCE_ANNOTATION};
    use k8s_openapi::api::batch::v1::JobCondition;
    use serde_json::json;

    fn job() -> Job {
        serde_json::from_value(json!({
            "metadata": {
                "name": "w-abc-1", "namespace": "apps",
                "labels": {OWNER_LABEL: "w"},
                "annotations": {
                    TRIGGER_SEQUENCE_ANNOTATION: "1",
                    CHANGED_RESOURCES_ANNOTATION: "ConfigMap/apps/a",
                    "team.example.com/note": "from the template"
                },
                "ownerReferences": [{"apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob", "name": "w", "uid": "u", "controller": true}],
                "managedFields": [{"manager": "kube-changejob", "operation": "Update"}],
                "creationTimestamp": "2026-01-01T00:00:00Z"
            },
            "spec": {"template": {"spec": {"containers": [{"name": "run", "image": "busybox"}]}}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn cached_jobs_keep_what_rounds_read_and_lose_the_pod_template() {
        let mut slim = job();
        slim_job(&mut slim);
        let original = job();
        assert_eq!(slim.metadata.name, original.metadata.name);
        assert_eq!(slim.metadata.labels, original.metadata.labels);
        assert_eq!(
            slim.metadata.owner_references,
            original.metadata.owner_references
        );
        assert_eq!(
            slim.metadata.creation_timestamp,
            original.metadata.creation_timestamp
        );
        let conditions: Vec<JobCondition> =
            slim.status.and_then(|s| s.conditions).unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        let annotations = slim.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec![TRIGGER_SEQUENCE_ANNOTATION]
        );
        assert_eq!(slim.metadata.managed_fields, None);
        assert_eq!(
            slim.spec.map(|s| s.template),
            Some(PodTemplateSpec::default())
        );
    }

    #[test]
    fn cached_ctjs_keep_spec_status_and_the_manual_trigger() {
        let mut ctj: ChangeTriggeredJob = serde_json::from_value(json!({
            "apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob",
            "metadata": {
                "name": "w", "namespace": "apps",
                "annotations": {LAST_APPLIED: "{\"big\": true}", "changejob.dev/trigger": "1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"resources": [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "apps", "name": "a"}],
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "run", "image": "busybox"}]}}}}},
            "status": {"triggerSequence": 3}
        }))
        .unwrap_or_else(|e| panic!("ctj: {e}"));
        let spec = ctj.spec.clone();
        slim_ctj(&mut ctj);
        assert_eq!(ctj.spec, spec);
        assert_eq!(ctj.status.and_then(|s| s.trigger_sequence), Some(3));
        assert_eq!(ctj.metadata.managed_fields, None);
        let annotations = ctj.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec!["changejob.dev/trigger"]
        );
    }
}
