//! The Job created for a trigger: its deterministic name, labels, annotations and owner.
//!
//! The name is derived from the CTJ's UID and the trigger sequence number, so if the operator
//! crashes (or loses the Lease) between creating the Job and recording it in status, the retry
//! creates the same name, gets AlreadyExists, and knows the trigger was already carried out.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use super::member_set::{MAX_NAMED_CHANGES, cap};
use super::trigger::{TriggerReason, WatchedObject};
use crate::api::{
    API_VERSION, CHANGED_RESOURCES_ANNOTATION, KIND, OWNER_LABEL, TRIGGER_REASON_ANNOTATION,
    TRIGGER_SEQUENCE_ANNOTATION,
};

/// Maximum length of a Job name (it becomes a label value on the Job's Pods).
pub const MAX_JOB_NAME: usize = 63;
/// Length of the suffix derived from UID and sequence.
const SUFFIX_LEN: usize = 10;
/// Characters of the suffix: no vowels (no accidental words), no look-alikes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The name of the Job for trigger `sequence` of the CTJ with this name and UID: at most 63
/// characters, a valid DNS label, the same for the same (UID, sequence).
pub fn job_name(ctj_name: &str, ctj_uid: &str, sequence: i64) -> String {
    let digest = Sha256::digest(format!("{ctj_uid}/{sequence}").as_bytes());
    let suffix: String = digest
        .iter()
        .take(SUFFIX_LEN)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    let mut prefix: String = ctj_name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    prefix.truncate(MAX_JOB_NAME - SUFFIX_LEN - 1);
    let prefix = prefix.trim_matches('-');
    if prefix.is_empty() {
        format!("ctj-{suffix}")
    } else {
        format!("{prefix}-{suffix}")
    }
}

/// What the Job is created for.
#[derive(Clone, Debug)]
pub struct JobRequest<'a> {
    /// Name of the CTJ.
    pub ctj_name: &'a str,
    /// Namespace of the CTJ (the Job is created there).
    pub ctj_namespace: &'a str,
    /// UID of the CTJ.
    pub ctj_uid: &'a str,
    /// `spec.jobTemplate`.
    pub template: &'a JobTemplateSpec,
    /// Trigger sequence number of this Job.
    pub sequence: i64,
    /// Why it is created.
    pub reason: TriggerReason,
    /// Objects whose change led to it.
    pub changed: &'a [WatchedObject],
}

/// The value of the changed-resources annotation: `Kind/namespace/name` entries,
/// comma-separated; past [`MAX_NAMED_CHANGES`] entries the rest is counted as `+N more`.
pub fn changed_resources_value(changed: &[WatchedObject]) -> String {
    let mut names: Vec<String> = changed.iter().map(WatchedObject::display_name).collect();
    names.dedup();
    cap(names, MAX_NAMED_CHANGES).join(",")
}

