//! The installation's fingerprint key, kept in a Secret in the operator namespace.
//!
//! Whichever replica leads first creates it; a create that loses the race (409) reads the
//! winner's key, so every replica fingerprints with the same key.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::detect::fingerprint::{FingerprintKey, KeyTooShort};

/// Data key inside the Secret.
pub const SECRET_KEY: &str = "key";

/// Why the key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Talking to the API failed.
    #[error("reading or creating Secret {namespace}/{name}: {source}")]
    Api {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The error.
        source: kube::Error,
    },
    /// The Secret exists but holds no usable key.
    #[error(
        "Secret {namespace}/{name} has no usable data.{SECRET_KEY}: {reason}; delete it to let the operator create a new key"
    )]
    Invalid {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// Why.
        reason: String,
    },
    /// No randomness available.
    #[error("generating a key: {0}")]
    Random(String),
}

/// Loads the key from the Secret, creating the Secret with a new random key if absent.
pub async fn load_or_create(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<FingerprintKey, KeyError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let api_error = |source| KeyError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    };
    if let Some(secret) = api.get_opt(name).await.map_err(api_error)? {
        return key_from_secret(&secret, namespace, name);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "kube-changejob".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "changejob.dev/purpose".to_string(),
                "Key of the fingerprints in ChangeTriggeredJob status. Replacing it re-baselines every ChangeTriggeredJob without triggering.".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(SECRET_KEY.to_string(), ByteString(hex.into_bytes()))])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => key_from_secret(&created, namespace, name),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Another replica created it first: use theirs.
            let winner = api.get(name).await.map_err(api_error)?;
            key_from_secret(&winner, namespace, name)
        }
        Err(e) => Err(api_error(e)),
    }
}

fn key_from_secret(
    secret: &Secret,
    namespace: &str,
    name: &str,
) -> Result<FingerprintKey, KeyError> {
    let invalid = |reason: String| KeyError::Invalid {
        namespace: namespace.to_string(),
        name: name.to_string(),
        reason,
    };
    let mut bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_KEY))
        .map(|b| b.0.clone())
        .ok_or_else(|| invalid("the key is missing".into()))?;
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    FingerprintKey::new(bytes).map_err(|KeyTooShort(n)| invalid(format!("it is {n} bytes long")))
}
