//! Keeps the self-managed CA in `webhooks[*].clientConfig.caBundle` of the operator's
//! MutatingWebhookConfiguration and ValidatingWebhookConfiguration.
//!
//! Both are watched, so a configuration that a Helm upgrade re-creates without a caBundle is
//! repaired within seconds, and patched whenever the CA changes. Patches are JSON patches
//! guarded by a `test` of the resourceVersion read, so a concurrent edit (another replica, a
//! reordering of `webhooks`) makes the patch fail instead of writing to the wrong entry; the
//! watch then delivers the new version and we try again. A configuration that does not exist
//! (e.g. the operator runs outside the cluster) is logged, not an error.

use std::fmt::Debug;

use base64::Engine;
use futures::StreamExt;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, TestOperation};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A webhook configuration whose entries carry a caBundle.
pub trait WebhookConfiguration:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
    /// The caBundle of each entry of `webhooks`, in order.
    fn ca_bundles(&self) -> Vec<Option<Vec<u8>>>;
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    fn ca_bundles(&self) -> Vec<Option<Vec<u8>>> {
        self.webhooks
            .iter()
            .flatten()
            .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))
            .collect()
    }
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    fn ca_bundles(&self) -> Vec<Option<Vec<u8>>> {
        self.webhooks
            .iter()
            .flatten()
            .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))
            .collect()
    }
}

/// The JSON patch setting every entry's caBundle to `ca_pem`, or `None` when all already
/// have it.
pub fn ca_bundle_patch(
    bundles: &[Option<Vec<u8>>],
    resource_version: Option<&str>,
    ca_pem: &str,
) -> Option<Patch> {
    let want = ca_pem.as_bytes();
    let stale: Vec<usize> = bundles
        .iter()
        .enumerate()
        .filter(|(_, b)| b.as_deref() != Some(want))
        .map(|(i, _)| i)
        .collect();
    if stale.is_empty() {
        return None;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(want);
    let mut ops = Vec::with_capacity(stale.len() + 1);
    if let Some(rv) = resource_version {
        ops.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
            value: json!(rv),
        }));
    }
    for i in stale {
        let index = i.to_string();
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig", "caBundle"]),
            value: json!(encoded),
        }));
    }
    Some(Patch(ops))
}

/// The two configurations to keep, and where to say that each first carries the CA.
pub struct Targets {
    /// Name of the MutatingWebhookConfiguration (empty: none).
    pub mutating: String,
    /// Name of the ValidatingWebhookConfiguration (empty: none).
    pub validating: String,
    /// Set once the mutating configuration carries the CA, or cannot (absent, unreadable).
    pub mutating_done: watch::Sender<bool>,
    /// Set once the validating configuration carries the CA, or cannot.
    pub validating_done: watch::Sender<bool>,
}

/// Watches both configurations and keeps their caBundle equal to the CA in `ca`, until
/// `shutdown`.
///
/// Each `done` flag is raised the first time its configuration is seen carrying the CA (the
/// pod's readiness waits for it), and also when there is nothing to wait for: the name is
/// empty, the configuration does not exist when we start (the operator runs outside the
/// cluster), or it cannot be read (RBAC). It is never lowered again: a later CA change is
/// written within moments, and flipping every replica to unready meanwhile would take the
/// webhook down.
pub async fn keep_injected(
    client: Client,
    targets: Targets,
    ca: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    tokio::join!(
        keep_one::<MutatingWebhookConfiguration>(
            Api::all(client.clone()),
            targets.mutating,
            targets.mutating_done,
            ca.clone(),
            shutdown.clone()
        ),
        keep_one::<ValidatingWebhookConfiguration>(
            Api::all(client),
            targets.validating,
            targets.validating_done,
            ca,
            shutdown
        ),
    );
}

async fn keep_one<K: WebhookConfiguration>(
    api: Api<K>,
    name: String,
    done: watch::Sender<bool>,
    mut ca: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    if name.is_empty() {
        done.send_replace(true);
        return;
    }
    let kind = K::kind(&());
    match api.get_opt(&name).await {
        Ok(None) => {
            tracing::info!(%kind, %name,
                "webhook configuration not found (running outside the cluster?); its caBundle will be set when it appears");
            done.send_replace(true);
        }
        Err(e) => {
            tracing::warn!(%kind, %name, error = %e, "cannot read the webhook configuration");
            done.send_replace(true);
        }
        Ok(Some(_)) => {}
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let events = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(events);
    let mut latest: Option<K> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = ca.changed() => {
                if changed.is_err() {
                    return;
                }
                let wanted = ca.borrow_and_update().clone();
                if let Some(object) = &latest
                    && inject(&api, object, &wanted).await
                {
                    done.send_replace(true);
                }
            }
            event = events.next() => match event {
                Some(Ok(object)) => {
                    let wanted = ca.borrow().clone();
                    if inject(&api, &object, &wanted).await {
                        done.send_replace(true);
                    }
                    latest = Some(object);
                }
                Some(Err(e)) => tracing::warn!(%kind, %name, error = %e, "watching the webhook configuration failed; retrying"),
                None => return,
            },
        }
    }
}

/// Makes `object` carry `ca`; true when it does afterwards (already, or patched).
async fn inject<K: WebhookConfiguration>(api: &Api<K>, object: &K, ca: &Option<String>) -> bool {
    let Some(ca) = ca else { return false };
    let name = object.name_any();
    let Some(patch) = ca_bundle_patch(
        &object.ca_bundles(),
        object.meta().resource_version.as_deref(),
        ca,
    ) else {
        return true;
    };
    let kind = K::kind(&());
    match api
        .patch(
            &name,
            &PatchParams::default(),
            &kube::api::Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(%kind, %name, "wrote the CA bundle into the webhook configuration");
            true
        }
        // The object changed since we read it (or went away); the watch brings the new state.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 || s.code == 404 => {
            tracing::debug!(%kind, %name, reason = %s.reason, "caBundle patch lost a race; waiting for the next version");
            false
        }
        // Not allowed to write it: nothing this pod can fix by waiting, so do not hold its
        // readiness hostage (the log says what is wrong).
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::warn!(%kind, %name, reason = %s.message, "not allowed to write the CA bundle into the webhook configuration");
            true
        }
        Err(e) => {
            tracing::warn!(%kind, %name, error = %e, "cannot write the CA bundle");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_entries_are_patched_behind_a_version_test() {
        let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let bundles = vec![Some(ca.as_bytes().to_vec()), None, Some(b"old".to_vec())];
        let patch = ca_bundle_patch(&bundles, Some("42"), ca).unwrap_or_else(|| panic!("no patch"));
        let text = serde_json::to_value(&patch).unwrap_or_default();
        assert_eq!(
            text[0],
            json!({ "op": "test", "path": "/metadata/resourceVersion", "value": "42" })
        );
        assert_eq!(text[1]["path"], "/webhooks/1/clientConfig/caBundle");
        assert_eq!(text[2]["path"], "/webhooks/2/clientConfig/caBundle");
        assert_eq!(
            text[1]["value"],
            base64::engine::general_purpose::STANDARD.encode(ca)
        );
        assert_eq!(text.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn up_to_date_configuration_needs_no_patch() {
        let bundles = vec![Some(b"ca".to_vec())];
        assert!(ca_bundle_patch(&bundles, Some("1"), "ca").is_none());
        assert!(ca_bundle_patch(&[], Some("1"), "ca").is_none());
    }
}
