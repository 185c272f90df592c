//! A minimal Lease-only API for the leader election fault tests, for what the shared fake
//! (`tests/support/fake_api`) does not offer: requests that never get an answer, writes that
//! land but whose answer is lost, answers delayed after the write, a fault decided per request
//! by a closure, and named clients so one replica can be cut off (a network partition).
//!
//! Leases behave as on the API server: create answers 409 AlreadyExists, an update with a stale
//! resourceVersion answers 409 Conflict. Time is tokio's, so tests run on a paused clock.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use tokio::time::Instant;

/// What the fake should do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Serve it normally.
    None,
    /// Answer with this HTTP status and a `Status` body, changing nothing.
    Status(u16),
    /// Wait, then serve it (the change lands late).
    DelayBefore(Duration),
    /// Serve it, then wait before answering (the change lands early, the answer late).
    DelayAfter(Duration),
    /// Never answer, change nothing.
    Hang,
    /// Apply the change, then never answer (the caller cannot know it landed).
    ApplyThenHang,
}

/// One request as the fault injector sees it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Name of the client that sent it.
    pub client: String,
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Body as JSON (`Null` if none).
    pub body: Value,
}

/// One served request.
#[derive(Clone, Debug)]
pub struct Call {
    /// The request.
    pub request: RequestInfo,
    /// When it arrived (tokio clock).
    pub at: Instant,
    /// Status returned, or `None` if it was never answered.
    pub status: Option<u16>,
}

type Injector = Box<dyn FnMut(&RequestInfo) -> Fault + Send>;

#[derive(Default)]
struct State {
    leases: BTreeMap<(String, String), Value>,
    next_version: u64,
    partitioned: HashSet<String>,
    injector: Option<Injector>,
    calls: Vec<Call>,
    unconditional_updates: usize,
}

/// The fake API server. Clones share state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    pub fn new() -> Self {
        FakeApi::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client whose requests are tagged `name`.
    pub fn client(&self, name: &str) -> kube::Client {
        let fake = self.clone();
        let name = name.to_string();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let fake = fake.clone();
            let name = name.clone();
            async move { Ok::<_, Infallible>(fake.handle(&name, request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Decides the fault for every request from now on (replacing any previous injector).
    pub fn inject(&self, injector: impl FnMut(&RequestInfo) -> Fault + Send + 'static) {
        self.lock().injector = Some(Box::new(injector));
    }

    /// Serves every request normally again.
    pub fn heal(&self) {
        self.lock().injector = None;
    }

    /// Cuts `client` off (its requests hang) or reconnects it.
    pub fn partition(&self, client: &str, cut: bool) {
        let mut state = self.lock();
        if cut {
            state.partitioned.insert(client.to_string());
        } else {
            state.partitioned.remove(client);
        }
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many requests matched `filter`.
    pub fn count(&self, filter: impl Fn(&Call) -> bool) -> usize {
        self.lock().calls.iter().filter(|c| filter(c)).count()
    }

    /// Lease updates that carried no resourceVersion (the API server accepts them for Leases,
    /// but an elector must never send one).
    pub fn unconditional_updates(&self) -> usize {
        self.lock().unconditional_updates
    }

    /// The stored Lease, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        let state = self.lock();
        let value = state
            .leases
            .get(&(namespace.to_string(), name.to_string()))?;
        serde_json::from_value(value.clone()).ok()
    }

    /// Stores `lease` as if someone else had written it.
    pub fn put_lease(&self, namespace: &str, lease: &Lease) {
        let mut state = self.lock();
        let mut value = serde_json::to_value(lease).unwrap_or(Value::Null);
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        value["metadata"]["namespace"] = json!(namespace);
        state.next_version += 1;
        value["metadata"]["resourceVersion"] = json!(state.next_version.to_string());
        state.leases.insert((namespace.to_string(), name), value);
    }

    async fn handle(
        &self,
        client: &str,
        request: Request<kube::client::Body>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let info = RequestInfo {
            client: client.to_string(),
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        let (fault, index) = {
            let mut state = self.lock();
            let fault = if state.partitioned.contains(client) {
                Fault::Hang
            } else {
                match state.injector.as_mut() {
                    Some(injector) => injector(&info),
                    None => Fault::None,
                }
            };
            state.calls.push(Call {
                request: info.clone(),
                at: Instant::now(),
                status: None,
            });
            (fault, state.calls.len() - 1)
        };
        let response = match fault {
            Fault::None => self.serve(&info).await,
            Fault::Status(code) => status(code, "Injected", "injected failure"),
            Fault::DelayBefore(delay) => {
                tokio::time::sleep(delay).await;
                self.serve(&info).await
            }
            Fault::DelayAfter(delay) => {
                let response = self.serve(&info).await;
                tokio::time::sleep(delay).await;
                response
            }
            Fault::Hang => std::future::pending().await,
            Fault::ApplyThenHang => {
                let _ = self.serve(&info).await;
                std::future::pending().await
            }
        };
        if let Some(call) = self.lock().calls.get_mut(index) {
            call.status = Some(response.status().as_u16());
        }
        response
    }

    async fn serve(&self, info: &RequestInfo) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = info.path.trim_matches('/').split('/').collect();
        match (&info.method, segments.as_slice()) {
            (
                method,
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "leases",
                    rest @ ..,
                ],
            ) => self.leases(method, ns, rest.first().copied(), &info.body),
            _ => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        }
    }

    fn leases(
        &self,
        method: &Method,
        ns: &str,
        name: Option<&str>,
        body: &Value,
    ) -> Response<Full<Bytes>> {
        let mut state = self.lock();
        match (method, name) {
            (&Method::GET, Some(name)) => {
                match state.leases.get(&(ns.to_string(), name.to_string())) {
                    Some(lease) => ok(lease.clone()),
                    None => status(404, "NotFound", &format!("leases \"{name}\" not found")),
                }
            }
            (&Method::POST, None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let key = (ns.to_string(), name.clone());
                if state.leases.contains_key(&key) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("leases \"{name}\" already exists"),
                    );
                }
                state.next_version += 1;
                let mut lease = body.clone();
                lease["metadata"]["namespace"] = json!(ns);
                lease["metadata"]["resourceVersion"] = json!(state.next_version.to_string());
                lease["metadata"]["uid"] = json!(format!("uid-{name}"));
                state.leases.insert(key, lease.clone());
                created(lease)
            }
            (&Method::PUT, Some(name)) => {
                let key = (ns.to_string(), name.to_string());
                let Some(stored) = state.leases.get(&key) else {
                    return status(404, "NotFound", &format!("leases \"{name}\" not found"));
                };
                match body["metadata"]["resourceVersion"].as_str() {
                    None => state.unconditional_updates += 1,
                    Some(sent) if Some(sent) != stored["metadata"]["resourceVersion"].as_str() => {
                        return status(
                            409,
                            "Conflict",
                            &format!(
                                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                        );
                    }
                    Some(_) => {}
                }
                state.next_version += 1;
                let mut lease = body.clone();
                lease["metadata"]["namespace"] = json!(ns);
                lease["metadata"]["resourceVersion"] = json!(state.next_version.to_string());
                state.leases.insert(key, lease.clone());
                ok(lease)
            }
            _ => status(405, "MethodNotAllowed", "method not allowed"),
        }
    }
}

fn respond(code: u16, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    respond(200, body)
}

fn created(body: Value) -> Response<Full<Bytes>> {
    respond(201, body)
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code
        }),
    )
}

/// A small deterministic random source for randomized tests (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform duration in [0, max).
    pub fn duration(&mut self, max: Duration) -> Duration {
        max.mul_f64(self.unit())
    }
}
