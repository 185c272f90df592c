//! Observing watched objects: resolve each kind, declare them to the shared watches, read
//! each (or reuse the fingerprint of the same resourceVersion), and fingerprint the selected
//! content. Selector entries are observed in `observe_set.rs`.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};

use super::context::Shared;
use super::prime::{Primed, Read};
use super::round::Round;
use super::watches::{ObjectKey, Seen, SetKey, StreamKey};
use crate::api::ResourceReference;
use crate::detect::conditions::{Problem, ProblemScope, reasons};
use crate::detect::label_selector::Selector;
use crate::detect::member_set::Members;
use crate::detect::select::Selection;
use crate::detect::trigger::{Observation, WatchedObject};
use crate::discovery::{KindInfo, LookupError};

/// What a spec entry watches: one object, or the set a selector picks.
#[derive(Clone, Debug)]
pub enum Target {
    /// One object by name.
    Object(ObjectKey),
    /// A selector entry's set.
    Set(SetKey),
}

/// A spec entry resolved to the resource serving it.
pub struct Resolved {
    /// Identity of the entry.
    pub object: WatchedObject,
    /// Where it is served and how it is selected; `None` with `problem` set when unusable.
    pub target: Option<(KindInfo, Target, Selection)>,
    /// Why it cannot be observed.
    pub problem: Option<Problem>,
}

/// One entry's observation, its problem, and a selector entry's members.
pub type EntryObservation = (Observation, Option<Problem>, Option<Members>);

