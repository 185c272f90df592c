//! The transport: `FakeApi` as a `tower::Service` that `kube::Client::new` accepts, and the
//! response body type (whole JSON documents, or a watch stream that stays open).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;
use tower::BoxError;

use super::FakeApi;
use super::dispatch::{self, Incoming, Outcome, Reply};
use super::route::Query;

/// Response body of the fake: a complete JSON document, or a watch event stream.
///
/// (`kube::client::Body` cannot be built from a stream outside kube, so the fake has its own
/// body type; `kube::Client::new` accepts any `http_body::Body<Data = Bytes>`.)
pub struct FakeBody {
    inner: Inner,
}

enum Inner {
    Full(Option<Bytes>),
    Stream {
        events: UnboundedReceiver<Bytes>,
        deadline: Option<Pin<Box<Sleep>>>,
    },
}

impl FakeBody {
    fn full(bytes: Vec<u8>) -> Self {
        FakeBody {
            inner: Inner::Full(Some(Bytes::from(bytes))),
        }
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream { events, deadline } => {
                if let Poll::Ready(next) = events.poll_recv(cx) {
                    return Poll::Ready(next.map(|b| Ok(Frame::data(b))));
                }
                // `timeoutSeconds` elapsed: the server ends the watch.
                let timed_out = deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if timed_out {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The transport failure an injected connection fault produces.
#[derive(Debug)]
pub struct ConnectionError(pub String);

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection error: {}", self.0)
    }
}

impl std::error::Error for ConnectionError {}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<FakeBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<FakeBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move { api.serve(request).await })
    }
}

fn header(parts: &http::request::Parts, name: http::header::HeaderName) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl FakeApi {
    async fn serve(
        &self,
        request: Request<kube::client::Body>,
    ) -> Result<Response<FakeBody>, BoxError> {
        let latency = self.lock().latency;
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let incoming = Incoming {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: Query::parse(parts.uri.query()),
            content_type: header(&parts, http::header::CONTENT_TYPE),
            accept: header(&parts, http::header::ACCEPT),
            user_agent: header(&parts, http::header::USER_AGENT),
            received: parts
                .extensions
                .get::<super::requests::ReceivedAt>()
                .map(|r| r.0),
            body,
        };
        let outcome = dispatch::handle(&mut self.lock(), incoming);
        match outcome {
            Outcome::Connection(message) => Err(Box::new(ConnectionError(message))),
            Outcome::Reply(reply) => Ok(into_response(reply)),
        }
    }
}

fn into_response(reply: Reply) -> Response<FakeBody> {
    let (code, headers, body) = match reply {
        Reply::Json(json) => {
            let bytes = serde_json::to_vec(&json.body).unwrap_or_default();
            (json.code, json.headers, FakeBody::full(bytes))
        }
        Reply::Watch(stream) => {
            let deadline = stream.timeout.map(|t| Box::pin(tokio::time::sleep(t)));
            (
                200,
                vec![],
                FakeBody {
                    inner: Inner::Stream {
                        events: stream.events,
                        deadline,
                    },
                },
            )
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response_headers = response.headers_mut();
    response_headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    }
    response
}
