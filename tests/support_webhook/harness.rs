//! The real admission server on 127.0.0.1:0 over TLS, in front of the fake API server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use kube_changejob::config::Settings;
use kube_changejob::discovery::DiscoveryCache;
use kube_changejob::metrics::Metrics;
use kube_changejob::webhook::certs::tls::config_from_pem;
use kube_changejob::webhook::{WebhookError, WebhookState, serve_listener};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::https::{self, Connection, Reply, TestPki};
use super::reviews::{self, User};
use crate::support::fake_api::FakeApi;

/// What to run the server with.
#[derive(Clone, Debug)]
pub struct Options {
    pub authorize_users: bool,
    pub dry_run: bool,
    pub check_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            authorize_users: true,
            dry_run: true,
            check_timeout: Duration::from_secs(8),
        }
    }
}

/// A running admission server.
pub struct Harness {
    pub fake: FakeApi,
    pub addr: SocketAddr,
    pub pki: TestPki,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<Result<(), WebhookError>>,
}

/// The server with default options.
pub async fn start() -> Harness {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Harness {
    let fake = FakeApi::new();
    let client = fake.client();
    let settings = Settings {
        webhook_authorize_users: options.authorize_users,
        webhook_dry_run_job_template: options.dry_run,
        operator_namespace: "kube-changejob-system".into(),
        ..Settings::default()
    };
    let discovery = Arc::new(DiscoveryCache::new(
        client.clone(),
        Duration::ZERO,
        Duration::from_secs(300),
    ));
    let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let state = WebhookState::new(client, discovery, metrics.clone(), Arc::new(settings))
        .with_check_timeout(options.check_timeout);
    let pki = https::test_pki();
    let tls = RustlsConfig::from_config(
        config_from_pem(pki.leaf.cert_pem.as_bytes(), pki.leaf.key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_listener(state, listener, tls, shutdown.clone()));
    Harness {
        fake,
        addr,
        pki,
        metrics,
        shutdown,
        server,
    }
}

/// What the API server would see for one write: the mutating answer, the object after its
/// patch, and the validating answer for that object.
#[derive(Debug)]
pub struct Admitted {
    pub mutate: Value,
    pub object: Value,
    pub validate: Value,
}

impl Admitted {
    pub fn allowed(&self) -> bool {
        self.mutate["response"]["allowed"] == true && self.validate["response"]["allowed"] == true
    }

    /// The validating answer's message.
    pub fn message(&self) -> String {
        self.validate["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn warnings(&self) -> Vec<String> {
        serde_json::from_value(self.validate["response"]["warnings"].clone()).unwrap_or_default()
    }
}

impl Harness {
    /// Sends `body` with `method` to `path` on a new connection.
    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        https::send(self.addr, &self.pki.ca.cert_pem, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// POSTs a review and returns the answer, which must be HTTP 200 with the request's uid.
    pub async fn post(&self, path: &str, review: &Value) -> Value {
        let reply = self
            .raw("POST", path, serde_json::to_vec(review).unwrap_or_default())
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"].as_str(),
            Some(reviews::request_uid(review).as_str())
        );
        answer
    }

    /// A connection for many requests.
    pub async fn connect(&self) -> Connection {
        Connection::open(self.addr, &self.pki.ca.cert_pem)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// Runs a write through /mutate then, with the patch applied, /validate, as the API
    /// server does. `old` is the stored object for an UPDATE.
    pub async fn admit(
        &self,
        operation: &str,
        object: &Value,
        old: Option<&Value>,
        user: &User,
    ) -> Admitted {
        let mutate = self
            .post(
                "/mutate",
                &reviews::review(operation, Some(object), old, user),
            )
            .await;
        let patched = reviews::apply_patch(object, &mutate);
        let validate = self
            .post(
                "/validate",
                &reviews::review(operation, Some(&patched), old, user),
            )
            .await;
        Admitted {
            mutate,
            object: patched,
            validate,
        }
    }

    /// [`Harness::admit`] a CREATE by `alice`.
    pub async fn create(&self, object: &Value) -> Admitted {
        self.admit("CREATE", object, None, &User::named("alice"))
            .await
    }

    /// [`Harness::admit`] an UPDATE by `alice`.
    pub async fn update(&self, object: &Value, old: &Value) -> Admitted {
        self.admit("UPDATE", object, Some(old), &User::named("alice"))
            .await
    }
}
