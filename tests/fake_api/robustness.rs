//! Malformed requests get Status answers (never a panic), as the API server gives them.

use kube::Client;
use serde_json::Value;

use crate::support::fake_api::FakeApi;

/// method, path, content type, body, expected code, expected reason
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [u8],
    u16,
    &'static str,
);

/// Sends a raw request; returns the HTTP code and the JSON body.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.to_vec()))
        .expect("request");
    let response = client.send(request).await.expect("a response");
    let code = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_requests_get_status_answers() {
    let fake = FakeApi::new();
    let client = fake.client();
    let json = "application/json";
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            b"{not json",
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            b"[1,2]",
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            b"",
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            br#"{"metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps",
            json,
            b"{}",
            405,
            "MethodNotAllowed",
        ),
        (
            "POST",
            "/api/v1/configmaps",
            json,
            br#"{"apiVersion":"v1","kind":"ConfigMap"}"#,
            405,
            "MethodNotAllowed",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/widgets",
            json,
            b"",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/x/log",
            json,
            b"",
            404,
            "NotFound",
        ),
        ("GET", "/no/such/path", json, b"", 404, "NotFound"),
        (
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/a/b/c/d",
            json,
            b"",
            404,
            "NotFound",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "text/plain",
            b"{}",
            415,
            "UnsupportedMediaType",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "application/merge-patch+json",
            b"",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=%3D%3D",
            json,
            b"",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
            json,
            b"",
            400,
            "BadRequest",
        ),
        ("DELETE", "/api", json, b"", 405, "MethodNotAllowed"),
        (
            "OPTIONS",
            "/api/v1/namespaces/default/configmaps/x",
            json,
            b"",
            405,
            "MethodNotAllowed",
        ),
    ];
    for (method, path, content_type, body, code, reason) in cases {
        let (got, status) = send(&client, method, path, content_type, body).await;
        assert_eq!(got, code, "{method} {path}: {status}");
        assert_eq!(status["kind"], "Status", "{method} {path}");
        assert_eq!(status["reason"], reason, "{method} {path}: {status}");
        assert_eq!(status["code"], code, "{method} {path}");
    }
    assert_eq!(
        send(
            &client,
            "GET",
            "/api/v1/namespaces/default/configmaps",
            json,
            b""
        )
        .await
        .0,
        200,
        "still serving"
    );
}

#[tokio::test]
async fn unacceptable_representations_are_406() {
    let fake = FakeApi::new();
    let client = fake.client();
    let request = http::Request::get("/api/v1/namespaces/default/configmaps/x")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(vec![])
        .expect("request");
    let err = client
        .request::<Value>(request)
        .await
        .expect_err("list representation for a get");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 406));
    let request = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header(
            "accept",
            "application/vnd.kubernetes.protobuf, application/json",
        )
        .body(vec![])
        .expect("request");
    let list: Value = client.request(request).await.expect("falls back to JSON");
    assert_eq!(list["kind"], "ConfigMapList");
}

#[tokio::test]
async fn version_endpoint_answers() {
    let fake = FakeApi::new();
    let info = fake.client().apiserver_version().await.expect("version");
    assert_eq!(info.major, "1");
}
