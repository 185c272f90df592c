//! Malformed requests get Status answers (never a panic), as the API server gives them.

use kube::Client;
use proptest::prelude::*;
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

fn request_strategy() -> impl Strategy<Value = (String, String, String, Vec<u8>)> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]);
    let segment = prop::sample::select(vec![
        "api",
        "apis",
        "v1",
        "namespaces",
        "default",
        "nope",
        "configmaps",
        "x",
        "status",
        "batch",
        "jobs",
        "coordination.k8s.io",
        "leases",
        "nodes",
        "%zz",
        "",
        "triggers.changejob.dev",
        "v1alpha",
        "changetriggeredjobs",
    ]);
    let query = prop::sample::select(vec![
        "",
        "?watch=true&timeoutSeconds=0",
        "?watch=1&resourceVersion=0&timeoutSeconds=0&sendInitialEvents=true",
        "?watch=true&resourceVersion=999999&timeoutSeconds=0",
        "?labelSelector=a%20in%20(",
        "?labelSelector=a%20notin%20(b),!c",
        "?fieldSelector=metadata.name%3Dx",
        "?dryRun=All",
        "?fieldManager=m&force=true",
        "?propagationPolicy=Foreground",
        "?timeoutSeconds=-1&watch=true",
    ]);
    let content_type = prop::sample::select(vec![
        "application/json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
        "text/plain",
    ]);
    let body = prop::sample::select(vec![
        "",
        "{",
        "null",
        "[]",
        "5",
        r#"{"metadata":5}"#,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","finalizers":["f"]},"data":{"a":"1"}}"#,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"g-"}}"#,
        r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"x"},"spec":7}"#,
        r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"x"},"spec":{"holderIdentity":"a"}}"#,
        r#"[{"op":"remove","path":"/metadata"}]"#,
        r#"[{"op":"replace","path":"","value":[1]}]"#,
        r#"{"metadata":{"finalizers":null,"labels":{"$patch":"delete"}},"spec":{"$retainKeys":5}}"#,
        r#"{"propagationPolicy":"Orphan","preconditions":{"uid":"nope"}}"#,
        "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}",
    ]);
    (
        method,
        prop::collection::vec(segment, 0..7),
        query,
        content_type,
        body,
    )
        .prop_map(|(method, segments, query, content_type, body)| {
            (
                method.to_string(),
                format!("/{}{query}", segments.join("/")),
                content_type.to_string(),
                body.as_bytes().to_vec(),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the code under test sends, the fake answers (a panic would surface as a
    /// transport error from the client's request buffer) and error answers are Status JSON.
    #[test]
    fn arbitrary_request_sequences_always_get_an_answer(requests in prop::collection::vec(request_strategy(), 1..12)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let fake = FakeApi::new();
            let client = fake.client();
            for (method, path, content_type, body) in &requests {
                let Ok(uri) = path.parse::<http::Uri>() else { continue };
                let request = http::Request::builder()
                    .method(method.as_str())
                    .uri(uri)
                    .header("content-type", content_type.as_str())
                    .body(kube::client::Body::from(body.clone()))
                    .expect("request");
                let response = client.send(request).await.expect("the fake answers every request");
                let code = response.status().as_u16();
                let watching = code == 200 && path.contains("watch=");
                if !watching {
                    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
                    let json: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
                    if code >= 400 {
                        assert_eq!(json["kind"], "Status", "{method} {path}: {json}");
                        assert_eq!(json["code"], code, "{method} {path}: {json}");
                    }
                }
            }
        });
    }
}
