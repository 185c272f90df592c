//! Field ownership (`metadata.managedFields`), the bookkeeping behind server-side apply:
//! which manager set which leaf field, apply conflicts, and which fields an applier dropped.
//!
//! Granularity: every leaf of nested maps is a field; lists are atomic (owned and replaced as
//! a whole, also the ones the real server merges by key, such as `conditions`).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub(crate) type FieldPath = Vec<String>;

/// Metadata the server owns; never tracked as anyone's field.
const SERVER_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub subresource: String,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

/// A field applied by `manager` that another manager owns with a different value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Conflict {
    pub entry: usize,
    pub manager: String,
    pub api_version: String,
    pub path: FieldPath,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ManagedFields(pub Vec<Entry>);

/// The tracked leaf fields of an object (everything but type meta and server-owned metadata).
pub(crate) fn tracked_leaves(object: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    if let Some(map) = object.as_object() {
        for (key, value) in map {
            if key == "apiVersion" || key == "kind" {
                continue;
            }
            let path = vec![key.clone()];
            if key == "metadata" {
                if let Some(meta) = value.as_object() {
                    for (k, v) in meta
                        .iter()
                        .filter(|(k, _)| !SERVER_METADATA.contains(&k.as_str()))
                    {
                        collect(v, vec![key.clone(), k.clone()], &mut out);
                    }
                }
                continue;
            }
            collect(value, path, &mut out);
        }
    }
    out
}

fn collect(value: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut child = path.clone();
                child.push(k.clone());
                collect(v, child, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

pub(crate) fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |v, key| v.as_object()?.get(key))
}

pub(crate) fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for key in parents {
        match current.as_object_mut().and_then(|m| m.get_mut(key)) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
}

/// One path is the other or lies inside it.
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl ManagedFields {
    fn position(&self, manager: &str, operation: Operation, subresource: &str) -> Option<usize> {
        self.0.iter().position(|e| {
            e.manager == manager && e.operation == operation && e.subresource == subresource
        })
    }

    fn entry_mut(
        &mut self,
        manager: &str,
        operation: Operation,
        subresource: &str,
        api_version: &str,
    ) -> &mut Entry {
        let index = match self.position(manager, operation, subresource) {
            Some(i) => i,
            None => {
                self.0.push(Entry {
                    manager: manager.to_string(),
                    operation,
                    subresource: subresource.to_string(),
                    api_version: api_version.to_string(),
                    time: String::new(),
                    fields: BTreeSet::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[index]
    }

    /// Records a non-apply write (create, update, patch): `manager` takes every field whose
    /// value it changed, away from whoever owned it.
    pub fn record_update(
        &mut self,
        manager: &str,
        subresource: &str,
        api_version: &str,
        time: &str,
        old: Option<&Value>,
        new: &Value,
    ) {
        let changed: BTreeSet<FieldPath> = tracked_leaves(new)
            .into_iter()
            .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
            .collect();
        if !changed.is_empty() {
            for entry in &mut self.0 {
                entry
                    .fields
                    .retain(|p| !changed.iter().any(|c| overlaps(c, p)));
            }
            let entry = self.entry_mut(manager, Operation::Update, subresource, api_version);
            entry.fields.extend(changed);
            entry.time = time.to_string();
            entry.api_version = api_version.to_string();
        }
        self.forget_missing(new);
    }

    /// Fields in `applied` that other managers own with a different value in `current`.
    pub fn conflicts(
        &self,
        manager: &str,
        subresource: &str,
        current: &Value,
        applied: &Value,
        applied_leaves: &BTreeSet<FieldPath>,
    ) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (index, entry) in self.0.iter().enumerate() {
            let own = entry.manager == manager
                && entry.operation == Operation::Apply
                && entry.subresource == subresource;
            if own {
                continue;
            }
            for path in applied_leaves {
                // Owning the field itself or something inside it; owning only an enclosing
                // map (set empty by someone) does not make its new children conflict.
                let owned = entry.fields.iter().any(|p| p.starts_with(path));
                if owned && value_at(current, path) != value_at(applied, path) {
                    out.push(Conflict {
                        entry: index,
                        manager: entry.manager.clone(),
                        api_version: entry.api_version.clone(),
                        path: path.clone(),
                    });
                }
            }
        }
        out
    }

    /// Fields `manager` applied last time (on this subresource).
    pub fn applied_by(&self, manager: &str, subresource: &str) -> BTreeSet<FieldPath> {
        self.position(manager, Operation::Apply, subresource)
            .map(|i| self.0[i].fields.clone())
            .unwrap_or_default()
    }

    /// Does anyone but `manager`'s apply own `path` (or something inside it)?
    pub fn owned_by_others(&self, manager: &str, subresource: &str, path: &[String]) -> bool {
        self.0.iter().any(|e| {
            let own = e.manager == manager
                && e.operation == Operation::Apply
                && e.subresource == subresource;
            !own && e.fields.iter().any(|p| p.starts_with(path))
        })
    }

    /// Records an apply: `manager` now owns exactly `leaves`; forced conflicts lose their owner.
    #[allow(clippy::too_many_arguments)]
    pub fn record_apply(
        &mut self,
        manager: &str,
        subresource: &str,
        api_version: &str,
        time: &str,
        leaves: BTreeSet<FieldPath>,
        taken: &[Conflict],
        new: &Value,
    ) {
        for conflict in taken {
            if let Some(entry) = self.0.get_mut(conflict.entry) {
                entry.fields.retain(|p| !overlaps(p, &conflict.path));
            }
        }
        let entry = self.entry_mut(manager, Operation::Apply, subresource, api_version);
        if entry.fields != leaves || entry.time.is_empty() {
            entry.time = time.to_string();
        }
        entry.fields = leaves;
        entry.api_version = api_version.to_string();
        self.forget_missing(new);
    }

    /// Drops ownership of fields that no longer exist, and managers that own nothing.
    pub fn forget_missing(&mut self, object: &Value) {
        for entry in &mut self.0 {
            entry.fields.retain(|p| value_at(object, p).is_some());
        }
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// `metadata.managedFields` as the API server renders it (FieldsV1).
    pub fn render(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|e| {
                    let mut entry = json!({
                        "manager": e.manager,
                        "operation": match e.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                        "apiVersion": e.api_version,
                        "time": e.time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": fields_v1(&e.fields),
                    });
                    if !e.subresource.is_empty() {
                        entry["subresource"] = json!(e.subresource);
                    }
                    entry
                })
                .collect(),
        )
    }

    /// Writes the rendered list into `object.metadata.managedFields` (or removes it).
    pub fn stamp(&self, object: &mut Value) {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if self.0.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), self.render());
            }
        }
    }
}

fn fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for key in path {
            let child = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            let Some(next) = child.as_object_mut() else {
                break;
            };
            node = next;
        }
    }
    Value::Object(root)
}
