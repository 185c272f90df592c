//! The webhook's certificates while it serves: files rotated under a running server, the
//! self-managed Secret created once by racing replicas, renewed near expiry, picked up by
//! other replicas, and its CA kept in both webhook configurations.

mod support;
mod support_webhook;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_changejob::config::{CertMode, Settings};
use kube_changejob::discovery::DiscoveryCache;
use kube_changejob::metrics::Metrics;
use kube_changejob::webhook::certs::issue::{self, PemPair};
use kube_changejob::webhook::certs::secret::{self, Bundle};
use kube_changejob::webhook::certs::{self, CertTimings, TlsReadiness};
use kube_changejob::webhook::{WebhookState, serve_listener};
use serde_json::{Value, json};
use support::fake_api::{FakeApi, FakeError, Matcher, Verb};
use support_webhook::https::{self, der_of, served_certificate};
use tokio_util::sync::CancellationToken;

const NS: &str = "kube-changejob-system";
const CONFIG: &str = "kube-changejob";

fn fast() -> CertTimings {
    CertTimings {
        file_poll: Duration::from_millis(100),
        secret_poll: Duration::from_millis(150),
        retry: Duration::from_millis(100),
        first_load: Duration::from_secs(2),
    }
}

fn self_managed() -> Settings {
    Settings {
        operator_namespace: NS.into(),
        webhook_cert_mode: CertMode::SelfManaged,
        ..Settings::default()
    }
}

/// The name the API server uses to reach the webhook Service.
fn service_host(settings: &Settings) -> String {
    format!(
        "{}.{}.svc",
        settings.webhook_service_name, settings.operator_namespace
    )
}

/// Serves the admission routes with `tls` on a free port until `shutdown`.
fn serve(fake: &FakeApi, tls: RustlsConfig, shutdown: &CancellationToken) -> SocketAddr {
    let client = fake.client();
    let discovery = Arc::new(DiscoveryCache::new(
        client.clone(),
        Duration::ZERO,
        Duration::from_secs(60),
    ));
    let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let state = WebhookState::new(client, discovery, metrics, Arc::new(Settings::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(serve_listener(state, listener, tls, shutdown.clone()));
    addr
}

/// Polls `check` every 50ms for up to 10s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn serves(addr: SocketAddr, ca_pem: &str, host: &str, leaf_pem: &str) -> bool {
    served_certificate(addr, ca_pem, host)
        .await
        .is_ok_and(|der| der == der_of(leaf_pem))
}

// ---- files ------------------------------------------------------------------------------

/// Writes a pair the way the kubelet lays out a Secret volume: the files live in a
/// timestamped directory, `..data` points at it, and `tls.crt`/`tls.key` point into `..data`.
/// A second call swaps `..data` atomically, as the kubelet does on rotation.
fn kubelet_write(dir: &Path, version: &str, cert: &str, key: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(data.join("tls.crt"), cert).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(data.join("tls.key"), key).unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn files_settings(dir: &Path) -> Settings {
    Settings {
        webhook_cert_mode: CertMode::Files,
        webhook_cert_dir: dir.to_path_buf(),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_are_served_on_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let first = https::test_pki();
    let second = https::test_pki();
    kubelet_write(dir.path(), "v1", &first.leaf.cert_pem, &first.leaf.key_pem);
    let fake = FakeApi::new();
    let shutdown = CancellationToken::new();
    let (tls, ready) = certs::start_with(
        fake.client(),
        &files_settings(dir.path()),
        fast(),
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(ready.is_ready());
    let addr = serve(&fake, tls, &shutdown);
    let host = https::SERVER_NAME;
    assert!(serves(addr, &first.ca.cert_pem, host, &first.leaf.cert_pem).await);

    // A connection opened before the rotation keeps working afterwards.
    let mut open = https::Connection::open(addr, &first.ca.cert_pem)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    kubelet_write(
        dir.path(),
        "v2",
        &second.leaf.cert_pem,
        &second.leaf.key_pem,
    );
    eventually("the rotated certificate", || {
        serves(addr, &second.ca.cert_pem, host, &second.leaf.cert_pem)
    })
    .await;
    assert_eq!(
        open.send("GET", "/nowhere", Vec::new())
            .await
            .map(|r| r.status),
        Ok(404)
    );

    // A broken pair (key of another certificate) is refused; the last good one stays.
    kubelet_write(dir.path(), "v3", &first.leaf.cert_pem, &second.leaf.key_pem);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(serves(addr, &second.ca.cert_pem, host, &second.leaf.cert_pem).await);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_start_on_a_placeholder_and_become_ready_when_mounted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pki = https::test_pki();
    let fake = FakeApi::new();
    let shutdown = CancellationToken::new();
    let (tls, ready) = certs::start_with(
        fake.client(),
        &files_settings(dir.path()),
        fast(),
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!ready.is_ready());
    let addr = serve(&fake, tls, &shutdown);
    assert!(
        !serves(
            addr,
            &pki.ca.cert_pem,
            https::SERVER_NAME,
            &pki.leaf.cert_pem
        )
        .await
    );
    kubelet_write(dir.path(), "v1", &pki.leaf.cert_pem, &pki.leaf.key_pem);
    become_ready(ready).await;
    assert!(
        serves(
            addr,
            &pki.ca.cert_pem,
            https::SERVER_NAME,
            &pki.leaf.cert_pem
        )
        .await
    );
    shutdown.cancel();
}

// ---- self-managed -----------------------------------------------------------------------

fn client_config() -> WebhookClientConfig {
    WebhookClientConfig {
        service: Some(ServiceReference {
            name: "kube-changejob-webhook".into(),
            namespace: NS.into(),
            path: Some("/validate".into()),
            port: Some(443),
        }),
        ..WebhookClientConfig::default()
    }
}

fn mutating_configuration() -> MutatingWebhookConfiguration {
    let webhook = |name: &str| MutatingWebhook {
        name: name.into(),
        client_config: client_config(),
        admission_review_versions: vec!["v1".into()],
        side_effects: "None".into(),
        ..MutatingWebhook::default()
    };
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIG.into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![
            webhook("mutate.changejob.dev"),
            webhook("mutate2.changejob.dev"),
        ]),
    }
}

fn validating_configuration() -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIG.into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.changejob.dev".into(),
            client_config: client_config(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            ..ValidatingWebhook::default()
        }]),
    }
}

