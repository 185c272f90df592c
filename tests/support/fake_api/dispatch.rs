//! Routes one request: classifies and records it, injects faults, calls the handler for its
//! verb, then lets the simulated controllers settle.

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::authz;
use super::commit::Ownership;
use super::create;
use super::delete::{self, DeleteOptions};
use super::discovery;
use super::faults::{self, Injected};
use super::gc;
use super::media::{self, Representation};
use super::patch;
use super::read;
use super::requests::{RecordedRequest, Verb};
use super::route::{self, Query, ResourcePath, Route};
use super::status::ApiError;
use super::store::State;
use super::update;
use super::watch::{self, WatchStream};

/// A request, read off the wire.
pub(crate) struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: Query,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub received: Option<std::time::Instant>,
    pub body: Bytes,
}

/// A JSON answer.
pub(crate) struct JsonReply {
    pub code: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) enum Reply {
    Json(JsonReply),
    Watch(WatchStream),
}

pub(crate) enum Outcome {
    Reply(Reply),
    /// The transport fails.
    Connection(String),
}

fn json(code: u16, body: Value) -> Reply {
    Reply::Json(JsonReply {
        code,
        body,
        headers: vec![],
    })
}

fn error(err: &ApiError) -> Reply {
    let mut headers = vec![];
    if let Some(secs) = err.retry_after {
        headers.push(("retry-after", secs.to_string()));
    }
    Reply::Json(JsonReply {
        code: err.code,
        body: err.to_status(),
        headers,
    })
}

fn verb_of(method: &Method, route: Option<&Route>, query: &Query) -> Verb {
    let Some(route) = route else {
        return Verb::Other;
    };
    let Route::Resource(p) = route else {
        return if *method == Method::GET {
            Verb::Discovery
        } else {
            Verb::Other
        };
    };
    match (method.as_str(), p.name.is_some()) {
        // `GET .../{name}?watch=true` watches that one object.
        ("GET", true) if query.flag("watch") => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) if query.flag("watch") => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => Verb::Other,
    }
}

fn parse_body(req: &Incoming) -> Option<Value> {
    if req.body.is_empty() {
        return None;
    }
    serde_json::from_slice(&req.body).ok().or_else(|| {
        let apply =
            media::media_type(req.content_type.as_deref()) == "application/apply-patch+yaml";
        apply
            .then(|| serde_saphyr::from_slice(&req.body).ok())
            .flatten()
    })
}

fn record(req: &Incoming, route: Option<&Route>, body: Option<&Value>) -> RecordedRequest {
    let verb = verb_of(&req.method, route, &req.query);
    let path = match route {
        Some(Route::Resource(p)) => Some(p),
        _ => None,
    };
    let delete_options = (verb == Verb::Delete || verb == Verb::DeleteCollection)
        .then(|| DeleteOptions::parse(&req.query, body));
    RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.0.clone(),
        verb,
        group: path.map(|p| p.group.clone()).unwrap_or_default(),
        version: path.map(|p| p.version.clone()).unwrap_or_default(),
        resource: path.map(|p| p.plural.clone()).unwrap_or_default(),
        namespace: path.and_then(|p| p.namespace.clone()),
        name: path.and_then(|p| p.name.clone()),
        subresource: path.and_then(|p| p.subresource.clone()),
        content_type: req.content_type.clone(),
        accept: req.accept.clone(),
        dry_run: delete_options
            .as_ref()
            .map(|o| o.dry_run)
            .unwrap_or(req.query.get("dryRun") == Some("All")),
        field_manager: req.query.get("fieldManager").map(str::to_string),
        propagation_policy: delete_options.and_then(|o| o.policy),
        body: body.cloned(),
        user_agent: req.user_agent.clone(),
        received: req.received.unwrap_or_else(std::time::Instant::now),
    }
}

pub(crate) fn handle(state: &mut State, req: Incoming) -> Outcome {
    let route = route::parse(&req.path);
    let body = parse_body(&req);
    let recorded = record(&req, route.as_ref(), body.as_ref());
    state.requests.push(recorded.clone());
    match faults::take(&mut state.faults, &recorded, &state.user) {
        Some(Injected::Connection(message)) => return Outcome::Connection(message),
        Some(Injected::Answer(err)) => return Outcome::Reply(error(&err)),
        None => {}
    }
    let reply = match route {
        None => error(&ApiError::resource_not_found()),
        Some(route) => serve(state, &req, route, recorded.verb, body).unwrap_or_else(|e| error(&e)),
    };
    gc::settle(state);
    Outcome::Reply(reply)
}

fn serve(
    state: &mut State,
    req: &Incoming,
    route: Route,
    verb: Verb,
    body: Option<Value>,
) -> Result<Reply, ApiError> {
    if verb == Verb::Other && !matches!(route, Route::Resource(_)) {
        return Err(ApiError::method_not_allowed());
    }
    let discovery = [Representation::Full, Representation::AggregatedDiscovery];
    let aggregated = |core: bool, state: &State| {
        Reply::Json(JsonReply {
            code: 200,
            body: discovery::aggregated(&state.registry, core),
            headers: vec![(
                "content-type",
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".into(),
            )],
        })
    };
    match route {
        Route::Version => Ok(json(200, discovery::version_info())),
        Route::CoreVersions => match media::negotiate(req.accept.as_deref(), &discovery)? {
            Representation::AggregatedDiscovery => Ok(aggregated(true, state)),
            _ => Ok(json(200, discovery::core_versions())),
        },
        Route::Groups => match media::negotiate(req.accept.as_deref(), &discovery)? {
            Representation::AggregatedDiscovery => Ok(aggregated(false, state)),
            _ => Ok(json(200, discovery::group_list(&state.registry))),
        },
        Route::Group(group) => discovery::group(&state.registry, &group)
            .map(|d| json(200, d))
            .ok_or_else(ApiError::resource_not_found),
        Route::Resources { group, version } => {
            discovery::resource_list(&state.registry, &group, &version)
                .map(|d| json(200, d))
                .ok_or_else(ApiError::resource_not_found)
        }
        Route::Resource(path) => resource(state, req, &path, verb, body),
    }
}

