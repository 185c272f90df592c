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
use kube::core::TypeMeta;
use kube::runtime::reflector::Store;
use tokio::sync::OnceCell;
use tracing::debug;

use super::watches::{ObjectKey, StreamKey};
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

type Wanted = (String, Vec<String>);

/// The listed fingerprints of one stream, handed out once per CTJ that asked for them.
struct Listed {
    /// (name, fields) → (CTJs that still have to take it, what the LIST showed).
    entries: Mutex<HashMap<Wanted, (usize, Primed)>>,
}

/// First-observation LISTs of one leadership term.
pub struct Primer {
    client: Client,
    ctjs: OnceLock<Vec<Store<super::GuardedCtj>>>,
    streams: Mutex<HashMap<StreamKey, Arc<OnceCell<Option<Listed>>>>>,
}

impl Primer {
    /// A primer that lists through `client`.
    pub fn new(client: Client) -> Self {
        Primer {
            client,
            ctjs: OnceLock::new(),
            streams: Mutex::default(),
        }
    }

    /// The informer stores whose CTJs say which objects and fields a LIST should fingerprint.
    pub fn use_stores(&self, stores: Vec<Store<super::GuardedCtj>>) {
        let _ = self.ctjs.set(stores);
    }

    /// What the first LIST of `key`'s stream showed of it, for `fields`; `None` when the LIST
    /// did not cover it (or failed): read it by GET.
    pub async fn take(
        &self,
        key: &ObjectKey,
        fields: &[String],
        fingerprints: &FingerprintKey,
    ) -> Option<Primed> {
        let cell = {
            let mut streams = self.streams.lock().ok()?;
            streams.entry(key.stream.clone()).or_default().clone()
        };
        let listed = cell
            .get_or_init(|| self.list(&key.stream, fingerprints))
            .await
            .as_ref()?;
        let mut entries = listed.entries.lock().ok()?;
        let wanted = (key.name.clone(), fields.to_vec());
        let (remaining, primed) = entries.get_mut(&wanted)?;
        *remaining = remaining.saturating_sub(1);
        let primed = primed.clone();
        if *remaining == 0 {
            entries.remove(&wanted);
        }
        Some(primed)
    }

    /// Which (name, fields) of `stream` the CTJs in the stores watch, with how many CTJs each.
    async fn wanted(&self, stream: &StreamKey) -> HashMap<Wanted, usize> {
        let mut wanted = HashMap::new();
        let Some(stores) = self.ctjs.get() else {
            return wanted;
        };
        let api_version = stream.api_resource().api_version;
        for store in stores {
            if store.wait_until_ready().await.is_err() {
                continue;
            }
            for guarded in store.state() {
                let Ok(ctj) = &guarded.0 else { continue };
                for object in watched_in(ctj, stream, &api_version) {
                    *wanted.entry((object.name, object.fields)).or_insert(0) += 1;
                }
            }
        }
        wanted
    }

    async fn list(&self, stream: &StreamKey, fingerprints: &FingerprintKey) -> Option<Listed> {
        let wanted = self.wanted(stream).await;
        if wanted.is_empty() {
            return None;
        }
        let resource = stream.api_resource();
        let api: Api<DynamicObject> = match &stream.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
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
                        "first-observation LIST failed; reading objects one by one");
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
        Some(Listed {
            entries: Mutex::new(entries),
        })
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