fn stored_secret(fake: &FakeApi, settings: &Settings) -> Option<Value> {
    fake.get_json("v1", "secrets", Some(NS), &settings.webhook_cert_secret)
}

fn decode(value: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn stored_bundle(fake: &FakeApi, settings: &Settings) -> Bundle {
    let secret = stored_secret(fake, settings).unwrap_or_else(|| panic!("no Secret"));
    Bundle {
        ca: PemPair {
            cert_pem: decode(&secret["data"]["ca.crt"]),
            key_pem: decode(&secret["data"]["ca.key"]),
        },
        serving: PemPair {
            cert_pem: decode(&secret["data"]["tls.crt"]),
            key_pem: decode(&secret["data"]["tls.key"]),
        },
    }
}

/// The caBundle of every entry of a webhook configuration, decoded.
fn ca_bundles(fake: &FakeApi, plural: &str) -> Vec<String> {
    fake.get_json("admissionregistration.k8s.io/v1", plural, None, CONFIG)
        .map(|c| {
            c["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| decode(&w["clientConfig"]["caBundle"]))
                .collect()
        })
        .unwrap_or_default()
}

fn injected(fake: &FakeApi, ca: &str) -> bool {
    let m = ca_bundles(fake, "mutatingwebhookconfigurations");
    let v = ca_bundles(fake, "validatingwebhookconfigurations");
    m.len() == 2 && v.len() == 1 && m.iter().chain(&v).all(|b| b == ca)
}

fn secret_with(settings: &Settings, bundle: &Bundle) -> Value {
    let data: serde_json::Map<String, Value> = secret::data_of(bundle)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(v.0)),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": settings.webhook_cert_secret, "namespace": NS },
        "type": "kubernetes.io/tls",
        "data": data
    })
}

/// Waits (at most 10 s) until `ready` reports ready.
async fn become_ready(mut ready: TlsReadiness) {
    tokio::time::timeout(Duration::from_secs(10), ready.wait_ready())
        .await
        .unwrap_or_else(|_| panic!("the webhook never became ready"));
    assert!(ready.is_ready());
}

