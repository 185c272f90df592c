//! The metrics and health server over real sockets, with the shared fake API answering
//! TokenReviews and SubjectAccessReviews: who may scrape, what the probes say, caching of
//! decisions, plain-HTTP mode, and graceful shutdown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube_changejob::client::install_crypto_provider;
use kube_changejob::config::Settings;
use kube_changejob::metrics::Metrics;
use kube_changejob::metrics_server::{
    MetricsServerError, Readiness, serve_listener, spawn_api_reachability_check,
};
use rustls::pki_types::{CertificateDer, ServerName};
use support::fake_api::{FakeApi, FakeError, Matcher, Verb};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ALLOWED: &str = "token-of-prometheus";
const DENIED: &str = "token-of-someone-else";

/// The fake: `ALLOWED` is Prometheus' service account, which may `get /metrics`; `DENIED`
/// authenticates but may not.
fn fake() -> FakeApi {
    let fake = FakeApi::new();
    let user = |name: &str| UserInfo {
        username: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        groups: Some(vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
        ]),
        extra: None,
    };
    fake.set_token(ALLOWED, user("system:serviceaccount:monitoring:prometheus"));
    fake.set_token(DENIED, user("system:serviceaccount:default:nosy"));
    fake.set_sar_policy(|spec| {
        let metrics = spec.non_resource_attributes.as_ref().is_some_and(|a| {
            a.path.as_deref() == Some("/metrics") && a.verb.as_deref() == Some("get")
        });
        let prometheus =
            spec.user.as_deref() == Some("system:serviceaccount:monitoring:prometheus");
        (metrics && prometheus, String::new())
    });
    fake
}

struct Server {
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), MetricsServerError>>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// A self-signed certificate for `localhost`: the server's config and a client trusting it.
fn certificate() -> (
    axum_server::tls_rustls::RustlsConfig,
    Arc<rustls::ClientConfig>,
) {
    install_crypto_provider();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let cert: CertificateDer<'static> = generated.cert.der().clone();
    let key = generated.signing_key.serialize_der();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap_or_else(|e| panic!("{e}"));
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server)),
        Arc::new(client),
    )
}

async fn start(fake: &FakeApi, secure: bool) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (server_tls, client_tls) = certificate();
    let settings = Arc::new(Settings {
        metrics_secure: secure,
        ..Settings::default()
    });
    let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let readiness = Readiness::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_listener(
        listener,
        metrics.clone(),
        readiness.clone(),
        fake.client(),
        settings,
        Some(server_tls),
        shutdown.clone(),
    ));
    Server {
        addr,
        tls: secure.then_some(client_tls),
        metrics,
        readiness,
        shutdown,
        task,
    }
}

impl Server {
    /// One request on a fresh connection.
    async fn send(&self, path: &str, token: Option<&str>, body: &str) -> std::io::Result<Reply> {
        let tcp = TcpStream::connect(self.addr).await?;
        let mut request = Request::get(path).header(header::HOST, "localhost");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(std::io::Error::other)?;
        let response = match &self.tls {
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                exchange(TokioIo::new(tls), request).await?
            }
            None => exchange(TokioIo::new(tcp), request).await?,
        };
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(path, token, "")
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn stop(self) -> Result<(), MetricsServerError> {
        self.shutdown.cancel();
        self.task.await.unwrap_or_else(|e| panic!("{e}"))
    }
}

async fn exchange<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
) -> std::io::Result<http::Response<hyper::body::Incoming>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)
}

