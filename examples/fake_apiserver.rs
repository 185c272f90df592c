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
//!
//! For measurement scripts (hack/measure-operator.sh) it also serves a side channel outside
//! the API's paths: `GET /__fake/stats` (request counts by client, verb and resource, and the
//! busiest second), `GET /__fake/writes?resource=...` (the writes of those resources with
//! their arrival times and bodies) and `POST /__fake/reset` (clears the request log).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use support::fake_api::FakeApi;
use support::fake_api::http::{serve_http_with_stats, write_kubeconfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()?;
    let kubeconfig = PathBuf::from(args.next().unwrap_or_else(|| "fake.kubeconfig".into()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    write_kubeconfig(&kubeconfig, local)?;
    let fake = FakeApi::new();
    fake.create_namespace("kube-changejob-system");
    fake.put(&serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "fake-node-1"}}));
    eprintln!(
        "fake API server on http://{local}; kubeconfig written to {}",
        kubeconfig.display()
    );
    serve_http_with_stats(fake, listener).await;
    Ok(())
}