async fn start(
    fake: &FakeApi,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> (RustlsConfig, TlsReadiness) {
    certs::start_with(fake.client_in(NS), settings, fast(), shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_create_one_secret_and_serve_the_same_ca() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    fake.insert(&mutating_configuration());
    fake.insert(&validating_configuration());
    // Both replicas read "no Secret" before either creates one.
    fake.set_latency(Some(Duration::from_millis(50)));
    let settings = self_managed();
    let shutdown = CancellationToken::new();
    let ((tls_a, ready_a), (tls_b, ready_b)) = tokio::join!(
        start(&fake, &settings, &shutdown),
        start(&fake, &settings, &shutdown)
    );
    fake.set_latency(None);
    become_ready(ready_a).await;
    become_ready(ready_b).await;
    // Ready means the API server can verify the webhook: the CA is already in both
    // configurations at that moment.
    let stored = stored_bundle(&fake, &settings);
    assert!(injected(&fake, &stored.ca.cert_pem));

    let secrets: Vec<Value> = fake
        .list_json("v1", "secrets", Some(NS))
        .into_iter()
        .filter(|s| s["metadata"]["name"] == settings.webhook_cert_secret.as_str())
        .collect();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["type"], "kubernetes.io/tls");
    assert_eq!(
        fake.count(Verb::Create, "secrets"),
        2,
        "both replicas tried to create it"
    );
    assert_eq!(
        fake.count(Verb::Update, "secrets"),
        0,
        "nobody overwrote the winner"
    );

    let bundle = stored_bundle(&fake, &settings);
    let host = service_host(&settings);
    let addr_a = serve(&fake, tls_a, &shutdown);
    let addr_b = serve(&fake, tls_b, &shutdown);
    assert!(serves(addr_a, &bundle.ca.cert_pem, &host, &bundle.serving.cert_pem).await);
    assert!(serves(addr_b, &bundle.ca.cert_pem, &host, &bundle.serving.cert_pem).await);
    for name in issue::dns_names(&settings.webhook_service_name, NS) {
        assert!(
            served_certificate(addr_a, &bundle.ca.cert_pem, &name)
                .await
                .is_ok(),
            "{name}"
        );
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_until_both_configurations_carry_the_ca() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    fake.insert(&mutating_configuration());
    fake.insert(&validating_configuration());
    // Writing the validating configuration fails for now (a flaky API server).
    fake.fail_always(
        Matcher::any()
            .verb(Verb::Patch)
            .resource("validatingwebhookconfigurations"),
        FakeError::internal("etcd leader changed"),
    );
    let settings = self_managed();
    let shutdown = CancellationToken::new();
    let (_tls, ready) = start(&fake, &settings, &shutdown).await;
    let ca = stored_bundle(&fake, &settings).ca.cert_pem;
    eventually("the CA in the mutating configuration", || {
        let bundles = ca_bundles(&fake, "mutatingwebhookconfigurations");
        let ok = bundles.len() == 2 && bundles.iter().all(|b| b == &ca);
        async move { ok }
    })
    .await;
    assert!(
        !ready.is_ready(),
        "ready although the API server cannot verify the validating webhook"
    );

    fake.clear_faults();
    // The next watch event (any change to the configuration) brings another attempt.
    let mut touched = validating_configuration();
    touched.metadata.labels = Some([("touched".to_string(), "yes".to_string())].into());
    fake.put(&touched);
    become_ready(ready).await;
    assert!(injected(&fake, &ca));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_recreated_without_ca_bundle_is_repaired() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    let settings = self_managed();
    let shutdown = CancellationToken::new();
    // Outside a cluster the configurations may not exist: not an error.
    let (_tls, ready) = start(&fake, &settings, &shutdown).await;
    become_ready(ready).await;
    let ca = stored_bundle(&fake, &settings).ca.cert_pem;

    // They appear later (helm install) ...
    fake.insert(&mutating_configuration());
    fake.insert(&validating_configuration());
    eventually("injection into new configurations", || {
        let ok = injected(&fake, &ca);
        async move { ok }
    })
    .await;

    // ... and a Helm upgrade replaces them without a caBundle.
    fake.remove(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        None,
        CONFIG,
    );
    fake.insert(&mutating_configuration());
    fake.put(&validating_configuration());
    // No check that the bundle is gone first: the injector may already have repaired them
    // (the runtime is multi-threaded). The new objects carry no caBundle, so only a repair
    // makes the check below pass.
    eventually("repair after re-creation", || {
        let ok = injected(&fake, &ca);
        async move { ok }
    })
    .await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_certificate_near_expiry_is_renewed_with_the_same_ca() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    let settings = self_managed();
    let names = issue::dns_names(&settings.webhook_service_name, NS);
    let now = jiff::Timestamp::now();
    let ca = issue::new_ca(now).unwrap_or_else(|e| panic!("{e}"));
    let old = Bundle {
        serving: issue::serving_cert_between(
            &ca,
            &names,
            now - jiff::SignedDuration::from_hours(24 * 300),
            now + jiff::SignedDuration::from_hours(24 * 20),
        )
        .unwrap_or_else(|e| panic!("{e}")),
        ca: ca.clone(),
    };
    fake.insert(&secret_with(&settings, &old));

    let shutdown = CancellationToken::new();
    let (tls, ready) = start(&fake, &settings, &shutdown).await;
    become_ready(ready).await;
    let renewed = stored_bundle(&fake, &settings);
    assert_eq!(renewed.ca, ca, "the CA is kept");
    assert_ne!(renewed.serving, old.serving);
    let validity = issue::validity(&renewed.serving.cert_pem).unwrap_or_else(|e| panic!("{e}"));
    assert!(!validity.needs_renewal(now));
    assert_eq!(fake.count(Verb::Update, "secrets"), 1);
    let addr = serve(&fake, tls, &shutdown);
    assert!(
        serves(
            addr,
            &ca.cert_pem,
            &service_host(&settings),
            &renewed.serving.cert_pem
        )
        .await
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_secret_is_never_rewritten() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    let settings = self_managed();
    let shutdown = CancellationToken::new();
    start(&fake, &settings, &shutdown).await;
    let version = stored_secret(&fake, &settings).map(|s| s["metadata"]["resourceVersion"].clone());
    start(&fake, &settings, &shutdown).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored_secret(&fake, &settings).map(|s| s["metadata"]["resourceVersion"].clone()),
        version
    );
    assert_eq!(fake.count(Verb::Update, "secrets"), 0);
    assert_eq!(fake.count(Verb::Create, "secrets"), 1);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_the_certificate_another_replica_renewed() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    fake.insert(&mutating_configuration());
    fake.insert(&validating_configuration());
    let settings = self_managed();
    let shutdown = CancellationToken::new();
    let (tls, _) = start(&fake, &settings, &shutdown).await;
    let addr = serve(&fake, tls, &shutdown);
    let host = service_host(&settings);
    let first = stored_bundle(&fake, &settings);
    assert!(serves(addr, &first.ca.cert_pem, &host, &first.serving.cert_pem).await);

    // Another replica rotated everything, CA included.
    let names = issue::dns_names(&settings.webhook_service_name, NS);
    let now = jiff::Timestamp::now();
    let ca = issue::new_ca(now).unwrap_or_else(|e| panic!("{e}"));
    let rotated = Bundle {
        serving: issue::serving_cert(&ca, &names, now).unwrap_or_else(|e| panic!("{e}")),
        ca,
    };
    fake.put(&secret_with(&settings, &rotated));
    eventually("the rotated certificate", || {
        serves(addr, &rotated.ca.cert_pem, &host, &rotated.serving.cert_pem)
    })
    .await;
    eventually("the rotated CA in the configurations", || {
        let ok = injected(&fake, &rotated.ca.cert_pem);
        async move { ok }
    })
    .await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_starts_on_a_placeholder_and_recovers() {
    let fake = FakeApi::new();
    fake.create_namespace(NS);
    fake.fail_always(Matcher::any().resource("secrets"), FakeError::unavailable());
    let settings = self_managed();
    let shutdown = CancellationToken::new();
    let (tls, ready) = start(&fake, &settings, &shutdown).await;
    assert!(!ready.is_ready());
    let addr = serve(&fake, tls, &shutdown);
    fake.clear_faults();
    become_ready(ready).await;
    let bundle = stored_bundle(&fake, &settings);
    let host = service_host(&settings);
    eventually("the real certificate", || {
        serves(addr, &bundle.ca.cert_pem, &host, &bundle.serving.cert_pem)
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn in_memory_certificate_serves_tls() {
    let fake = FakeApi::new();
    let shutdown = CancellationToken::new();
    let tls = certs::in_memory(&["localhost".to_string()]).unwrap_or_else(|e| panic!("{e}"));
    let addr = serve(&fake, tls, &shutdown);
    // Self-signed and unknown to the client: the handshake fails on trust, not on the server.
    let pki = https::test_pki();
    let err = served_certificate(addr, &pki.ca.cert_pem, "localhost").await;
    assert!(err.is_err_and(|e| e.contains("certificate")));
    shutdown.cancel();
}
