//! The request body limit of the admission and metrics servers: a body over the limit gets
//! `413 Payload Too Large` with a message naming the limit, and the connection is closed only
//! after the client has finished sending.
//!
//! Answering in the middle of an upload and then closing the socket with unread bytes in it
//! makes the kernel reset the connection, and a reset discards the answer the client has not
//! read yet (RFC 9112 §9.6 describes the "lingering close" that avoids it): curl then reports no
//! HTTP status at all. So the rest of the body is read and thrown away (up to
//! [`DRAIN_LIMIT`]), unless the client asked `Expect: 100-continue` and so has not sent it.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};

/// The most a rejected body is read to let its client finish sending; past it the
/// connection is closed anyway.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The largest body a server accepts, in bytes (the state of [`limit_body`]).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Middleware: reads the body (at most the limit) before the handler runs, and answers 413
/// to a larger one. Use it with `axum::middleware::from_fn_with_state(BodyLimit(n), limit_body)`.
pub async fn limit_body(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let max = limit.0;
    if declared_length(request.headers()).is_some_and(|len| len > max) {
        if !expects_continue(request.headers()) {
            drain(request.into_body(), 0).await;
        }
        return too_large(max);
    }
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    let mut read: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body could not be read: {e}"),
                );
            }
        };
        if read.len() + chunk.len() > max {
            let so_far = read.len() + chunk.len();
            drop(read);
            drain_stream(chunks, so_far).await;
            return too_large(max);
        }
        read.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(parts, Body::from(Bytes::from(read))))
        .await
}

/// The `Content-Length` the client announced, if any (and readable).
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the client waits for `100 Continue` before sending the body (curl does for large
/// bodies): then answering at once is enough, and nothing is left unread.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

async fn drain(body: Body, already: usize) {
    drain_stream(body.into_data_stream(), already).await;
}

/// Reads and discards the rest of a body, up to [`DRAIN_LIMIT`] in all.
async fn drain_stream(mut chunks: axum::body::BodyDataStream, already: usize) {
    let mut total = already;
    while total <= DRAIN_LIMIT {
        match chunks.next().await {
            Some(Ok(chunk)) => total += chunk.len(),
            Some(Err(_)) | None => return,
        }
    }
}

/// `413` with the limit in words; `Connection: close`, since a client that sends too much
/// once is better served by a fresh connection.
pub fn too_large(max: usize) -> Response {
    let mut response = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body is larger than the limit of {} ({max} bytes)",
            size_in_words(max)
        ),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// `3 MiB`, `4 KiB`, `100 bytes`.
fn size_in_words(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app(max: usize) -> Router {
        Router::new()
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(
                BodyLimit(max),
                limit_body,
            ))
    }

    async fn send(max: usize, request: Request) -> (StatusCode, HeaderMap, String) {
        let response = app(max)
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn post_body(body: Body, length: Option<usize>) -> Request {
        let mut builder = Request::post("/echo");
        if let Some(length) = length {
            builder = builder.header(header::CONTENT_LENGTH, length);
        }
        builder.body(body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_handler_whole() {
        let (status, _, text) = send(10, post_body(Body::from("0123456789"), Some(10))).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "10"));
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_refused_with_the_limit_named() {
        let (status, headers, text) = send(
            3 * 1024 * 1024,
            post_body(
                Body::from(vec![b' '; 3 * 1024 * 1024 + 1]),
                Some(3 * 1024 * 1024 + 1),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(text.contains("limit of 3 MiB (3145728 bytes)"), "{text}");
        assert_eq!(
            headers.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
    }

    #[tokio::test]
    async fn a_streamed_body_without_length_is_cut_at_the_limit() {
        let chunks = futures::stream::iter(
            (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1000]))),
        );
        let (status, _, text) = send(4096, post_body(Body::from_stream(chunks), None)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(text.contains("4 KiB"), "{text}");
    }

    #[test]
    fn sizes_are_named_in_the_largest_whole_unit() {
        assert_eq!(size_in_words(3 * 1024 * 1024), "3 MiB");
        assert_eq!(size_in_words(4096), "4 KiB");
        assert_eq!(size_in_words(1500), "1500 bytes");
    }
}
