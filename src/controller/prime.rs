//! First observation by LIST. When a leadership term starts (a start-up, or a new leader after
//! a handover), every ChangeTriggeredJob needs a fingerprint of each of its objects before the
//! watches can tell it anything. Reading them one GET at a time costs a request per object;
//! instead, the first observation in a (kind, namespace) lists that stream's objects, page by
//! page, once, and fingerprints every (object, fields) that some CTJ in the informer's store
//! asks for. A term's first pass then costs one request per page plus the status writes.
//! What the LIST did not cover (CTJs created later, objects that moved since) is read by GET.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, TypeMeta};
use kube::runtime::reflector::Store;
use tokio::sync::{OnceCell, oneshot};
use tracing::debug;

use super::watches::{ObjectKey, Seen, StreamKey, WatchHub};
use crate::api::ChangeTriggeredJob;
use crate::detect::fingerprint::{Fingerprint, FingerprintKey};
use crate::detect::select::Selection;
use crate::detect::trigger::WatchedObject;

/// Objects per page of a first-observation LIST: full objects, so smaller pages than the
/// metadata watches' keep the memory a page needs in bounds (250 ConfigMaps of 1 MiB at most).
const PAGE_SIZE: u32 = 250;

/// What the LIST showed of one (object, fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Primed {
    /// The object exists at this resourceVersion with this fingerprint.
    Found(String, Fingerprint),
    /// The stream's LIST did not contain the object.
    Missing,
}

/// The answer to a read that the term's first LIST did not cover.
#[derive(Debug)]
pub enum Read {
    /// A LIST made for a batch of reads showed this; as with the first LIST, the watch may
    /// have seen a newer version since.
    Listed(Primed),
    /// A GET made for this read (and any other read of the same object meanwhile) returned
    /// this.
    Got(Primed),
    /// That GET failed.
    Failed(kube::Error),
    /// Read it alone (the batch could not answer it).
    Alone,
}

type Wanted = (String, Vec<String>);

/// (name, fields) → (CTJs that still have to take it, what a LIST showed).
type Entries = HashMap<Wanted, (usize, Primed)>;

/// Reads of one stream waiting for the next batch.
#[derive(Default)]
struct Batch {
    waiting: Vec<Waiter>,
    /// A task is answering batches of this stream.
    running: bool,
}

struct Waiter {
    wanted: Wanted,
    reply: oneshot::Sender<Read>,
}

/// What the primer holds for one stream.
#[derive(Default)]
struct StreamPrime {
    /// Done once the term's first LIST has run (or failed).
    first: OnceCell<()>,
    /// Listed fingerprints not yet taken.
    entries: Mutex<Entries>,
    batch: Mutex<Batch>,
}

/// First-observation LISTs of one leadership term, and the batching of the reads they did
/// not cover.
///
/// A read the first LIST did not answer (a CTJ created later, an object that moved) joins
/// its stream's batch. One task answers a stream's batches one after the other, so the reads
/// that arrive while one batch is under way (waiting on the client's rate limit, say) form
/// the next: it GETs each object once, however many CTJs asked for it, or, when the CTJs
/// still to be observed want more of the stream's objects than a LIST has pages, LISTs the
/// stream and keeps what those CTJs want for them. Either way, a burst of new CTJs costs
/// about a page per batch instead of a GET per object.
#[derive(Clone)]
pub struct Primer {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    hub: WatchHub,
    ctjs: OnceLock<Vec<Store<super::GuardedCtj>>>,
    streams: Mutex<HashMap<StreamKey, Arc<StreamPrime>>>,
}

impl Primer {
    /// A primer that lists through `client` and asks `hub` how big a stream is.
    pub fn new(client: Client, hub: WatchHub) -> Self {
        Primer {
            inner: Arc::new(Inner {
                client,
                hub,
                ctjs: OnceLock::new(),
                streams: Mutex::default(),
            }),
        }
    }

