//! Direct access to the stored objects for tests: inspect them, and write them as "another
//! actor" would (no admission, no validation, but with resourceVersions and watch events).

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::FakeApi;
use super::commit::str_at;
use super::gc;
use super::managed_fields::ManagedFields;
use super::resources::ResourceType;
use super::store::{ObjectKey, State};

const TEST_MANAGER: &str = "fake-api-test";

fn resolve_kind(state: &State, object: &Value) -> ResourceType {
    let api_version = str_at(object, "/apiVersion").unwrap_or("");
    let kind = str_at(object, "/kind").unwrap_or("");
    match state.registry.find_kind(api_version, kind) {
        Some(rt) => rt.clone(),
        None => panic!(
            "FakeApi: {api_version:?} {kind:?} is not served; register it first (object: {object})"
        ),
    }
}

fn resolve_plural(state: &State, api_version: &str, plural: &str) -> Option<ResourceType> {
    state.registry.find_plural(api_version, plural).cloned()
}

/// Serializes a test object, filling namespace and name for `rt`.
fn prepare(state: &mut State, object: &impl Serialize) -> (ResourceType, ObjectKey, Value) {
    let mut object = match serde_json::to_value(object) {
        Ok(v) if v.is_object() => v,
        Ok(other) => panic!("FakeApi: objects must serialize to a JSON object, got {other}"),
        Err(e) => panic!("FakeApi: object does not serialize to JSON: {e}"),
    };
    let rt = resolve_kind(state, &object);
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    let name = match (
        str_at(&object, "/metadata/name"),
        str_at(&object, "/metadata/generateName"),
    ) {
        (Some(n), _) => n.to_string(),
        (None, Some(base)) => format!("{base}{}", state.random_suffix()),
        (None, None) => {
            panic!("FakeApi: object has neither metadata.name nor generateName: {object}")
        }
    };
    object["metadata"]["name"] = json!(name);
    let namespace = if rt.namespaced {
        let ns = str_at(&object, "/metadata/namespace")
            .unwrap_or("default")
            .to_string();
        object["metadata"]["namespace"] = json!(ns);
        Some(ns)
    } else {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        None
    };
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    let key = ObjectKey::new(&rt, namespace.as_deref(), &name);
    (rt, key, object)
}

/// Object access, for tests.
impl FakeApi {
    /// Stores a new object (typed k8s-openapi / kube-derive value or `serde_json::Value`) as
    /// another actor would create it: no admission or validation; `uid`, `creationTimestamp`
    /// and `generation` are filled unless given; `metadata.namespace` defaults to `default`.
    /// Watchers see ADDED. Returns the stored object. Panics if the kind is not served or the
    /// object exists (use [`FakeApi::put`] to overwrite).
    #[track_caller]
    pub fn insert(&self, object: &impl Serialize) -> Value {
        let mut state = self.lock();
        let (rt, key, mut object) = prepare(&mut state, object);
        assert!(
            state.get(&key).is_none(),
            "FakeApi::insert: {} {:?} already exists; use put",
            rt.kind,
            key.name
        );
        let meta = &mut object["metadata"];
        if str_at(meta, "/uid").is_none() {
            meta["uid"] = json!(state.new_uid());
        }
        if str_at(meta, "/creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!(state.clock.now_rfc3339());
        }
        if meta.get("generation").is_none() {
            meta["generation"] = json!(1);
        }
        object["apiVersion"] = json!(rt.api_version());
        let now = state.clock.now_rfc3339();
        let mut managed = ManagedFields::default();
        managed.record_update(TEST_MANAGER, "", &rt.api_version(), &now, None, &object);
        let stored = state.insert_new(key, object, managed);
        gc::settle(&mut state);
        stored
    }

    /// Creates or unconditionally replaces an object, status included, as another actor
    /// would. Server-owned metadata (uid, creationTimestamp) is kept unless given; generation
    /// moves as for an update. A write that changes nothing emits nothing.
    #[track_caller]
    pub fn put(&self, object: &impl Serialize) -> Value {
        let mut state = self.lock();
        let (rt, key, mut object) = prepare(&mut state, object);
        let Some(stored) = state.get(&key).cloned() else {
            drop(state);
            return self.insert(&object);
        };
        let old = &stored.object;
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            if object["metadata"].get(field).is_none()
                && let Some(v) = old["metadata"].get(field)
            {
                object["metadata"][field] = v.clone();
            }
        }
        object["apiVersion"] = json!(rt.api_version());
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                if rt.has_status() {
                    m.remove("status");
                }
            }
            v
        };
        if strip(old) != strip(&object)
            && object["metadata"].get("generation") == old["metadata"].get("generation")
        {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            object["metadata"]["generation"] = json!(generation.saturating_add(1));
        }
        let now = state.clock.now_rfc3339();
        let mut managed = stored.managed.clone();
        managed.record_update(
            TEST_MANAGER,
            "",
            &rt.api_version(),
            &now,
            Some(old),
            &object,
        );
        managed.stamp(&mut object);
        object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if object == *old {
            return object;
        }
        let stored = state.replace(key, object, managed);
        gc::settle(&mut state);
        stored
    }

    /// Removes an object at once (finalizers ignored); watchers see DELETED and the garbage
    /// collector handles its dependents. `api_version` is e.g. `v1` or `batch/v1`.
    pub fn remove(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut state = self.lock();
        let rt = resolve_plural(&state, api_version, plural)?;
        let removed = state.remove(&ObjectKey::new(&rt, namespace, name), None);
        gc::settle(&mut state);
        removed
    }

    /// The stored object, as the API would serve it. `api_version` is e.g. `v1` or `batch/v1`.
    pub fn get_json(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let state = self.lock();
        let rt = resolve_plural(&state, api_version, plural)?;
        state
            .get(&ObjectKey::new(&rt, namespace, name))
            .map(|s| super::read::served(&rt, &s.object))
    }

    /// Stored objects of a kind in `namespace` (or all namespaces), ordered by namespace and name.
    pub fn list_json(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<Value> {
        let state = self.lock();
        let Some(rt) = resolve_plural(&state, api_version, plural) else {
            return vec![];
        };
        state
            .objects
            .iter()
            .filter(|(k, _)| k.group == rt.group && k.plural == rt.plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, s)| super::read::served(&rt, &s.object))
            .collect()
    }

    /// The stored object as a typed value (e.g. `fake.get_object::<Job>(Some("default"), "x")`).
    pub fn get_object<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let value = self.get_json(&K::api_version(&()), &K::plural(&()), namespace, name)?;
        serde_json::from_value(value).ok()
    }

    /// Stored objects of a typed kind in `namespace` (or all namespaces).
    pub fn list_objects<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list_json(&K::api_version(&()), &K::plural(&()), namespace)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version()
    }

    /// Creates a namespace if missing (`default`, `kube-system`, `kube-public` and
    /// `kube-node-lease` exist from the start).
    pub fn create_namespace(&self, name: &str) {
        self.lock().ensure_namespace(name);
    }

    /// With `false`, creating objects in namespaces that do not exist is allowed (the real
    /// server's NamespaceLifecycle admission, on by default, answers 404).
    pub fn set_namespace_lifecycle(&self, enforced: bool) {
        self.lock().namespace_lifecycle = enforced;
    }
}
