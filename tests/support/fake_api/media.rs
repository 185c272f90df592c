//! Content negotiation: which representation an `Accept` header asks for (full objects,
//! `PartialObjectMetadata(List)`, aggregated discovery) and the metadata-only conversions.

use serde_json::{Value, json};

use super::status::ApiError;

/// Response shapes the fake can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Representation {
    Full,
    /// `application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`
    Partial,
    /// `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
    PartialList,
    /// `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`
    AggregatedDiscovery,
}

/// Picks the first media range in `accept` that is one of `allowed` (q-values are ignored, as
/// kube never sends them); no header means the full JSON object.
pub(crate) fn negotiate(
    accept: Option<&str>,
    allowed: &[Representation],
) -> Result<Representation, ApiError> {
    let accept = accept.map(str::trim).unwrap_or("");
    if accept.is_empty() {
        return allowed
            .contains(&Representation::Full)
            .then_some(Representation::Full)
            .ok_or_else(ApiError::not_acceptable);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        let mut as_ = None;
        let mut group = None;
        let mut version = None;
        for param in parts {
            match param.split_once('=') {
                Some(("as", v)) => as_ = Some(v),
                Some(("g", v)) => group = Some(v),
                Some(("v", v)) => version = Some(v),
                _ => {}
            }
        }
        let rep = match (as_, group, version) {
            (None, _, _) => Representation::Full,
            (Some("PartialObjectMetadata"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => {
                Representation::Partial
            }
            (Some("PartialObjectMetadataList"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => {
                Representation::PartialList
            }
            (
                Some("APIGroupDiscoveryList"),
                Some("apidiscovery.k8s.io"),
                Some("v2" | "v2beta1"),
            ) => Representation::AggregatedDiscovery,
            _ => continue,
        };
        if allowed.contains(&rep) {
            return Ok(rep);
        }
    }
    Err(ApiError::not_acceptable())
}

/// `meta.k8s.io/v1 PartialObjectMetadata` of an object.
pub(crate) fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// `meta.k8s.io/v1 PartialObjectMetadataList` of some objects.
pub(crate) fn partial_list(items: &[Value], resource_version: u64) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items.iter().map(partial).collect::<Vec<_>>(),
    })
}

/// The media type of a `Content-Type` header, lowercased, without parameters.
pub(crate) fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
