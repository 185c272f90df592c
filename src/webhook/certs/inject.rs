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

/// Watches both configurations and keeps their caBundle equal to the CA in `ca`, until
/// `shutdown`.
pub async fn keep_injected(
    client: Client,
    mutating: String,
    validating: String,
    ca: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    tokio::join!(
        keep_one::<MutatingWebhookConfiguration>(
            Api::all(client.clone()),
            mutating,
            ca.clone(),
            shutdown.clone()
        ),
        keep_one::<ValidatingWebhookConfiguration>(Api::all(client), validating, ca, shutdown),
    );
}

async fn keep_one<K: WebhookConfiguration>(
    api: Api<K>,
    name: String,
    mut ca: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    if name.is_empty() {
        return;
    }
    let kind = K::kind(&());
    match api.get_opt(&name).await {
        Ok(None) => tracing::info!(%kind, %name,
            "webhook configuration not found (running outside the cluster?); its caBundle will be set when it appears"),
        Err(e) => tracing::warn!(%kind, %name, error = %e, "cannot read the webhook configuration"),
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
                if let Some(object) = &latest {
                    inject(&api, object, &wanted).await;
                }
            }
            event = events.next() => match event {
                Some(Ok(object)) => {
                    let wanted = ca.borrow().clone();
                    inject(&api, &object, &wanted).await;
                    latest = Some(object);
                }
                Some(Err(e)) => tracing::warn!(%kind, %name, error = %e, "watching the webhook configuration failed; retrying"),
                None => return,
            },
        }
    }
}

async fn inject<K: WebhookConfiguration>(api: &Api<K>, object: &K, ca: &Option<String>) {
    let Some(ca) = ca else { return };
    let name = object.name_any();
    let Some(patch) = ca_bundle_patch(
        &object.ca_bundles(),
        object.meta().resource_version.as_deref(),
        ca,
    ) else {
        return;
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
        Ok(_) => tracing::info!(%kind, %name, "wrote the CA bundle into the webhook configuration"),
        // The object changed since we read it (or went away); the watch brings the new state.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 || s.code == 404 => {
            tracing::debug!(%kind, %name, reason = %s.reason, "caBundle patch lost a race; waiting for the next version")
        }
        Err(e) => tracing::warn!(%kind, %name, error = %e, "cannot write the CA bundle"),
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
