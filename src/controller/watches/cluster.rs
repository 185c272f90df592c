//! One cluster-wide metadata watch per kind instead of one per namespace. When the watched
//! objects of a namespaced kind live in more namespaces than the threshold, the hub starts a
//! watch of the kind across all namespaces. Once it has listed, it serves every namespace of
//! the kind: the per-namespace watches stop, and namespaces that join later are served from
//! its cache at once. If the operator may not list and watch the kind at cluster scope (403),
//! the per-namespace watches carry on (or start again), and the cluster-wide watch is tried
//! again every [`DENIED_RECHECK`]: an API server that is still loading its RBAC caches after a
//! restart can deny for a moment what it allows a minute later.
//!
//! A failed cluster-wide watch restarts as the per-namespace ones do (see
//! [`super::super::resume`]): at once after a 410, after a short backoff otherwise. Until it
//! has listed again, the namespaces it serves count as broken streams, so their CTJs read
//! their objects directly on the re-observe timer.
//!
//! The price: the hub holds the name and resourceVersion of every object of the kind in the
//! cluster, not only in the watched namespaces (about 100 bytes each).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event, watcher};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{CtjRef, HubState, Listed, StreamKey, StreamState, WatchHub};
use crate::controller::resume;
use crate::detect::resume::{RetryState, WatchFailure};

/// How long a kind whose cluster-wide watch was denied keeps its per-namespace watches
/// before the cluster-wide one is tried again.
pub(super) const DENIED_RECHECK: std::time::Duration = std::time::Duration::from_secs(300);

/// The cluster-wide watch of one kind.
pub(super) struct ClusterSource {
    task: CancellationToken,
    /// It has listed and now serves the kind's namespaced streams.
    serving: bool,
    /// The last attempt was denied (403); the per-namespace watches serve the kind.
    denied: bool,
    synced: bool,
    /// namespace → name → version and labels, for every object of the kind.
    objects: HashMap<String, HashMap<String, Listed>>,
    relisting: Option<HashSet<(String, String)>>,
    checking: Option<HashSet<(String, String)>>,
}

impl ClusterSource {
    /// Its watch is open or being opened (not waiting out a denial).
    pub(super) fn watching(&self) -> bool {
        !self.denied
    }
}

/// The cluster-wide stream of `stream`'s kind.
fn kind_of(stream: &StreamKey) -> StreamKey {
    stream.in_namespace(None)
}

fn same_kind(a: &StreamKey, b: &StreamKey) -> bool {
    a.group == b.group && a.version == b.version && a.plural == b.plural
}

impl HubState {
    /// The state of a new namespaced stream whose kind a cluster-wide watch serves.
    pub(super) fn served_by_cluster(&self, stream: &StreamKey) -> Option<StreamState> {
        let namespace = stream.namespace.as_ref()?;
        let source = self.cluster.get(&kind_of(stream)).filter(|s| s.serving)?;
        Some(StreamState {
            synced: source.synced,
            objects: source.objects.get(namespace).cloned().unwrap_or_default(),
            ..StreamState::default()
        })
    }

    /// Starts (bookkeeping only) a cluster-wide watch for the kind of `stream` when its
    /// namespaces are past `threshold`; returns the kind's stream and its token to spawn.
    pub(super) fn maybe_promote(
        &mut self,
        stream: &StreamKey,
        threshold: usize,
        shutdown: &CancellationToken,
    ) -> Option<(StreamKey, CancellationToken)> {
        stream.namespace.as_ref()?;
        let kind = kind_of(stream);
        if self.cluster.contains_key(&kind) {
            return None;
        }
        let namespaces = self
            .streams
            .keys()
            .filter(|s| s.namespace.is_some() && same_kind(s, stream))
            .count();
        if namespaces <= threshold {
            return None;
        }
        let task = shutdown.child_token();
        self.cluster.insert(
            kind.clone(),
            ClusterSource {
                task: task.clone(),
                serving: false,
                denied: false,
                synced: false,
                objects: HashMap::new(),
                relisting: None,
                checking: None,
            },
        );
        Some((kind, task))
    }

