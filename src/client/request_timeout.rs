//! A deadline for the response headers of short Kubernetes API requests. Watches (and other
//! streaming requests) are left alone: their response can legitimately take minutes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower::{BoxError, Layer, Service};

/// Adds [`RequestTimeout`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    timeout: Duration,
}

impl RequestTimeoutLayer {
    /// Short requests fail after `timeout` without response headers.
    pub fn new(timeout: Duration) -> Self {
        RequestTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
}

/// Watches, log follows and connection upgrades (exec, attach, port-forward) stream for a long
/// time by design.
fn is_long_running<B>(request: &Request<B>) -> bool {
    let streaming_query = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1" | "follow=true" | "follow=1"))
    });
    let path = request.uri().path();
    streaming_query
        || ["/exec", "/attach", "/portforward", "/proxy"]
            .iter()
            .any(|suffix| path.ends_with(suffix))
}

impl<S, B> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let long_running = is_long_running(&request);
        let timeout = self.timeout;
        let response = self.inner.call(request);
        Box::pin(async move {
            if long_running {
                response.await.map_err(Into::into)
            } else {
                match tokio::time::timeout(timeout, response).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(elapsed) => Err(elapsed.into()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn request(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn never_answers() -> impl Service<Request<()>, Response = (), Error = Infallible, Future: Send>
    {
        tower::service_fn(|_: Request<()>| std::future::pending::<Result<(), Infallible>>())
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_request_times_out() {
        let service = RequestTimeoutLayer::new(Duration::from_secs(70)).layer(never_answers());
        let start = tokio::time::Instant::now();
        let result = service
            .oneshot(request("/api/v1/namespaces/a/configmaps/b"))
            .await;
        assert!(result.is_err());
        assert_eq!(start.elapsed(), Duration::from_secs(70));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_is_not_cut_off() {
        let service = RequestTimeoutLayer::new(Duration::from_secs(70)).layer(never_answers());
        let watch = service.oneshot(request(
            "/api/v1/configmaps?watch=true&resourceVersion=1&timeoutSeconds=290",
        ));
        let outcome = tokio::time::timeout(Duration::from_secs(3600), watch).await;
        assert!(outcome.is_err(), "still streaming after an hour");
    }

    #[test]
    fn streaming_requests_are_recognised() {
        assert!(is_long_running(&request("/api/v1/pods?watch=1")));
        assert!(is_long_running(&request(
            "/api/v1/namespaces/a/pods/p/log?follow=true"
        )));
        assert!(is_long_running(&request(
            "/api/v1/namespaces/a/pods/p/exec"
        )));
        assert!(!is_long_running(&request("/api/v1/pods?watch=false")));
        assert!(!is_long_running(&request(
            "/apis/batch/v1/namespaces/a/jobs"
        )));
    }
}
