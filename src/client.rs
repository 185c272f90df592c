//! The Kubernetes client: kube's default stack plus a client-side rate limit, a response timeout
//! for short requests, and our user agent.

mod rate_limit;
mod request_timeout;

use std::sync::Once;
use std::time::Duration;

use http::HeaderValue;
use http::header::USER_AGENT;
use kube::client::ClientBuilder;
use kube::{Client, Config};

use crate::config::Settings;

pub use rate_limit::{RateLimit, RateLimitLayer, TokenBucket};
pub use request_timeout::{RequestTimeout, RequestTimeoutLayer};

/// `User-Agent` of every request, so API server audit logs name the operator.
pub const USER_AGENT_VALUE: &str = concat!("kube-changejob/", env!("CARGO_PKG_VERSION"));

/// How long a short (non-watch) request may wait for its response headers. A little above the
/// API server's own 60 s limit for such requests, so the server's 504 normally arrives first and
/// this only catches connections that went silent.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(70);

/// The client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither a kubeconfig nor the in-cluster environment was usable.
    #[error("no Kubernetes configuration found: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The configuration was found but the client could not be built from it.
    #[error("building the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// A client from the inferred configuration (KUBECONFIG, `~/.kube/config`, or in-cluster).
pub async fn build_client(settings: &Settings) -> Result<Client, ClientError> {
    install_crypto_provider();
    let config = Config::infer().await?;
    client_from_config(config, settings)
}

/// Like `kube::Client::try_from(config)`, with the rate limit, timeout and user agent added.
///
/// kube's connection timeouts stay as they are (connect 30 s, write 295 s, no read timeout):
/// a read timeout would cut watches, which kube-runtime's watcher already guards with its own
/// idle timeout; short requests get [`REQUEST_TIMEOUT`] instead.
pub fn client_from_config(mut config: Config, settings: &Settings) -> Result<Client, ClientError> {
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE)));
    let client = ClientBuilder::try_from(config)?
        .with_layer(&RequestTimeoutLayer::new(REQUEST_TIMEOUT))
        .with_layer(&RateLimitLayer::new(settings.api_qps, settings.api_burst))
        .build();
    Ok(client)
}

/// Makes rustls' ring provider the process default, once. kube and the TLS servers build their
/// rustls configs from the process default; with only ring compiled in, nothing else installs
/// one. Safe to call any number of times and from tests.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race against another installer is fine: a provider is in place either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_provider_installs_once_and_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[tokio::test]
    async fn requests_carry_the_user_agent() {
        use axum::{Router, routing::get};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let app = Router::new().route(
            "/version",
            get(|headers: http::HeaderMap| async move {
                headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let uri: http::Uri = format!("http://{addr}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let client = client_from_config(Config::new(uri), &Settings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let request = http::Request::get("/version")
            .body(Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let agent = client
            .request_text(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        server.abort();
        assert_eq!(agent, USER_AGENT_VALUE);
        assert!(agent.starts_with("kube-changejob/"));
    }
}
