//! Observing a selector entry: its members come from the shared metadata watch of the kind
//! and namespace (labels are matched in memory), and only members whose resourceVersion moved
//! since their last fingerprint are read in full. Without a synced watch the set is listed
//! with the label selector instead.

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::TypeMeta;

use super::context::Shared;
use super::observe::{EntryObservation, OBSERVE_CONCURRENCY, label, read_failure};
use super::watches::{Member, ObjectKey, SetKey};
use crate::detect::conditions::{Problem, ProblemScope, reasons};
use crate::detect::fingerprint::Fingerprint;
use crate::detect::member_set::{Members, set_fingerprint};
use crate::detect::select::Selection;
use crate::detect::trigger::{Observation, WatchedObject};
use crate::discovery::KindInfo;

/// Above this many members to read in full, one LIST is cheaper than a GET each.
const LIST_INSTEAD_OF_GETS: usize = 8;

/// Objects per page when listing a set.
const PAGE_SIZE: u32 = 500;

/// Everything one set observation needs.
struct SetRead<'a> {
    shared: &'a Shared,
    index: usize,
    object: &'a WatchedObject,
    info: &'a KindInfo,
    set: &'a SetKey,
    selection: &'a Selection,
    limit: usize,
}

/// Observes the set of objects a selector entry selects.
pub(super) async fn observe_set(
    shared: &Shared,
    index: usize,
    object: &WatchedObject,
    info: &KindInfo,
    set: &SetKey,
    selection: &Selection,
) -> EntryObservation {
    let read = SetRead {
        shared,
        index,
        object,
        info,
        set,
        selection,
        limit: usize::try_from(shared.settings.max_selector_members).unwrap_or(usize::MAX),
    };
    let members = match shared.hub.members(set) {
        Some(listed) => read.through_watch(listed).await,
        None => read.by_listing().await,
    };
    match members {
        Ok(members) => (
            Observation::Set {
                fingerprint: set_fingerprint(&shared.key, &members),
                members: members.len(),
            },
            None,
            Some(members),
        ),
        Err(problem) => (Observation::Unavailable, Some(problem), None),
    }
}

impl SetRead<'_> {
    fn api(&self) -> Api<DynamicObject> {
        match &self.object.namespace {
            Some(ns) => Api::namespaced_with(self.shared.client.clone(), ns, &self.info.resource),
            None => Api::all_with(self.shared.client.clone(), &self.info.resource),
        }
    }

    fn too_many(&self, found: usize) -> Problem {
        let found = if found > self.limit {
            format!("more than {}", self.limit)
        } else {
            found.to_string()
        };
        Problem {
            scope: ProblemScope::Observation,
            reason: reasons::TOO_MANY_OBJECTS,
            message: format!(
                "{}: the selector matches {found} objects, more than the {} one entry may watch \
                 (the operator's maxSelectorMembers setting); narrow the selector or raise the \
                 setting",
                label(self.index, self.object),
                self.limit
            ),
        }
    }

    /// The members the watch knows, reading in full those without a fingerprint at their
    /// current version.
    async fn through_watch(&self, listed: Vec<Member>) -> Result<Members, Problem> {
        if listed.len() > self.limit {
            return Err(self.too_many(listed.len()));
        }
        let key_id = self.shared.key.id();
        let mut members = Members::new();
        let mut stale = Vec::new();
        for member in listed {
            let key = self.object_key(&member.name);
            match self.shared.hub.cached_fingerprint(
                &key,
                &self.object.fields,
                key_id,
                &member.resource_version,
            ) {
                Some(fp) => {
                    members.insert(member.name, fp);
                }
                None => stale.push(member.name),
            }
        }
        if stale.len() > LIST_INSTEAD_OF_GETS {
            return self.by_listing().await;
        }
        let reads: Vec<_> = stale.iter().map(|name| self.read_member(name)).collect();
        let read: Vec<Result<Option<(String, Fingerprint)>, Problem>> =
            futures::stream::iter(reads)
                .buffered(OBSERVE_CONCURRENCY)
                .collect()
                .await;
        for outcome in read {
            if let Some((name, fp)) = outcome? {
                members.insert(name, fp);
            }
        }
        Ok(members)
    }

    /// Reads one member in full; `None` when it is gone or no longer matches (the watch
    /// reports that too, and wakes the CTJ again).
    async fn read_member(&self, name: &str) -> Result<Option<(String, Fingerprint)>, Problem> {
        match self.api().get_opt(name).await {
            Ok(Some(found)) => Ok(self.fingerprint(found)),
            Ok(None) => Ok(None),
            Err(e) => Err(read_failure(self.index, self.object, self.info, "get", &e)),
        }
    }

    /// Lists the set with the label selector, page by page.
    async fn by_listing(&self) -> Result<Members, Problem> {
        let api = self.api();
        let mut params = ListParams::default().limit(PAGE_SIZE);
        let selector = self.set.selector.to_string();
        if !selector.is_empty() {
            params = params.labels(&selector);
        }
        let mut members = Members::new();
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| read_failure(self.index, self.object, self.info, "list", &e))?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            for item in page.items {
                if let Some((name, fp)) = self.fingerprint(item) {
                    members.insert(name, fp);
                }
            }
            if members.len() > self.limit {
                return Err(self.too_many(members.len()));
            }
            match next {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(members)
    }

    /// The fingerprint of a member read in full (remembered at its resourceVersion), or
    /// `None` when its labels do not match (any more).
    fn fingerprint(&self, mut found: DynamicObject) -> Option<(String, Fingerprint)> {
        let name = found.metadata.name.clone()?;
        let labels = found.metadata.labels.clone().unwrap_or_default();
        if !self.set.selector.matches(&labels) {
            return None;
        }
        // List items may come without apiVersion and kind; GETs have them. Set both, so a
        // member's fingerprint does not depend on how it was read.
        found.types = Some(TypeMeta {
            api_version: self.info.resource.api_version.clone(),
            kind: self.info.resource.kind.clone(),
        });
        let value = serde_json::to_value(&found).ok()?;
        let fp = self.shared.key.fingerprint(&self.selection.select(&value));
        let rv = found.metadata.resource_version.clone().unwrap_or_default();
        self.shared.hub.remember_fingerprint(
            &self.object_key(&name),
            &self.object.fields,
            self.shared.key.id(),
            &rv,
            &fp,
        );
        Some((name, fp))
    }

    fn object_key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            stream: self.set.stream.clone(),
            name: name.to_string(),
        }
    }
}