/// Builds the Job for a trigger.
pub fn build_job(request: &JobRequest<'_>) -> Job {
    let template_meta = request.template.metadata.clone().unwrap_or_default();
    let changed = changed_resources_value(request.changed);

    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(OWNER_LABEL.to_string(), request.ctj_name.to_string());

    let mut annotations = template_meta.annotations.clone().unwrap_or_default();
    annotations.insert(CHANGED_RESOURCES_ANNOTATION.to_string(), changed.clone());
    annotations.insert(
        TRIGGER_REASON_ANNOTATION.to_string(),
        request.reason.as_str().to_string(),
    );
    annotations.insert(
        TRIGGER_SEQUENCE_ANNOTATION.to_string(),
        request.sequence.to_string(),
    );

    let mut spec = request.template.spec.clone().unwrap_or_default();
    // The workload can read which objects changed through the downward API.
    let pod_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    pod_meta
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CHANGED_RESOURCES_ANNOTATION.to_string(), changed);

    Job {
        metadata: ObjectMeta {
            name: Some(job_name(
                request.ctj_name,
                request.ctj_uid,
                request.sequence,
            )),
            namespace: Some(request.ctj_namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(request.ctj_name, request.ctj_uid)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A controller owner reference to the CTJ: deleting the CTJ garbage-collects its Jobs, and
/// `blockOwnerDeletion` keeps a foreground deletion of the CTJ waiting for them.
pub fn owner_reference(ctj_name: &str, ctj_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        name: ctj_name.to_string(),
        uid: ctj_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `job` is controlled by the CTJ with this UID.
pub fn is_owned_by(job: &Job, ctj_uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == ctj_uid && r.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use proptest::prelude::*;

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    fn template() -> JobTemplateSpec {
        JobTemplateSpec {
            metadata: Some(ObjectMeta {
                name: Some("ignored".into()),
                generate_name: Some("ignored-".into()),
                labels: Some(
                    [
                        ("team".to_string(), "a".to_string()),
                        (OWNER_LABEL.to_string(), "spoof".to_string()),
                    ]
                    .into(),
                ),
                annotations: Some([("note".to_string(), "x".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(JobSpec {
                backoff_limit: Some(3),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("pod".to_string(), "l".to_string())].into()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some("busybox".into()),
                            ..Container::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
        }
    }

    fn changed() -> Vec<WatchedObject> {
        vec![
            WatchedObject {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("default".into()),
                name: "app".into(),
                selector: None,
                fields: vec!["*".into()],
            },
            WatchedObject {
                api_version: "v1".into(),
                kind: "Node".into(),
                namespace: None,
                name: "worker-1".into(),
                selector: None,
                fields: vec!["*".into()],
            },
        ]
    }

    fn build(template: &JobTemplateSpec) -> Job {
        let changed = changed();
        build_job(&JobRequest {
            ctj_name: "config-watcher",
            ctj_namespace: "default",
            ctj_uid: "uid-1",
            template,
            sequence: 4,
            reason: TriggerReason::Change,
            changed: &changed,
        })
    }

    #[test]
    fn job_name_is_ctj_name_plus_stable_suffix() {
        let name = job_name("config-watcher", "uid-1", 1);
        assert!(name.starts_with("config-watcher-"));
        assert_eq!(name.len(), "config-watcher-".len() + SUFFIX_LEN);
        assert_eq!(name, job_name("config-watcher", "uid-1", 1));
        assert_ne!(name, job_name("config-watcher", "uid-1", 2));
        assert_ne!(name, job_name("config-watcher", "uid-2", 1));
    }

    #[test]
    fn long_and_dotted_ctj_names_give_valid_job_names() {
        let long = "a".repeat(253);
        assert!(is_dns_label(&job_name(&long, "u", 1)));
        assert!(is_dns_label(&job_name("my.app.config", "u", 1)));
        assert!(is_dns_label(&job_name("...", "u", 1)));
        let cut = format!("{}-x", "b".repeat(51));
        assert!(is_dns_label(&job_name(&cut, "u", 1)));
    }

    #[test]
    fn job_gets_template_labels_and_owner_label() {
        let job = build(&template());
        let labels = job.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            labels.get(OWNER_LABEL).map(String::as_str),
            Some("config-watcher")
        );
    }

    #[test]
    fn job_annotations_name_the_changed_objects() {
        let job = build(&template());
        let ann = job.metadata.annotations.unwrap_or_default();
        assert_eq!(ann.get("note").map(String::as_str), Some("x"));
        assert_eq!(
            ann.get(CHANGED_RESOURCES_ANNOTATION).map(String::as_str),
            Some("ConfigMap/default/app,Node/worker-1")
        );
        assert_eq!(
            ann.get(TRIGGER_REASON_ANNOTATION).map(String::as_str),
            Some("change")
        );
        assert_eq!(
            ann.get(TRIGGER_SEQUENCE_ANNOTATION).map(String::as_str),
            Some("4")
        );
        let pod_ann = job
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            pod_ann
                .get(CHANGED_RESOURCES_ANNOTATION)
                .map(String::as_str),
            Some("ConfigMap/default/app,Node/worker-1")
        );
    }

    #[test]
    fn job_keeps_the_template_spec_and_pod_labels() {
        let job = build(&template());
        let spec = job.spec.unwrap_or_default();
        assert_eq!(spec.backoff_limit, Some(3));
        let pod_labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        assert_eq!(pod_labels.get("pod").map(String::as_str), Some("l"));
    }

    #[test]
    fn template_name_and_namespace_are_ignored() {
        let job = build(&template());
        assert_eq!(
            job.metadata.name,
            Some(job_name("config-watcher", "uid-1", 4))
        );
        assert_eq!(job.metadata.generate_name, None);
        assert_eq!(job.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn job_has_a_controller_owner_reference_to_the_ctj() {
        let job = build(&template());
        let owners = job.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "ChangeTriggeredJob");
        assert_eq!(owners[0].api_version, "triggers.changejob.dev/v1alpha");
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(owners[0].controller, Some(true));
        assert!(is_owned_by(&job, "uid-1"));
        assert!(!is_owned_by(&job, "uid-2"));
    }

    #[test]
    fn empty_template_still_builds_a_job() {
        let job = build(&JobTemplateSpec::default());
        assert!(job.metadata.name.is_some());
        assert!(job.spec.is_some());
    }

    proptest! {
        #[test]
        fn job_names_are_always_valid_dns_labels(name in "[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?", uid in "[a-f0-9-]{1,36}", seq in any::<i64>()) {
            let n = job_name(&name, &uid, seq);
            prop_assert!(is_dns_label(&n), "{}", n);
            prop_assert_eq!(n.clone(), job_name(&name, &uid, seq));
        }

        #[test]
        fn different_sequences_give_different_names(uid in "[a-f0-9]{8}", a in 0i64..10_000, b in 0i64..10_000) {
            prop_assume!(a != b);
            prop_assert_ne!(job_name("x", &uid, a), job_name("x", &uid, b));
        }
    }
}
