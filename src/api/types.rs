//! Spec and status types of `ChangeTriggeredJob` (`triggers.changejob.dev/v1alpha`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;
use super::template::JobTemplate;

/// What to watch and which Job to run when it changes.
// Each printcolumn(...) legitimately repeats `type_ = "string"`; clippy reads them as
// duplicated attributes of the struct.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "triggers.changejob.dev",
    version = "v1alpha",
    kind = "ChangeTriggeredJob",
    plural = "changetriggeredjobs",
    singular = "changetriggeredjob",
    shortname = "ctj",
    shortname = "ctjs",
    namespaced,
    status = "ChangeTriggeredJobStatus",
    derive = "PartialEq",
    annotation("helm.sh/resource-policy", "keep"),
    doc = "ChangeTriggeredJob watches Kubernetes objects and creates a Job from jobTemplate whenever they change.",
    printcolumn(
        name = "Condition",
        type_ = "string",
        json_path = ".spec.condition",
        description = "Any or All"
    ),
    printcolumn(
        name = "Cooldown",
        type_ = "string",
        json_path = ".spec.cooldown",
        description = "Minimum time between two Jobs"
    ),
    printcolumn(
        name = "Last Job",
        type_ = "string",
        json_path = ".status.lastJobName",
        description = "Most recently created Job"
    ),
    printcolumn(
        name = "Last Status",
        type_ = "string",
        json_path = ".status.lastJobStatus",
        description = "Active, Succeeded or Failed"
    ),
    printcolumn(
        name = "Last Triggered",
        type_ = "date",
        json_path = ".status.lastTriggeredTime",
        description = "When the last Job was created"
    ),
    printcolumn(
        name = "Concurrency",
        type_ = "string",
        json_path = ".spec.concurrencyPolicy",
        priority = 1,
        description = "Allow, Forbid or Replace: what a trigger does while a Job runs"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        priority = 1,
        description = "Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChangeTriggeredJobSpec {
    /// Template of the Job created on every trigger. Its metadata.name and generateName are
    /// ignored: Jobs are named <ChangeTriggeredJob name>-<suffix>. Created Jobs get the label
    /// changejob.dev/owner=<ChangeTriggeredJob name> and an owner reference to this object.
    #[schemars(schema_with = "schema::job_template")]
    pub job_template: JobTemplate,

    /// Objects to watch. Any kind the cluster serves, namespaced or cluster-scoped, including
    /// custom resources. At least one entry is required.
    #[schemars(length(min = 1))]
    pub resources: Vec<ResourceReference>,

    /// When to trigger: Any (at least one watched object changed since the last Job) or All
    /// (every watched object changed since the last Job). Defaults to Any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Any"))]
    pub condition: Option<TriggerCondition>,

    /// Minimum time between two Jobs, as a duration such as 30s, 5m, 1h30m or 2h15m30s.
    /// A change inside the cooldown is not dropped: the Job is created when the cooldown ends.
    /// 0s disables the cooldown. Defaults to 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"),
        extend("default" = "60s")
    )]
    pub cooldown: Option<String>,

    /// Number of Jobs to keep; older Jobs are deleted together with their Pods. Minimum 1,
    /// defaults to 5. The newest Job is never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 5))]
    pub history: Option<i32>,

    /// When true, no Jobs are created. Changes seen while suspended are kept and evaluated
    /// when suspend is set back to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// What a trigger does while a Job created earlier still runs: Allow, Forbid or Replace
    /// (see [`ConcurrencyPolicy`]). Defaults to Allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Allow"))]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
}

/// One Kubernetes object to watch (by name), or a set of them (by label selector).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Exactly one of name and selector: a structural schema may constrain `required` inside
// oneOf, which Kubernetes 1.21 already enforces (no CEL needed).
#[schemars(extend("oneOf" = [{"required": ["name"]}, {"required": ["selector"]}]))]
pub struct ResourceReference {
    /// API version of the object, for example v1, apps/v1 or example.com/v1beta1.
    #[schemars(length(min = 1))]
    pub api_version: String,

    /// Kind of the object, exactly as the API serves it, for example ConfigMap, Deployment or
    /// Node (case matters).
    #[schemars(length(min = 1))]
    pub kind: String,

    /// Name of the object. The object does not need to exist yet: its creation counts as a
    /// change, and so does its deletion. Set exactly one of name and selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub name: String,

    /// Label selector choosing a set of objects of this kind (in namespace, for namespaced
    /// kinds), instead of one object by name. The entry changes when an object joins the set
    /// (created, or relabelled to match), leaves it (deleted, or relabelled not to match), or
    /// a member's fields change. Objects created later are picked up. An empty set is valid.
    /// Set exactly one of name and selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Namespace of the object. Required for namespaced kinds; must be omitted for
    /// cluster-scoped kinds such as Node or ClusterRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Parts of the object to watch, as kubectl-style paths without the leading $:
    /// data, spec.replicas, spec.template.spec.containers[*].image, data.my-key,
    /// metadata.annotations['example.com/key']. "*" (the default) watches the whole object
    /// except status and server-managed metadata (resourceVersion, managedFields, generation,
    /// uid, creationTimestamp). A path that matches nothing counts as absent, so a field
    /// appearing or disappearing is a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["*"]))]
    pub fields: Option<Vec<String>>,
}

/// A label selector, as in Deployments and Services: every requirement must hold. An empty
/// selector ({}) matches every object of the kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels an object must carry with exactly these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,

    /// Further requirements on labels; all must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One requirement on a label: In and NotIn take a non-empty list of values, Exists and
