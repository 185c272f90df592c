//! Asks the API server whether a Job built from `spec.jobTemplate` would be accepted: a
//! server-side dry-run create of exactly the Job the operator would create, in the
//! ChangeTriggeredJob's namespace. Rejections are reported at the template's field paths, and
//! the API server's warnings (e.g. Pod Security) are passed on.

use http_body_util::BodyExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::PostParams;
use kube::core::Status;

use crate::api::ChangeTriggeredJob;
use crate::detect::job::{JobRequest, build_job};
use crate::detect::trigger::{TriggerReason, WatchedObject};
use crate::webhook::violation::{Reason, Violation};

/// UID used for the owner reference when the request carries none (mutation happens before
/// the API server assigns one).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Field manager named in dry-run requests.
const FIELD_MANAGER: &str = "kube-changejob-webhook";

/// Where the template lives in a ChangeTriggeredJob.
const TEMPLATE: &str = "spec.jobTemplate";

/// The outcome of a dry run.
#[derive(Debug, Default)]
pub struct DryRun {
    /// Problems with the template.
    pub violations: Vec<Violation>,
    /// Warnings the API server returned for the Job.
    pub warnings: Vec<String>,
}

/// The Job the operator would create first for `ctj`, as sent in the dry run; an error when
/// the template cannot be decoded.
pub fn job_for(ctj: &ChangeTriggeredJob, namespace: &str) -> Result<Job, serde_json::Error> {
    let template = ctj.spec.job_template.decode()?;
    let name = ctj
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| ctj.metadata.generate_name.clone())
        .unwrap_or_else(|| "ctj".to_string());
    let uid = ctj
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| PLACEHOLDER_UID.to_string());
    let changed: Vec<WatchedObject> = ctj
        .spec
        .resources
        .iter()
        .map(WatchedObject::from_reference)
        .collect();
    Ok(build_job(&JobRequest {
        ctj_name: &name,
        ctj_namespace: namespace,
        ctj_uid: &uid,
        template: &template,
        sequence: 0,
        reason: TriggerReason::Change,
        changed: &changed,
    }))
}

/// Dry-run creates the Job for `ctj` in `namespace`.
pub async fn check(client: &Client, ctj: &ChangeTriggeredJob, namespace: &str) -> DryRun {
    let job = match job_for(ctj, namespace) {
        Ok(job) => job,
        Err(error) => {
            return DryRun {
                violations: vec![Violation::new(
                    TEMPLATE,
                    Reason::Invalid,
                    format!("cannot be read as a batch/v1 JobTemplateSpec: {error}"),
                )],
                warnings: Vec::new(),
            };
        }
    };
    match send(client, &job, namespace).await {
        Ok((status, warnings)) => DryRun {
            violations: status.map(|s| interpret(&s, namespace)).unwrap_or_default(),
            warnings: warnings
                .into_iter()
                .map(|w| format!("{TEMPLATE}: a Job from this template gets a warning: {w}"))
                .collect(),
        },
        Err(error) => DryRun {
            violations: vec![Violation::new(
                TEMPLATE,
                Reason::Unverified,
                format!(
                    "could not check the Job template with a dry run ({error}); this is usually \
                     temporary, retry in a few seconds"
                ),
            )],
            warnings: Vec::new(),
        },
    }
}

/// Sends the dry run through the raw client (kube's `Api` drops response headers, and the
/// warnings are in a header). Returns the failure status, if any, and the warnings.
async fn send(
    client: &Client,
    job: &Job,
    namespace: &str,
) -> Result<(Option<Status>, Vec<String>), String> {
    let params = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    let body = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    let request = kube::core::Request::new(format!("/apis/batch/v1/namespaces/{namespace}/jobs"))
        .create(&params, body)
        .map_err(|e| e.to_string())?
        .map(kube::client::Body::from);
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let warnings = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(warning_text)
        .collect();
    let code = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if code.is_success() {
        return Ok((None, warnings));
    }
    let mut status: Status = serde_json::from_slice(&bytes).unwrap_or_else(|_| Status {
        message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        ..Status::default()
    });
    if status.code == 0 {
        status.code = code.as_u16();
    }
    Ok((Some(status), warnings))
}

/// The text of an HTTP `Warning` header (`299 - "message"`).
pub fn warning_text(header: &str) -> Option<String> {
    let rest = header.trim();
    let rest = rest.strip_prefix("299")?.trim_start();
    let rest = rest.strip_prefix('-')?.trim_start();
    let quoted = rest.strip_prefix('"')?;
    let mut text = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            '"' => return Some(text),
            c => text.push(c),
        }
    }
    None
}

