//! Shared metadata-only watches that wake a ChangeTriggeredJob when an object it watches
//! changes.
//!
//! One watch runs per (kind, namespace) — or per kind for cluster-scoped kinds — however many
//! CTJs look at objects there. It carries only metadata (`PartialObjectMeta`), so a namespace
//! with thousands of big ConfigMaps costs little memory. For each watched object the hub
//! remembers the last resourceVersion it saw; the reconciler reuses its last fingerprint while
//! that version is unchanged, so the steady state needs no GET per object. A relist that
//! replays an object with the same resourceVersion wakes nobody.
//!
//! Selector entries use the same streams: the hub keeps each object's labels from the
//! metadata it already receives, wakes a CTJ when an object that matches its selector (before
//! or after the event) changes, and lists a set's members from memory — so an object created
//! later, or relabelled into the set, is seen without any extra request.
//!
//! A broken stream restarts by itself (see [`super::resume`]). Until it has listed again, the
//! CTJs that watch its objects read them directly, woken on a short jittered timer
//! ([`WatchHub::reobserve_while_broken`]) so a change is still caught within seconds, and once
//! it has, each of them is woken once more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::error_boundary::DeserializeGuard;
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::resume;
use super::settled::SettledSet;
use crate::api::ChangeTriggeredJob;
use crate::detect::fingerprint::Fingerprint;
use crate::detect::label_selector::Selector;
use crate::detect::resume::{REOBSERVE_INTERVAL, WatchFailure, reobserve_interval, retry_ceiling};

mod cluster;
mod relist;

/// One watch stream: a resource type, in one namespace or cluster-wide. Cheap to clone: the
/// hub keeps one copy per stream and the keys of its maps share it (see [`HubState::intern`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(Arc<StreamId>);

/// What identifies a watch stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace, or `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
}

impl std::ops::Deref for StreamKey {
    type Target = StreamId;

    fn deref(&self) -> &StreamId {
        &self.0
    }
}

impl From<StreamId> for StreamKey {
    fn from(id: StreamId) -> Self {
        StreamKey(Arc::new(id))
    }
}

impl StreamKey {
    /// The stream for objects of `resource` in `namespace`.
    pub fn new(resource: &ApiResource, namespace: Option<&str>) -> Self {
        StreamId {
            group: resource.group.clone(),
            version: resource.version.clone(),
            kind: resource.kind.clone(),
            plural: resource.plural.clone(),
            namespace: namespace.map(str::to_string),
        }
        .into()
    }

    /// The stream of the same resource in `namespace` (`None`: cluster-wide).
    pub fn in_namespace(&self, namespace: Option<&str>) -> Self {
        StreamId {
            namespace: namespace.map(str::to_string),
            ..StreamId::clone(self)
        }
        .into()
    }

    /// The resource this stream serves.
    pub fn api_resource(&self) -> ApiResource {
        let api_version = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version,
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// One watched object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Its stream.
    pub stream: StreamKey,
    /// Its name.
    pub name: String,
}

/// The objects of one stream that a selector entry selects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey {
    /// Its stream.
    pub stream: StreamKey,
    /// The label selector.
    pub selector: Selector,
}

/// One member of a set, as the stream last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Object name.
    pub name: String,
    /// Its resourceVersion.
    pub resource_version: String,
}

/// What the hub last saw of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It exists with this resourceVersion.
    Present(String),
    /// It does not exist (the stream is synced and has no such object).
    Absent,
}

/// How the hub names a ChangeTriggeredJob (the controller's object type wraps it in a
/// `DeserializeGuard`).
pub type CtjRef = ObjectRef<DeserializeGuard<ChangeTriggeredJob>>;

/// What a stream keeps of one object: its version and labels (a few bytes each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Listed {
    resource_version: String,
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct StreamState {
    /// The watch has listed at least once and is currently healthy.
    synced: bool,
    /// The watch failed (other than with a 410) and has not listed again since.
    broken: bool,
    /// Every object the stream has.
    objects: HashMap<String, Listed>,
    /// Names seen in the relist under way (to detect deletions missed while disconnected).
    relisting: Option<HashSet<String>>,
    /// Names the watch reported since a periodic check's LIST started (see `relist`).
    checking: Option<HashSet<String>>,
    task: Option<CancellationToken>,
}

