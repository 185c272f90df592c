//! Serves a [`FakeApi`] over plain HTTP/1.1 on a local socket, with a kubeconfig pointing at
//! it, so the real binary (or `run_until`) can talk to it like to a cluster.
//!
//! [`serve_http_with_stats`] adds a side channel for measurement scripts, outside the API's
//! paths: `GET /__fake/stats` answers the request log as counts (by client, verb and resource,
//! with the busiest one-second window; `?arrivals=true` adds each client's arrival times),
//! `GET /__fake/writes?resource=configmaps&resource=jobs` lists the writes of those resources
//! with their arrival times and bodies (for change→Job latency as the server sees it), and
//! `POST /__fake/reset` clears the log.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tower::Service;

use super::FakeApi;
use super::requests::ReceivedAt;

/// Accepts connections on `listener` forever, answering each request from `fake`.
pub async fn serve_http(fake: FakeApi, listener: tokio::net::TcpListener) {
    serve(fake, listener, None).await;
}

/// Like [`serve_http`], and also answers `GET /__fake/stats`, `GET /__fake/writes` and
/// `POST /__fake/reset`.
pub async fn serve_http_with_stats(fake: FakeApi, listener: tokio::net::TcpListener) {
    serve(fake, listener, Some(Arc::new(Mutex::new(Instant::now())))).await;
}

type Reply = hyper::Response<http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Infallible>>;