pub(super) fn label(index: usize, object: &WatchedObject) -> String {
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
    let selector = match (reference.name.is_empty(), &reference.selector) {
        (false, None) => None,
        (true, Some(selector)) => match Selector::from_api(selector) {
            Ok(s) => Some(s),
            Err(errors) => {
                let details: Vec<String> = errors
                    .iter()
                    .map(|e| format!("selector.{}: {}", e.field, e.message))
                    .collect();
                return fail(
                    ProblemScope::Spec,
                    reasons::INVALID_SPEC,
                    format!("{}: {}", label(index, &object), details.join("; ")),
                );
            }
        },
        (false, Some(_)) => {
            return fail(
                ProblemScope::Spec,
                reasons::INVALID_SPEC,
                format!(
                    "{}: set either name or selector, not both",
                    label(index, &object)
                ),
            );
        }
        (true, None) => {
            return fail(
                ProblemScope::Spec,
                reasons::INVALID_SPEC,
                format!("{}: name or selector is required", label(index, &object)),
            );
        }
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
    let stream = StreamKey::new(&info.resource, object.namespace.as_deref());
    let target = match selector {
        Some(selector) => Target::Set(SetKey { stream, selector }),
        None => Target::Object(ObjectKey {
            stream,
            name: object.name.clone(),
        }),
    };
    Resolved {
        object,
        target: Some((info, target, selection)),
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
pub async fn observe(shared: &Shared, index: usize, resolved: &Resolved) -> EntryObservation {
    match &resolved.target {
        None => (Observation::Unavailable, resolved.problem.clone(), None),
        Some((info, Target::Set(set), selection)) => {
            super::observe_set::observe_set(shared, index, &resolved.object, info, set, selection)
                .await
        }
        Some((info, Target::Object(key), selection)) => {
            let (observation, problem) =
                observe_object(shared, index, &resolved.object, info, key, selection).await;
            (observation, problem, None)
        }
    }
}

async fn observe_object(
    shared: &Shared,
    index: usize,
    object: &WatchedObject,
    info: &KindInfo,
    key: &ObjectKey,
    selection: &Selection,
) -> (Observation, Option<Problem>) {
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
    if watchable(&info.verbs) {
        if let Some(primed) = shared.primer.take(key, fields, &shared.key).await
            && let Some(observation) = fresh(shared, key, fields, primed)
        {
            return (observation, None);
        }
        match shared.primer.read(key, fields, &shared.key).await {
            Read::Listed(primed) => {
                if let Some(observation) = fresh(shared, key, fields, primed) {
                    return (observation, None);
                }
            }
            Read::Got(Primed::Found(rv, fp)) => {
                shared
                    .hub
                    .remember_fingerprint(key, fields, key_id, &rv, &fp);
                return (Observation::Found(fp), None);
            }
            Read::Got(Primed::Missing) => return (Observation::Missing, None),
            Read::Failed(e) => {
                return (
                    Observation::Unavailable,
                    Some(read_failure(index, object, info, "get", &e)),
                );
            }
            Read::Alone => {}
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
        Err(e) => (
            Observation::Unavailable,
            Some(read_failure(index, object, info, "get", &e)),
        ),
    }
}

/// What a LIST showed of an object, unless the watch has reported a newer version since (a
/// LIST is as fresh as a GET otherwise).
fn fresh(
    shared: &Shared,
    key: &ObjectKey,
    fields: &[String],
    primed: Primed,
) -> Option<Observation> {
    match (primed, shared.hub.seen(key)) {
        (Primed::Found(rv, fp), None) => {
            shared
                .hub
                .remember_fingerprint(key, fields, shared.key.id(), &rv, &fp);
            Some(Observation::Found(fp))
        }
        (Primed::Found(rv, fp), Some(Seen::Present(now))) if now == rv => {
            shared
                .hub
                .remember_fingerprint(key, fields, shared.key.id(), &rv, &fp);
            Some(Observation::Found(fp))
        }
        (Primed::Missing, None | Some(Seen::Absent)) => Some(Observation::Missing),
        _ => None,
    }
}

/// The problem of a failed read (`verb` is what the operator tried: get or list).
pub(super) fn read_failure(
    index: usize,
    object: &WatchedObject,
    info: &KindInfo,
    verb: &str,
    error: &kube::Error,
) -> Problem {
    match error {
        kube::Error::Api(status) if status.code == 403 => Problem {
            scope: ProblemScope::Observation,
            reason: reasons::FORBIDDEN,
            message: format!(
                "{}: the operator is not allowed to {verb} {} in {}: {}; grant it through the chart's rbac.watchedResources",
                label(index, object),
                info.resource.plural,
                object
                    .namespace
                    .as_deref()
                    .map(|n| format!("namespace {n}"))
                    .unwrap_or_else(|| "the cluster scope".into()),
                status.message
            ),
        },
        e => Problem {
            scope: ProblemScope::Observation,
            reason: reasons::OBSERVATION_FAILED,
            message: format!("{}: reading it failed: {e}", label(index, object)),
        },
    }
}

/// How many watched objects of one CTJ are read at the same time.
pub(super) const OBSERVE_CONCURRENCY: usize = 4;

/// Observes every spec entry of the round's CTJ, in spec order; problems go to the round, and
/// the members of selector entries to `round.sets`.
pub async fn observe_all(round: &mut Round<'_>) -> Vec<(WatchedObject, Observation)> {
    let shared = round.shared();
    let mut resolved = Vec::with_capacity(round.ctj.spec.resources.len());
    for (index, reference) in round.ctj.spec.resources.iter().enumerate() {
        resolved.push(resolve(shared, index, reference).await);
    }
    // Declare interest before reading, so the watches report on exactly these objects. Kinds
    // that cannot be listed and watched (some aggregated APIs) are read on every reconcile.
    let mut objects = HashSet::new();
    let mut sets = HashSet::new();
    for (_, target, _) in resolved
        .iter()
        .filter_map(|r| r.target.as_ref())
        .filter(|(info, _, _)| watchable(&info.verbs))
    {
        match target {
            Target::Object(key) => objects.insert(key.clone()),
            Target::Set(set) => sets.insert(set.clone()),
        };
    }
    shared
        .hub
        .set_interest_in_sets(&round.watch_ref(), objects, sets);
    shared.export_watch_gauges();

    let reads: Vec<_> = resolved
        .iter()
        .enumerate()
        .map(|(index, r)| observe(shared, index, r))
        .collect();
    let observations: Vec<EntryObservation> = futures::stream::iter(reads)
        .buffered(OBSERVE_CONCURRENCY)
        .collect()
        .await;
    let mut observed = Vec::with_capacity(observations.len());
    let mut members = HashMap::new();
    for (r, (observation, problem, set)) in resolved.iter().zip(observations) {
        observed.push((r.object.clone(), observation));
        round.problems.extend(problem);
        if let Some(set) = set {
            members.insert(r.object.clone(), set);
        }
    }
    round.sets = members;
    observed
}