#[derive(Default)]
struct HubState {
    streams: HashMap<StreamKey, StreamState>,
    interest: HashMap<ObjectKey, HashSet<CtjRef>>,
    /// How many keys of `interest` each stream serves, so an unused stream is found without
    /// scanning every key.
    stream_users: HashMap<StreamKey, usize>,
    per_ctj: HashMap<CtjRef, HashSet<ObjectKey>>,
    /// CTJs per selector entry set.
    set_interest: HashMap<SetKey, HashSet<CtjRef>>,
    per_ctj_sets: HashMap<CtjRef, HashSet<SetKey>>,
    /// Cluster-wide watches of namespaced kinds watched in many namespaces (see `cluster`).
    cluster: HashMap<StreamKey, cluster::ClusterSource>,
    /// Fingerprint cache: (object, fields, key id) → (resourceVersion, fingerprint).
    fingerprints: HashMap<(ObjectKey, Vec<String>, String), (String, Fingerprint)>,
}

/// Where wake-ups go: a sender per reconcile scope (all namespaces, or one namespace). A
/// wake-up also ends the CTJ's settled state, so its next round looks again.
#[derive(Clone, Default)]
pub struct WakeRoutes {
    routes: Vec<(Option<String>, UnboundedSender<CtjRef>)>,
    settled: Arc<SettledSet>,
}

impl WakeRoutes {
    /// Routes CTJs in `namespace` (or all, for `None`) to `sender`.
    pub fn add(&mut self, namespace: Option<String>, sender: UnboundedSender<CtjRef>) {
        self.routes.push((namespace, sender));
    }

    fn wake(&self, ctj: &CtjRef) {
        self.settled.invalidate(ctj);
        for (scope, sender) in &self.routes {
            if scope.is_none() || scope.as_deref() == ctj.namespace.as_deref() {
                // A closed receiver means that controller is shutting down.
                let _ = sender.send(ctj.clone());
            }
        }
    }
}

/// The shared watches of one leadership term.
#[derive(Clone)]
pub struct WatchHub {
    client: Client,
    state: Arc<Mutex<HubState>>,
    routes: WakeRoutes,
    shutdown: CancellationToken,
    /// How often each stream is compared with a fresh LIST (`None`: never).
    relist_interval: Option<Duration>,
    /// Namespaces per kind past which the kind is watched cluster-wide (`None`: never).
    cluster_threshold: Option<usize>,
    rate: RequestRate,
    /// Told when a stream breaks, so the re-observe loop sleeps while none is broken.
    broke: Arc<Notify>,
}

/// What bounds the reads and retries while watches are broken.
#[derive(Clone, Copy, Debug)]
struct RequestRate {
    /// The client's sustained requests per second.
    qps: u32,
    /// The safety resync: direct reads never wait longer than this.
    poll_interval: Duration,
}

impl WatchHub {
    /// A hub whose watches stop when `shutdown` is cancelled.
    pub fn new(client: Client, routes: WakeRoutes, shutdown: CancellationToken) -> Self {
        WatchHub {
            client,
            state: Arc::default(),
            routes,
            shutdown,
            relist_interval: None,
            cluster_threshold: None,
            broke: Arc::default(),
            rate: RequestRate {
                qps: crate::config::Settings::default().api_qps,
                poll_interval: crate::config::Settings::default().poll_interval,
            },
        }
    }

    /// Sets the client's request rate and the poll interval, which bound the reads and
    /// retries while watches are broken.
    #[must_use]
    pub fn with_request_rate(mut self, qps: u32, poll_interval: Duration) -> Self {
        self.rate = RequestRate { qps, poll_interval };
        self
    }

    /// The current retry ceiling of a broken watch (it grows when many are broken at once, to
    /// stay within the client's request rate).
    pub fn retry_ceiling(&self) -> Duration {
        let broken = self
            .state
            .lock()
            .map(|s| s.streams.values().filter(|s| s.broken).count())
            .unwrap_or(0);
        // The ChangeTriggeredJob and Job watches retry too.
        retry_ceiling(broken + 2, self.rate.qps)
    }

    /// Until the term ends: while some stream is broken, wakes the CTJs that watch its
    /// objects every few seconds (jittered, within a quarter of the request rate), so their
    /// reconciles read those objects directly.
    pub async fn reobserve_while_broken(self) {
        loop {
            let (ctjs, reads) = self.behind_broken_streams();
            if ctjs.is_empty() && !self.any_broken() {
                // Nothing to re-observe: sleep until a stream breaks (a permit left by one
                // that broke since the check above wakes this at once).
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = self.broke.notified() => {}
                }
            }
            let wait = if ctjs.is_empty() {
                REOBSERVE_INTERVAL
            } else {
                reobserve_interval(
                    reads,
                    self.rate.qps,
                    self.rate.poll_interval,
                    resume::jitter(),
                )
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let (ctjs, _) = self.behind_broken_streams();
            if !ctjs.is_empty() {
                tracing::debug!(
                    ctjs = ctjs.len(),
                    "re-observing objects behind broken watches"
                );
            }
            for ctj in &ctjs {
                self.routes.wake(ctj);
            }
        }
    }