fn reply(status: hyper::StatusCode, body: &serde_json::Value) -> Reply {
    let mut r = hyper::Response::new(
        http_body_util::Full::new(bytes::Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Answers a side-channel request, or `None` when `request` is for the API.
fn side_channel(
    fake: &FakeApi,
    reset_at: &Mutex<Instant>,
    method: &hyper::Method,
    uri: &hyper::Uri,
) -> Option<Reply> {
    let mut since = reset_at.lock().unwrap_or_else(PoisonError::into_inner);
    match (method.as_str(), uri.path()) {
        ("GET", "/__fake/stats") => {
            let arrivals = uri
                .query()
                .unwrap_or("")
                .split('&')
                .any(|p| p == "arrivals=true" || p == "arrivals=1");
            Some(reply(hyper::StatusCode::OK, &stats(fake, *since, arrivals)))
        }
        ("GET", "/__fake/writes") => {
            let resources: Vec<&str> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|p| p.strip_prefix("resource="))
                .collect();
            Some(reply(
                hyper::StatusCode::OK,
                &writes(fake, *since, &resources),
            ))
        }
        // The API server's own request counter, as a real one exposes it at /metrics (here:
        // since the last reset, without the `code` label), so scripts read both the same way.
        ("GET", "/metrics") => {
            let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
            for (_, _, verb, resource) in fake.request_summaries() {
                *counts
                    .entry((verb.as_str().to_uppercase(), resource))
                    .or_default() += 1;
            }
            let mut text = String::from(
                "# HELP apiserver_request_total Counter of apiserver requests.\n# TYPE apiserver_request_total counter\n",
            );
            for ((verb, resource), n) in counts {
                text.push_str(&format!(
                    "apiserver_request_total{{resource=\"{resource}\",verb=\"{verb}\"}} {n}\n"
                ));
            }
            let mut r = hyper::Response::new(
                http_body_util::Full::new(bytes::Bytes::from(text))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Some(r)
        }
        ("POST", "/__fake/reset") => {
            fake.clear_requests();
            *since = Instant::now();
            Some(reply(
                hyper::StatusCode::OK,
                &serde_json::json!({"reset": true}),
            ))
        }
        (_, p) if p.starts_with("/__fake/") => Some(reply(
            hyper::StatusCode::NOT_FOUND,
            &serde_json::json!({
                "error": "GET /__fake/stats, GET /__fake/writes?resource=... or POST /__fake/reset"
            }),
        )),
        _ => None,
    }
}

/// Counts of one set of requests, and the most of them that arrived within one second.
#[derive(Default)]
struct Tally {
    total: u64,
    by_resource: BTreeMap<(String, String), u64>,
    arrivals: Vec<Instant>,
}

impl Tally {
    fn add(&mut self, at: Instant, verb: &str, resource: &str) {
        self.total += 1;
        *self
            .by_resource
            .entry((verb.to_string(), resource.to_string()))
            .or_default() += 1;
        self.arrivals.push(at);
    }

    /// Seconds from `since` to each arrival, in order.
    fn offsets(&self, since: Instant) -> Vec<f64> {
        let mut offsets: Vec<f64> = self
            .arrivals
            .iter()
            .map(|a| a.saturating_duration_since(since).as_secs_f64())
            .collect();
        offsets.sort_by(f64::total_cmp);
        offsets
    }

    fn to_json(&self) -> serde_json::Value {
        let mut arrivals = self.arrivals.clone();
        arrivals.sort();
        // Sliding window: the most arrivals in any interval of one second.
        let mut peak = 0;
        let mut start = 0;
        for end in 0..arrivals.len() {
            while arrivals[end].duration_since(arrivals[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        serde_json::json!({
            "total": self.total,
            "peak_per_second": peak,
            "requests": self.by_resource.iter().map(|((verb, resource), count)| {
                serde_json::json!({"verb": verb, "resource": resource, "count": count})
            }).collect::<Vec<_>>(),
        })
    }
}

/// The request log since `since`: overall, and per client (the program name of its
/// `User-Agent`), where the Lease (renewed by a client of its own in the operator) is also
/// tallied apart. With `arrivals`, each client also gets the arrival times (seconds since
/// `since`) of its requests other than the Lease's.
fn stats(fake: &FakeApi, since: Instant, arrivals: bool) -> serde_json::Value {
    let mut all = Tally::default();
    let mut clients: BTreeMap<String, (Tally, Tally)> = BTreeMap::new();
    for (at, agent, verb, resource) in fake.request_summaries() {
        let client = agent.split('/').next().unwrap_or("").trim().to_string();
        all.add(at, verb.as_str(), &resource);
        let (everything, without_leases) = clients.entry(client).or_default();
        everything.add(at, verb.as_str(), &resource);
        if resource != "leases" {
            without_leases.add(at, verb.as_str(), &resource);
        }
    }
    let mut answer = all.to_json();
    answer["seconds"] = serde_json::json!(since.elapsed().as_secs_f64());
    let clients: serde_json::Map<String, serde_json::Value> = clients
        .iter()
        .map(|(name, (everything, without_leases))| {
            let mut entry = everything.to_json();
            entry["peak_per_second_without_leases"] =
                without_leases.to_json()["peak_per_second"].clone();
            if arrivals {
                entry["arrivals_without_leases"] = serde_json::json!(without_leases.offsets(since));
            }
            (name.clone(), entry)
        })
        .collect();
    answer["clients"] = serde_json::Value::Object(clients);
    answer
}

/// The writes (create, update, patch; not dry runs) of `resources` since `since`, in arrival
/// order: `{"writes": [{"at": seconds since since, "verb", "resource", "namespace", "name",
/// "user_agent", "body"}]}`. A create names no object in its path; its body does.
fn writes(fake: &FakeApi, since: Instant, resources: &[&str]) -> serde_json::Value {
    let writes: Vec<serde_json::Value> = fake
        .writes_of(resources)
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "at": r.received.saturating_duration_since(since).as_secs_f64(),
                "verb": r.verb.as_str(),
                "resource": r.resource,
                "namespace": r.namespace,
                "name": r.name,
                "user_agent": r.user_agent,
                "body": r.body,
            })
        })
        .collect();
    serde_json::json!({ "writes": writes })
}

async fn serve(
    fake: FakeApi,
    listener: tokio::net::TcpListener,
    side: Option<Arc<Mutex<Instant>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let fake = fake.clone();
        let side = side.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let mut fake = fake.clone();
                let side = side.clone();
                async move {
                    let received = ReceivedAt(Instant::now());
                    if let Some(answer) = side.as_deref().and_then(|reset_at| {
                        side_channel(&fake, reset_at, request.method(), request.uri())
                    }) {
                        return Ok::<_, Infallible>(answer);
                    }
                    let (parts, body) = request.into_parts();
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let mut request =
                        hyper::Request::from_parts(parts, kube::client::Body::from(bytes));
                    // Arrival time for the request log, before waiting for the fake's lock.
                    request.extensions_mut().insert(received);
                    let response = match fake.call(request).await {
                        Ok(response) => response.map(|b| b.boxed_unsync()),
                        Err(e) => {
                            let mut r = hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(e.to_string()))
                                    .map_err(|never| match never {})
                                    .boxed_unsync(),
                            );
                            *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Writes a kubeconfig for a fake served at `addr`.
pub fn write_kubeconfig(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake\n"
        ),
    )
}