    /// Stops the kind's cluster-wide watch when none of its namespaces is watched any more.
    pub(super) fn stop_cluster_if_unused(&mut self, stream: &StreamKey) {
        if stream.namespace.is_none() {
            return;
        }
        let kind = kind_of(stream);
        let used = self
            .streams
            .keys()
            .any(|s| s.namespace.is_some() && same_kind(s, stream));
        if !used && let Some(source) = self.cluster.remove(&kind) {
            source.task.cancel();
        }
    }

    /// Namespaced streams of `kind`.
    fn streams_of(&self, kind: &StreamKey) -> Vec<StreamKey> {
        self.streams
            .keys()
            .filter(|s| s.namespace.is_some() && same_kind(s, kind))
            .cloned()
            .collect()
    }
}

impl WatchHub {
    /// Runs the cluster-wide watch of `kind` until `token` is cancelled.
    pub(super) fn spawn_cluster(&self, kind: StreamKey, token: CancellationToken) {
        let resource = kind.api_resource();
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &resource);
        info!(kind = %kind.kind, "watching the kind cluster-wide instead of per namespace");
        let hub = self.clone();
        let check_every = self.relist_interval;
        tokio::spawn(async move {
            // Restarted with a fresh list after every failure: at once after a 410, else
            // after `detect::resume`'s short backoff (see `super::super::resume`).
            let start = || watcher(api.clone(), watcher::Config::default()).boxed();
            let mut events = start();
            let mut retry = RetryState::default();
            let mut answered_at: Option<tokio::time::Instant> = None;
            let mut next_check = check_every.map(|d| tokio::time::Instant::now() + d);
            loop {
                let check = async {
                    match next_check {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => futures::future::pending().await,
                    }
                };
                tokio::select! {
                    () = token.cancelled() => return,
                    () = check => {
                        next_check = check_every.map(|d| tokio::time::Instant::now() + d);
                        hub.check_cluster(&kind, &api, &token).await;
                    }
                    next = events.next() => match next {
                        Some(Ok(event)) => {
                            if !matches!(event, Event::Init) && answered_at.is_none() {
                                answered_at = Some(tokio::time::Instant::now());
                            }
                            hub.apply_cluster(&kind, event);
                        }
                        Some(Err(error)) => {
                            let wait = if forbidden(&error) {
                                hub.deny_cluster(&kind);
                                retry = RetryState::default();
                                answered_at = None;
                                DENIED_RECHECK
                            } else {
                                let failure = resume::classify(&error);
                                let wait = retry.fail(
                                    failure,
                                    answered_at.take().map(|at| at.elapsed()),
                                    resume::jitter(),
                                    hub.retry_ceiling(),
                                );
                                if failure == WatchFailure::Expired {
                                    info!(kind = %kind.kind, %error, retry_in = ?wait,
                                        "cluster-wide watch expired; listing again");
                                } else {
                                    warn!(kind = %kind.kind, %error, retry_in = ?wait,
                                        "cluster-wide watch failed; restarting it");
                                }
                                hub.cluster_unsynced(&kind, failure);
                                wait
                            };
                            tokio::select! {
                                () = token.cancelled() => return,
                                () = tokio::time::sleep(wait) => {}
                            }
                            events = start();
                        }
                        // kube's watcher never ends; restart it if it does.
                        None => events = start(),
                    },
                }
            }
        });
    }

    fn apply_cluster(&self, kind: &StreamKey, event: Event<PartialObjectMeta<DynamicObject>>) {
        let mut forward: Vec<(StreamKey, String, Option<Listed>)> = Vec::new();
        let mut wake: BTreeMap<String, HashSet<CtjRef>> = BTreeMap::new();
        let mut take_over = false;
        let mut listed_again = false;
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let Some(source) = state.cluster.get_mut(kind) else {
                return;
            };
            let stream_of = |ns: &str| kind.in_namespace(Some(ns));
            match event {
                Event::Init => source.relisting = Some(HashSet::new()),
                Event::InitApply(object) | Event::Apply(object) => {
                    let (Some(ns), Some(name)) = (object.metadata.namespace, object.metadata.name)
                    else {
                        return;
                    };
                    let rv = Listed {
                        resource_version: object.metadata.resource_version.unwrap_or_default(),
                        labels: object.metadata.labels.unwrap_or_default(),
                    };
                    for seen in [&mut source.relisting, &mut source.checking]
                        .into_iter()
                        .flatten()
                    {
                        seen.insert((ns.clone(), name.clone()));
                    }
                    source
                        .objects
                        .entry(ns.clone())
                        .or_default()
                        .insert(name.clone(), rv.clone());
                    if source.serving {
                        forward.push((stream_of(&ns), name, Some(rv)));
                    }
                }
                Event::Delete(object) => {
                    let (Some(ns), Some(name)) = (object.metadata.namespace, object.metadata.name)
                    else {
                        return;
                    };
                    if let Some(checking) = source.checking.as_mut() {
                        checking.insert((ns.clone(), name.clone()));
                    }
                    if let Some(names) = source.objects.get_mut(&ns) {
                        names.remove(&name);
                    }
                    if source.serving {
                        forward.push((stream_of(&ns), name, None));
                    }
                }
                Event::InitDone => {
                    source.synced = true;
                    if let Some(listed) = source.relisting.take() {
                        for (ns, names) in source.objects.iter_mut() {
                            names.retain(|name, _| {
                                let keep = listed.contains(&(ns.clone(), name.clone()));
                                if !keep && source.serving {
                                    forward.push((stream_of(ns), name.clone(), None));
                                }
                                keep
                            });
                        }
                    }
                    take_over = !source.serving;
                    listed_again = !take_over;
                    source.serving = true;
                    if std::mem::take(&mut source.denied) {
                        info!(kind = %kind.kind,
                            "allowed to watch the kind cluster-wide again; its per-namespace watches stop");
                    }
                }
            }
            if take_over {
                // Stop the per-namespace watches and bring their state in line.
                for stream in state.streams_of(kind) {
                    let ns = stream.namespace.clone().unwrap_or_default();
                    let listed = state
                        .cluster
                        .get(kind)
                        .and_then(|s| s.objects.get(&ns))
                        .cloned()
                        .unwrap_or_default();
                    let Some(s) = state.streams.get_mut(&stream) else {
                        continue;
                    };
                    if let Some(task) = s.task.take() {
                        task.cancel();
                    }
                    s.relisting = None;
                    s.checking = None;
                    s.synced = true;
                    let was_broken = std::mem::take(&mut s.broken);
                    if was_broken {
                        state.wake_all_behind(&stream, &mut wake);
                    }
                    let Some(s) = state.streams.get(&stream) else {
                        continue;
                    };
                    for name in s.objects.keys().filter(|n| !listed.contains_key(*n)) {
                        forward.push((stream.clone(), name.clone(), None));
                    }
                    for (name, rv) in listed {
                        forward.push((stream.clone(), name, Some(rv)));
                    }
                }
            } else if listed_again {
                // Back after a failure: its namespaces are synced again, and the CTJs behind
                // them look once more.
                for stream in state.streams_of(kind) {
                    let Some(s) = state.streams.get_mut(&stream) else {
                        continue;
                    };
                    s.synced = true;
                    if std::mem::take(&mut s.broken) {
                        state.wake_all_behind(&stream, &mut wake);
                    }
                }
            }
        }
        self.forward(forward);
        for ctjs in wake.values() {
            for ctj in ctjs {
                self.routes.wake(ctj);
            }
        }
    }

    /// Applies reported versions to namespaced streams and wakes the CTJs concerned.
    fn forward(&self, forward: Vec<(StreamKey, String, Option<Listed>)>) {
        if forward.is_empty() {
            return;
        }
        let mut wake: BTreeMap<String, HashSet<CtjRef>> = BTreeMap::new();
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            for (stream, name, rv) in forward {
                state.observe(&stream, &name, rv, &mut wake);
            }
        }
        for ctjs in wake.values() {
            for ctj in ctjs {
                self.routes.wake(ctj);
            }
        }
    }

    /// The cluster-wide watch failed: the namespaces it serves are unsynced until it lists
    /// again, and broken (re-observed on the timer) unless it only expired.
    fn cluster_unsynced(&self, kind: &StreamKey, failure: WatchFailure) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let serving = match state.cluster.get_mut(kind) {
            Some(source) => {
                source.synced = false;
                source.serving
            }
            None => return,
        };
        if serving {
            for stream in state.streams_of(kind) {
                if let Some(s) = state.streams.get_mut(&stream) {
                    s.synced = false;
                    if failure != WatchFailure::Expired {
                        s.broken = true;
                    }
                }
            }
            if failure != WatchFailure::Expired {
                self.note_broken();
            }
        }
    }

    /// The operator may not watch the kind cluster-wide: per-namespace watches serve it
    /// (restarted if the cluster-wide watch had taken over) until a later attempt is allowed.
    fn deny_cluster(&self, kind: &StreamKey) {
        let mut restart = Vec::new();
        let first;
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let Some(source) = state.cluster.get_mut(kind) else {
                return;
            };
            first = !std::mem::replace(&mut source.denied, true);
            let was_serving = std::mem::take(&mut source.serving);
            source.synced = false;
            source.objects.clear();
            source.relisting = None;
            source.checking = None;
            if was_serving {
                for stream in state.streams_of(kind) {
                    if let Some(s) = state.streams.get_mut(&stream) {
                        let token = self.shutdown.child_token();
                        s.task = Some(token.clone());
                        s.synced = false;
                        restart.push((stream, token));
                    }
                }
            }
        }
        if first {
            info!(kind = %kind.kind, retry_in = ?DENIED_RECHECK,
                "not allowed to list and watch the kind cluster-wide; keeping one watch per namespace");
        }
        for (stream, token) in restart {
            self.start_stream(stream, token);
        }
    }

    /// Compares the cluster-wide cache with a fresh LIST (see `relist`).
    async fn check_cluster(
        &self,
        kind: &StreamKey,
        api: &Api<PartialObjectMeta<DynamicObject>>,
        token: &CancellationToken,
    ) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            match state.cluster.get_mut(kind) {
                Some(source) if source.synced && source.serving => {
                    source.checking = Some(HashSet::new());
                }
                _ => return,
            }
        }
        let listed = tokio::select! {
            () = token.cancelled() => return,
            listed = list_all(self, kind, api) => listed,
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(error) => {
                debug!(kind = %kind.kind, %error, "periodic cluster-wide LIST failed");
                return;
            }
        };
        let mut forward = Vec::new();
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let Some(source) = state.cluster.get_mut(kind) else {
                return;
            };
            let Some(reported) = source.checking.take() else {
                return;
            };
            let stream_of = |ns: &str| kind.in_namespace(Some(ns));
            for ((ns, name), rv) in listed.differing {
                if reported.contains(&(ns.clone(), name.clone())) {
                    continue;
                }
                // The watch may have caught up since the page was read.
                let names = source.objects.entry(ns.clone()).or_default();
                if names.get(&name).map(|l| &l.resource_version) != Some(&rv.resource_version) {
                    names.insert(name.clone(), rv.clone());
                    forward.push((stream_of(&ns), name, Some(rv)));
                }
            }
            for (ns, names) in source.objects.iter_mut() {
                names.retain(|name, _| {
                    let key = (ns.clone(), name.clone());
                    let keep = listed.listed.contains(&key) || reported.contains(&key);
                    if !keep {
                        forward.push((stream_of(ns), name.clone(), None));
                    }
                    keep
                });
            }
        }
        if !forward.is_empty() {
            warn!(kind = %kind.kind, missed = forward.len(),
                "the cluster-wide watch missed changes that a LIST shows; woke the ChangeTriggeredJobs concerned");
        }
        self.forward(forward);
    }
}

fn forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

/// Every object's (namespace, name), and the version and labels of those the cluster-wide
/// cache holds at another version (or not at all), page by page.
async fn list_all(
    hub: &WatchHub,
    kind: &StreamKey,
    api: &Api<PartialObjectMeta<DynamicObject>>,
) -> Result<super::relist::Checked<(String, String)>, kube::Error> {
    super::relist::list_pages(
        api,
        |meta| Some((meta.namespace.clone()?, meta.name.clone()?)),
        |(ns, name), rv| {
            hub.state.lock().is_ok_and(|state| {
                state
                    .cluster
                    .get(kind)
                    .and_then(|source| source.objects.get(ns))
                    .and_then(|names| names.get(name))
                    .is_some_and(|l| l.resource_version == rv)
            })
        },
    )
    .await
}
