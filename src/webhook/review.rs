//! The AdmissionReview envelope: reading a request body into kube's `AdmissionRequest` (keeping
//! the objects as raw JSON, so an object that is not a valid ChangeTriggeredJob still gets an
//! answer naming the problem), and writing allowed and denied responses.

use base64::Engine;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND,
    SerializePatchError,
};
use kube::core::response::{StatusCause, StatusDetails, StatusSummary};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use super::violation::{Violation, join};
use crate::api::{GROUP, KIND};

/// Seconds a client should wait before retrying a request whose checks could not run.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// A parsed admission request with its objects as raw JSON.
#[derive(Debug)]
pub struct Incoming {
    /// The request, with `object` and `old_object` taken out.
    pub request: AdmissionRequest<DynamicObject>,
    /// `request.object`, if present and not null.
    pub object: Option<Value>,
    /// `request.oldObject`, if present and not null.
    pub old_object: Option<Value>,
}

/// Why a body is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON.
    #[error("the request body is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The JSON is not an `admission.k8s.io/v1` AdmissionReview.
    #[error("the request body is not an admission.k8s.io/v1 AdmissionReview")]
    NotAReview,
    /// The JSON has the AdmissionReview shape wrong somewhere.
    #[error("the request body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    /// The AdmissionReview has no `request`.
    #[error("the AdmissionReview has no request to answer")]
    NoRequest,
}

/// Reads an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Incoming, EnvelopeError> {
    let mut value: Value = serde_json::from_slice(body).map_err(EnvelopeError::NotJson)?;
    let is_v1_review = value.get("apiVersion").and_then(Value::as_str) == Some(META_API_VERSION_V1)
        && value.get("kind").and_then(Value::as_str) == Some(META_KIND);
    if !is_v1_review {
        return Err(EnvelopeError::NotAReview);
    }
    let (object, old_object) = match value.get_mut("request") {
        None | Some(Value::Null) => return Err(EnvelopeError::NoRequest),
        Some(Value::Object(request)) => (
            request.remove("object").filter(|v| !v.is_null()),
            request.remove("oldObject").filter(|v| !v.is_null()),
        ),
        Some(_) => {
            return Err(EnvelopeError::Malformed(
                "request must be an object".to_string(),
            ));
        }
    };
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(&value)
        .map_err(|e| EnvelopeError::Malformed(format!("{}: {}", e.path(), e.inner())))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| EnvelopeError::NoRequest)?;
    Ok(Incoming {
        request,
        object,
        old_object,
    })
}

/// Whether the request is about a ChangeTriggeredJob (rather than something a misconfigured
/// webhook configuration routed to us).
pub fn is_change_triggered_job(request: &AdmissionRequest<DynamicObject>) -> bool {
    request.kind.group == GROUP && request.kind.kind == KIND
}

/// Allowed, untouched.
pub fn allow(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    AdmissionResponse::from(request)
}

