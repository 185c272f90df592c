//! TLS material for the admission server: from files (cert-manager) with hot reload, or
//! self-managed in a Secret with renewal and caBundle injection, plus an in-memory
//! self-signed fallback. [`start`] picks the mode from the settings and spawns the background
//! tasks.

pub mod ephemeral;
pub mod files;
pub mod inject;
pub mod issue;
pub mod readiness;
pub mod secret;
pub mod tls;

use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use ephemeral::in_memory;
pub use readiness::TlsReadiness;

use crate::config::{CertMode, Settings};
use secret::{Bundle, SecretStore};

/// Why TLS material could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// PEM that does not parse.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate and key rustls does not accept together.
    #[error("unusable certificate or key: {0}")]
    Tls(String),
    /// Generating a certificate failed.
    #[error("issuing a certificate failed: {0}")]
    Issue(String),
    /// Reading files failed.
    #[error("reading certificate files failed: {0}")]
    Io(String),
    /// The API server refused or failed.
    #[error("{0}")]
    Api(String),
    /// A setting needed for the chosen mode is missing.
    #[error("certificate settings: {0}")]
    Config(String),
}

/// How often the background tasks look again.
#[derive(Clone, Copy, Debug)]
pub struct CertTimings {
    /// Files mode: how often the files are re-read.
    pub file_poll: Duration,
    /// Self-managed mode: how often the Secret is re-read (and renewed when due).
    pub secret_poll: Duration,
    /// How soon to try again while no certificate could be loaded at all.
    pub retry: Duration,
    /// How long `start` waits for the first certificate before starting on a placeholder.
    pub first_load: Duration,
}

impl Default for CertTimings {
    fn default() -> Self {
        CertTimings {
            file_poll: Duration::from_secs(10),
            secret_poll: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            first_load: Duration::from_secs(15),
        }
    }
}

/// Prepares the admission server's TLS configuration for `settings.webhook_cert_mode` and
/// spawns the tasks that keep it current until `shutdown`:
///
/// - `files`: loads `tls.crt`/`tls.key` from `webhook_cert_dir`, re-reads them every 10s and
///   reloads on change.
/// - `self-managed`: creates or reads the Secret `webhook_cert_secret` in
///   `operator_namespace`, renews it when a third of the serving certificate's life remains,
///   reloads when another replica renewed it, and keeps the CA bundle in both webhook
///   configurations.
///
/// Never blocks for long: if the first certificate cannot be had (files not mounted yet, API
/// unreachable), the server starts on an in-memory self-signed certificate and the returned
/// readiness stays false until a real one is loaded.
pub async fn start(
    client: Client,
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<(RustlsConfig, TlsReadiness), CertError> {
    start_with(client, settings, CertTimings::default(), shutdown).await
}

/// [`start`] with explicit timings.
pub async fn start_with(
    client: Client,
    settings: &Settings,
    timings: CertTimings,
    shutdown: CancellationToken,
) -> Result<(RustlsConfig, TlsReadiness), CertError> {
    match settings.webhook_cert_mode {
        CertMode::Files => start_files(settings, timings, shutdown).await,
        CertMode::SelfManaged => start_self_managed(client, settings, timings, shutdown).await,
    }
}

fn service_names(settings: &Settings) -> Vec<String> {
    issue::dns_names(&settings.webhook_service_name, &settings.operator_namespace)
}

async fn start_files(
    settings: &Settings,
    timings: CertTimings,
    shutdown: CancellationToken,
) -> Result<(RustlsConfig, TlsReadiness), CertError> {
    let dir = settings.webhook_cert_dir.clone();
    let (tls, loaded) = match files::load(&dir).await {
        Ok((tls, digest)) => (tls, Some(digest)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e,
                "no usable certificate files yet; serving a placeholder certificate until they appear");
            (in_memory(&service_names(settings))?, None)
        }
    };
    let (ready_tx, readiness) = readiness::flag(loaded.is_some());
    tokio::spawn(files::keep_reloaded(
        dir,
        tls.clone(),
        loaded,
        timings.file_poll,
        ready_tx,
        shutdown,
    ));
    Ok((tls, readiness))
}