/// Turns the API server's answer to the dry run into violations at the CTJ's field paths.
pub fn interpret(status: &Status, namespace: &str) -> Vec<Violation> {
    if status.is_already_exists() || status.code == 409 {
        // A Job of that name exists, which means the template itself was acceptable.
        return Vec::new();
    }
    let transient = status.code == 429 || status.code >= 500 || status.code == 0;
    if transient {
        return vec![Violation::new(
            TEMPLATE,
            Reason::Unverified,
            format!(
                "could not check the Job template: the API server answered the dry run with \
                 {} {}; retry in a few seconds",
                status.code,
                status.message.trim()
            ),
        )];
    }
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    if status.is_invalid() && !causes.is_empty() {
        return causes
            .iter()
            .map(|cause| {
                Violation::new(
                    template_field(&cause.field),
                    Reason::Invalid,
                    format!(
                        "{} (the API server rejects a Job built from this template)",
                        cause_text(&cause.message, &cause.reason)
                    ),
                )
            })
            .collect();
    }
    let reason = if status.is_forbidden() {
        Reason::Forbidden
    } else {
        Reason::Invalid
    };
    vec![Violation::new(
        TEMPLATE,
        reason,
        format!(
            "a Job built from this template would be rejected in namespace {namespace:?}: {}",
            status.message.trim()
        ),
    )]
}

fn cause_text(message: &str, reason: &str) -> String {
    match (message.trim(), reason.trim()) {
        ("", "") => "invalid value".to_string(),
        ("", reason) => reason.to_string(),
        (message, _) => message.to_string(),
    }
}

/// Maps a field path of the Job to the same field in the ChangeTriggeredJob.
pub fn template_field(job_field: &str) -> String {
    let field = job_field.trim();
    if field.is_empty() {
        return TEMPLATE.to_string();
    }
    // The Job's name, namespace and owner reference come from the ChangeTriggeredJob itself.
    match field {
        "metadata.name" | "metadata.generateName" => return "metadata.name".to_string(),
        "metadata.namespace" => return "metadata.namespace".to_string(),
        _ => {}
    }
    format!("{TEMPLATE}.{field}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};
    use serde_json::json;

    fn ctj() -> ChangeTriggeredJob {
        crate::webhook::fixtures::ctj(
            "prod",
            json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "prod" }]),
        )
    }

    fn invalid(causes: Vec<StatusCause>) -> Status {
        Status::failure("Job.batch \"w-x\" is invalid", "Invalid")
            .with_code(422)
            .with_details(StatusDetails {
                name: "w-x".into(),
                group: "batch".into(),
                kind: "Job".into(),
                uid: String::new(),
                causes,
                retry_after_seconds: 0,
            })
    }

    #[test]
    fn job_paths_map_to_template_paths() {
        assert_eq!(
            template_field("spec.template.spec.containers[0].image"),
            "spec.jobTemplate.spec.template.spec.containers[0].image"
        );
        assert_eq!(
            template_field("metadata.labels"),
            "spec.jobTemplate.metadata.labels"
        );
        assert_eq!(template_field(""), "spec.jobTemplate");
        assert_eq!(template_field("metadata.name"), "metadata.name");
    }

    #[test]
    fn invalid_causes_become_violations_at_template_paths() {
        let status = invalid(vec![
            StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.template.spec.containers[0].image".into(),
            },
            StatusCause {
                reason: "FieldValueNotSupported".into(),
                message: "Unsupported value: \"Always\"".into(),
                field: "spec.template.spec.restartPolicy".into(),
            },
        ]);
        let v = interpret(&status, "prod");
        assert_eq!(v.len(), 2);
        assert!(
            v[0].to_string().starts_with(
                "spec.jobTemplate.spec.template.spec.containers[0].image: Required value"
            ),
            "{}",
            v[0]
        );
        assert_eq!(
            v[1].field,
            "spec.jobTemplate.spec.template.spec.restartPolicy"
        );
    }

    #[test]
    fn already_exists_means_the_template_is_fine() {
        let status = Status::failure("exists", "AlreadyExists").with_code(409);
        assert!(interpret(&status, "prod").is_empty());
    }

    #[test]
    fn server_errors_are_retryable() {
        let status = Status::failure("etcd timeout", "InternalError").with_code(500);
        let v = interpret(&status, "prod");
        assert!(v[0].is_retryable());
    }

    #[test]
    fn other_rejections_are_relayed() {
        let status = Status::failure("denied by policy", "Forbidden").with_code(403);
        let v = interpret(&status, "prod");
        assert_eq!(v[0].reason, Reason::Forbidden);
        assert!(v[0].message.contains("denied by policy"));
    }

    #[test]
    fn warning_headers_are_unquoted() {
        assert_eq!(
            warning_text(r#"299 - "would violate PodSecurity \"restricted:latest\"""#).as_deref(),
            Some(r#"would violate PodSecurity "restricted:latest""#)
        );
        assert_eq!(warning_text("199 - \"x\""), None);
        assert_eq!(warning_text("299 - unquoted"), None);
    }

    #[test]
    fn dry_run_job_has_a_placeholder_owner_uid_and_the_ctj_namespace() {
        let job = job_for(&ctj(), "prod").unwrap();
        assert_eq!(job.metadata.namespace.as_deref(), Some("prod"));
        let owners = job.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners[0].uid, PLACEHOLDER_UID);
        assert!(job.metadata.name.unwrap_or_default().starts_with("w-"));
    }
}
