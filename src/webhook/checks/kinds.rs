//! Checks every watched kind against API discovery: it must be served, readable, and the entry's
//! namespace must match the kind's scope (required when namespaced, absent when cluster-scoped).
//!
//! Discovery that fails for another reason than "not served" (API unreachable) gives a
//! retryable violation: the spec may well be fine, so the author is asked to try again.

use std::collections::HashMap;

use futures::future::join_all;

use crate::api::ResourceReference;
use crate::discovery::{DiscoveryCache, KindInfo, LookupError, split_api_version};
use crate::webhook::validate::resource_field;
use crate::webhook::violation::{Reason, Violation};

/// What discovery said about each `spec.resources` entry.
#[derive(Debug, Default)]
pub struct KindCheck {
    /// Problems found.
    pub violations: Vec<Violation>,
    /// The resolved kind of each entry, in spec order (`None` when it did not resolve).
    pub kinds: Vec<Option<KindInfo>>,
}

/// Resolves every entry's kind and checks its namespace. Entries whose apiVersion or kind is
/// empty or malformed are skipped: the pure rules already report them. `ctj_namespace` is
/// used as the example in the "namespace required" message.
pub async fn check(
    discovery: &DiscoveryCache,
    resources: &[ResourceReference],
    ctj_namespace: &str,
) -> KindCheck {
    let mut unique: Vec<(&str, &str)> = Vec::new();
    for r in resources {
        let key = (r.api_version.as_str(), r.kind.as_str());
        if !r.kind.is_empty() && split_api_version(&r.api_version).is_ok() && !unique.contains(&key)
        {
            unique.push(key);
        }
    }
    let answers = join_all(
        unique
            .iter()
            .map(|(api_version, kind)| discovery.resolve(api_version, kind)),
    )
    .await;
    let answers: HashMap<(&str, &str), Result<KindInfo, LookupError>> =
        unique.into_iter().zip(answers).collect();

    let mut out = KindCheck::default();
    for (index, resource) in resources.iter().enumerate() {
        let answer = answers.get(&(resource.api_version.as_str(), resource.kind.as_str()));
        let info = match answer {
            None => None,
            Some(Ok(info)) => {
                out.violations
                    .extend(scope_violation(index, resource, info, ctj_namespace));
                out.violations.extend(readable_violation(index, info));
                out.violations
                    .extend(listable_violation(index, resource, info));
                Some(info.clone())
            }
            Some(Err(error)) => {
                out.violations
                    .push(lookup_violation(index, resource, error));
                None
            }
        };
        out.kinds.push(info);
    }
    out
}

fn scope_violation(
    index: usize,
    resource: &ResourceReference,
    info: &KindInfo,
    ctj_namespace: &str,
) -> Option<Violation> {
    let namespace = resource.namespace.as_deref().filter(|ns| !ns.is_empty());
    let field = format!("{}.namespace", resource_field(index));
    match (info.namespaced, namespace) {
        (true, None) => Some(Violation::new(
            field,
            Reason::Required,
            format!(
                "{} is namespaced, so a namespace is required (for example {ctj_namespace:?})",
                resource.kind
            ),
        )),
        (false, Some(ns)) => Some(Violation::new(
            field,
            Reason::Forbidden,
            format!(
                "{} is cluster-scoped, so it has no namespace; remove namespace {ns:?}",
                resource.kind
            ),
        )),
        _ => None,
    }
}

fn readable_violation(index: usize, info: &KindInfo) -> Option<Violation> {
    if info.verbs.is_empty() || info.verbs.iter().any(|v| v == "get") {
        return None;
    }
    Some(Violation::new(
        format!("{}.kind", resource_field(index)),
        Reason::NotSupported,
        format!(
            "{} cannot be read back from the API (it does not support \"get\"), so it cannot be \
             watched; watch a kind that stores objects",
            info.resource.kind
        ),
    ))
}

fn listable_violation(
    index: usize,
    resource: &ResourceReference,
    info: &KindInfo,
) -> Option<Violation> {
    if resource.selector.is_none()
        || info.verbs.is_empty()
        || info.verbs.iter().any(|v| v == "list")
    {
        return None;
    }
    Some(Violation::new(
        format!("{}.selector", resource_field(index)),
        Reason::NotSupported,
        format!(
            "{} cannot be listed (the API does not support \"list\" for it), so objects of it \
             cannot be chosen by label; name the object instead",
            info.resource.kind
        ),
    ))
}

fn lookup_violation(index: usize, resource: &ResourceReference, error: &LookupError) -> Violation {
    let at = resource_field(index);
    match error {
        LookupError::MalformedApiVersion(_) => Violation::new(
            format!("{at}.apiVersion"),
            Reason::Invalid,
            error.to_string(),
        ),
        LookupError::GroupVersionNotServed { .. } => Violation::new(
            format!("{at}.apiVersion"),
            Reason::NotSupported,
            format!("{error}; check the spelling, or install the CustomResourceDefinition first"),
        ),
        LookupError::KindNotServed { .. } => Violation::new(
            format!("{at}.kind"),
            Reason::NotSupported,
            error.to_string(),
        ),
        LookupError::Api { source, .. } => Violation::new(
            format!("{at}.kind"),
            Reason::Unverified,
            format!(
                "could not check whether the cluster serves {} in {} ({source}); this is \
                 usually temporary, retry in a few seconds",
                resource.kind, resource.api_version
            ),
        ),
    }
}
