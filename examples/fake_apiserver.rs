//! Serves the in-process fake Kubernetes API (tests/support/fake_api) over plain HTTP on
//! loopback, and writes a kubeconfig for it, so the real `kube-changejob run` binary and the
//! e2e suite can be exercised end to end on a machine without a cluster:
//!
//! ```text
//! cargo run --example fake_apiserver -- 127.0.0.1:18080 /tmp/fake.kubeconfig
//! KUBECONFIG=/tmp/fake.kubeconfig cargo test --test e2e
//! ```
//!
//! The fake runs no Pods, so Jobs never complete; the e2e suite notes and skips those checks.

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tower::Service;

use support::fake_api::FakeApi;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()?;
    let kubeconfig = args.next().unwrap_or_else(|| "fake.kubeconfig".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{local}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake\n"
        ),
    )?;
    let fake = FakeApi::new();
    fake.create_namespace("kube-changejob-system");
    fake.put(&serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "fake-node-1", "labels": {"kubernetes.io/hostname": "fake-node-1"}}}));
    eprintln!("fake API server on http://{local}; kubeconfig written to {kubeconfig}");
    loop {
        let (stream, _) = listener.accept().await?;
        let fake = fake.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let mut fake = fake.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let request =
                        hyper::Request::from_parts(parts, kube::client::Body::from(bytes));
                    match fake.call(request).await {
                        Ok(response) => Ok::<_, Infallible>(response.map(|b| b.boxed_unsync())),
                        Err(e) => Ok(hyper::Response::builder()
                            .status(502)
                            .body(
                                http_body_util::Full::new(bytes::Bytes::from(e.to_string()))
                                    .map_err(|never| match never {})
                                    .boxed_unsync(),
                            )
                            .unwrap_or_default()),
                    }
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
