//! Injected failures: error answers (403, 429, 500, 503, 504, ...) and transport errors for
//! requests that match a `Matcher`, once or until cleared; plus per-request latency.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::FakeApi;
use super::requests::{RecordedRequest, Verb};
use super::status::ApiError;

/// Selects requests; every criterion left unset matches anything.
///
/// ```ignore
/// Matcher::any().verb(Verb::Get).resource("configmaps").namespace("default").name("x")
/// ```
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    verb: Option<Verb>,
    group: Option<String>,
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<Option<String>>,
    cluster_scope: bool,
}

impl Matcher {
    /// Matches every request (discovery included).
    pub fn any() -> Self {
        Matcher::default()
    }

    #[must_use]
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// API group (`""` for core).
    #[must_use]
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Resource plural, e.g. `configmaps`.
    #[must_use]
    pub fn resource(mut self, plural: &str) -> Self {
        self.resource = Some(plural.into());
        self
    }

    #[must_use]
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only requests to this subresource (e.g. `status`).
    #[must_use]
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(Some(subresource.into()));
        self
    }

    /// Only requests to the main resource, not to a subresource.
    /// Only requests at cluster scope (no namespace in the path).
    #[must_use]
    pub fn cluster_scope(mut self) -> Self {
        self.cluster_scope = true;
        self
    }

    #[must_use]
    pub fn main_resource(mut self) -> Self {
        self.subresource = Some(None);
        self
    }

    pub fn matches(&self, req: &RecordedRequest) -> bool {
        self.verb.is_none_or(|v| v == req.verb)
            && (!self.cluster_scope || req.namespace.is_none())
            && self.group.as_ref().is_none_or(|g| *g == req.group)
            && self.resource.as_ref().is_none_or(|r| *r == req.resource)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| Some(n) == req.namespace.as_ref())
            && self
                .name
                .as_ref()
                .is_none_or(|n| Some(n) == req.name.as_ref())
            && self
                .subresource
                .as_ref()
                .is_none_or(|s| *s == req.subresource)
    }
}

/// What a matched request gets instead of its answer.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeError {
    /// An error answer with a `Status` body.
    Status {
        code: u16,
        reason: String,
        message: String,
        retry_after_seconds: Option<u32>,
    },
    /// 403 Forbidden worded as RBAC words it for the matched request and the fake's user
    /// (see [`FakeApi::set_user`]).
    Forbidden,
    /// The transport fails: the service returns `Err` and kube reports `Error::Service`.
    Connection(String),
}

impl FakeError {
    pub fn status(code: u16, reason: &str, message: &str) -> Self {
        FakeError::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    /// 403 with the RBAC message for the request, e.g. `configmaps "x" is forbidden: User
    /// "system:serviceaccount:default:default" cannot get resource "configmaps" in API group ""
    /// in the namespace "default"`.
    pub fn forbidden() -> Self {
        FakeError::Forbidden
    }

    /// 500 `Internal error occurred: <detail>`.
    pub fn internal(detail: &str) -> Self {
        FakeError::status(
            500,
            "InternalError",
            &format!("Internal error occurred: {detail}"),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable() -> Self {
        FakeError::status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        )
    }

    /// 429 TooManyRequests with a `Retry-After` header (API priority and fairness).
    pub fn too_many_requests(retry_after_seconds: u32) -> Self {
        FakeError::Status {
            code: 429,
            reason: "TooManyRequests".into(),
            message: "Too many requests, please try again later.".into(),
            retry_after_seconds: Some(retry_after_seconds),
        }
    }

    /// 504 Timeout.
    pub fn timeout() -> Self {
        FakeError::status(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
        )
    }

    /// A transport failure (connection refused, reset, ...).
    pub fn connection(message: &str) -> Self {
        FakeError::Connection(message.into())
    }
}

pub(crate) struct Fault {
    matcher: Matcher,
    error: FakeError,
    /// `None`: until cleared.
    remaining: Option<usize>,
}

/// What an injected fault turns a request into.
pub(crate) enum Injected {
    Answer(ApiError),
    Connection(String),
}

/// Consumes the first fault matching `req`, if any.
pub(crate) fn take(faults: &mut Vec<Fault>, req: &RecordedRequest, user: &str) -> Option<Injected> {
    let index = faults.iter().position(|f| f.matcher.matches(req))?;
    let error = faults[index].error.clone();
    if let Some(remaining) = &mut faults[index].remaining {
        *remaining -= 1;
        if *remaining == 0 {
            faults.remove(index);
        }
    }
    Some(match error {
        FakeError::Connection(message) => Injected::Connection(message),
        FakeError::Forbidden => Injected::Answer(forbidden(req, user)),
        FakeError::Status {
            code,
            reason,
            message,
            retry_after_seconds,
        } => {
            let mut err = ApiError::new(code, &reason, message);
            if let Some(secs) = retry_after_seconds {
                err.retry_after = Some(secs);
                err.details = Some(json!({"retryAfterSeconds": secs}));
            }
            Injected::Answer(err)
        }
    })
}

/// The RBAC denial for a request, worded as the API server's authorizer words it.
pub(crate) fn forbidden(req: &RecordedRequest, user: &str) -> ApiError {
    let qualified = if req.group.is_empty() {
        req.resource.clone()
    } else {
        format!("{}.{}", req.resource, req.group)
    };
    let subject = match &req.name {
        Some(name) => format!("{qualified} \"{name}\""),
        None => qualified,
    };
    let resource = match &req.subresource {
        Some(sub) => format!("{}/{sub}", req.resource),
        None => req.resource.clone(),
    };
    let scope = match &req.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        req.verb.as_str(),
        req.group
    );
    let mut details = Map::new();
    if let Some(name) = &req.name {
        details.insert("name".into(), json!(name));
    }
    if !req.group.is_empty() {
        details.insert("group".into(), json!(req.group));
    }
    details.insert("kind".into(), json!(req.resource));
    ApiError::new(403, "Forbidden", message).with_details(Value::Object(details))
}

/// Fault injection, for tests.
impl FakeApi {
    /// The next request matching `matcher` fails with `error`.
    pub fn fail_next(&self, matcher: Matcher, error: FakeError) {
        self.fail_times(matcher, error, 1);
    }

    /// The next `times` requests matching `matcher` fail with `error`.
    pub fn fail_times(&self, matcher: Matcher, error: FakeError, times: usize) {
        if times > 0 {
            self.lock().faults.push(Fault {
                matcher,
                error,
                remaining: Some(times),
            });
        }
    }

    /// Every request matching `matcher` fails with `error` until [`FakeApi::clear_faults`].
    pub fn fail_always(&self, matcher: Matcher, error: FakeError) {
        self.lock().faults.push(Fault {
            matcher,
            error,
            remaining: None,
        });
    }

    /// RBAC denial: `verb` on `group`/`resource` (in `namespace`, or anywhere) answers 403
    /// Forbidden with the authorizer's message, until [`FakeApi::clear_faults`].
    pub fn deny(&self, verb: Verb, group: &str, resource: &str, namespace: Option<&str>) {
        let mut matcher = Matcher::any().verb(verb).group(group).resource(resource);
        if let Some(ns) = namespace {
            matcher = matcher.namespace(ns);
        }
        self.fail_always(matcher, FakeError::forbidden());
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every request waits this long (on tokio's clock, so paused-time tests stay fast) before
    /// it is handled; `None` removes the delay.
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.lock().latency = latency;
    }

    /// The user named in RBAC denial messages (default
    /// `system:serviceaccount:default:default`).
    pub fn set_user(&self, user: &str) {
        self.lock().user = user.to_string();
    }
}