    /// The informer stores whose CTJs say which objects and fields a LIST should fingerprint.
    pub fn use_stores(&self, stores: Vec<Store<super::GuardedCtj>>) {
        let _ = self.inner.ctjs.set(stores);
    }

    /// What the first LIST of `key`'s stream showed of it, for `fields`; `None` when the LIST
    /// did not cover it (or failed): [`Primer::read`] it.
    pub async fn take(
        &self,
        key: &ObjectKey,
        fields: &[String],
        fingerprints: &FingerprintKey,
    ) -> Option<Primed> {
        let prime = self.inner.stream(&key.stream)?;
        prime
            .first
            .get_or_init(|| async {
                let wanted = self.inner.wanted(&key.stream, None).await;
                if let Some(listed) = self.inner.list(&key.stream, wanted, fingerprints).await
                    && let Ok(mut entries) = prime.entries.lock()
                {
                    entries.extend(listed);
                }
            })
            .await;
        take_entry(&prime, &(key.name.clone(), fields.to_vec()))
    }

    /// Reads `key` for `fields` in its stream's next batch.
    pub async fn read(
        &self,
        key: &ObjectKey,
        fields: &[String],
        fingerprints: &FingerprintKey,
    ) -> Read {
        let Some(prime) = self.inner.stream(&key.stream) else {
            return Read::Alone;
        };
        let (reply, answer) = oneshot::channel();
        let start = {
            let Ok(mut batch) = prime.batch.lock() else {
                return Read::Alone;
            };
            batch.waiting.push(Waiter {
                wanted: (key.name.clone(), fields.to_vec()),
                reply,
            });
            !std::mem::replace(&mut batch.running, true)
        };
        if start {
            let inner = self.inner.clone();
            let stream = key.stream.clone();
            let fingerprints = fingerprints.clone();
            tokio::spawn(async move { inner.answer_batches(stream, prime, fingerprints).await });
        }
        answer.await.unwrap_or(Read::Alone)
    }
}

/// Takes one CTJ's share of a listed entry.
fn take_entry(prime: &StreamPrime, wanted: &Wanted) -> Option<Primed> {
    let mut entries = prime.entries.lock().ok()?;
    let (remaining, primed) = entries.get_mut(wanted)?;
    *remaining = remaining.saturating_sub(1);
    let primed = primed.clone();
    if *remaining == 0 {
        entries.remove(wanted);
    }
    Some(primed)
}

/// Marks a stream's batches unanswered if the task answering them ends early (it should
/// not): the readers waiting then read alone, and the next read starts a new task.
struct Answering {
    prime: Arc<StreamPrime>,
    done: bool,
}

impl Drop for Answering {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(mut batch) = self.prime.batch.lock() {
            batch.running = false;
            for waiter in batch.waiting.drain(..) {
                let _ = waiter.reply.send(Read::Alone);
            }
        }
    }
}

impl Inner {
    fn stream(&self, stream: &StreamKey) -> Option<Arc<StreamPrime>> {
        let mut streams = self.streams.lock().ok()?;
        Some(streams.entry(stream.clone()).or_default().clone())
    }

    /// Answers `stream`'s batches until no read is waiting.
    async fn answer_batches(
        &self,
        stream: StreamKey,
        prime: Arc<StreamPrime>,
        fingerprints: FingerprintKey,
    ) {
        let mut guard = Answering {
            prime: prime.clone(),
            done: false,
        };
        loop {
            let waiting = {
                let Ok(mut batch) = prime.batch.lock() else {
                    return;
                };
                if batch.waiting.is_empty() {
                    batch.running = false;
                    guard.done = true;
                    return;
                }
                std::mem::take(&mut batch.waiting)
            };
            let waiting = match self.list_for(&stream, &prime, waiting, &fingerprints).await {
                Ok(()) => continue,
                Err(waiting) => waiting,
            };
            self.get_each(&stream, waiting, &fingerprints).await;
        }
    }