    /// Whether some stream is broken.
    fn any_broken(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.streams.values().any(|s| s.broken))
            .unwrap_or(true)
    }

    /// Tells the re-observe loop that a stream broke.
    fn note_broken(&self) {
        self.broke.notify_one();
    }

    /// Wakes `ctj` for a full round.
    pub fn wake(&self, ctj: &CtjRef) {
        self.routes.wake(ctj);
    }

    /// The CTJs watching objects of broken streams, and how many (CTJ, object) reads that
    /// makes.
    fn behind_broken_streams(&self) -> (Vec<CtjRef>, usize) {
        let Ok(state) = self.state.lock() else {
            return (Vec::new(), 0);
        };
        let broken: HashSet<&StreamKey> = state
            .streams
            .iter()
            .filter(|(_, s)| s.broken)
            .map(|(k, _)| k)
            .collect();
        if broken.is_empty() {
            return (Vec::new(), 0);
        }
        let mut ctjs = HashSet::new();
        let mut reads = 0;
        for (key, interested) in &state.interest {
            if broken.contains(&key.stream) {
                reads += interested.len();
                ctjs.extend(interested.iter().cloned());
            }
        }
        (ctjs.into_iter().collect(), reads)
    }

    /// Number of streams that are broken now.
    pub fn broken_streams(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.streams.values().filter(|s| s.broken).count())
            .unwrap_or(0)
    }

    /// Watches a namespaced kind cluster-wide once its watched objects live in more than
    /// `namespaces` namespaces (0: never).
    pub fn cluster_watch_past(mut self, namespaces: usize) -> Self {
        self.cluster_threshold = (namespaces > 0).then_some(namespaces);
        self
    }

    /// Compares every stream with a fresh LIST this often, to catch changes a watch missed.
    pub fn relist_every(mut self, interval: Duration) -> Self {
        self.relist_interval = Some(interval);
        self
    }

    /// Declares the complete set of objects `ctj` watches by name, starting and stopping watch
    /// streams as needed. (Its selector entries are declared with [`Self::set_interest_in_sets`].)
    pub fn set_interest(&self, ctj: &CtjRef, objects: HashSet<ObjectKey>) {
        let sets = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.per_ctj_sets.get(ctj).cloned())
            .unwrap_or_default();
        self.declare(ctj, objects, sets);
    }

    /// Declares the complete interest of `ctj`: objects by name and selector entry sets.
    pub fn set_interest_in_sets(
        &self,
        ctj: &CtjRef,
        objects: HashSet<ObjectKey>,
        sets: HashSet<SetKey>,
    ) {
        self.declare(ctj, objects, sets);
    }

    fn declare(&self, ctj: &CtjRef, objects: HashSet<ObjectKey>, sets: HashSet<SetKey>) {
        let mut to_start = Vec::new();
        let mut to_promote = Vec::new();
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let objects: HashSet<ObjectKey> = objects
                .into_iter()
                .map(|k| state.intern_object(k))
                .collect();
            let sets: HashSet<SetKey> = sets.into_iter().map(|k| state.intern_set(k)).collect();
            let old = state.per_ctj.remove(ctj).unwrap_or_default();
            let old_sets = state.per_ctj_sets.remove(ctj).unwrap_or_default();
            let mut released = Vec::new();
            for key in old.difference(&objects) {
                if state.drop_interest(key, ctj) {
                    released.push(key.stream.clone());
                }
            }
            for key in old_sets.difference(&sets) {
                if state.drop_set_interest(key, ctj) {
                    released.push(key.stream.clone());
                }
            }
            let mut needed = Vec::new();
            for key in objects.difference(&old) {
                let ctjs = state.interest.entry(key.clone()).or_default();
                let first = ctjs.is_empty();
                ctjs.insert(ctj.clone());
                if first {
                    *state.stream_users.entry(key.stream.clone()).or_default() += 1;
                }
                needed.push(key.stream.clone());
            }
            for key in sets.difference(&old_sets) {
                let ctjs = state.set_interest.entry(key.clone()).or_default();
                let first = ctjs.is_empty();
                ctjs.insert(ctj.clone());
                if first {
                    *state.stream_users.entry(key.stream.clone()).or_default() += 1;
                }
                needed.push(key.stream.clone());
            }
            for stream in needed {
                if !state.streams.contains_key(&stream) {
                    if let Some(served) = state.served_by_cluster(&stream) {
                        state.streams.insert(stream.clone(), served);
                    } else {
                        let token = self.shutdown.child_token();
                        state.streams.insert(
                            stream.clone(),
                            StreamState {
                                task: Some(token.clone()),
                                ..StreamState::default()
                            },
                        );
                        to_start.push((stream.clone(), token));
                    }
                    if let Some(threshold) = self.cluster_threshold
                        && let Some(kind) = state.maybe_promote(&stream, threshold, &self.shutdown)
                    {
                        to_promote.push(kind);
                    }
                }
            }
            if !objects.is_empty() {
                state.per_ctj.insert(ctj.clone(), objects);
            }
            if !sets.is_empty() {
                state.per_ctj_sets.insert(ctj.clone(), sets);
            }
            // Only streams that lost a key can have become unused; a steady-state call (the
            // same objects again) costs no scan.
            for stream in released {
                state.stop_if_unused(&stream);
            }
        }
        for (stream, token) in to_start {
            self.start_stream(stream, token);
        }
        for (kind, token) in to_promote {
            self.spawn_cluster(kind, token);
        }
    }

    /// Runs the watch of `stream` (and its periodic check) until `token` is cancelled.
    fn start_stream(&self, stream: StreamKey, token: CancellationToken) {
        if let Some(interval) = self.relist_interval {
            self.spawn_relist(stream.clone(), token.clone(), interval);
        }
        self.spawn_stream(stream, token);
    }

    /// Forgets a deleted CTJ.
    pub fn forget(&self, ctj: &CtjRef) {
        self.declare(ctj, HashSet::new(), HashSet::new());
        self.routes.settled.forget(ctj);
    }

    /// CTJs with declared interest.
    pub fn known_ctjs(&self) -> Vec<CtjRef> {
        self.state
            .lock()
            .map(|s| {
                let mut all: HashSet<CtjRef> = s.per_ctj.keys().cloned().collect();
                all.extend(s.per_ctj_sets.keys().cloned());
                all.into_iter().collect()
            })
            .unwrap_or_default()
    }

    /// The members of `set` (sorted by name), if its stream is synced.
    pub fn members(&self, set: &SetKey) -> Option<Vec<Member>> {
        let state = self.state.lock().ok()?;
        let stream = state.streams.get(&set.stream).filter(|s| s.synced)?;
        let mut members: Vec<Member> = stream
            .objects
            .iter()
            .filter(|(_, listed)| set.selector.matches(&listed.labels))
            .map(|(name, listed)| Member {
                name: name.clone(),
                resource_version: listed.resource_version.clone(),
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Some(members)
    }

    /// Number of distinct watched objects.
    pub fn watched_objects(&self) -> usize {
        self.state.lock().map(|s| s.interest.len()).unwrap_or(0)
    }

    /// Which CTJs are settled (their resync can be skipped).
    pub fn settled(&self) -> &SettledSet {
        &self.routes.settled
    }

    /// Whether `ctj` watches `entries` objects, each through a synced watch: only then does a
    /// wake-up reach it for every change, so a resync without one may be skipped.
    pub fn fully_watched(&self, ctj: &CtjRef, entries: usize) -> bool {
        let Ok(state) = self.state.lock() else {
            return false;
        };
        let none = HashSet::new();
        let keys = state.per_ctj.get(ctj).unwrap_or(&none);
        let no_sets = HashSet::new();
        let sets = state.per_ctj_sets.get(ctj).unwrap_or(&no_sets);
        let synced = |stream: &StreamKey| state.streams.get(stream).is_some_and(|s| s.synced);
        keys.len() + sets.len() == entries
            && keys.iter().all(|k| synced(&k.stream))
            && sets.iter().all(|k| synced(&k.stream))
    }

    /// Metadata watches the hub keeps open: (one namespace each, whole cluster). A stream a
    /// cluster-wide watch serves has none of its own.
    pub fn watch_connections(&self) -> (usize, usize) {
        let Ok(state) = self.state.lock() else {
            return (0, 0);
        };
        let own = state.streams.iter().filter(|(_, s)| s.task.is_some());
        let namespaced = own.clone().filter(|(k, _)| k.namespace.is_some()).count();
        let cluster_scoped = own.filter(|(k, _)| k.namespace.is_none()).count();
        let cluster_wide = state.cluster.values().filter(|c| c.watching()).count();
        (namespaced, cluster_scoped + cluster_wide)
    }

    /// Number of running watch streams.
    pub fn streams(&self) -> usize {
        self.state.lock().map(|s| s.streams.len()).unwrap_or(0)
    }

    /// How many objects a synced stream has (`None` while it is not synced).
    pub fn stream_len(&self, stream: &StreamKey) -> Option<usize> {
        let state = self.state.lock().ok()?;
        let stream = state.streams.get(stream).filter(|s| s.synced)?;
        Some(stream.objects.len())
    }

    /// How many CTJs have declared named objects (a CTJ in an informer's store but not here
    /// has not had its first round yet).
    pub fn declared_ctjs(&self) -> usize {
        self.state.lock().map(|s| s.per_ctj.len()).unwrap_or(0)
    }

    /// What the hub knows of an object, if its stream is synced.
    pub fn seen(&self, key: &ObjectKey) -> Option<Seen> {
        let state = self.state.lock().ok()?;
        let stream = state.streams.get(&key.stream).filter(|s| s.synced)?;
        Some(match stream.objects.get(&key.name) {
            Some(listed) => Seen::Present(listed.resource_version.clone()),
            None => Seen::Absent,
        })
    }

    /// The cached fingerprint of an object at `resource_version`, for `fields` and `key_id`.
    pub fn cached_fingerprint(
        &self,
        key: &ObjectKey,
        fields: &[String],
        key_id: &str,
        resource_version: &str,
    ) -> Option<Fingerprint> {
        let state = self.state.lock().ok()?;
        let (rv, fp) =
            state
                .fingerprints
                .get(&(key.clone(), fields.to_vec(), key_id.to_string()))?;
        (rv == resource_version).then(|| fp.clone())
    }

    /// Remembers the fingerprint of an object at `resource_version`.
    pub fn remember_fingerprint(
        &self,
        key: &ObjectKey,
        fields: &[String],
        key_id: &str,
        resource_version: &str,
        fingerprint: &Fingerprint,
    ) {
        if let Ok(mut state) = self.state.lock() {
            let in_a_set = || state.set_interest.keys().any(|s| s.stream == key.stream);
            if !state.interest.contains_key(key) && !in_a_set() {
                return;
            }
            let key = state.intern_object(key.clone());
            state.fingerprints.insert(
                (key, fields.to_vec(), key_id.to_string()),
                (resource_version.to_string(), fingerprint.clone()),
            );
        }
    }

    fn spawn_stream(&self, stream: StreamKey, token: CancellationToken) {
        let resource = stream.api_resource();
        // `Api<PartialObjectMeta<_>>` makes metadata-only requests.
        let api: Api<PartialObjectMeta<DynamicObject>> = match &stream.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let hub = self.clone();
        let what = match &stream.namespace {
            Some(ns) => format!("{} in namespace {ns}", stream.plural),
            None => stream.plural.clone(),
        };
        let ceiling = {
            let hub = self.clone();
            Arc::new(move || hub.retry_ceiling())
        };
        let on_failure = {
            let hub = self.clone();
            let stream = stream.clone();
            Arc::new(move |failure| hub.mark_broken(&stream, failure))
        };
        tokio::spawn(async move {
            let start = move || watcher(api.clone(), watcher::Config::default()).boxed();
            let events = resume::resumed(what, start, ceiling, on_failure);
            let mut events = std::pin::pin!(events);
            loop {
                let next = tokio::select! {
                    () = token.cancelled() => break,
                    next = events.next() => next,
                };
                match next {
                    Some(Ok(event)) => hub.apply(&stream, event),
                    // `resumed` reports failures through `on_failure` and never yields them.
                    Some(Err(_)) => {}
                    None => break,
                }
            }
        });
    }

    /// A stream failed: until it has listed again, its objects are read on every reconcile;
    /// unless it only expired (it lists again at once), its CTJs are also re-observed on a
    /// timer.
    fn mark_broken(&self, stream: &StreamKey, failure: WatchFailure) {
        if let Ok(mut state) = self.state.lock()
            && let Some(s) = state.streams.get_mut(stream)
        {
            s.synced = false;
            if failure != WatchFailure::Expired {
                s.broken = true;
            }
        }
        if failure != WatchFailure::Expired {
            self.note_broken();
        }
    }

    fn apply(&self, stream: &StreamKey, event: Event<PartialObjectMeta<DynamicObject>>) {
        let mut wake: BTreeMap<String, HashSet<CtjRef>> = BTreeMap::new();
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            match event {
                Event::Init => {
                    if let Some(s) = state.streams.get_mut(stream) {
                        s.relisting = Some(HashSet::new());
                    }
                }
                Event::InitApply(object) | Event::Apply(object) => {
                    let Some(name) = object.metadata.name.clone() else {
                        return;
                    };
                    if let Some(listed) = state
                        .streams
                        .get_mut(stream)
                        .and_then(|s| s.relisting.as_mut())
                    {
                        listed.insert(name.clone());
                    }
                    let listed = Listed {
                        resource_version: object
                            .metadata
                            .resource_version
                            .clone()
                            .unwrap_or_default(),
                        labels: object.metadata.labels.clone().unwrap_or_default(),
                    };
                    state.observe(stream, &name, Some(listed), &mut wake);
                }
                Event::Delete(object) => {
                    let Some(name) = object.metadata.name.clone() else {
                        return;
                    };
                    state.observe(stream, &name, None, &mut wake);
                }
                Event::InitDone => {
                    let Some(s) = state.streams.get_mut(stream) else {
                        return;
                    };
                    s.synced = true;
                    if std::mem::take(&mut s.broken) {
                        state.wake_all_behind(stream, &mut wake);
                    }
                    let Some(s) = state.streams.get_mut(stream) else {
                        return;
                    };
                    if let Some(listed) = s.relisting.take() {
                        // Objects the relist did not return were deleted while the watch was
                        // down.
                        let gone: Vec<String> = s
                            .objects
                            .keys()
                            .filter(|n| !listed.contains(*n))
                            .cloned()
                            .collect();
                        for name in gone {
                            state.observe(stream, &name, None, &mut wake);
                        }
                    }
                }
            }
        }
        for ctjs in wake.values() {
            for ctj in ctjs {
                self.routes.wake(ctj);
            }
        }
    }
}

