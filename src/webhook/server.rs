//! The HTTPS admission server: POST `/mutate` and `/validate` (AdmissionReview v1) over rustls,
//! with a body limit, a per-request timeout, panic containment, metrics, and a graceful
//! shutdown that lets in-flight reviews finish.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use futures::FutureExt;
use jiff::Timestamp;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use super::admission::{self, Answer, Outcome};
use super::review;
use crate::config::Settings;
use crate::detect::duration::parse_duration;
use crate::discovery::DiscoveryCache;
use crate::metrics::Metrics;
use crate::request_body::{BodyLimit, limit_body};

/// Largest request body accepted. The API server's own limit for objects is 3 MiB (etcd's
/// 1.5 MiB value limit, with room for the old object in an UPDATE review).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Time a request may take in total; the API server gives up after 10s by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(9);
/// Time the cluster-backed checks of one request may take, leaving room to answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// SubjectAccessReviews in flight per admission request.
pub const REVIEW_CONCURRENCY: usize = 8;

/// Why the admission server stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The listening socket could not be set up.
    #[error("admission server cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Serving failed.
    #[error("admission server failed: {0}")]
    Serve(io::Error),
}

/// What the handlers share: the API client, the discovery cache, metrics and settings.
#[derive(Clone)]
pub struct WebhookState {
    pub(crate) client: Client,
    pub(crate) discovery: Arc<DiscoveryCache>,
    pub(crate) metrics: Metrics,
    pub(crate) settings: Arc<Settings>,
    pub(crate) check_timeout: Duration,
    pub(crate) review_concurrency: usize,
}

impl WebhookState {
    /// State for the admission handlers.
    pub fn new(
        client: Client,
        discovery: Arc<DiscoveryCache>,
        metrics: Metrics,
        settings: Arc<Settings>,
    ) -> Self {
        WebhookState {
            client,
            discovery,
            metrics,
            settings,
            check_timeout: CHECK_TIMEOUT,
            review_concurrency: REVIEW_CONCURRENCY,
        }
    }

    /// Overrides the deadline of the cluster-backed checks (tests use a short one).
    pub fn with_check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }
}

/// Which endpoint; the `webhook` metric label.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// Counts one request when finished; a request that never finishes (panic, timeout, client
/// gone) is counted as an error when dropped.
struct Tally {
    metrics: Metrics,
    endpoint: Endpoint,
    started: Instant,
    outcome: Option<Outcome>,
}

impl Tally {
    fn start(metrics: &Metrics, endpoint: Endpoint) -> Self {
        Tally {
            metrics: metrics.clone(),
            endpoint,
            started: Instant::now(),
            outcome: None,
        }
    }

    fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Outcome::Error);
        let webhook = self.endpoint.label();
        self.metrics
            .webhook_requests
            .with_label_values(&[webhook, outcome.label()])
            .inc();
        self.metrics
            .webhook_duration
            .with_label_values(&[webhook])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The admission routes with their limits; serve it with [`serve`], or call it directly in
/// tests.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler))
        .route("/validate", post(validate_handler))
        .fallback(not_found)
        .with_state(state)
        // The handlers' extractor limit must not be the lower axum default (2 MB);
        // `limit_body` is the limit that answers.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            BodyLimit(MAX_BODY_BYTES),
            limit_body,
        ))
        .layer(middleware::from_fn(contain_panics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found; the admission endpoints are POST /mutate and POST /validate",
    )
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Answers 500 instead of dropping the connection if a handler panics. Panics are bugs; the
/// request's [`Tally`] counts them as errors while unwinding.
async fn contain_panics(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%path, panic = %what, "admission handler panicked");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error in the admission webhook",
            )
        }
    }
}

async fn mutate_handler(State(state): State<WebhookState>, body: Bytes) -> Response {
    handle(&state, Endpoint::Mutate, None, &body).await
}

async fn validate_handler(
    State(state): State<WebhookState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let deadline = check_deadline(state.check_timeout, query.as_deref());
    handle(&state, Endpoint::Validate, Some(deadline), &body).await
}

/// How long the cluster-backed checks of one validation may take.
///
/// The API server tells a webhook how long it will wait, as `?timeout=10s` in the URL (the
/// webhook configuration's `timeoutSeconds`, or less when the whole request has less time left,
/// rounded up to whole seconds). The checks get that time minus room to answer and for the
/// rounding, never more than `ceiling`, and the ceiling alone when the parameter is absent or
/// unreadable.
pub fn check_deadline(ceiling: Duration, query: Option<&str>) -> Duration {
    let announced = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.strip_prefix("timeout="))
        .find_map(|value| parse_duration(value).ok())
        .filter(|d| !d.is_zero());
    match announced {
        None => ceiling,
        Some(limit) => {
            let room = limit.saturating_sub(Duration::from_millis(1500));
            ceiling.min(room.max(limit / 2))
        }
    }
}