/// DoesNotExist take none. NotIn and DoesNotExist also match objects without the label.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key, for example app or app.kubernetes.io/name.
    pub key: String,

    /// How the label is compared: In, NotIn, Exists or DoesNotExist.
    #[schemars(extend("enum" = ["In", "NotIn", "Exists", "DoesNotExist"]))]
    pub operator: String,

    /// The values for In and NotIn; must be empty for Exists and DoesNotExist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// When to trigger: Any (at least one watched object changed since the last Job) or All
/// (every watched object changed since the last Job). Defaults to Any.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum TriggerCondition {
    /// At least one watched object changed since the last trigger.
    #[default]
    Any,
    /// Every watched object changed since the last trigger.
    All,
}

/// What a trigger does while a Job this ChangeTriggeredJob created earlier has not finished
/// (CronJob's meaning). Allow (the default): create the new Job next to it. Forbid: wait until
/// no Job of it runs, then create one Job, however many changes came meanwhile. Replace: delete
/// the running Job (its Pods go too) and create the new one. Manual triggers obey it too. A Job
/// runs until its conditions say it succeeded or failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Create the new Job next to the running one.
    #[default]
    Allow,
    /// Hold the trigger until the running Job finishes, then create one Job.
    Forbid,
    /// Delete the running Job (with its Pods) and create the new one.
    Replace,
}

/// State of a Job, read from its conditions: Active, Succeeded or Failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum JobState {
    /// Still running (or not started).
    Active,
    /// Completed successfully (condition Complete or SuccessCriteriaMet).
    Succeeded,
    /// Failed (condition Failed or FailureTarget).
    Failed,
}

/// Observed state of a ChangeTriggeredJob, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeTriggeredJobStatus {
    /// metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Available, Progressing and Degraded, with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,

    /// Fingerprint state of every watched object: hash is the latest fingerprint, baseline the
    /// fingerprint at the last trigger (or first observation). An object whose hash differs
    /// from its baseline has a pending change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_hashes: Vec<ResourceHashStatus>,

    /// When the last Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_triggered_time: Option<Time>,

    /// Name of the most recently created Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_name: Option<String>,

    /// State of the most recently created Job: Active, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_status: Option<JobState>,

    /// Number of triggers so far; the next Job's name is derived from it, so a trigger is
    /// never carried out twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_sequence: Option<i64>,

    /// Last value of the changejob.dev/trigger annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_trigger: Option<String>,

    /// When a trigger deferred by the cooldown will fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_trigger_time: Option<Time>,

    /// Identifier of the installation key the fingerprints were computed with. When the key
    /// changes, fingerprints are re-baselined without triggering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_key_id: Option<String>,
}

/// Fingerprint state of one watched object, or of one selector entry's set of objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceHashStatus {
    /// API version of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object; empty for a selector entry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The selector of a selector entry, in kubectl's form (app=shop,tier in (api,web)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Number of objects matching the selector at the latest observation (selector entries
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
    /// Namespace of the object; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Field paths the fingerprint covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Latest fingerprint (keyed HMAC-SHA256 of the selected content, hex), or "absent".
    pub hash: String,
    /// Fingerprint at the last trigger or at first observation.
    #[serde(default)]
    pub baseline: String,
    /// Whether the object existed at the latest observation.
    #[serde(default)]
    pub exists: bool,
}

impl ChangeTriggeredJobSpec {
    /// The trigger condition, defaulted.
    pub fn condition(&self) -> TriggerCondition {
        self.condition.unwrap_or_default()
    }

    /// The history limit, defaulted and never below 1.
    pub fn history(&self) -> usize {
        usize::try_from(self.history.unwrap_or(super::DEFAULT_HISTORY).max(1)).unwrap_or(1)
    }

    /// Whether triggering is suspended.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// The concurrency policy, defaulted.
    pub fn concurrency_policy(&self) -> ConcurrencyPolicy {
        self.concurrency_policy.unwrap_or_default()
    }
}

impl ResourceReference {
    /// The field paths to fingerprint, defaulted to the whole object.
    pub fn fields_or_default(&self) -> Vec<String> {
        match &self.fields {
            Some(fields) if !fields.is_empty() => fields.clone(),
            _ => vec![super::WHOLE_OBJECT.to_string()],
        }
    }

    /// `Kind/namespace/name` (or `Kind/name` when cluster-scoped), as used in messages and in
    /// the changed-resources annotation; a selector entry shows its selector in brackets
    /// (`ConfigMap/shop/[app=shop]`).
    pub fn display_name(&self) -> String {
        let target = match &self.selector {
            Some(selector) if self.name.is_empty() => {
                format!("[{}]", crate::detect::label_selector::describe(selector))
            }
            _ => self.name.clone(),
        };
        match &self.namespace {
            Some(ns) if !ns.is_empty() => format!("{}/{}/{}", self.kind, ns, target),
            _ => format!("{}/{}", self.kind, target),
        }
    }
}

impl std::fmt::Display for TriggerCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TriggerCondition::Any => "Any",
            TriggerCondition::All => "All",
        })
    }
}

impl std::fmt::Display for ConcurrencyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConcurrencyPolicy::Allow => "Allow",
            ConcurrencyPolicy::Forbid => "Forbid",
            ConcurrencyPolicy::Replace => "Replace",
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Active => "Active",
            JobState::Succeeded => "Succeeded",
            JobState::Failed => "Failed",
        })
    }
}