impl HubState {
    /// A stream is back after a failure: every CTJ behind it looks once more, so a reconcile
    /// that failed meanwhile does not wait for its backoff.
    fn wake_all_behind(&self, stream: &StreamKey, wake: &mut BTreeMap<String, HashSet<CtjRef>>) {
        for (key, ctjs) in &self.interest {
            if &key.stream == stream {
                wake.entry(key.name.clone())
                    .or_default()
                    .extend(ctjs.iter().cloned());
            }
        }
    }

    /// Records what the stream reports for `name` (`None` = deleted); CTJs interested in it,
    /// by name or through a selector it matched before or matches now, are woken when its
    /// version moved. A replay with the same version wakes nobody.
    fn observe(
        &mut self,
        stream: &StreamKey,
        name: &str,
        now: Option<Listed>,
        wake: &mut BTreeMap<String, HashSet<CtjRef>>,
    ) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        if let Some(reported) = state.checking.as_mut() {
            reported.insert(name.to_string());
        }
        let before = match &now {
            Some(listed) => state.objects.insert(name.to_string(), listed.clone()),
            None => state.objects.remove(name),
        };
        if before.as_ref().map(|l| &l.resource_version) == now.as_ref().map(|l| &l.resource_version)
        {
            return;
        }
        let key = ObjectKey {
            stream: stream.clone(),
            name: name.to_string(),
        };
        if let Some(ctjs) = self.interest.get(&key) {
            wake.entry(name.to_string())
                .or_default()
                .extend(ctjs.iter().cloned());
        }
        let matched = |listed: &Option<Listed>, selector: &Selector| {
            listed.as_ref().is_some_and(|l| selector.matches(&l.labels))
        };
        for (set, ctjs) in &self.set_interest {
            if set.stream == *stream
                && (matched(&before, &set.selector) || matched(&now, &set.selector))
            {
                wake.entry(name.to_string())
                    .or_default()
                    .extend(ctjs.iter().cloned());
            }
        }
        if now.is_none() && !self.interest.contains_key(&key) {
            // A deleted member's fingerprints are of no further use.
            self.fingerprints.retain(|(k, _, _), _| *k != key);
        }
    }

    /// Removes `ctj`'s interest in `set`; true when that was the set's last CTJ.
    fn drop_set_interest(&mut self, set: &SetKey, ctj: &CtjRef) -> bool {
        let Some(ctjs) = self.set_interest.get_mut(set) else {
            return false;
        };
        ctjs.remove(ctj);
        if !ctjs.is_empty() {
            return false;
        }
        self.set_interest.remove(set);
        if !self.set_interest.keys().any(|s| s.stream == set.stream) {
            let interest = &self.interest;
            self.fingerprints
                .retain(|(k, _, _), _| k.stream != set.stream || interest.contains_key(k));
        }
        if let Some(users) = self.stream_users.get_mut(&set.stream) {
            *users = users.saturating_sub(1);
        }
        true
    }

    /// `stream` as the copy the hub already holds (itself when the stream is new), so that the
    /// keys of the long-lived maps share one copy of each stream's strings.
    fn intern(&self, stream: &StreamKey) -> StreamKey {
        self.streams
            .get_key_value(stream)
            .map_or_else(|| stream.clone(), |(held, _)| held.clone())
    }

    fn intern_object(&self, key: ObjectKey) -> ObjectKey {
        ObjectKey {
            stream: self.intern(&key.stream),
            name: key.name,
        }
    }

    fn intern_set(&self, key: SetKey) -> SetKey {
        SetKey {
            stream: self.intern(&key.stream),
            selector: key.selector,
        }
    }

    /// Removes `ctj`'s interest in `key`; true when that was the key's last CTJ.
    fn drop_interest(&mut self, key: &ObjectKey, ctj: &CtjRef) -> bool {
        let Some(set) = self.interest.get_mut(key) else {
            return false;
        };
        set.remove(ctj);
        if !set.is_empty() {
            return false;
        }
        self.interest.remove(key);
        if !self.set_interest.keys().any(|s| s.stream == key.stream) {
            self.fingerprints.retain(|(k, _, _), _| k != key);
        }
        if let Some(users) = self.stream_users.get_mut(&key.stream) {
            *users = users.saturating_sub(1);
        }
        true
    }

    /// Stops `stream` when no watched object uses it any more.
    fn stop_if_unused(&mut self, stream: &StreamKey) {
        if self
            .stream_users
            .get(stream)
            .is_some_and(|users| *users > 0)
        {
            return;
        }
        self.stream_users.remove(stream);
        if let Some(task) = self.streams.remove(stream).and_then(|s| s.task) {
            task.cancel();
        }
        self.stop_cluster_if_unused(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> (WatchHub, CancellationToken) {
        // The streams' requests go nowhere: these tests look at the bookkeeping only.
        let (service, handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        drop(handle);
        let shutdown = CancellationToken::new();
        let hub = WatchHub::new(
            Client::new(service, "default"),
            WakeRoutes::default(),
            shutdown.clone(),
        );
        (hub, shutdown)
    }

    fn key(kind: &str, plural: &str, namespace: &str, name: &str) -> ObjectKey {
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        ObjectKey {
            stream: StreamKey::new(&resource, Some(namespace)),
            name: name.into(),
        }
    }

    fn ctj(name: &str) -> CtjRef {
        ObjectRef::new(name).within("apps")
    }

    fn meta(name: &str, rv: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<DynamicObject> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        use kube::core::PartialObjectMetaExt;
        ObjectMeta {
            name: Some(name.into()),
            resource_version: Some(rv.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
        .into_response_partial()
    }

    fn woken(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<CtjRef>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(ctj) = receiver.try_recv() {
            names.push(ctj.name);
        }
        names.sort();
        names
    }

    #[tokio::test]
    async fn keys_declared_by_many_ctjs_share_the_hubs_copy_of_their_stream() {
        let (hub, shutdown) = hub();
        hub.set_interest(
            &ctj("first"),
            HashSet::from([key("ConfigMap", "configmaps", "apps", "a")]),
        );
        hub.set_interest(
            &ctj("second"),
            HashSet::from([key("ConfigMap", "configmaps", "apps", "b")]),
        );
        // A declaration again, as every round makes, with freshly built keys.
        hub.set_interest(
            &ctj("first"),
            HashSet::from([key("ConfigMap", "configmaps", "apps", "a")]),
        );
        {
            let state = hub.state.lock().unwrap();
            let (held, _) = state.streams.iter().next().unwrap();
            for name in ["first", "second"] {
                for key in &state.per_ctj[&ctj(name)] {
                    assert!(Arc::ptr_eq(&key.stream.0, &held.0), "{name}: {key:?}");
                }
            }
            for key in state.interest.keys() {
                assert!(Arc::ptr_eq(&key.stream.0, &held.0), "interest: {key:?}");
            }
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn selector_sets_are_served_from_the_labels_of_the_metadata_watch() {
        let (service, handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        drop(handle);
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut routes = WakeRoutes::default();
        routes.add(None, sender);
        let shutdown = CancellationToken::new();
        let hub = WatchHub::new(Client::new(service, "default"), routes, shutdown.clone());

        let stream = key("ConfigMap", "configmaps", "shop", "").stream;
        let set = SetKey {
            stream: stream.clone(),
            selector: Selector::parse("app=shop").unwrap_or_default(),
        };
        hub.set_interest_in_sets(&ctj("sync"), HashSet::new(), HashSet::from([set.clone()]));
        assert_eq!(hub.streams(), 1);
        assert_eq!(hub.members(&set), None, "not synced yet");

        hub.apply(&stream, Event::Init);
        hub.apply(
            &stream,
            Event::InitApply(meta("a", "1", &[("app", "shop")])),
        );
        hub.apply(
            &stream,
            Event::InitApply(meta("other", "2", &[("app", "cart")])),
        );
        hub.apply(&stream, Event::InitDone);
        let names = |hub: &WatchHub| -> Vec<String> {
            hub.members(&set)
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.name)
                .collect()
        };
        assert_eq!(names(&hub), vec!["a"]);
        let _ = woken(&mut receiver);

        // An object created later that matches joins the set and wakes the CTJ.
        hub.apply(&stream, Event::Apply(meta("b", "3", &[("app", "shop")])));
        assert_eq!(names(&hub), vec!["a", "b"]);
        assert_eq!(woken(&mut receiver), vec!["sync"]);

        // A non-member changing wakes nobody.
        hub.apply(
            &stream,
            Event::Apply(meta("other", "4", &[("app", "cart")])),
        );
        assert!(woken(&mut receiver).is_empty());

        // A member relabelled out leaves the set and wakes the CTJ.
        hub.apply(&stream, Event::Apply(meta("a", "5", &[("app", "gone")])));
        assert_eq!(names(&hub), vec!["b"]);
        assert_eq!(woken(&mut receiver), vec!["sync"]);

        // A replay with the same version wakes nobody; a deletion of a member does.
        hub.apply(&stream, Event::Apply(meta("b", "3", &[("app", "shop")])));
        assert!(woken(&mut receiver).is_empty());
        hub.apply(&stream, Event::Delete(meta("b", "3", &[("app", "shop")])));
        assert!(names(&hub).is_empty());
        assert_eq!(woken(&mut receiver), vec!["sync"]);

        // Dropping the set stops the stream.
        hub.forget(&ctj("sync"));
        assert_eq!(hub.streams(), 0);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn streams_live_exactly_as_long_as_some_ctj_watches_one_of_their_objects() {
        let (hub, shutdown) = hub();
        let cm_a = key("ConfigMap", "configmaps", "ns1", "a");
        let cm_b = key("ConfigMap", "configmaps", "ns1", "b");
        let cm_other_ns = key("ConfigMap", "configmaps", "ns2", "a");
        let secret = key("Secret", "secrets", "ns1", "x");

        hub.set_interest(&ctj("one"), HashSet::from([cm_a.clone(), cm_b.clone()]));
        hub.set_interest(&ctj("two"), HashSet::from([cm_a.clone()]));
        assert_eq!((hub.streams(), hub.watched_objects()), (1, 2));

        // The same interest again changes nothing.
        hub.set_interest(&ctj("one"), HashSet::from([cm_a.clone(), cm_b.clone()]));
        assert_eq!((hub.streams(), hub.watched_objects()), (1, 2));

        // "one" moves to a Secret: the ConfigMap stream stays for "two".
        hub.set_interest(&ctj("one"), HashSet::from([secret.clone()]));
        assert_eq!((hub.streams(), hub.watched_objects()), (2, 2));

        // Swapping one object for another of the same stream keeps the stream.
        hub.set_interest(&ctj("two"), HashSet::from([cm_b.clone()]));
        assert_eq!((hub.streams(), hub.watched_objects()), (2, 2));
        hub.set_interest(&ctj("two"), HashSet::from([cm_other_ns.clone()]));
        assert_eq!((hub.streams(), hub.watched_objects()), (2, 2));

        hub.forget(&ctj("two"));
        assert_eq!((hub.streams(), hub.watched_objects()), (1, 1));
        hub.forget(&ctj("one"));
        assert_eq!((hub.streams(), hub.watched_objects()), (0, 0));
        assert!(hub.known_ctjs().is_empty());

        // And a stream comes back when an object of it is watched again.
        hub.set_interest(&ctj("one"), HashSet::from([cm_a]));
        assert_eq!((hub.streams(), hub.watched_objects()), (1, 1));
        shutdown.cancel();
    }
}
