//! Errors the fake answers with, rendered as `meta.k8s.io/v1` `Status` objects worded the way
//! the API server words them (clients match on `reason` and `code`, people read `message`).

use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// One field-level cause of a 422 Invalid answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cause {
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The machine-readable `reason` the API server derives from the kind of field error.
    fn reason(&self) -> &'static str {
        let m = self.message.as_str();
        if m.starts_with("Required value") {
            "FieldValueRequired"
        } else if m.starts_with("Unsupported value") {
            "FieldValueNotSupported"
        } else if m.starts_with("Duplicate value") {
            "FieldValueDuplicate"
        } else if m.starts_with("Forbidden") {
            "FieldValueForbidden"
        } else if m.starts_with("Too long") || m.starts_with("Too many") {
            "FieldValueTooLong"
        } else if m.starts_with("Not found") {
            "FieldValueNotFound"
        } else {
            "FieldValueInvalid"
        }
    }
}

/// An error answer: HTTP code, `Status.reason`, message and optional details.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `configmaps "x" not found`
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified_resource()),
        )
        .with_details(resource_details(rt, name))
    }

    /// `namespaces "x" not found`, as answered when creating into a missing namespace.
    pub fn namespace_not_found(namespace: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// The answer to any path the server does not serve.
    pub fn resource_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified_resource()),
        )
        .with_details(resource_details(rt, name))
    }

    /// `Operation cannot be fulfilled on configmaps "x": <why>`
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                rt.qualified_resource()
            ),
        )
        .with_details(resource_details(rt, name))
    }

    /// The optimistic-concurrency failure of an update with a stale `resourceVersion`.
    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        ApiError::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid: `Job.batch "x" is invalid: [a: Required value, b: ...]`
    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> Self {
        ApiError::invalid_kind(&rt.qualified_kind(), &rt.group, &rt.kind, name, causes)
    }

    pub fn invalid_kind(
        qualified_kind: &str,
        group: &str,
        kind: &str,
        name: &str,
        causes: Vec<Cause>,
    ) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let list = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !group.is_empty() {
            details.insert("group".into(), json!(group));
        }
        details.insert("kind".into(), json!(kind));
        details.insert(
            "causes".into(),
            Value::Array(
                causes
                    .iter()
                    .map(|c| json!({"reason": c.reason(), "message": c.message, "field": c.field}))
                    .collect(),
            ),
        );
        ApiError::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {list}"),
        )
        .with_details(Value::Object(details))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn not_acceptable() -> Self {
        ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, \
             application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, \
             application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media \
                 types include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json"
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    /// The `Status` object of this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `details` naming an object by resource, as in NotFound, AlreadyExists, Conflict, Forbidden.
pub(crate) fn resource_details(rt: &ResourceType, name: &str) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), json!(name));
    if !rt.group.is_empty() {
        details.insert("group".into(), json!(rt.group));
    }
    details.insert("kind".into(), json!(rt.plural));
    Value::Object(details)
}

/// The `Status` a successful DELETE answers with for most kinds.
pub(crate) fn delete_success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = resource_details(rt, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