/// The field manager of a non-apply write: `fieldManager`, else the user agent's program name.
fn field_manager(req: &Incoming) -> String {
    req.query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| {
            let agent = req.user_agent.as_deref()?.split('/').next()?.trim();
            (!agent.is_empty()).then(|| agent.to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn single(representation: Representation, object: Value) -> Value {
    if representation == Representation::Partial {
        media::partial(&object)
    } else {
        object
    }
}

fn resource(
    state: &mut State,
    req: &Incoming,
    path: &ResourcePath,
    verb: Verb,
    body: Option<Value>,
) -> Result<Reply, ApiError> {
    let rt = state
        .registry
        .find(&path.group, &path.version, &path.plural)
        .cloned()
        .ok_or_else(ApiError::resource_not_found)?;
    let ns = path.namespace.as_deref();
    if !rt.namespaced && ns.is_some() {
        return Err(ApiError::resource_not_found());
    }
    if rt.namespaced && ns.is_none() && path.name.is_some() {
        return Err(ApiError::resource_not_found());
    }
    if let Some(sub) = &path.subresource
        && !rt.subresources.contains(sub)
    {
        return Err(ApiError::resource_not_found());
    }
    if path.subresource.as_deref().is_some_and(|s| s != "status") {
        // Listed in discovery but not simulated.
        return Err(ApiError::resource_not_found());
    }
    let allowed = match (verb, path.subresource.is_some()) {
        (Verb::Get | Verb::Update | Verb::Patch, true) => true,
        (_, true) => false,
        (Verb::Other, false) => false,
        (v, false) => rt.supports(v.as_str()),
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    let single_reps = [Representation::Full, Representation::Partial];
    let dry_run = req.query.get("dryRun") == Some("All");
    let require_body = || {
        body.clone()
            .ok_or_else(|| ApiError::bad_request("the request body is empty"))
    };
    let name = path.name.as_deref().unwrap_or("");
    match verb {
        Verb::Get => {
            let rep = media::negotiate(req.accept.as_deref(), &single_reps)?;
            Ok(json(200, single(rep, read::get(state, &rt, ns, name)?)))
        }
        Verb::List => {
            let rep = media::negotiate(
                req.accept.as_deref(),
                &[Representation::Full, Representation::PartialList],
            )?;
            Ok(json(200, read::list(state, &rt, ns, &req.query, rep)?))
        }
        Verb::Watch => {
            let rep = media::negotiate(req.accept.as_deref(), &single_reps)?;
            let mut query = req.query.clone();
            if let Some(name) = &path.name {
                let by_name = match query.get("fieldSelector").filter(|f| !f.is_empty()) {
                    Some(fields) => format!("{fields},metadata.name={name}"),
                    None => format!("metadata.name={name}"),
                };
                query.0.retain(|(k, _)| k != "fieldSelector");
                query.0.push(("fieldSelector".into(), by_name));
            }
            let metadata_only = rep == Representation::Partial;
            Ok(Reply::Watch(watch::start(
                state,
                &rt,
                ns,
                &query,
                metadata_only,
            )?))
        }
        Verb::Create => {
            if rt.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let rep = media::negotiate(req.accept.as_deref(), &single_reps)?;
            let body = require_body()?;
            if authz::answers(&rt) {
                return Ok(json(201, authz::review(state, &rt, body)?));
            }
            let ownership = Ownership::Update {
                manager: field_manager(req),
            };
            Ok(json(
                201,
                single(
                    rep,
                    create::create(state, &rt, ns, body, ownership, dry_run)?,
                ),
            ))
        }
        Verb::Update => {
            let rep = media::negotiate(req.accept.as_deref(), &single_reps)?;
            let updated = update::replace(
                state,
                &rt,
                path,
                name,
                require_body()?,
                &field_manager(req),
                dry_run,
            )?;
            Ok(json(200, single(rep, updated)))
        }
        Verb::Patch => {
            let rep = media::negotiate(req.accept.as_deref(), &single_reps)?;
            if req.body.is_empty() {
                return Err(ApiError::bad_request("the request body is empty"));
            }
            let (code, patched) = patch::patch(
                state,
                &rt,
                path,
                name,
                req.content_type.as_deref(),
                &req.body,
                &req.query,
                &field_manager(req),
                dry_run,
            )?;
            Ok(json(code, single(rep, patched)))
        }
        Verb::Delete => {
            let options = DeleteOptions::parse(&req.query, body.as_ref());
            let (code, answer) = delete::delete(state, &rt, path, name, &options)?;
            let mut reply = JsonReply {
                code,
                body: answer,
                headers: vec![],
            };
            if rt.is("batch", "jobs") && options.policy.is_none() {
                reply.headers.push((
                    "warning",
                    "299 - \"child pods are preserved by default when jobs are deleted; set propagationPolicy=Background \
                     to remove them or set propagationPolicy=Orphan to suppress this warning\""
                        .into(),
                ));
            }
            Ok(Reply::Json(reply))
        }
        Verb::DeleteCollection => {
            let options = DeleteOptions::parse(&req.query, body.as_ref());
            Ok(json(
                200,
                delete::delete_collection(state, &rt, ns, &req.query, &options)?,
            ))
        }
        Verb::Discovery | Verb::Other => Err(ApiError::method_not_allowed()),
    }
}
