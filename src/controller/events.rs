//! Kubernetes Events (`events.k8s.io/v1`) about ChangeTriggeredJobs.
//!
//! kube-runtime's `Recorder` folds events with the same reason and action into one series and
//! keeps the first note, so a second "JobCreated" would still name the first Job. The
//! reconciler already emits only on transitions, so each event is written as its own object.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::api::ChangeTriggeredJob;
use crate::detect::conditions::shorten;

/// Reporting controller name on every event.
pub const REPORTING_CONTROLLER: &str = "kube-changejob";

/// Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Informational.
    Normal,
    /// Something needs attention.
    Warning,
}

/// What happened, for one event.
#[derive(Clone, Debug)]
pub struct Occurrence {
    /// Normal or Warning.
    pub severity: Severity,
    /// CamelCase reason (`JobCreated`, a condition reason, ...).
    pub reason: String,
    /// CamelCase action taken (`CreateJob`, ...).
    pub action: String,
    /// A sentence for `kubectl describe`.
    pub note: String,
    /// Another object involved, such as the Job created.
    pub related: Option<ObjectReference>,
}

/// Writes events for one replica.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    instance: String,
}

/// Kubernetes limits an event note to 1 kB.
const MAX_NOTE: usize = 1024;

impl EventPublisher {
    /// A publisher reporting as `instance` (the pod name).
    pub fn new(client: Client, instance: &str) -> Self {
        EventPublisher {
            client,
            instance: instance.to_string(),
        }
    }

    /// Records an event about `ctj`.
    pub async fn publish(
        &self,
        ctj: &ChangeTriggeredJob,
        what: Occurrence,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let Occurrence {
            severity,
            reason,
            action,
            note,
            related,
        } = what;
        let namespace = ctj.namespace().unwrap_or_else(|| "default".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", ctj.name_any(), now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action),
            reason: Some(reason),
            note: Some(shorten(note, MAX_NOTE)),
            regarding: Some(ctj.object_ref(&())),
            related,
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}

/// A reference to a Job for `related`.
pub fn job_reference(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let cut = shorten("é".repeat(2000), MAX_NOTE);
        assert!(cut.len() <= MAX_NOTE);
        assert!(cut.ends_with("..."));
        assert_eq!(shorten("short".into(), MAX_NOTE), "short");
    }
}
