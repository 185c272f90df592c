//! Serves a [`FakeApi`] over plain HTTP/1.1 on a local socket, with a kubeconfig pointing at
//! it, so the real binary (or `run_until`) can talk to it like to a cluster.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tower::Service;

use super::FakeApi;

/// Accepts connections on `listener` forever, answering each request from `fake`.
pub async fn serve_http(fake: FakeApi, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
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
