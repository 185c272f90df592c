//! The metrics and health server, on every replica: `/metrics` (Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz` (every readiness check passes; not tied to
//! leadership, since the webhook serves on every replica).
//!
//! By default it speaks HTTPS and `/metrics` needs a bearer token the API server authenticates
//! and authorizes (see [`auth`]); the probes need none, as kubelet sends none. With
//! `metricsSecure: false` it is plain HTTP without authentication.

mod auth;
mod readiness;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use http::{StatusCode, header};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tracing::{info, warn};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::request_body::{BodyLimit, limit_body};

pub use auth::{AuthError, Authorizer, Decision, DecisionCache};
pub use readiness::{Readiness, ReadinessFlag};

/// Longest a request may take, token reviews included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests here have no body worth reading.
const BODY_LIMIT: usize = 4 * 1024;
/// After shutdown begins, in-flight requests get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    /// `metricsSecure` is on but no certificate was handed over.
    #[error("metricsSecure is true but no TLS certificate is available for the metrics server")]
    TlsRequired,
    /// The address could not be bound.
    #[error("binding the metrics server to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("metrics server: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves on `settings.metrics_bind_address` until `shutdown` is cancelled, then stops accepting
/// connections and lets in-flight requests finish (up to 10 s).
pub async fn serve(
    metrics: Metrics,
    readiness: Readiness,
    client: kube::Client,
    settings: Arc<Settings>,
    tls: Option<RustlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), MetricsServerError> {
    let addr = settings.metrics_bind_address;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .and_then(|l| l.into_std())
        .map_err(|source| MetricsServerError::Bind { addr, source })?;
    serve_listener(
        listener, metrics, readiness, client, settings, tls, shutdown,
    )
    .await
}

/// [`serve`] on a listener bound by the caller (tests bind port 0 to learn the port).
pub async fn serve_listener(
    listener: std::net::TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    client: kube::Client,
    settings: Arc<Settings>,
    tls: Option<RustlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), MetricsServerError> {
    let secure = settings.metrics_secure;
    let tls = match (secure, tls) {
        (true, None) => return Err(MetricsServerError::TlsRequired),
        (true, tls) => tls,
        (false, _) => None,
    };
    listener
        .set_nonblocking(true)
        .map_err(MetricsServerError::Serve)?;
    let addr = listener.local_addr().map_err(MetricsServerError::Serve)?;
    let app = router(metrics, readiness, client, secure).into_make_service();
    let handle = axum_server::Handle::new();
    let on_shutdown = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        })
    };
    info!(%addr, https = secure, "serving metrics and health endpoints");
    let served = match tls {
        Some(tls) => {
            axum_server::tls_rustls::from_tcp_rustls(listener, tls)
                .map_err(MetricsServerError::Serve)?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(MetricsServerError::Serve)?
                .handle(handle)
                .serve(app)
                .await
        }
    };
    on_shutdown.abort();
    info!(%addr, "metrics server stopped");
    served.map_err(MetricsServerError::Serve)
}

fn router(metrics: Metrics, readiness: Readiness, client: kube::Client, secure: bool) -> Router {
    let mut scrape = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    if secure {
        let authorizer = Arc::new(Authorizer::new(client));
        scrape = scrape.layer(axum::middleware::from_fn_with_state(
            authorizer,
            auth::require_authorization,
        ));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .merge(scrape)
        .layer(axum::middleware::from_fn_with_state(
            BodyLimit(BODY_LIMIT),
            limit_body,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

async fn render_metrics(State(metrics): State<Metrics>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        metrics.render(),
    )
        .into_response()
}

/// One line per check, like the API server's verbose `/readyz`.
async fn readyz(State(readiness): State<Readiness>) -> Response {
    let report = readiness.report();
    let mut body = String::new();
    for (name, ok) in &report {
        let (mark, word) = if *ok { ('+', "ok") } else { ('-', "failed") };
        let _ = writeln!(body, "[{mark}]{name} {word}");
    }
    if report.iter().all(|(_, ok)| *ok) {
        body.push_str("readyz check passed\n");
        (StatusCode::OK, body).into_response()
    } else {
        body.push_str("readyz check failed\n");
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Asks the API server for `/version` every `every` (at least 100 ms) and records whether it
/// answered (within `every`) in `flag`, until `shutdown` is cancelled.
pub fn spawn_api_reachability_check(
    client: kube::Client,
    flag: ReadinessFlag,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let every = every.max(Duration::from_millis(100));
    tokio::spawn(async move {
        // Log transitions only, including the first result.
        let mut last: Option<bool> = None;
        loop {
            let outcome = tokio::time::timeout(every, client.apiserver_version()).await;
            let reachable = matches!(outcome, Ok(Ok(_)));
            if last != Some(reachable) {
                match outcome {
                    Ok(Ok(_)) => info!("the Kubernetes API server is reachable"),
                    Ok(Err(e)) => warn!(error = %e, "the Kubernetes API server is not reachable"),
                    Err(_) => {
                        warn!(timeout = ?every, "the Kubernetes API server did not answer in time")
                    }
                }
            }
            last = Some(reachable);
            flag.set(reachable);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}
