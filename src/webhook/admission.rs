//! Runs one admission request through the mutating or the validating webhook: decides which
//! rules apply to the operation, runs them (the cluster-backed ones concurrently, under a
//! deadline) and turns the result into an AdmissionResponse plus a metrics outcome.

use std::time::Duration;

use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::Value;

use super::checks::{dry_run, kinds};
use super::mutate::{self, Change, defaulted_spec};
use super::review::{self, Incoming};
use super::server::WebhookState;
use super::violation::{Reason, Violation};
use super::{authorize, validate, warnings};

/// How a request ended, for the `result` label of `changejob_webhook_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed (possibly with a patch or warnings).
    Allowed,
    /// Denied because the object is invalid or its author lacks permissions.
    Denied,
    /// Not decided on the merits: the body was malformed, a check could not run, or the
    /// webhook itself failed.
    Error,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// A response and how it should be counted.
#[derive(Debug)]
pub struct Answer {
    /// What to send back.
    pub response: AdmissionResponse,
    /// How to count it.
    pub outcome: Outcome,
}

impl Answer {
    fn allowed(response: AdmissionResponse) -> Self {
        Answer {
            response,
            outcome: Outcome::Allowed,
        }
    }

    fn denied(
        request: &AdmissionRequest<DynamicObject>,
        violations: &[Violation],
        warnings: Vec<String>,
    ) -> Self {
        let outcome = if violations.iter().all(Violation::is_retryable) {
            Outcome::Error
        } else {
            Outcome::Denied
        };
        Answer {
            response: review::deny(request, violations, warnings),
            outcome,
        }
    }
}

/// Requests we allow without looking: deletes and connects, subresources (status is written
/// by the operator and never routed here, but must pass if it is), and kinds other than ours.
fn passthrough(request: &AdmissionRequest<DynamicObject>) -> bool {
    matches!(request.operation, Operation::Delete | Operation::Connect)
        || request
            .sub_resource
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        || !review::is_change_triggered_job(request)
}

fn no_object(request: &AdmissionRequest<DynamicObject>) -> Answer {
    Answer::denied(
        request,
        &[Violation::new(
            "",
            Reason::Required,
            "the admission request carries no object to check",
        )],
        Vec::new(),
    )
}

/// The mutating webhook: defaults and the changed-at stamp. No I/O; `now` is the request time.
pub fn mutate(incoming: &Incoming, now: Timestamp) -> Answer {
    let request = &incoming.request;
    if passthrough(request) {
        return Answer::allowed(review::allow(request));
    }
    let Some(object) = &incoming.object else {
        return no_object(request);
    };
    let change = match (&request.operation, &incoming.old_object) {
        (Operation::Update, Some(old)) => Change::Update { old },
        _ => Change::Create,
    };
    match mutate::mutation(object, change, now) {
        Ok(patch) => match review::allow_with_patch(request, patch) {
            Ok(response) => Answer::allowed(response),
            Err(e) => {
                tracing::error!(uid = %request.uid, error = %e, "serializing the JSON patch failed");
                Answer::denied(
                    request,
                    &[Violation::new(
                        "",
                        Reason::Unverified,
                        "the webhook could not build its patch; retry",
                    )],
                    Vec::new(),
                )
            }
        },
        Err(e) => Answer::denied(
            request,
            &[Violation::new("", Reason::Invalid, e.to_string())],
            Vec::new(),
        ),
    }
}

/// What an UPDATE changed, after defaulting both sides (everything, on CREATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changes {
    /// Anything in `.spec`.
    pub spec: bool,
    /// `.spec.jobTemplate`.
    pub template: bool,
    /// `.spec.resources`.
    pub resources: bool,
}

impl Changes {
    /// Everything counts as changed.
    pub const ALL: Changes = Changes {
        spec: true,
        template: true,
        resources: true,
    };

    /// Compares `new` with the stored `old` object.
    pub fn between(new: &Value, old: Option<&Value>) -> Changes {
        let Some(old) = old else {
            return Changes::ALL;
        };
        let spec = |o: &Value| defaulted_spec(o.get("spec").unwrap_or(&Value::Null));
        let (new, old) = (spec(new), spec(old));
        let differs = |key: &str| new.get(key) != old.get(key);
        Changes {
            spec: new != old,
            template: differs("jobTemplate"),
            resources: differs("resources"),
        }
    }
}