async fn start_self_managed(
    client: Client,
    settings: &Settings,
    timings: CertTimings,
    shutdown: CancellationToken,
) -> Result<(RustlsConfig, TlsReadiness), CertError> {
    if settings.webhook_cert_secret.is_empty() {
        return Err(CertError::Config(
            "webhookCertSecret must name the Secret for self-managed certificates".to_string(),
        ));
    }
    if settings.webhook_service_name.is_empty() {
        return Err(CertError::Config(
            "webhookServiceName must name the webhook Service".to_string(),
        ));
    }
    let store = SecretStore::new(
        Api::<Secret>::namespaced(client.clone(), &settings.operator_namespace),
        settings.webhook_cert_secret.clone(),
        service_names(settings),
    );
    let (ca_tx, ca_rx) = watch::channel(None);
    let first = tokio::time::timeout(timings.first_load, store.ensure(Timestamp::now())).await;
    let (tls, current) = match first {
        Ok(Ok(bundle)) => {
            let config = tls::config_from_pem(
                bundle.serving.cert_pem.as_bytes(),
                bundle.serving.key_pem.as_bytes(),
            )?;
            ca_tx.send_replace(Some(bundle.ca.cert_pem.clone()));
            (RustlsConfig::from_config(config), Some(bundle))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no webhook certificate yet; serving a placeholder and retrying");
            (in_memory(store.dns_names())?, None)
        }
        Err(_) => {
            tracing::warn!(
                "the API server did not answer in time; serving a placeholder certificate and retrying"
            );
            (in_memory(store.dns_names())?, None)
        }
    };
    // Ready once a real certificate is served and its CA is in both webhook configurations:
    // before that the API server could not verify this pod, so `helm install --wait` followed
    // by a `kubectl apply` would meet "certificate signed by unknown authority".
    let (cert_tx, cert_ready) = readiness::flag(current.is_some());
    let (mutating_tx, mutating_ready) = readiness::flag(false);
    let (validating_tx, validating_ready) = readiness::flag(false);
    let (ready_tx, readiness) = readiness::flag(false);
    tokio::spawn(async move {
        for mut part in [cert_ready, mutating_ready, validating_ready] {
            part.wait_ready().await;
        }
        ready_tx.send_replace(true);
        // Keep the flag open: a dropped sender reads as "the tasks stopped".
        ready_tx.closed().await;
    });
    tokio::spawn(keep_self_managed(
        store,
        tls.clone(),
        current,
        cert_tx,
        ca_tx,
        timings,
        shutdown.clone(),
    ));
    tokio::spawn(inject::keep_injected(
        client,
        inject::Targets {
            mutating: settings.mutating_webhook_configuration.clone(),
            validating: settings.validating_webhook_configuration.clone(),
            mutating_done: mutating_tx,
            validating_done: validating_tx,
        },
        ca_rx,
        shutdown,
    ));
    Ok((tls, readiness))
}

/// Re-reads the Secret periodically: renews it when due (any replica may), and reloads the
/// served certificate and the CA bundle when the stored bundle differs from the served one.
async fn keep_self_managed(
    store: SecretStore,
    tls: RustlsConfig,
    mut current: Option<Bundle>,
    ready: watch::Sender<bool>,
    ca: watch::Sender<Option<String>>,
    timings: CertTimings,
    shutdown: CancellationToken,
) {
    loop {
        let wait = if current.is_some() {
            timings.secret_poll
        } else {
            timings.retry
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let bundle = match store.ensure(Timestamp::now()).await {
            Ok(bundle) => bundle,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or renew the webhook certificate Secret; keeping the current certificate");
                continue;
            }
        };
        if current.as_ref() == Some(&bundle) {
            continue;
        }
        match tls::config_from_pem(
            bundle.serving.cert_pem.as_bytes(),
            bundle.serving.key_pem.as_bytes(),
        ) {
            Ok(config) => {
                tls.reload_from_config(config);
                ca.send_replace(Some(bundle.ca.cert_pem.clone()));
                ready.send_replace(true);
                tracing::info!("serving the webhook certificate from the Secret");
                current = Some(bundle);
            }
            Err(e) => tracing::error!(error = %e, "the stored webhook certificate cannot be used"),
        }
    }
}