/// Allowed, with warnings for the client (none: the field is left out).
pub fn allow_with_warnings(
    request: &AdmissionRequest<DynamicObject>,
    warnings: Vec<String>,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// Allowed, with a JSON Patch (an empty patch is left out).
pub fn allow_with_patch(
    request: &AdmissionRequest<DynamicObject>,
    patch: json_patch::Patch,
) -> Result<AdmissionResponse, SerializePatchError> {
    let response = AdmissionResponse::from(request);
    if patch.0.is_empty() {
        Ok(response)
    } else {
        response.with_patch(patch)
    }
}

/// Denied, with every violation in the message and as a `StatusCause`.
///
/// When every violation is a check that could not run, the answer is 503 ServiceUnavailable
/// with a retry hint (the spec may be fine); otherwise 422 Invalid, like the API server's own
/// validation errors.
pub fn deny(
    request: &AdmissionRequest<DynamicObject>,
    violations: &[Violation],
    warnings: Vec<String>,
) -> AdmissionResponse {
    let retry_only = !violations.is_empty() && violations.iter().all(Violation::is_retryable);
    let (code, reason) = if retry_only {
        (503, "ServiceUnavailable")
    } else {
        (422, "Invalid")
    };
    let causes = violations
        .iter()
        .map(|v| StatusCause {
            reason: v.reason.cause_type().to_string(),
            message: v.message.clone(),
            field: v.field.clone(),
        })
        .collect();
    let mut response = allow_with_warnings(request, warnings).deny(join(violations));
    response.result = Status {
        status: Some(StatusSummary::Failure),
        code,
        message: response.result.message,
        metadata: None,
        reason: reason.to_string(),
        details: Some(StatusDetails {
            name: request.name.clone(),
            group: GROUP.to_string(),
            kind: KIND.to_string(),
            uid: String::new(),
            causes,
            retry_after_seconds: if retry_only { RETRY_AFTER_SECONDS } else { 0 },
        }),
    };
    response
}

/// The response wrapped in an AdmissionReview, as JSON for the API server.
///
/// kube's `AdmissionResponse` serializes `patch` as an array of byte values; the API server's
/// decoder happens to accept that, but the documented wire format is a base64 string (Go's
/// `[]byte`), which is what we send.
pub fn into_review(response: AdmissionResponse) -> Value {
    let mut review = response.into_review();
    // The version of the answer must match the question's; we only accept v1.
    review.types.api_version = META_API_VERSION_V1.to_string();
    review.types.kind = META_KIND.to_string();
    let patch = review.response.as_mut().and_then(|r| r.patch.take());
    let mut json = serde_json::to_value(&review).unwrap_or_else(|_| {
        // Serializing plain strings, bools and maps cannot fail; answer with a bare denial
        // rather than nothing if it ever did.
        serde_json::json!({ "apiVersion": META_API_VERSION_V1, "kind": META_KIND })
    });
    if let (Some(patch), Some(response)) = (patch, json.get_mut("response"))
        && let Some(fields) = response.as_object_mut()
    {
        fields.insert(
            "patch".to_string(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(patch)),
        );
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::violation::Reason;
    use serde_json::json;

    fn body(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request
        }))
        .unwrap_or_default()
    }

    fn request() -> Value {
        json!({
            "uid": "abc",
            "kind": { "group": GROUP, "version": "v1alpha", "kind": KIND },
            "resource": { "group": GROUP, "version": "v1alpha", "resource": "changetriggeredjobs" },
            "name": "w",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": { "username": "alice" },
            "object": { "spec": "anything at all" },
            "oldObject": null
        })
    }

    #[test]
    fn objects_are_kept_as_raw_json() {
        let incoming = parse(&body(request())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(incoming.request.uid, "abc");
        assert_eq!(incoming.object, Some(json!({ "spec": "anything at all" })));
        assert_eq!(incoming.old_object, None);
        assert!(is_change_triggered_job(&incoming.request));
    }

    #[test]
    fn garbage_is_not_json() {
        assert!(matches!(parse(b"\x00{"), Err(EnvelopeError::NotJson(_))));
    }

    #[test]
    fn other_json_is_not_a_review() {
        assert!(matches!(
            parse(br#"{"kind":"Pod"}"#),
            Err(EnvelopeError::NotAReview)
        ));
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
            Err(EnvelopeError::NotAReview)
        ));
    }

    #[test]
    fn review_without_request_is_rejected() {
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(EnvelopeError::NoRequest)
        ));
    }

    #[test]
    fn request_without_uid_is_malformed() {
        let mut r = request();
        if let Some(m) = r.as_object_mut() {
            m.remove("uid");
        }
        assert!(matches!(parse(&body(r)), Err(EnvelopeError::Malformed(_))));
    }

    #[test]
    fn denial_carries_code_reason_and_causes() {
        let incoming = parse(&body(request())).unwrap_or_else(|e| panic!("{e}"));
        let response = deny(
            &incoming.request,
            &[
                Violation::new("spec.history", Reason::Invalid, "must be at least 1"),
                Violation::new("spec.resources", Reason::Required, "required"),
            ],
            vec!["careful".into()],
        );
        let review = into_review(response);
        let r = &review["response"];
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["uid"], "abc");
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 422);
        assert_eq!(r["status"]["reason"], "Invalid");
        assert_eq!(r["status"]["status"], "Failure");
        assert_eq!(
            r["status"]["message"],
            "spec.history: must be at least 1\nspec.resources: required"
        );
        assert_eq!(
            r["status"]["details"]["causes"][1]["field"],
            "spec.resources"
        );
        assert_eq!(
            r["status"]["details"]["causes"][1]["reason"],
            "FieldValueRequired"
        );
        assert_eq!(r["warnings"], json!(["careful"]));
    }

    #[test]
    fn patch_is_sent_as_base64() {
        let incoming = parse(&body(request())).unwrap_or_else(|e| panic!("{e}"));
        let patch = json_patch::Patch(vec![json_patch::PatchOperation::Add(
            json_patch::AddOperation {
                path: json_patch::jsonptr::PointerBuf::from_tokens(["spec", "history"]),
                value: json!(5),
            },
        )]);
        let response = allow_with_patch(&incoming.request, patch).unwrap_or_else(|e| panic!("{e}"));
        let review = into_review(response);
        let encoded = review["response"]["patch"].as_str().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).unwrap_or_default(),
            json!([{ "op": "add", "path": "/spec/history", "value": 5 }])
        );
        assert_eq!(review["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn denial_for_unverifiable_checks_asks_for_a_retry() {
        let incoming = parse(&body(request())).unwrap_or_else(|e| panic!("{e}"));
        let response = deny(
            &incoming.request,
            &[Violation::new(
                "spec.resources[0].kind",
                Reason::Unverified,
                "retry",
            )],
            vec![],
        );
        assert_eq!(response.result.code, 503);
        assert_eq!(
            response.result.details.map(|d| d.retry_after_seconds),
            Some(RETRY_AFTER_SECONDS)
        );
    }
}