    /// Answers `waiting` from one LIST of `stream` when the CTJs still to be observed want
    /// more of its objects than the LIST has pages; hands them back otherwise.
    async fn list_for(
        &self,
        stream: &StreamKey,
        prime: &StreamPrime,
        waiting: Vec<Waiter>,
        fingerprints: &FingerprintKey,
    ) -> Result<(), Vec<Waiter>> {
        let Some(len) = self.hub.stream_len(stream) else {
            return Err(waiting);
        };
        let pages = len.div_ceil(PAGE_SIZE as usize).max(1);
        let asked: HashSet<&str> = waiting.iter().map(|w| w.wanted.0.as_str()).collect();
        let asked = asked.len();
        // CTJs in the stores that have not declared their objects yet: a burst of new ones.
        let undeclared = self
            .stores()
            .iter()
            .map(Store::len)
            .sum::<usize>()
            .saturating_sub(self.hub.declared_ctjs());
        if asked <= pages && undeclared <= pages {
            return Err(waiting);
        }
        let mut wanted = self.wanted(stream, Some(fingerprints)).await;
        if let Ok(entries) = prime.entries.lock() {
            wanted.retain(|w, _| !entries.contains_key(w));
        }
        for waiter in &waiting {
            wanted.entry(waiter.wanted.clone()).or_insert(1);
        }
        let names: HashSet<&str> = wanted.keys().map(|(name, _)| name.as_str()).collect();
        if names.len() <= pages {
            return Err(waiting);
        }
        let Some(mut listed) = self.list(stream, wanted, fingerprints).await else {
            return Err(waiting);
        };
        for waiter in waiting {
            let answer = match listed.get_mut(&waiter.wanted) {
                Some((remaining, primed)) => {
                    *remaining = remaining.saturating_sub(1);
                    Read::Listed(primed.clone())
                }
                None => Read::Alone,
            };
            let _ = waiter.reply.send(answer);
        }
        listed.retain(|_, (remaining, _)| *remaining > 0);
        if let Ok(mut entries) = prime.entries.lock() {
            entries.extend(listed);
        }
        Ok(())
    }

    /// Answers `waiting` with one GET per object.
    async fn get_each(
        &self,
        stream: &StreamKey,
        waiting: Vec<Waiter>,
        fingerprints: &FingerprintKey,
    ) {
        let resource = stream.api_resource();
        let api = self.content_api(stream, &resource);
        let mut by_name: HashMap<String, Vec<Waiter>> = HashMap::new();
        for waiter in waiting {
            by_name
                .entry(waiter.wanted.0.clone())
                .or_default()
                .push(waiter);
        }
        let reads = by_name.into_iter().map(|(name, waiters)| {
            let api = api.clone();
            async move {
                let result = api.get_opt(&name).await;
                answer_from_get(result, waiters, fingerprints);
            }
        });
        futures::future::join_all(reads).await;
    }