/// The validating webhook.
///
/// On CREATE every rule runs. On UPDATE only what changed is checked: an update that leaves
/// the spec alone (labels, finalizers, the manual-trigger annotation) is always allowed, so an
/// object stored before a rule existed can still be edited and deleted; the Job template is
/// dry-run only when it changed, and permissions are checked only when the template or the
/// watched objects changed.
/// The cluster-backed checks (discovery, authorization, dry run) get `deadline` in all.
pub async fn validate(state: &WebhookState, incoming: &Incoming, deadline: Duration) -> Answer {
    let request = &incoming.request;
    if passthrough(request) {
        return Answer::allowed(review::allow(request));
    }
    let Some(object) = &incoming.object else {
        return no_object(request);
    };
    let creating = request.operation == Operation::Create || incoming.old_object.is_none();
    let changes = if creating {
        Changes::ALL
    } else {
        Changes::between(object, incoming.old_object.as_ref())
    };
    let reading = validate::read(object);
    let old = incoming
        .old_object
        .as_ref()
        .and_then(|o| validate::read(o).ctj);

    let Some(ctj) = reading.ctj else {
        if !changes.spec {
            return Answer::allowed(review::allow(request));
        }
        return Answer::denied(request, &reading.violations, Vec::new());
    };

    let mut found = warnings::warnings(&ctj, old.as_ref());
    if !changes.spec {
        // Metadata-only update: nothing to validate; only warnings that are new this time.
        let before = old
            .as_ref()
            .map(|o| warnings::warnings(o, None))
            .unwrap_or_default();
        found.retain(|w| !before.contains(w));
        return Answer::allowed(review::allow_with_warnings(request, found));
    }

    let mut violations = reading.violations;
    violations.extend(
        validate::check(&ctj)
            .into_iter()
            // The name cannot change after creation; do not hold later edits hostage to it.
            .filter(|v| creating || !v.field.starts_with("metadata.")),
    );

    let namespace = request
        .namespace
        .clone()
        .or_else(|| ctj.metadata.namespace.clone())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let cluster = cluster_checks(state, request, &ctj, &namespace, changes);
    match tokio::time::timeout(deadline, cluster).await {
        Ok(outcome) => {
            violations.extend(outcome.violations);
            found.extend(outcome.warnings);
        }
        Err(_) => violations.push(Violation::new(
            "",
            Reason::Unverified,
            format!(
                "the checks against the API server did not finish within {}; retry in a few \
                 seconds",
                seconds(deadline)
            ),
        )),
    }

    if violations.is_empty() {
        Answer::allowed(review::allow_with_warnings(request, found))
    } else {
        Answer::denied(request, &violations, found)
    }
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[derive(Default)]
struct ClusterOutcome {
    violations: Vec<Violation>,
    warnings: Vec<String>,
}

/// Discovery, permission and dry-run checks; the dry run runs alongside discovery, and the
/// permission checks follow discovery (they need each kind's plural).
async fn cluster_checks(
    state: &WebhookState,
    request: &AdmissionRequest<DynamicObject>,
    ctj: &crate::api::ChangeTriggeredJob,
    namespace: &str,
    changes: Changes,
) -> ClusterOutcome {
    let settings = &state.settings;
    let authorize_needed =
        settings.webhook_authorize_users && (changes.template || changes.resources);
    let dry_run = async {
        if settings.webhook_dry_run_job_template && changes.template {
            Some(dry_run::check(&state.client, ctj, namespace).await)
        } else {
            None
        }
    };
    let kinds_then_access = async {
        if !changes.resources && !authorize_needed {
            return (Vec::new(), Vec::new());
        }
        let kinds = kinds::check(&state.discovery, &ctj.spec.resources, namespace).await;
        let denied = if authorize_needed {
            authorize::check(
                &state.client,
                &request.user_info,
                ctj,
                namespace,
                &kinds.kinds,
                state.review_concurrency,
            )
            .await
        } else {
            Vec::new()
        };
        let kind_violations = if changes.resources {
            kinds.violations
        } else {
            Vec::new()
        };
        (kind_violations, denied)
    };
    let (dry, (kind_violations, denied)) = tokio::join!(dry_run, kinds_then_access);
    let mut out = ClusterOutcome::default();
    out.violations.extend(kind_violations);
    if let Some(dry) = dry {
        out.violations.extend(dry.violations);
        out.warnings.extend(dry.warnings);
    }
    out.violations.extend(denied);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({ "metadata": { "name": "a" }, "spec": {
            "jobTemplate": { "spec": {} },
            "resources": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": "d" }]
        } })
    }

    #[test]
    fn create_counts_as_every_change() {
        assert_eq!(Changes::between(&base(), None), Changes::ALL);
    }

    #[test]
    fn label_edit_changes_nothing() {
        let mut new = base();
        new["metadata"]["labels"] = json!({ "a": "b" });
        let c = Changes::between(&new, Some(&base()));
        assert!(!c.spec && !c.template && !c.resources);
    }

    #[test]
    fn spelling_out_a_default_changes_nothing() {
        let mut new = base();
        new["spec"]["resources"][0]["fields"] = json!(["*"]);
        new["spec"]["cooldown"] = json!("60s");
        assert!(!Changes::between(&new, Some(&base())).spec);
    }

    #[test]
    fn template_and_resource_edits_are_told_apart() {
        let mut new = base();
        new["spec"]["jobTemplate"]["spec"]["backoffLimit"] = json!(2);
        let c = Changes::between(&new, Some(&base()));
        assert!(c.spec && c.template && !c.resources);
        let mut new = base();
        new["spec"]["resources"][0]["name"] = json!("y");
        let c = Changes::between(&new, Some(&base()));
        assert!(c.spec && !c.template && c.resources);
        let mut new = base();
        new["spec"]["history"] = json!(9);
        let c = Changes::between(&new, Some(&base()));
        assert!(c.spec && !c.template && !c.resources);
    }

    #[test]
    fn outcome_labels_match_the_metric() {
        assert_eq!(Outcome::Allowed.label(), "allowed");
        assert_eq!(Outcome::Denied.label(), "denied");
        assert_eq!(Outcome::Error.label(), "error");
    }
}
