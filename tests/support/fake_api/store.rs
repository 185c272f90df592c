//! The server state behind one `FakeApi`: stored objects, the global resourceVersion counter,
//! the retained change history, open watches, and the knobs tests turn.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::authz::Authz;
use super::clock::Clock;
use super::faults::Fault;
use super::managed_fields::ManagedFields;
use super::requests::RecordedRequest;
use super::resources::{Registry, ResourceType};
use super::validation::Validator;
use super::watch::{self, Watcher};

/// Where an object lives: storage is per group and plural, shared by every served version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    pub group: String,
    pub plural: String,
    /// `""` for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(rt: &ResourceType, namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: if rt.namespaced {
                namespace.unwrap_or_default().to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub object: Value,
    pub managed: ManagedFields,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write, as watchers see it.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub resource_version: u64,
    pub key: ObjectKey,
    pub kind: ChangeKind,
    pub object: Value,
    pub previous: Option<Value>,
}

pub(crate) struct State {
    pub registry: Registry,
    pub objects: BTreeMap<ObjectKey, Stored>,
    resource_version: u64,
    pub history: Vec<Change>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted_at: u64,
    pub watchers: Vec<Watcher>,
    pub clock: Clock,
    rng: u64,
    pub requests: Vec<RecordedRequest>,
    pub faults: Vec<Fault>,
    pub validators: HashMap<String, Validator>,
    pub authz: Authz,
    pub latency: Option<Duration>,
    pub namespace_lifecycle: bool,
    pub user: String,
    /// UIDs of objects removed since the garbage collector last ran.
    pub gc_queue: Vec<String>,
    /// Stored objects with a deletionTimestamp (what the garbage collector may act on).
    pub deleting: BTreeSet<ObjectKey>,
    /// A CRD was written or removed since the CRD controller last ran.
    pub crds_changed: bool,
    /// Types registered from stored CRDs, by CRD name.
    pub crd_types: BTreeMap<String, Vec<ResourceType>>,
}

static INSTANCES: AtomicU64 = AtomicU64::new(1);

impl State {
    pub fn new() -> Self {
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let mut state = State {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            resource_version: 0,
            history: Vec::new(),
            compacted_at: 0,
            watchers: Vec::new(),
            clock: Clock::default(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ instance.wrapping_mul(0xbf58_476d_1ce4_e5b9),
            requests: Vec::new(),
            faults: Vec::new(),
            validators: HashMap::new(),
            authz: Authz::default(),
            latency: None,
            namespace_lifecycle: true,
            user: "system:serviceaccount:default:default".to_string(),
            gc_queue: Vec::new(),
            deleting: BTreeSet::new(),
            crds_changed: false,
            crd_types: BTreeMap::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            state.ensure_namespace(ns);
        }
        state
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic per instance, distinct across instances.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn new_uid(&mut self) -> String {
        let a = self.next_random();
        let b = self.next_random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// The 5-character suffix `generateName` gets (the API server's alphabet: no vowels, no
    /// look-alike digits).
    pub fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| {
                let i = (self.next_random() % ALPHABET.len() as u64) as usize;
                ALPHABET[i] as char
            })
            .collect()
    }

    /// Creates a namespace object if missing (used for the defaults and by tests).
    pub fn ensure_namespace(&mut self, name: &str) {
        let key = ObjectKey {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: name.into(),
        };
        if self.objects.contains_key(&key) {
            return;
        }
        let uid = self.new_uid();
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uid,
                "creationTimestamp": self.clock.now_rfc3339(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        self.insert_new(key, object, ManagedFields::default());
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Stored> {
        self.objects.get(key)
    }

    /// Finds a stored object by UID.
    pub fn key_of_uid(&self, uid: &str) -> Option<ObjectKey> {
        self.objects
            .iter()
            .find(|(_, s)| s.object.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid))
            .map(|(k, _)| k.clone())
    }

    /// Stores a new object: stamps resourceVersion and managedFields, emits ADDED.
    pub fn insert_new(
        &mut self,
        key: ObjectKey,
        mut object: Value,
        managed: ManagedFields,
    ) -> Value {
        let rv = self.next_resource_version();
        managed.stamp(&mut object);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(
            key.clone(),
            Stored {
                object: object.clone(),
                managed,
            },
        );
        self.track(&key, Some(&object));
        self.emit(Change {
            resource_version: rv,
            key,
            kind: ChangeKind::Added,
            object: object.clone(),
            previous: None,
        });
        object
    }

    /// Replaces a stored object: stamps resourceVersion and managedFields, emits MODIFIED.
    pub fn replace(&mut self, key: ObjectKey, mut object: Value, managed: ManagedFields) -> Value {
        let rv = self.next_resource_version();
        managed.stamp(&mut object);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let previous = self
            .objects
            .insert(
                key.clone(),
                Stored {
                    object: object.clone(),
                    managed,
                },
            )
            .map(|s| s.object);
        self.track(&key, Some(&object));
        self.emit(Change {
            resource_version: rv,
            key,
            kind: ChangeKind::Modified,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Removes an object (its last state is `last`, or the stored one), emits DELETED and
    /// queues its UID for garbage collection.
    pub fn remove(&mut self, key: &ObjectKey, last: Option<Value>) -> Option<Value> {
        let stored = self.objects.remove(key)?;
        self.track(key, None);
        let rv = self.next_resource_version();
        let mut object = last.unwrap_or(stored.object);
        stored.managed.stamp(&mut object);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
            self.gc_queue.push(uid.to_string());
        }
        self.emit(Change {
            resource_version: rv,
            key: key.clone(),
            kind: ChangeKind::Deleted,
            object: object.clone(),
            previous: None,
        });
        Some(object)
    }

    /// Keeps `deleting` and `crds_changed` up to date with a write of `key` (`None`: removed),
    /// so the garbage collector after each request does nothing when nothing is pending.
    fn track(&mut self, key: &ObjectKey, object: Option<&Value>) {
        if object.is_some_and(super::commit::is_deleting) {
            self.deleting.insert(key.clone());
        } else {
            self.deleting.remove(key);
        }
        if super::crds::is_crd(key) {
            self.crds_changed = true;
        }
    }

    fn emit(&mut self, change: Change) {
        watch::deliver(&mut self.watchers, &change);
        self.history.push(change);
    }

    /// Forgets the history: watches from any older resourceVersion now get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_at = self.resource_version;
    }
}
