//! The request log: every request the fake received, classified the way RBAC classifies it
//! (verb, group, resource, namespace, name, subresource), for assertions.

use serde_json::Value;

use super::FakeApi;

/// The API verb of a request (RBAC's vocabulary, plus `Discovery` for `/api`, `/apis`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`.
    Discovery,
    /// A method the API does not serve (answered 405) or a path it does not know (404).
    Other,
}

impl Verb {
    /// The verb as RBAC spells it (`get`, `list`, ..., `deletecollection`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Discovery => "discovery",
            Verb::Other => "other",
        }
    }
}

/// When a request reached the server, set by a transport in front of the fake (e.g. the HTTP
/// server, before the request waits for the fake's lock) as a request extension.
#[derive(Clone, Copy, Debug)]
pub struct ReceivedAt(pub std::time::Instant);

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: http::Method,
    /// Path without the query string.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    pub verb: Verb,
    /// API group (`""` for core); empty for discovery.
    pub group: String,
    pub version: String,
    /// Resource plural (`configmaps`); empty for discovery.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    /// `dryRun=All` in the query (or, for DELETE, in the body's DeleteOptions).
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `propagationPolicy` of a DELETE, from the query or the DeleteOptions body.
    pub propagation_policy: Option<String>,
    /// The body, when it parsed as JSON (or YAML for apply patches).
    pub body: Option<Value>,
    /// The `User-Agent` header, which tells apart clients sharing one server.
    pub user_agent: Option<String>,
    /// When the fake received it ([`ReceivedAt`] when the transport set it).
    pub received: std::time::Instant,
}

impl RecordedRequest {
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The request log, for tests.
impl FakeApi {
    /// Every request received since the start or the last [`FakeApi::clear_requests`].
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests had this verb on this resource plural (any group, any namespace).
    pub fn count(&self, verb: Verb, resource: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    /// How many discovery requests (`/api`, `/apis`, group versions, `/version`) were made.
    pub fn discovery_count(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.verb == Verb::Discovery)
            .count()
    }

    /// Arrival time, user agent, verb and resource (the path, for requests that name no
    /// resource, such as discovery) of every request in the log, without copying bodies
    /// (cheap enough to call on a log of many thousands of writes).
    pub fn request_summaries(&self) -> Vec<(std::time::Instant, String, Verb, String)> {
        self.lock()
            .requests
            .iter()
            .map(|r| {
                let resource = if r.resource.is_empty() {
                    r.path.clone()
                } else {
                    r.resource.clone()
                };
                (
                    r.received,
                    r.user_agent.clone().unwrap_or_default(),
                    r.verb,
                    resource,
                )
            })
            .collect()
    }

    /// The creates, updates and patches (not dry runs) of these resource plurals, in the order
    /// they reached the fake, bodies included; copies only those records.
    pub fn writes_of(&self, resources: &[&str]) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| {
                matches!(r.verb, Verb::Create | Verb::Update | Verb::Patch)
                    && !r.dry_run
                    && resources.contains(&r.resource.as_str())
            })
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}
