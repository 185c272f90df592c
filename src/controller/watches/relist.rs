//! The periodic check of a watch stream: a paginated, metadata-only LIST compared with what the
//! watch delivered. A watch can stay open and deliver nothing (a stuck proxy, an API server bug,
//! a dropped event); the settled state of CTJs (`detect::resync`) trusts the watch, so this
//! LIST is what finds the changes it missed. It costs one request per page of 500 objects per
//! stream and interval, whatever the number of ChangeTriggeredJobs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{CtjRef, Listed, StreamKey, WatchHub};

/// Objects per page of the check's LIST.
const PAGE_SIZE: u32 = 500;

impl WatchHub {
    /// Compares `stream` with a fresh LIST every `interval` until `token` is cancelled.
    pub(super) fn spawn_relist(
        &self,
        stream: StreamKey,
        token: CancellationToken,
        interval: Duration,
    ) {
        let resource = stream.api_resource();
        let api: Api<PartialObjectMeta<DynamicObject>> = match &stream.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                if !hub.begin_check(&stream) {
                    continue;
                }
                let listed = tokio::select! {
                    () = token.cancelled() => return,
                    listed = list_all(&hub, &stream, &api) => listed,
                };
                match listed {
                    Ok(listed) => {
                        let missed = hub.finish_check(&stream, listed);
                        if missed > 0 {
                            warn!(kind = %stream.kind, namespace = ?stream.namespace, missed,
                                "the watch missed changes that a LIST shows; woke the ChangeTriggeredJobs concerned");
                        }
                    }
                    Err(error) => {
                        hub.abandon_check(&stream);
                        debug!(kind = %stream.kind, namespace = ?stream.namespace, %error,
                            "periodic LIST failed; trying again at the next interval");
                    }
                }
            }
        });
    }

    /// Starts a check of a synced stream: from now on the stream records which objects its
    /// watch reports, so the LIST (which may be older than those events) does not overrule
    /// them. False when the stream is not synced (its own relist is under way).
    fn begin_check(&self, stream: &StreamKey) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match state.streams.get_mut(stream) {
            Some(s) if s.synced => {
                s.checking = Some(HashSet::new());
                true
            }
            _ => false,
        }
    }

    /// The stream holds `name` at version `resource_version`.
    fn holds(&self, stream: &StreamKey, name: &str, resource_version: &str) -> bool {
        self.state.lock().is_ok_and(|state| {
            state
                .streams
                .get(stream)
                .and_then(|s| s.objects.get(name))
                .is_some_and(|l| l.resource_version == resource_version)
        })
    }

    fn abandon_check(&self, stream: &StreamKey) {
        if let Ok(mut state) = self.state.lock()
            && let Some(s) = state.streams.get_mut(stream)
        {
            s.checking = None;
        }
    }

    /// Applies the differences between `listed` and the stream's objects, except for objects
    /// its watch reported meanwhile; wakes the CTJs concerned and returns how many differed.
    fn finish_check(&self, stream: &StreamKey, listed: Checked<String>) -> usize {
        let mut wake: BTreeMap<String, HashSet<CtjRef>> = BTreeMap::new();
        let missed;
        {
            let Ok(mut state) = self.state.lock() else {
                return 0;
            };
            let Some(s) = state.streams.get_mut(stream) else {
                return 0;
            };
            let Some(reported) = s.checking.take() else {
                return 0;
            };
            if !s.synced {
                return 0;
            }
            // The watch may have caught up since the page was read.
            let mut differ: Vec<(String, Option<Listed>)> = listed
                .differing
                .into_iter()
                .filter(|(name, now)| {
                    s.objects.get(name).map(|l| &l.resource_version) != Some(&now.resource_version)
                })
                .map(|(name, now)| (name, Some(now)))
                .collect();
            differ.extend(
                s.objects
                    .keys()
                    .filter(|name| !listed.listed.contains(*name))
                    .map(|name| (name.clone(), None)),
            );
            differ.retain(|(name, _)| !reported.contains(name));
            missed = differ.len();
            for (name, rv) in differ {
                state.observe(stream, &name, rv, &mut wake);
            }
        }
        for ctjs in wake.values() {
            for ctj in ctjs {
                self.routes.wake(ctj);
            }
        }
        missed
    }
}

/// What a check's LIST found: the key of every object it returned, and the version and labels
/// of those the hub did not hold at that version. Only the latter are kept whole, so a check of
/// a stream of 10,000 unchanged objects holds 10,000 names and one page at a time.
pub(super) struct Checked<K> {
    pub listed: HashSet<K>,
    pub differing: HashMap<K, Listed>,
}

/// Every object's name, and the version and labels of those the hub holds at another version
/// (or not at all), page by page.
async fn list_all(
    hub: &WatchHub,
    stream: &StreamKey,
    api: &Api<PartialObjectMeta<DynamicObject>>,
) -> Result<Checked<String>, kube::Error> {
    list_pages(
        api,
        |meta| meta.name.clone(),
        |name, rv| hub.holds(stream, name, rv),
    )
    .await
}

/// The objects of `api` page by page, under the key `key` gives them (objects it gives none
/// are left out); `holds(key, version)` says whether the hub already has the object at that
/// version. Shared by the per-stream and the cluster-wide checks.
pub(super) async fn list_pages<K: Clone + Eq + std::hash::Hash>(
    api: &Api<PartialObjectMeta<DynamicObject>>,
    key: impl Fn(&ObjectMeta) -> Option<K>,
    holds: impl Fn(&K, &str) -> bool,
) -> Result<Checked<K>, kube::Error> {
    let mut checked = Checked {
        listed: HashSet::new(),
        differing: HashMap::new(),
    };
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        for object in page.items {
            let Some(k) = key(&object.metadata) else {
                continue;
            };
            let version = object.metadata.resource_version.unwrap_or_default();
            // An object can show up on two pages (it moved between them): the last one counts.
            if holds(&k, &version) {
                checked.differing.remove(&k);
            } else {
                let listed = Listed {
                    resource_version: version,
                    labels: object.metadata.labels.unwrap_or_default(),
                };
                checked.differing.insert(k.clone(), listed);
            }
            checked.listed.insert(k);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(checked),
        }
    }
}
