//! CustomResourceDefinitions: a stored CRD makes its kinds served (and is marked
//! `Established`); removing it stops serving them and deletes their objects, as the
//! apiextensions server does.

use serde_json::{Value, json};

use super::FakeApi;
use super::commit::{controller_write, is_deleting, str_at};
use super::resources::ResourceType;
use super::status::Cause;
use super::store::{ObjectKey, State};
use super::watch;

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";

pub(crate) fn is_crd(key: &ObjectKey) -> bool {
    key.group == CRD_GROUP && key.plural == CRD_PLURAL
}

/// The served versions of a CRD as resource types.
pub(crate) fn types_of(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let names = &spec["names"];
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let categories: Vec<String> = names["categories"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    spec["versions"]
        .as_array()
        .map(|versions| {
            versions
                .iter()
                .filter(|v| v["served"].as_bool().unwrap_or(false))
                .map(|v| ResourceType {
                    group: text(&spec["group"]),
                    version: text(&v["name"]),
                    kind: text(&names["kind"]),
                    plural: text(&names["plural"]),
                    namespaced: spec["scope"].as_str() == Some("Namespaced"),
                    subresources: if v.pointer("/subresources/status").is_some() {
                        vec!["status".into()]
                    } else {
                        vec![]
                    },
                    short_names: short_names.clone(),
                    singular: text(&names["singular"]),
                    verbs: vec![],
                    categories: categories.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The API server's rule for CRD names.
pub(crate) fn causes(crd: &Value) -> Vec<Cause> {
    let name = str_at(crd, "/metadata/name").unwrap_or("");
    let expected = format!(
        "{}.{}",
        str_at(crd, "/spec/names/plural").unwrap_or(""),
        str_at(crd, "/spec/group").unwrap_or("")
    );
    if name == expected {
        vec![]
    } else {
        vec![Cause::new(
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        )]
    }
}

fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

/// Serves the kinds of stored CRDs and stops serving those of removed ones.
pub(crate) fn reconcile(state: &mut State) -> bool {
    let mut progressed = false;
    // (key, served types, what establishing needs if not yet established); no whole-CRD clones,
    // CRDs are big and this runs after every request.
    type Pending = Option<(Value, Vec<Value>)>;
    let crds: Vec<(ObjectKey, Vec<ResourceType>, Pending)> = state
        .objects
        .iter()
        .filter(|(k, s)| is_crd(k) && !is_deleting(&s.object))
        .map(|(k, s)| {
            let crd = &s.object;
            let pending = (!established(crd)).then(|| {
                let storage: Vec<Value> = crd["spec"]["versions"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .filter(|v| v["storage"] == true)
                            .map(|v| v["name"].clone())
                            .collect()
                    })
                    .unwrap_or_default();
                (crd["spec"]["names"].clone(), storage)
            });
            (k.clone(), types_of(crd), pending)
        })
        .collect();
    for (key, types, pending) in &crds {
        if state.crd_types.get(&key.name) != Some(types) {
            let previous = state
                .crd_types
                .insert(key.name.clone(), types.clone())
                .unwrap_or_default();
            for old in previous.iter().filter(|t| !types.contains(t)) {
                state
                    .registry
                    .unregister(&old.group, &old.version, &old.plural);
            }
            for t in types {
                state.registry.register(t.clone());
            }
            progressed = true;
        }
        if let Some((names, storage)) = pending {
            let now = state.clock.now_rfc3339();
            progressed |= controller_write(state, key, "kube-apiserver", "status", |o| {
                o["status"] = json!({
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
                        {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
                    ],
                    "acceptedNames": names,
                    "storedVersions": storage,
                });
            });
        }
    }
    let gone: Vec<String> = state
        .crd_types
        .keys()
        .filter(|name| !crds.iter().any(|(k, _, _)| &k.name == *name))
        .cloned()
        .collect();
    for name in gone {
        for t in state.crd_types.remove(&name).unwrap_or_default() {
            state.registry.unregister(&t.group, &t.version, &t.plural);
            if !state.registry.serves(&t.group, &t.plural) {
                let keys: Vec<ObjectKey> = state
                    .objects
                    .keys()
                    .filter(|k| k.group == t.group && k.plural == t.plural)
                    .cloned()
                    .collect();
                for k in keys {
                    state.remove(&k, None);
                }
            }
        }
        watch::close_unserved(state);
        progressed = true;
    }
    progressed
}

/// Registration of kinds, for tests.
impl FakeApi {
    /// Serves a kind (replacing one with the same group, version and plural), as if its CRD
    /// had been installed, without storing a CRD object.
    pub fn register(&self, rt: ResourceType) {
        self.lock().registry.register(rt);
    }

    /// Stops serving a kind; when no version of it is served any more its objects are dropped
    /// and watches on it end. Returns whether it was served.
    pub fn unregister(&self, group: &str, version: &str, plural: &str) -> bool {
        let mut state = self.lock();
        let found = state.registry.unregister(group, version, plural).is_some();
        if !state.registry.serves(group, plural) {
            state
                .objects
                .retain(|k, _| !(k.group == group && k.plural == plural));
        }
        watch::close_unserved(&mut state);
        found
    }

    /// Stores a CRD (e.g. `Widget::crd()` from kube-derive): its served versions become
    /// served kinds, and the CRD gets `Established` status, as on a real server.
    #[track_caller]
    pub fn install_crd(&self, crd: &impl serde::Serialize) -> Value {
        self.put(crd)
    }
}
