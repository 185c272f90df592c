//! Observing watched objects: resolve each kind, declare them to the shared watches, read
//! each (or reuse the fingerprint of the same resourceVersion), and fingerprint the selected
//! content.

use std::collections::HashSet;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};

use super::context::Shared;
use super::prime::Primed;
use super::round::Round;
use super::watches::{ObjectKey, Seen, StreamKey};
use crate::api::ResourceReference;
use crate::detect::conditions::{Problem, ProblemScope, reasons};
use crate::detect::select::Selection;
use crate::detect::trigger::{Observation, WatchedObject};
use crate::discovery::{KindInfo, LookupError};

/// A spec entry resolved to the resource serving it.
pub struct Resolved {
    /// Identity of the entry.
    pub object: WatchedObject,
    /// Where it is served and how it is selected; `None` with `problem` set when unusable.
    pub target: Option<(KindInfo, ObjectKey, Selection)>,
    /// Why it cannot be observed.
    pub problem: Option<Problem>,
}

fn label(index: usize, object: &WatchedObject) -> String {
    format!("spec.resources[{index}] ({})", object.display_name())
}

/// Resolves spec entry `index`: parses its fields and finds its kind through discovery.
pub async fn resolve(shared: &Shared, index: usize, reference: &ResourceReference) -> Resolved {
    let object = WatchedObject::from_reference(reference);
    let fail = |scope, reason, message: String| Resolved {
        object: object.clone(),
        target: None,
        problem: Some(Problem {
            scope,
            reason,
            message,
        }),
    };
    let selection = match Selection::parse(&object.fields) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                ProblemScope::Spec,
                reasons::INVALID_FIELD_PATH,
                format!(
                    "{}: fields[{}]: {}",
                    label(index, &object),
                    e.index,
                    e.error
                ),
            );
        }
    };
    let info = match shared
        .discovery
        .resolve(&object.api_version, &object.kind)
        .await
    {
        Ok(info) => info,
        Err(e @ LookupError::Api { .. }) => {
            return fail(
                ProblemScope::Observation,
                reasons::OBSERVATION_FAILED,
                format!("{}: {e}", label(index, &object)),
            );
        }
        Err(e) => {
            return fail(
                ProblemScope::Spec,
                reasons::KIND_NOT_FOUND,
                format!("{}: {e}", label(index, &object)),
            );
        }
    };
    match (&object.namespace, info.namespaced) {
        (None, true) => {
            return fail(
                ProblemScope::Spec,
                reasons::INVALID_SPEC,
                format!(
                    "{}: {} is namespaced, so namespace is required",
                    label(index, &object),
                    object.kind
                ),
            );
        }
        (Some(_), false) => {
            return fail(
                ProblemScope::Spec,
                reasons::INVALID_SPEC,
                format!(
                    "{}: {} is cluster-scoped, so namespace must be omitted",
                    label(index, &object),
                    object.kind
                ),
            );
        }
        _ => {}
    }
    let key = ObjectKey {
        stream: StreamKey::new(&info.resource, object.namespace.as_deref()),
        name: object.name.clone(),
    };
    Resolved {
        object,
        target: Some((info, key, selection)),
        problem: None,
    }
}

/// Whether a kind can be listed and watched (some aggregated APIs cannot).
fn watchable(verbs: &[String]) -> bool {
    ["list", "watch"]
        .iter()
        .all(|v| verbs.iter().any(|x| x == v))
}

