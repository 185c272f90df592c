//! Validation the API server runs before storing: object names, the built-in Job rules our
//! operator can trip over, and per-kind validators that tests install.

use std::sync::Arc;

use serde_json::Value;

use super::FakeApi;
use super::resources::ResourceType;
use super::status::Cause;

/// A test-installed validator: `Err` lists `(field path, message)` pairs, e.g.
/// `("spec.template.spec.containers", "Required value")`.
pub(crate) type Validator = Arc<dyn Fn(&Value) -> Result<(), Vec<(String, String)>> + Send + Sync>;

const SUBDOMAIN_HELP: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
    characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
    regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_HELP: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
    or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex \
    used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_HELP: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
    start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or \
    'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// `metadata.name` rules of the kind (most kinds: DNS-1123 subdomain).
pub(crate) fn name_causes(rt: &ResourceType, name: &str) -> Vec<Cause> {
    let invalid = |why: &str| {
        vec![Cause::new(
            "metadata.name",
            format!("Invalid value: \"{name}\": {why}"),
        )]
    };
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            if name.len() > 63 {
                invalid("must be no more than 63 characters")
            } else if !is_label(name) {
                invalid(LABEL_HELP)
            } else {
                vec![]
            }
        }
        ("", "services") => {
            if name.len() > 63 {
                invalid("must be no more than 63 characters")
            } else if !is_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                invalid(DNS1035_HELP)
            } else {
                vec![]
            }
        }
        ("rbac.authorization.k8s.io", _) => {
            if name == "." || name == ".." {
                invalid(&format!("may not be '{name}'"))
            } else if name.contains('/') {
                invalid("may not contain '/'")
            } else if name.contains('%') {
                invalid("may not contain '%'")
            } else {
                vec![]
            }
        }
        _ => {
            if name.len() > 253 {
                invalid("must be no more than 253 characters")
            } else if !is_subdomain(name) {
                invalid(SUBDOMAIN_HELP)
            } else {
                vec![]
            }
        }
    }
}

/// Built-in rules for a kind plus any validator a test installed for its plural.
pub(crate) fn object_causes(
    validators: &std::collections::HashMap<String, Validator>,
    rt: &ResourceType,
    object: &Value,
) -> Vec<Cause> {
    let mut causes = match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => job_causes(object),
        ("apiextensions.k8s.io", "customresourcedefinitions") => super::crds::causes(object),
        _ => vec![],
    };
    if let Some(validator) = validators.get(&rt.plural)
        && let Err(errors) = validator(object)
    {
        causes.extend(
            errors
                .into_iter()
                .map(|(field, message)| Cause::new(field, message)),
        );
    }
    causes
}

/// The Job validation an invalid `jobTemplate` trips: name length (the name becomes a label
/// value), containers, and the restart policy (pod defaulting makes a missing one `Always`).
fn job_causes(job: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.len() > 63 {
        causes.push(Cause::new(
            "metadata.name",
            format!("Invalid value: \"{name}\": must be no more than 63 characters"),
        ));
    }
    let pod = job.pointer("/spec/template/spec");
    match pod
        .and_then(|p| p.get("containers"))
        .and_then(Value::as_array)
    {
        Some(containers) if !containers.is_empty() => {
            for (i, c) in containers.iter().enumerate() {
                for field in ["name", "image"] {
                    if c.get(field)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        causes.push(Cause::new(
                            format!("spec.template.spec.containers[{i}].{field}"),
                            "Required value",
                        ));
                    }
                }
            }
        }
        _ => causes.push(Cause::new(
            "spec.template.spec.containers",
            "Required value",
        )),
    }
    let policy = pod
        .and_then(|p| p.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if policy != "Never" && policy != "OnFailure" {
        causes.push(Cause::new(
            "spec.template.spec.restartPolicy",
            format!("Unsupported value: \"{policy}\": supported values: \"OnFailure\", \"Never\""),
        ));
    }
    causes
}

/// Validators, for tests.
impl FakeApi {
    /// Installs extra validation for every kind with this plural: `Err` answers the write with
    /// 422 Invalid whose `details.causes` carry the `(field, message)` pairs. Messages starting
    /// like the API server's (`Required value`, `Unsupported value: ...`, `Invalid value: ...`)
    /// get the matching cause reason. The closure must not call back into the `FakeApi`.
    pub fn set_validator(
        &self,
        plural: &str,
        validator: impl Fn(&Value) -> Result<(), Vec<(String, String)>> + Send + Sync + 'static,
    ) {
        self.lock()
            .validators
            .insert(plural.to_string(), Arc::new(validator));
    }

    pub fn clear_validator(&self, plural: &str) {
        self.lock().validators.remove(plural);
    }
}