async fn handle(
    state: &WebhookState,
    endpoint: Endpoint,
    deadline: Option<Duration>,
    body: &[u8],
) -> Response {
    let tally = Tally::start(&state.metrics, endpoint);
    let incoming = match review::parse(body) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::warn!(webhook = endpoint.label(), error = %e, "malformed admission request");
            tally.finish(Outcome::Error);
            return plain(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let Answer { response, outcome } = match endpoint {
        Endpoint::Mutate => admission::mutate(&incoming, Timestamp::now()),
        Endpoint::Validate => {
            let deadline = deadline.unwrap_or(state.check_timeout);
            admission::validate(state, &incoming, deadline).await
        }
    };
    let request = &incoming.request;
    tracing::debug!(
        webhook = endpoint.label(),
        uid = %request.uid,
        operation = ?request.operation,
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = %request.name,
        user = request.user_info.username.as_deref().unwrap_or(""),
        result = outcome.label(),
        message = %response.result.message,
        "admission review"
    );
    tally.finish(outcome);
    axum::Json(review::into_review(response)).into_response()
}

/// Serves the admission routes over TLS on `addr` until `shutdown` is cancelled, then lets
/// in-flight requests finish (at most [`SHUTDOWN_DRAIN`]).
pub async fn serve(
    state: WebhookState,
    addr: SocketAddr,
    tls: RustlsConfig,
    shutdown: CancellationToken,
) -> Result<(), WebhookError> {
    let bind_error = |source| WebhookError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    serve_listener(state, listener, tls, shutdown).await
}

/// Like [`serve`], on a listener the caller already bound (tests bind port 0 and read the
/// port back).
pub async fn serve_listener(
    state: WebhookState,
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    shutdown: CancellationToken,
) -> Result<(), WebhookError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener
        .set_nonblocking(true)
        .map_err(|source| WebhookError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let server =
        axum_server::from_tcp_rustls(listener, tls).map_err(|source| WebhookError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let handle: Handle<SocketAddr> = Handle::new();
    let stopper = handle.clone();
    let done = CancellationToken::new();
    let watcher_done = done.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::info!("admission server draining in-flight requests");
                stopper.graceful_shutdown(Some(SHUTDOWN_DRAIN));
            }
            () = watcher_done.cancelled() => {}
        }
    });
    tracing::info!(%addr, "admission server listening");
    let result = server
        .handle(handle)
        .serve(router(state).into_make_service())
        .await
        .map_err(WebhookError::Serve);
    done.cancel();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[test]
    fn the_check_deadline_follows_the_announced_timeout() {
        let ceiling = Duration::from_secs(8);
        let cases = [
            (None, 8_000),
            (Some(""), 8_000),
            (Some("timeout=10s"), 8_000),
            (Some("timeout=30s"), 8_000),
            (Some("timeout=5s"), 3_500),
            (Some("dryRun=All&timeout=3s"), 1_500),
            (Some("timeout=2s"), 1_000),
            (Some("timeout=1s"), 500),
            (Some("timeout=0s"), 8_000),
            (Some("timeout=soon"), 8_000),
            (Some("timeout=-4s"), 8_000),
        ];
        for (query, millis) in cases {
            assert_eq!(
                check_deadline(ceiling, query),
                Duration::from_millis(millis),
                "{query:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500() {
        let app = Router::new()
            .route(
                "/boom",
                post(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
            .layer(middleware::from_fn(contain_panics));
        let request = Request::post("/boom")
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let response = app.oneshot(request).await.unwrap_or_else(|e| match e {});
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_request_that_never_finishes_counts_as_an_error() {
        let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        drop(Tally::start(&metrics, Endpoint::Validate));
        Tally::start(&metrics, Endpoint::Mutate).finish(Outcome::Allowed);
        let text = metrics.render();
        assert!(
            text.contains(
                "changejob_webhook_requests_total{result=\"error\",webhook=\"validate\"} 1"
            )
        );
        assert!(
            text.contains(
                "changejob_webhook_requests_total{result=\"allowed\",webhook=\"mutate\"} 1"
            )
        );
    }
}