/// Observes a resolved entry.
pub async fn observe(
    shared: &Shared,
    index: usize,
    resolved: &Resolved,
) -> (Observation, Option<Problem>) {
    let Some((info, key, selection)) = &resolved.target else {
        return (Observation::Unavailable, resolved.problem.clone());
    };
    let object = &resolved.object;
    let fields = &object.fields;
    let key_id = shared.key.id();
    match shared.hub.seen(key) {
        Some(Seen::Absent) => return (Observation::Missing, None),
        Some(Seen::Present(rv)) => {
            if let Some(fp) = shared.hub.cached_fingerprint(key, fields, key_id, &rv) {
                return (Observation::Found(fp), None);
            }
        }
        None => {}
    }
    if watchable(&info.verbs)
        && let Some(primed) = shared.primer.take(key, fields, &shared.key).await
    {
        // The LIST is as fresh as a GET unless the watch has reported a newer version since.
        match (primed, shared.hub.seen(key)) {
            (Primed::Found(rv, fp), None) => {
                shared
                    .hub
                    .remember_fingerprint(key, fields, key_id, &rv, &fp);
                return (Observation::Found(fp), None);
            }
            (Primed::Found(rv, fp), Some(Seen::Present(now))) if now == rv => {
                shared
                    .hub
                    .remember_fingerprint(key, fields, key_id, &rv, &fp);
                return (Observation::Found(fp), None);
            }
            (Primed::Missing, None | Some(Seen::Absent)) => return (Observation::Missing, None),
            _ => {}
        }
    }
    let api: Api<DynamicObject> = match &object.namespace {
        Some(ns) => Api::namespaced_with(shared.client.clone(), ns, &info.resource),
        None => Api::all_with(shared.client.clone(), &info.resource),
    };
    match api.get_opt(&object.name).await {
        Ok(Some(found)) => {
            let rv = found.metadata.resource_version.clone().unwrap_or_default();
            let value = match serde_json::to_value(&found) {
                Ok(v) => v,
                Err(e) => {
                    let message = format!(
                        "{}: the object could not be read: {e}",
                        label(index, object)
                    );
                    return (
                        Observation::Unavailable,
                        Some(Problem {
                            scope: ProblemScope::Observation,
                            reason: reasons::OBSERVATION_FAILED,
                            message,
                        }),
                    );
                }
            };
            let fp = shared.key.fingerprint(&selection.select(&value));
            shared
                .hub
                .remember_fingerprint(key, fields, key_id, &rv, &fp);
            (Observation::Found(fp), None)
        }
        Ok(None) => (Observation::Missing, None),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let message = format!(
                "{}: the operator is not allowed to get {} in {}: {}; grant it through the chart's rbac.watchedResources",
                label(index, object),
                info.resource.plural,
                object
                    .namespace
                    .as_deref()
                    .map(|n| format!("namespace {n}"))
                    .unwrap_or_else(|| "the cluster scope".into()),
                status.message
            );
            (
                Observation::Unavailable,
                Some(Problem {
                    scope: ProblemScope::Observation,
                    reason: reasons::FORBIDDEN,
                    message,
                }),
            )
        }
        Err(e) => {
            let message = format!("{}: reading it failed: {e}", label(index, object));
            (
                Observation::Unavailable,
                Some(Problem {
                    scope: ProblemScope::Observation,
                    reason: reasons::OBSERVATION_FAILED,
                    message,
                }),
            )
        }
    }
}

/// How many watched objects of one CTJ are read at the same time.
const OBSERVE_CONCURRENCY: usize = 4;

/// Observes every spec entry of the round's CTJ, in spec order; problems go to the round.
pub async fn observe_all(round: &mut Round<'_>) -> Vec<(WatchedObject, Observation)> {
    let shared = round.shared();
    let mut resolved = Vec::with_capacity(round.ctj.spec.resources.len());
    for (index, reference) in round.ctj.spec.resources.iter().enumerate() {
        resolved.push(resolve(shared, index, reference).await);
    }
    // Declare interest before reading, so the watches report on exactly these objects. Kinds
    // that cannot be listed and watched (some aggregated APIs) are read on every reconcile.
    let interest: HashSet<_> = resolved
        .iter()
        .filter_map(|r| r.target.as_ref())
        .filter(|(info, _, _)| watchable(&info.verbs))
        .map(|(_, key, _)| key.clone())
        .collect();
    shared.hub.set_interest(&round.watch_ref(), interest);
    shared
        .metrics
        .watched_objects
        .set(i64::try_from(shared.hub.watched_objects()).unwrap_or(i64::MAX));

    let reads: Vec<_> = resolved
        .iter()
        .enumerate()
        .map(|(index, r)| observe(shared, index, r))
        .collect();
    let observations: Vec<(Observation, Option<Problem>)> = futures::stream::iter(reads)
        .buffered(OBSERVE_CONCURRENCY)
        .collect()
        .await;
    let mut observed = Vec::with_capacity(observations.len());
    for (r, (observation, problem)) in resolved.iter().zip(observations) {
        observed.push((r.object.clone(), observation));
        round.problems.extend(problem);
    }
    observed
}
