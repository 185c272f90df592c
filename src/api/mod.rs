//! The `ChangeTriggeredJob` custom resource: Rust types, well-known names, and CRD generation.
//!
//! The group, version, kind, short names, label and annotation keys below are compatibility
//! names shared with existing installations; never change them.

mod crd;
mod schema;
mod template;
mod types;

pub use crd::{crd, crd_yaml};
pub use template::JobTemplate;
pub use types::*;

/// API group of the custom resource.
pub const GROUP: &str = "triggers.changejob.dev";
/// API version of the custom resource.
pub const VERSION: &str = "v1alpha";
/// `apiVersion` string of the custom resource.
pub const API_VERSION: &str = "triggers.changejob.dev/v1alpha";
/// Kind of the custom resource.
pub const KIND: &str = "ChangeTriggeredJob";
/// Plural resource name.
pub const PLURAL: &str = "changetriggeredjobs";

/// Label put on every Job a ChangeTriggeredJob creates; its value is the CTJ's name.
pub const OWNER_LABEL: &str = "changejob.dev/owner";
/// Annotation the mutating webhook stamps with the time the spec last changed (RFC 3339, UTC).
pub const CHANGED_AT_ANNOTATION: &str = "changetriggeredjobs.triggers.changejob.dev/changed-at";
/// Annotation a user sets (to any new value) to run the Job once, ignoring condition and cooldown.
pub const MANUAL_TRIGGER_ANNOTATION: &str = "changejob.dev/trigger";
/// Annotation on created Jobs (and their pod templates) listing the objects that changed.
pub const CHANGED_RESOURCES_ANNOTATION: &str = "changejob.dev/changed-resources";
/// Annotation on created Jobs saying why they were created (`change` or `manual`).
pub const TRIGGER_REASON_ANNOTATION: &str = "changejob.dev/trigger-reason";
/// Annotation on created Jobs holding the trigger sequence number.
pub const TRIGGER_SEQUENCE_ANNOTATION: &str = "changejob.dev/trigger-sequence";

/// Default `spec.cooldown`.
pub const DEFAULT_COOLDOWN: &str = "60s";
/// Default `spec.history`.
pub const DEFAULT_HISTORY: i32 = 5;
/// The `fields` entry meaning "the whole object (without status and server-managed metadata)".
pub const WHOLE_OBJECT: &str = "*";
