//! `kube-changejob dev`: the operator on your own cluster in one command, before installing the
//! chart. It applies the CRD with server-side apply, waits until the API server serves it, and
//! runs the operator out of cluster against the current kube context, with the admission
//! webhook off (the API server could not call back into a laptop) and plain-HTTP metrics on
//! 127.0.0.1:8080.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tracing::{error, info};

use crate::config::{Overrides, Settings};

/// Field manager of the CRD apply (kubectl's own `kubectl apply --server-side` would be
/// `kubectl`; a name of its own shows who applied it).
pub const FIELD_MANAGER: &str = "kube-changejob-dev";

/// Where `dev` serves metrics and health unless told otherwise.
pub const METRICS_ADDRESS: &str = "127.0.0.1:8080";

/// What can stop `dev` before the operator starts.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Applying the CRD failed (typically: the user may not write CRDs).
    #[error("applying the CustomResourceDefinition {name}: {source}")]
    Apply {
        /// CRD name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The API server did not report the CRD as Established in time.
    #[error("the CustomResourceDefinition {name} was not Established within {seconds}s: {detail}")]
    NotEstablished {
        /// CRD name.
        name: String,
        /// How long it waited.
        seconds: u64,
        /// The last condition seen, or the last error.
        detail: String,
    },
}

/// The settings `dev` runs with: the user's flags, environment and config file, with the
/// webhook off, plain-HTTP metrics on [`METRICS_ADDRESS`] and the kube context's namespace as
/// operator namespace wherever the user chose nothing.
pub fn dev_overrides(mut overrides: Overrides, context_namespace: &str) -> Overrides {
    overrides.webhook_enabled.get_or_insert(false);
    overrides.metrics_secure.get_or_insert(false);
    if overrides.metrics_bind_address.is_none() {
        overrides.metrics_bind_address = METRICS_ADDRESS.parse::<SocketAddr>().ok();
    }
    overrides
        .operator_namespace
        .get_or_insert_with(|| context_namespace.to_owned());
    overrides
}

/// Applies the operator's CRD with server-side apply (taking ownership of the fields an
/// earlier client-side apply or Helm wrote, as `kubectl apply --server-side --force-conflicts`).
pub async fn apply_crd(client: &Client) -> Result<CustomResourceDefinition, DevError> {
    let crd = crate::api::crd();
    let name = crd.name_any();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|source| DevError::Apply { name, source })
}

/// Waits until the CRD's Established condition is True (a new CRD takes a moment before its
/// resource is served; watching it earlier fails with 404).
pub async fn wait_established(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<(), DevError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut detail = "no Established condition yet".to_owned();
    loop {
        match api.get(name).await {
            Ok(crd) => {
                let established = crd
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Established"));
                match established {
                    Some(c) if c.status == "True" => return Ok(()),
                    Some(c) => {
                        detail = format!(
                            "Established is {} ({}: {})",
                            c.status,
                            c.reason.clone().unwrap_or_default(),
                            c.message.clone().unwrap_or_default()
                        )
                    }
                    None => {}
                }
            }
            Err(e) => detail = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DevError::NotEstablished {
                name: name.to_owned(),
                seconds: timeout.as_secs(),
                detail,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The whole `dev` command. Returns the exit code.
pub fn main(overrides: Overrides) -> ExitCode {
    crate::client::install_crypto_provider();
    let Some(runtime) = crate::run::start_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let namespace = match kube::Config::infer().await {
            Ok(config) => config.default_namespace,
            Err(e) => {
                eprintln!("error: no Kubernetes configuration found: {e} (kubectl config current-context)");
                return ExitCode::from(5);
            }
        };
        let settings = match Settings::load(&dev_overrides(overrides, &namespace)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = crate::telemetry::init_tracing(&settings.log_level, settings.log_format) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        let client = match crate::client::build_client(&settings).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "exiting");
                return ExitCode::from(5);
            }
        };
        let crd = match apply_crd(&client).await {
            Ok(crd) => crd,
            Err(e) => {
                error!(error = %e, "exiting");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = wait_established(&client, &crd.name_any(), Duration::from_secs(30)).await {
            error!(error = %e, "exiting");
            return ExitCode::FAILURE;
        }
        info!(
            crd = %crd.name_any(),
            operator_namespace = %settings.operator_namespace,
            metrics = %settings.metrics_bind_address,
            "CRD applied; running the operator against the current context with the webhook off (Ctrl-C stops it)"
        );
        match crate::run::run(Arc::new(settings)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "exiting");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_turns_the_webhook_off_and_metrics_plain_unless_told_otherwise() {
        let o = dev_overrides(Overrides::default(), "sandbox");
        assert_eq!(o.webhook_enabled, Some(false));
        assert_eq!(o.metrics_secure, Some(false));
        assert_eq!(o.metrics_bind_address, METRICS_ADDRESS.parse().ok());
        assert_eq!(o.operator_namespace.as_deref(), Some("sandbox"));

        let chosen = Overrides {
            operator_namespace: Some("ops".into()),
            metrics_bind_address: "127.0.0.1:9090".parse().ok(),
            ..Overrides::default()
        };
        let o = dev_overrides(chosen, "sandbox");
        assert_eq!(o.operator_namespace.as_deref(), Some("ops"));
        assert_eq!(o.metrics_bind_address, "127.0.0.1:9090".parse().ok());
    }
}
