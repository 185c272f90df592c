//! Typed manifests for the scenarios: ChangeTriggeredJobs with a small reporting Job, and the
//! ConfigMaps, Secrets and Deployments they watch.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, EnvVar, EnvVarSource, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, Secret, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube_changejob::api::{
    CHANGED_RESOURCES_ANNOTATION, ChangeTriggeredJob, ChangeTriggeredJobSpec, ConcurrencyPolicy,
    JobTemplate, ResourceReference, TriggerCondition,
};

/// Image of the Job the scenarios' ChangeTriggeredJobs create; `E2E_JOB_IMAGE` overrides it
/// (e.g. for a registry mirror).
pub fn job_image() -> String {
    std::env::var("E2E_JOB_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "busybox:1.36".into())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Pod-level settings that satisfy the `restricted` Pod Security Standard, so the test Pods
/// are admitted in namespaces that enforce it.
fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65534),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level settings for the `restricted` Pod Security Standard.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectMeta::default()
    }
}

/// A ConfigMap with these entries.
pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(namespace, name),
        data: Some(map(data)),
        ..ConfigMap::default()
    }
}

/// An Opaque Secret with these entries.
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// A Deployment of one container. Its Pods need not ever run for the scenarios.
pub fn deployment(namespace: &str, name: &str, image: &str, replicas: i32) -> Deployment {
    let labels = map(&[("app.kubernetes.io/name", name)]);
    Deployment {
        metadata: meta(namespace, name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some(image.into()),
                        security_context: Some(restricted_container()),
                        ..Container::default()
                    }],
                    security_context: Some(restricted_pod()),
                    termination_grace_period_seconds: Some(1),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// A watched object of a namespaced kind.
pub fn watch(api_version: &str, kind: &str, namespace: &str, name: &str) -> ResourceReference {
    ResourceReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        namespace: Some(namespace.into()),
        selector: None,
        fields: None,
    }
}

/// A watched object of a cluster-scoped kind.
pub fn watch_cluster(api_version: &str, kind: &str, name: &str) -> ResourceReference {
    ResourceReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        namespace: None,
        selector: None,
        fields: None,
    }
}

/// Watches the objects of a namespaced kind whose labels include all of `labels` (a selector
/// entry with matchLabels).
pub fn watch_selected(
    api_version: &str,
    kind: &str,
    namespace: &str,
    labels: &[(&str, &str)],
) -> ResourceReference {
    ResourceReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: String::new(),
        selector: Some(kube_changejob::api::LabelSelector {
            match_labels: Some(map(labels)),
            match_expressions: None,
        }),
        namespace: Some(namespace.into()),
        fields: None,
    }
}

/// A ConfigMap with these entries and labels.
pub fn labelled_config_map(
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    data: &[(&str, &str)],
) -> ConfigMap {
    let mut cm = config_map(namespace, name, data);
    cm.metadata.labels = Some(map(labels));
    cm
}

/// The same watched object, limited to these field paths.
pub fn with_fields(mut reference: ResourceReference, fields: &[&str]) -> ResourceReference {
    reference.fields = Some(fields.iter().map(|f| f.to_string()).collect());
    reference
}

/// Builds a ChangeTriggeredJob whose Job prints which objects changed (read through the
/// downward API from the changed-resources annotation) and exits.
pub struct CtjBuilder {
    ctj: ChangeTriggeredJob,
    /// `spec.jobTemplate` in typed form, encoded into the manifest by [`CtjBuilder::build`].
    template: JobTemplateSpec,
}

