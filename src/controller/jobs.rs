//! Creating a trigger's Job, listing the Jobs a CTJ owns as the API server has them now, and
//! deleting Jobs (beyond the history limit, or replaced by `concurrencyPolicy: Replace`).

use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::api::{OWNER_LABEL, TRIGGER_SEQUENCE_ANNOTATION};
use crate::detect::history::JobRecord;
use crate::detect::job::is_owned_by;

/// What creating the Job led to.
#[derive(Debug)]
pub enum Created {
    /// Created now.
    New(Box<Job>),
    /// It already existed and belongs to this CTJ: an earlier attempt created it.
    Existing(Box<Job>),
}

/// Why the Job could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// The API server rejected the Job as invalid (422): the template is wrong.
    Invalid(String),
    /// A Job of that name exists and belongs to someone else.
    NameTaken(String),
    /// The operator may not create Jobs there (403).
    Forbidden(String),
    /// Anything else; retry.
    Other(String),
}

/// Creates `job`; an existing Job with the same name owned by `ctj_uid` counts as success.
pub async fn create(
    client: &Client,
    namespace: &str,
    ctj_uid: &str,
    job: &Job,
) -> Result<Created, CreateError> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = job.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), job).await {
        Ok(job) => Ok(Created::New(Box::new(job))),
        Err(kube::Error::Api(status)) if status.code == 409 => match api.get_opt(&name).await {
            Ok(Some(existing)) if is_owned_by(&existing, ctj_uid) => {
                Ok(Created::Existing(Box::new(existing)))
            }
            Ok(_) => Err(CreateError::NameTaken(format!(
                "a Job named {name} already exists in {namespace} and is not owned by this ChangeTriggeredJob; delete or rename it"
            ))),
            Err(e) => Err(CreateError::Other(format!(
                "checking existing Job {name}: {e}"
            ))),
        },
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let causes = status
                .details
                .as_ref()
                .map(|d| {
                    d.causes
                        .iter()
                        .map(|c| format!("spec.jobTemplate.{}: {}", c.field, c.message))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let detail = if causes.is_empty() {
                status.message.clone()
            } else {
                causes.join("; ")
            };
            Err(CreateError::Invalid(format!(
                "the API server rejected Job {name}: {detail}"
            )))
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            Err(CreateError::Forbidden(format!(
                "the operator is not allowed to create Jobs in namespace {namespace}: {}",
                status.message
            )))
        }
        Err(e) => Err(CreateError::Other(format!("creating Job {name}: {e}"))),
    }
}

/// The Jobs of the CTJ `ctj_name` (owner label and controller reference to `ctj_uid`), read
/// from the API server rather than the informer: the concurrency policy must not miss a Job
/// created a moment ago or still unlisted after a restart. A plain list is a consistent read.
pub async fn list_owned(
    client: &Client,
    namespace: &str,
    ctj_name: &str,
    ctj_uid: &str,
) -> Result<Vec<Job>, String> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{OWNER_LABEL}={ctj_name}");
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter(|j| is_owned_by(j, ctj_uid))
            .collect()),
        Err(e) => Err(format!(
            "listing the Jobs of this ChangeTriggeredJob in {namespace} ({selector}) to apply spec.concurrencyPolicy: {e}"
        )),
    }
}

/// The history view of a Job.
pub fn record(job: &Job) -> JobRecord {
    JobRecord {
        name: job.metadata.name.clone().unwrap_or_default(),
        created: job.metadata.creation_timestamp.as_ref().map(|t| t.0),
        sequence: job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGER_SEQUENCE_ANNOTATION))
            .and_then(|s| s.parse().ok()),
        deleting: job.metadata.deletion_timestamp.is_some(),
    }
}

/// Deletes Jobs by name with background propagation (so their Pods go too; a Job deleted
/// without propagation orphans its Pods). Returns the names deleted and the errors.
pub async fn delete(
    client: &Client,
    namespace: &str,
    names: &[String],
) -> (Vec<String>, Vec<String>) {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name.clone()),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => errors.push(format!("deleting Job {name}: {e}")),
        }
    }
    (deleted, errors)
}