    /// Full objects of `stream`.
    fn content_api(&self, stream: &StreamKey, resource: &ApiResource) -> Api<DynamicObject> {
        match &stream.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    fn stores(&self) -> &[Store<super::GuardedCtj>] {
        self.ctjs.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// Which (name, fields) of `stream` the CTJs in the stores watch, with how many CTJs each;
    /// with `unread`, only those the watch hub has no fingerprint of (under that key) at the
    /// version it saw.
    async fn wanted(
        &self,
        stream: &StreamKey,
        unread: Option<&FingerprintKey>,
    ) -> HashMap<Wanted, usize> {
        let mut wanted = HashMap::new();
        let api_version = stream.api_resource().api_version;
        for store in self.stores() {
            if store.wait_until_ready().await.is_err() {
                continue;
            }
            for guarded in store.state() {
                let Ok(ctj) = &guarded.0 else { continue };
                for object in watched_in(ctj, stream, &api_version) {
                    if unread.is_some_and(|key| self.hub_knows(stream, &object, key)) {
                        continue;
                    }
                    *wanted.entry((object.name, object.fields)).or_insert(0) += 1;
                }
            }
        }
        wanted
    }

    /// Whether the hub already has `object`'s fingerprint at the version its watch saw.
    fn hub_knows(
        &self,
        stream: &StreamKey,
        object: &WatchedObject,
        fingerprints: &FingerprintKey,
    ) -> bool {
        let key = ObjectKey {
            stream: stream.clone(),
            name: object.name.clone(),
        };
        match self.hub.seen(&key) {
            Some(Seen::Present(rv)) => self
                .hub
                .cached_fingerprint(&key, &object.fields, fingerprints.id(), &rv)
                .is_some(),
            _ => false,
        }
    }

    /// Lists `stream` page by page and fingerprints what `wanted` names; `None` if the LIST
    /// failed or nothing is wanted.
    async fn list(
        &self,
        stream: &StreamKey,
        wanted: HashMap<Wanted, usize>,
        fingerprints: &FingerprintKey,
    ) -> Option<Entries> {
        if wanted.is_empty() {
            return None;
        }
        let resource = stream.api_resource();
        let api = self.content_api(stream, &resource);
        let names: HashSet<&str> = wanted.keys().map(|(name, _)| name.as_str()).collect();
        let mut found: HashMap<String, DynamicObject> = HashMap::new();
        let mut listed_names: HashSet<String> = HashSet::new();
        let mut entries = HashMap::new();
        let mut params = ListParams::default().limit(PAGE_SIZE);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(error) => {
                    debug!(kind = %stream.kind, namespace = ?stream.namespace, %error,
                        "observation LIST failed; reading objects one by one");
                    return None;
                }
            };
            for mut object in page.items {
                let Some(name) = object.metadata.name.clone() else {
                    continue;
                };
                if !names.contains(name.as_str()) {
                    continue;
                }
                // List items carry no apiVersion and kind; a GET's object does, and the
                // whole-object selection includes them.
                object.types = Some(TypeMeta {
                    api_version: resource.api_version.clone(),
                    kind: resource.kind.clone(),
                });
                found.insert(name, object);
            }
            // Fingerprint page by page, so only the wanted objects of one page are held.
            for ((name, fields), ctjs) in &wanted {
                let Some(object) = found.get(name) else {
                    continue;
                };
                if let Some(primed) = fingerprint(object, fields, fingerprints) {
                    entries.insert((name.clone(), fields.clone()), (*ctjs, primed));
                }
            }
            listed_names.extend(found.drain().map(|(name, _)| name));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        for (wanted, ctjs) in wanted {
            if !listed_names.contains(&wanted.0) {
                entries.insert(wanted, (ctjs, Primed::Missing));
            }
        }
        Some(entries)
    }
}

/// Answers the readers of one object from its GET: the first reader gets a failure, the
/// others read alone (a failure cannot be shared).
fn answer_from_get(
    result: Result<Option<DynamicObject>, kube::Error>,
    waiters: Vec<Waiter>,
    fingerprints: &FingerprintKey,
) {
    match result {
        Ok(found) => {
            for waiter in waiters {
                let answer = match &found {
                    None => Read::Got(Primed::Missing),
                    Some(object) => match fingerprint(object, &waiter.wanted.1, fingerprints) {
                        Some(primed) => Read::Got(primed),
                        None => Read::Alone,
                    },
                };
                let _ = waiter.reply.send(answer);
            }
        }
        Err(error) => {
            let mut waiters = waiters.into_iter();
            if let Some(first) = waiters.next() {
                let _ = first.reply.send(Read::Failed(error));
            }
            for waiter in waiters {
                let _ = waiter.reply.send(Read::Alone);
            }
        }
    }
}

/// The named entries of `ctj` that `stream` serves. Entries whose kind is spelled differently
/// from discovery's are not matched; they are read by GET.
fn watched_in(
    ctj: &ChangeTriggeredJob,
    stream: &StreamKey,
    api_version: &str,
) -> Vec<WatchedObject> {
    ctj.spec
        .resources
        .iter()
        .map(WatchedObject::from_reference)
        .filter(|o| {
            !o.name.is_empty()
                && o.selector.is_none()
                && o.api_version == api_version
                && o.kind == stream.kind
                && o.namespace == stream.namespace
        })
        .collect()
}

/// The object's fingerprint for `fields`; `None` when it cannot be made here (unparseable
/// fields are reported by the round itself, which reads such an entry by GET).
fn fingerprint(object: &DynamicObject, fields: &[String], key: &FingerprintKey) -> Option<Primed> {
    let rv = object.metadata.resource_version.clone().unwrap_or_default();
    let selection = Selection::parse(fields).ok()?;
    let value = serde_json::to_value(object).ok()?;
    Some(Primed::Found(
        rv,
        key.fingerprint(&selection.select(&value)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(name: &str, fields: &[&str]) -> (Waiter, oneshot::Receiver<Read>) {
        let (reply, answer) = oneshot::channel();
        let wanted = (
            name.to_string(),
            fields.iter().map(|f| (*f).to_string()).collect(),
        );
        (Waiter { wanted, reply }, answer)
    }

    fn config_map(data: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop", "resourceVersion": "7"},
            "data": {"mode": data},
        }))
        .unwrap_or_else(|e| panic!("config map: {e}"))
    }

    fn answer(mut answer: oneshot::Receiver<Read>) -> Read {
        answer
            .try_recv()
            .unwrap_or_else(|e| panic!("no answer: {e}"))
    }

    #[test]
    fn one_get_answers_every_reader_of_the_object_for_its_own_fields() {
        let key = FingerprintKey::development();
        let (whole, whole_answer) = waiter("settings", &[]);
        let (data, data_answer) = waiter("settings", &["data"]);
        answer_from_get(Ok(Some(config_map("fast"))), vec![whole, data], &key);
        let (Read::Got(Primed::Found(rv_a, whole_fp)), Read::Got(Primed::Found(rv_b, data_fp))) =
            (answer(whole_answer), answer(data_answer))
        else {
            panic!("both readers get the object");
        };
        assert_eq!((rv_a.as_str(), rv_b.as_str()), ("7", "7"));
        assert_ne!(whole_fp, data_fp, "each reader's fields are fingerprinted");

        // The same fields of an object with other data: another fingerprint.
        let (again, again_answer) = waiter("settings", &["data"]);
        answer_from_get(Ok(Some(config_map("slow"))), vec![again], &key);
        let Read::Got(Primed::Found(_, other)) = answer(again_answer) else {
            panic!("found");
        };
        assert_ne!(other, data_fp);
    }

    #[test]
    fn an_absent_object_is_missing_for_every_reader() {
        let key = FingerprintKey::development();
        let (a, a_answer) = waiter("gone", &[]);
        let (b, b_answer) = waiter("gone", &["data"]);
        answer_from_get(Ok(None), vec![a, b], &key);
        assert!(matches!(answer(a_answer), Read::Got(Primed::Missing)));
        assert!(matches!(answer(b_answer), Read::Got(Primed::Missing)));
    }

    #[test]
    fn a_failed_get_is_reported_once_and_the_other_readers_read_alone() {
        let key = FingerprintKey::development();
        let (a, a_answer) = waiter("settings", &[]);
        let (b, b_answer) = waiter("settings", &[]);
        let denied = kube::Error::Api(
            kube::core::Status::failure("forbidden", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        answer_from_get(Err(denied), vec![a, b], &key);
        assert!(matches!(answer(a_answer), Read::Failed(kube::Error::Api(s)) if s.code == 403));
        assert!(matches!(answer(b_answer), Read::Alone));
    }
}
