//! WATCH: newline-delimited `{"type": ..., "object": ...}` events streamed from the change
//! history and then live, with the API server's resourceVersion, selector and bookmark rules.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::FakeApi;
use super::media;
use super::resources::ResourceType;
use super::route::Query;
use super::selector::{FieldSelector, LabelSelector, supported_fields};
use super::status::ApiError;
use super::store::{Change, ChangeKind, State};

/// One open watch.
pub(crate) struct Watcher {
    group: String,
    plural: String,
    api_version: String,
    kind: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    metadata_only: bool,
    bookmarks: bool,
    /// Stays open but delivers nothing (see [`FakeApi::mute_watches`]).
    muted: bool,
    tx: UnboundedSender<Bytes>,
}

/// What a watch request opens: the event stream and when the server ends it.
pub(crate) struct WatchStream {
    pub events: UnboundedReceiver<Bytes>,
    pub timeout: Option<Duration>,
}

impl Watcher {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event this watcher sees for a change, if any: objects moving into or out of the
    /// selection are ADDED or DELETED, as the API server reports them.
    fn translate<'a>(&self, change: &'a Change) -> Option<(&'static str, &'a Value)> {
        if change.key.group != self.group || change.key.plural != self.plural {
            return None;
        }
        if self
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != change.key.namespace)
        {
            return None;
        }
        let now = self.selects(&change.object);
        let event = match change.kind {
            ChangeKind::Added => now.then_some("ADDED"),
            ChangeKind::Deleted => now.then_some("DELETED"),
            ChangeKind::Modified => {
                let before = change.previous.as_ref().is_some_and(|p| self.selects(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some((event, &change.object))
    }

    fn line(&self, event: &str, object: &Value) -> Bytes {
        let mut object = object.clone();
        object["apiVersion"] = json!(self.api_version);
        if self.metadata_only {
            object = media::partial(&object);
        }
        encode(event, &object)
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata =
            json!({"resourceVersion": resource_version.to_string(), "creationTimestamp": null});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (api_version, kind) = if self.metadata_only {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            )
        } else {
            (self.api_version.clone(), self.kind.clone())
        };
        encode(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }

    fn send(&self, line: Bytes) -> bool {
        self.tx.send(line).is_ok()
    }
}

fn encode(event: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn expired(from: u64, oldest: u64) -> Bytes {
    let status = ApiError::new(
        410,
        "Expired",
        format!("too old resource version: {from} ({oldest})"),
    )
    .to_status();
    encode("ERROR", &status)
}

/// Sends a change to every watcher that selects it; forgets watchers whose client went away.
pub(crate) fn deliver(watchers: &mut Vec<Watcher>, change: &Change) {
    watchers.retain(|w| match w.translate(change) {
        Some((event, object)) if !w.muted => w.send(w.line(event, object)),
        _ => !w.tx.is_closed(),
    });
}

/// Opens a watch on `rt` (in `namespace`, or all namespaces).
pub(crate) fn start(
    state: &mut State,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    metadata_only: bool,
) -> Result<WatchStream, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or(""),
        &supported_fields(&rt.group, &rt.plural),
    )
    .map_err(ApiError::bad_request)?;
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    if send_initial {
        let mut causes = Vec::new();
        if !bookmarks {
            causes.push(super::status::Cause::new(
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if query.get("resourceVersionMatch") != Some("NotOlderThan") {
            causes.push(super::status::Cause::new(
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_kind(
                "ListOptions.meta.k8s.io",
                "meta.k8s.io",
                "ListOptions",
                "",
                causes,
            ));
        }
    }
    // `timeoutSeconds=0` (or none) means the server's own, long, request timeout.
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => match t.parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "invalid timeoutSeconds {t:?}"
                )));
            }
        },
        None => None,
    };
    let (tx, events) = unbounded_channel();
    let watcher = Watcher {
        group: rt.group.clone(),
        plural: rt.plural.clone(),
        api_version: rt.api_version(),
        kind: rt.kind.clone(),
        namespace: if rt.namespaced {
            namespace.map(str::to_string)
        } else {
            None
        },
        labels,
        fields,
        metadata_only,
        bookmarks,
        muted: false,
        tx,
    };
    let from = query.get("resourceVersion").unwrap_or("");
    if from.is_empty() || from == "0" || send_initial {
        // "Any"/"most recent" semantics: synthetic ADDED events for the current state.
        for (key, stored) in &state.objects {
            let change = Change {
                resource_version: 0,
                key: key.clone(),
                kind: ChangeKind::Added,
                object: stored.object.clone(),
                previous: None,
            };
            if let Some((event, object)) = watcher.translate(&change) {
                watcher.send(watcher.line(event, object));
            }
        }
        if send_initial {
            watcher.send(watcher.bookmark(state.resource_version(), true));
        }
    } else {
        let from: u64 = from
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version {from:?}")))?;
        if from < state.compacted_at {
            watcher.send(expired(from, state.compacted_at));
            return Ok(WatchStream { events, timeout });
        }
        for change in state.history.iter().filter(|c| c.resource_version > from) {
            if let Some((event, object)) = watcher.translate(change) {
                watcher.send(watcher.line(event, object));
            }
        }
    }
    state.watchers.push(watcher);
    Ok(WatchStream { events, timeout })
}

/// Open watches, for tests.
impl FakeApi {
    /// Ends every open watch cleanly, as the API server does at its request timeout; clients
    /// re-watch from their last resourceVersion.
    pub fn close_watches(&self) {
        self.lock().watchers.clear();
    }

    /// Sends `410 Expired` to every open watch and ends it, as the API server does when a
    /// watcher falls behind its history window; kube-runtime watchers re-list.
    pub fn expire_watches(&self) {
        let mut state = self.lock();
        let oldest = state.resource_version();
        for w in state.watchers.drain(..) {
            w.send(expired(0, oldest));
        }
    }

    /// Sends a BOOKMARK with the current resourceVersion to watches that allowed bookmarks.
    pub fn send_bookmarks(&self) {
        let mut state = self.lock();
        let rv = state.resource_version();
        state
            .watchers
            .retain(|w| !w.bookmarks || w.send(w.bookmark(rv, false)));
    }

    /// Makes the open watches of `plural` stay open but silently deliver nothing from now on,
    /// as a stuck proxy or a lost event would; watches opened later are not affected.
    pub fn mute_watches(&self, plural: &str) {
        for w in self.lock().watchers.iter_mut() {
            if w.plural == plural {
                w.muted = true;
            }
        }
    }

    /// Number of open watches (whose client is still reading).
    pub fn open_watches(&self) -> usize {
        let mut state = self.lock();
        state.watchers.retain(|w| !w.tx.is_closed());
        state.watchers.len()
    }

    /// Forgets the change history: a watch from any resourceVersion older than the current one
    /// gets a `410 Expired` ERROR event (what etcd compaction does to a real server).
    pub fn compact(&self) {
        self.lock().compact();
    }
}

/// Closes watches on resources that are no longer served.
pub(crate) fn close_unserved(state: &mut State) {
    let State {
        watchers, registry, ..
    } = state;
    watchers.retain(|w| registry.serves(&w.group, &w.plural));
}