impl CtjBuilder {
    /// A ChangeTriggeredJob without watched objects and with every setting left to its default.
    pub fn new(namespace: &str, name: &str) -> Self {
        let container = Container {
            name: "report".into(),
            image: Some(job_image()),
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo \"changed: $CHANGED\"".into(),
            ]),
            env: Some(vec![EnvVar {
                name: "CHANGED".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!(
                            "metadata.annotations['{CHANGED_RESOURCES_ANNOTATION}']"
                        ),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }]),
            security_context: Some(restricted_container()),
            ..Container::default()
        };
        let job_template = JobTemplateSpec {
            metadata: None,
            spec: Some(JobSpec {
                backoff_limit: Some(0),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![container],
                        security_context: Some(restricted_pod()),
                        restart_policy: Some("Never".into()),
                        termination_grace_period_seconds: Some(1),
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
        };
        let mut ctj = ChangeTriggeredJob::new(
            name,
            ChangeTriggeredJobSpec {
                job_template: JobTemplate::new(&job_template)
                    .expect("a typed Job template encodes as JSON"),
                resources: Vec::new(),
                condition: None,
                cooldown: None,
                history: None,
                suspend: None,
                concurrency_policy: None,
            },
        );
        ctj.metadata.namespace = Some(namespace.to_string());
        CtjBuilder {
            ctj,
            template: job_template,
        }
    }

    /// Watches one more object.
    pub fn watch(mut self, reference: ResourceReference) -> Self {
        self.ctj.spec.resources.push(reference);
        self
    }

    /// `spec.condition`.
    pub fn condition(mut self, condition: TriggerCondition) -> Self {
        self.ctj.spec.condition = Some(condition);
        self
    }

    /// `spec.cooldown`.
    pub fn cooldown(mut self, cooldown: &str) -> Self {
        self.ctj.spec.cooldown = Some(cooldown.into());
        self
    }

    /// `spec.history`.
    pub fn history(mut self, history: i32) -> Self {
        self.ctj.spec.history = Some(history);
        self
    }

    /// `spec.suspend`.
    pub fn suspend(mut self, suspend: bool) -> Self {
        self.ctj.spec.suspend = Some(suspend);
        self
    }

    /// `spec.concurrencyPolicy`.
    pub fn concurrency(mut self, policy: ConcurrencyPolicy) -> Self {
        self.ctj.spec.concurrency_policy = Some(policy);
        self
    }

    /// Makes the Job's Pod run `seconds` after reporting, so a scenario can act while it runs.
    pub fn job_runs_for(mut self, seconds: u32) -> Self {
        if let Some(container) = self
            .template
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|p| p.containers.first_mut())
        {
            container.command = Some(vec![
                "sh".into(),
                "-c".into(),
                format!("echo \"changed: $CHANGED\"; sleep {seconds}"),
            ]);
        }
        self
    }

    /// A label on the ChangeTriggeredJob itself.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        put(&mut self.ctj.metadata.labels, key, value);
        self
    }

    /// An annotation on the ChangeTriggeredJob itself.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        put(&mut self.ctj.metadata.annotations, key, value);
        self
    }

    /// A label in `jobTemplate.metadata`.
    pub fn job_label(mut self, key: &str, value: &str) -> Self {
        put(&mut self.job_meta().labels, key, value);
        self
    }

    /// An annotation in `jobTemplate.metadata`.
    pub fn job_annotation(mut self, key: &str, value: &str) -> Self {
        put(&mut self.job_meta().annotations, key, value);
        self
    }

    /// A label in the Job's pod template metadata.
    pub fn pod_label(mut self, key: &str, value: &str) -> Self {
        if let Some(spec) = self.template.spec.as_mut() {
            let meta = spec
                .template
                .metadata
                .get_or_insert_with(ObjectMeta::default);
            put(&mut meta.labels, key, value);
        }
        self
    }

    fn job_meta(&mut self) -> &mut ObjectMeta {
        self.template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
    }

    /// The manifest.
    pub fn build(mut self) -> ChangeTriggeredJob {
        self.ctj.spec.job_template =
            JobTemplate::new(&self.template).expect("a typed Job template encodes as JSON");
        self.ctj
    }
}

/// Sets `key` in a label or annotation map, creating the map when absent.
fn put(map: &mut Option<BTreeMap<String, String>>, key: &str, value: &str) {
    map.get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
}

/// `TriggerCondition::All`, re-exported for the scenarios.
pub const ALL: TriggerCondition = TriggerCondition::All;
/// `TriggerCondition::Any`, re-exported for the scenarios.
pub const ANY: TriggerCondition = TriggerCondition::Any;