#[tokio::test]
async fn an_authorized_token_gets_the_metrics() {
    let fake = fake();
    let server = start(&fake, true).await;
    server.metrics.leader.set(1);
    let reply = server.get("/metrics", Some(ALLOWED)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let content_type = reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(reply.body.contains("changejob_leader 1"), "{}", reply.body);

    let token_reviews = fake.token_reviews();
    assert_eq!(token_reviews.len(), 1);
    assert_eq!(token_reviews[0].token.as_deref(), Some(ALLOWED));
    assert_eq!(
        token_reviews[0].audiences, None,
        "the API server's own audiences"
    );
    let reviews = fake.subject_access_reviews();
    assert_eq!(reviews.len(), 1);
    let review = &reviews[0];
    assert_eq!(
        review.user.as_deref(),
        Some("system:serviceaccount:monitoring:prometheus")
    );
    assert_eq!(
        review.uid.as_deref(),
        Some("uid-system:serviceaccount:monitoring:prometheus")
    );
    assert!(
        review
            .groups
            .as_ref()
            .is_some_and(|g| g.contains(&"system:serviceaccounts".to_string()))
    );
    let attributes = review.non_resource_attributes.clone().unwrap_or_default();
    assert_eq!(attributes.path.as_deref(), Some("/metrics"));
    assert_eq!(attributes.verb.as_deref(), Some("get"));
    assert!(review.resource_attributes.is_none());
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn a_valid_token_without_permission_is_forbidden() {
    let fake = fake();
    let server = start(&fake, true).await;
    let reply = server.get("/metrics", Some(DENIED)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!reply.body.contains("changejob_"));
    assert_eq!(fake.subject_access_reviews().len(), 1);
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn an_unknown_token_is_unauthorized() {
    let fake = fake();
    let server = start(&fake, true).await;
    let reply = server.get("/metrics", Some("forged")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert!(!reply.body.contains("changejob_"));
    assert_eq!(fake.token_reviews().len(), 1);
    assert!(
        fake.subject_access_reviews().is_empty(),
        "no authorization without a user"
    );
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn a_missing_token_is_unauthorized_without_asking_the_api() {
    let fake = fake();
    let server = start(&fake, true).await;
    let reply = server.get("/metrics", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.body.contains("changejob_"));
    assert!(fake.token_reviews().is_empty());
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn review_failures_answer_500_without_details() {
    let fake = fake();
    fake.fail_always(
        Matcher::any().resource("tokenreviews"),
        FakeError::internal("etcd at 10.0.0.7:2379 unreachable"),
    );
    let server = start(&fake, true).await;
    let reply = server.get("/metrics", Some(ALLOWED)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !reply.body.contains("etcd") && !reply.body.contains("10.0.0.7"),
        "{}",
        reply.body
    );
    // Failures are not cached: the next scrape asks again and succeeds.
    fake.clear_faults();
    let reply = server.get("/metrics", Some(ALLOWED)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn repeated_scrapes_are_answered_from_the_cache() {
    let fake = fake();
    let server = start(&fake, true).await;
    for _ in 0..3 {
        assert_eq!(
            server.get("/metrics", Some(ALLOWED)).await.status,
            StatusCode::OK
        );
        assert_eq!(
            server.get("/metrics", Some(DENIED)).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            server.get("/metrics", Some("forged")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        fake.token_reviews().len(),
        3,
        "one TokenReview per distinct token"
    );
    assert_eq!(fake.subject_access_reviews().len(), 2);
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_is_throttled_before_it_reaches_the_api() {
    let fake = fake();
    let server = start(&fake, true).await;
    assert_eq!(
        server.get("/metrics", Some(ALLOWED)).await.status,
        StatusCode::OK
    );
    let mut throttled = 0;
    for n in 0..40 {
        let reply = server.get("/metrics", Some(&format!("forged-{n}"))).await;
        match reply.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let reviews = fake.token_reviews().len();
    assert!(throttled > 0);
    assert!((20..41).contains(&reviews), "{reviews} TokenReviews");
    // A scraper whose decision is cached is not affected.
    assert_eq!(
        server.get("/metrics", Some(ALLOWED)).await.status,
        StatusCode::OK
    );
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn probes_need_no_token() {
    let fake = fake();
    let server = start(&fake, true).await;
    let health = server.get("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, "ok\n");
    assert_eq!(
        server.get("/readyz", None).await.status,
        StatusCode::OK,
        "no checks: ready"
    );
    assert!(fake.token_reviews().is_empty());
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn readyz_fails_until_every_check_passes() {
    let fake = fake();
    let server = start(&fake, true).await;
    let tls = server.readiness.add_check("tls-certificate");
    let api = server.readiness.add_check("api-server");
    let reply = server.get("/readyz", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("[-]tls-certificate failed"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("[-]api-server failed"),
        "{}",
        reply.body
    );
    tls.set(true);
    let reply = server.get("/readyz", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("[+]tls-certificate ok"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("[-]api-server failed"),
        "{}",
        reply.body
    );
    api.set(true);
    let reply = server.get("/readyz", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Leadership plays no part.
    assert_eq!(server.metrics.leader.get(), 0);
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn plain_http_mode_serves_metrics_without_authentication() {
    let fake = fake();
    let server = start(&fake, false).await;
    let reply = server.get("/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("changejob_leader 0"));
    assert!(fake.requests().is_empty(), "no API calls");
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn secure_mode_without_a_certificate_refuses_to_start() {
    let fake = fake();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let result = serve_listener(
        listener,
        Metrics::new().unwrap_or_else(|e| panic!("{e}")),
        Readiness::new(),
        fake.client(),
        Arc::new(Settings::default()),
        None,
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(result, Err(MetricsServerError::TlsRequired)));
}

#[tokio::test]
async fn oversized_request_bodies_are_refused() {
    let fake = fake();
    let server = start(&fake, true).await;
    let reply = server
        .send("/healthz", None, &"x".repeat(64 * 1024))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.body.contains("limit of 4 KiB"), "{}", reply.body);
    assert!(server.stop().await.is_ok());
}

/// A large upload over TLS is read to its end, answered 413, and the connection then ends in
/// order, so the client sees the answer instead of a reset.
#[tokio::test]
async fn an_oversized_upload_over_tls_gets_413_and_a_clean_close() {
    let fake = fake();
    let server = start(&fake, true).await;
    let config = server
        .tls
        .clone()
        .unwrap_or_else(|| panic!("TLS client config"));
    for path in ["/metrics", "/healthz"] {
        let tcp = TcpStream::connect(server.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let size = 2 * 1024 * 1024;
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n");
        let got = support::raw_http::upload(tls, &head, size).await;
        assert_eq!(got.status(), Some(413), "{path}: {got:?}");
        assert!(got.response.contains("limit of 4 KiB"), "{}", got.response);
        assert_eq!(got.sent, Ok(()), "{path}: the upload was cut off");
        assert_eq!(
            got.end,
            Ok(()),
            "{path}: the connection did not end cleanly"
        );
    }
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let fake = fake();
    // The TokenReview takes a while, so the scrape is still in flight when shutdown begins.
    fake.set_latency(Some(Duration::from_millis(600)));
    let server = Arc::new(start(&fake, true).await);
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move { server.get("/metrics", Some(ALLOWED)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!in_flight.is_finished());
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "new connections are refused as soon as shutdown begins"
    );
    let reply = in_flight.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("changejob_leader"));
    let server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap_or_else(|_| panic!("server did not stop"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.is_ok());
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn the_api_reachability_check_follows_the_api_server() {
    let fake = fake();
    let readiness = Readiness::new();
    let flag = readiness.add_check("api-server");
    let shutdown = CancellationToken::new();
    let every = Duration::from_secs(10);
    let task = spawn_api_reachability_check(fake.client(), flag.clone(), every, shutdown.clone());
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(flag.get());
    assert!(readiness.all_ready());

    fake.fail_always(
        Matcher::any().verb(Verb::Discovery),
        FakeError::connection("connection refused"),
    );
    tokio::time::sleep(every).await;
    assert!(!flag.get());
    assert_eq!(readiness.failing(), vec!["api-server"]);

    fake.clear_faults();
    tokio::time::sleep(every).await;
    assert!(flag.get());

    // A server that stops answering counts as unreachable too, once the check gives up.
    fake.set_latency(Some(Duration::from_secs(60)));
    tokio::time::sleep(every).await;
    assert!(
        flag.get(),
        "the last result stands while a check is in flight"
    );
    tokio::time::sleep(every).await;
    assert!(!flag.get());

    fake.set_latency(None);
    tokio::time::sleep(every).await;
    assert!(flag.get());
    let checks = fake.discovery_count();
    tokio::time::sleep(every * 6).await;
    assert_eq!(
        fake.discovery_count() - checks,
        6,
        "one /version call per period"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .unwrap_or_else(|_| panic!("check did not stop"))
        .unwrap_or_else(|e| panic!("{e}"));
}
