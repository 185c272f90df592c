//! The self-managed CA and serving certificate, kept in one Secret in the operator namespace
//! (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`, type `kubernetes.io/tls`) and shared by every
//! replica.
//!
//! Race-free without a lock: the first replica to `create` wins, the others get
//! AlreadyExists and read the winner's Secret. A valid Secret is never overwritten; a Secret
//! that is invalid or near expiry is replaced with an update carrying the resourceVersion that
//! was read, so of two replicas renewing at once one gets a Conflict and re-reads.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use rcgen::KeyPair;
use x509_parser::pem::parse_x509_pem;

use super::CertError;
use super::issue::{self, PemPair};
use super::tls::config_from_pem;

/// Key of the CA certificate in the Secret.
pub const CA_CERT: &str = "ca.crt";
/// Key of the CA private key in the Secret.
pub const CA_KEY: &str = "ca.key";
/// Key of the serving certificate in the Secret.
pub const TLS_CERT: &str = "tls.crt";
/// Key of the serving private key in the Secret.
pub const TLS_KEY: &str = "tls.key";
/// Type of the Secret.
pub const SECRET_TYPE: &str = "kubernetes.io/tls";

/// Reads and writes before giving up on a contended Secret.
const ATTEMPTS: usize = 5;

/// The CA and the serving certificate it signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The CA; its certificate is the caBundle of the webhook configurations.
    pub ca: PemPair,
    /// The serving certificate and key.
    pub serving: PemPair,
}

/// What a stored bundle needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assessment {
    /// Nothing: serve it.
    Valid,
    /// A new serving certificate from the same CA.
    RenewServing,
    /// A new CA and serving certificate.
    Reissue,
}

/// Reads the bundle out of a Secret, if all four keys are there and are text.
pub fn bundle_from(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(Bundle {
        ca: PemPair {
            cert_pem: text(CA_CERT)?,
            key_pem: text(CA_KEY)?,
        },
        serving: PemPair {
            cert_pem: text(TLS_CERT)?,
            key_pem: text(TLS_KEY)?,
        },
    })
}

/// The Secret data holding `bundle`.
pub fn data_of(bundle: &Bundle) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT, &bundle.ca.cert_pem),
        (CA_KEY, &bundle.ca.key_pem),
        (TLS_CERT, &bundle.serving.cert_pem),
        (TLS_KEY, &bundle.serving.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// Whether the CA key belongs to the CA certificate.
fn ca_key_matches(ca: &PemPair) -> bool {
    let Ok(key) = KeyPair::from_pem(&ca.key_pem) else {
        return false;
    };
    let Ok((_, pem)) = parse_x509_pem(ca.cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// Decides what a stored bundle needs at `now` for serving `names`.
pub fn assess(bundle: Option<&Bundle>, names: &[String], now: Timestamp) -> Assessment {
    let Some(bundle) = bundle else {
        return Assessment::Reissue;
    };
    let ca_ok = issue::validity(&bundle.ca.cert_pem)
        .is_ok_and(|v| v.covers(now) && !v.needs_renewal(now))
        && ca_key_matches(&bundle.ca);
    if !ca_ok {
        return Assessment::Reissue;
    }
    let serving = &bundle.serving;
    let time_ok =
        issue::validity(&serving.cert_pem).is_ok_and(|v| v.covers(now) && !v.needs_renewal(now));
    let names_ok =
        issue::dns_sans(&serving.cert_pem).is_ok_and(|sans| names.iter().all(|n| sans.contains(n)));
    let chain_ok = issue::signed_by(&serving.cert_pem, &bundle.ca.cert_pem);
    let key_ok = config_from_pem(serving.cert_pem.as_bytes(), serving.key_pem.as_bytes()).is_ok();
    if time_ok && names_ok && chain_ok && key_ok {
        Assessment::Valid
    } else {
        Assessment::RenewServing
    }
}

/// A bundle that fixes what `assessment` found.
pub fn renew(
    bundle: Option<&Bundle>,
    assessment: Assessment,
    names: &[String],
    now: Timestamp,
) -> Result<Bundle, CertError> {
    let ca = match (assessment, bundle) {
        (Assessment::RenewServing, Some(b)) | (Assessment::Valid, Some(b)) => b.ca.clone(),
        _ => issue::new_ca(now)?,
    };
    let serving = issue::serving_cert(&ca, names, now)?;
    Ok(Bundle { ca, serving })
}

/// The Secret holding the self-managed certificates.
#[derive(Clone)]
pub struct SecretStore {
    api: Api<Secret>,
    name: String,
    names: Vec<String>,
}

impl SecretStore {
    /// The Secret `name` reached through `api` (namespaced to the operator namespace), for a
    /// serving certificate valid for `dns_names`.
    pub fn new(api: Api<Secret>, name: impl Into<String>, dns_names: Vec<String>) -> Self {
        SecretStore {
            api,
            name: name.into(),
            names: dns_names,
        }
    }

    /// The DNS names the serving certificate must cover.
    pub fn dns_names(&self) -> &[String] {
        &self.names
    }

    /// Returns a valid bundle, creating or renewing the Secret when needed.
    pub async fn ensure(&self, now: Timestamp) -> Result<Bundle, CertError> {
        let api_error = |what: &str, e: kube::Error| {
            CertError::Api(format!("{what} Secret {}: {e}", self.name))
        };
        for _ in 0..ATTEMPTS {
            let stored = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| api_error("reading", e))?;
            let Some(stored) = stored else {
                let bundle = renew(None, Assessment::Reissue, &self.names, now)?;
                match self
                    .api
                    .create(&PostParams::default(), &self.secret(&bundle))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %self.name, "created the webhook certificate Secret");
                        return Ok(bundle);
                    }
                    // Another replica created it first; use theirs.
                    Err(kube::Error::Api(s)) if s.is_already_exists() || s.code == 409 => continue,
                    Err(e) => return Err(api_error("creating", e)),
                }
            };
            let current = bundle_from(&stored);
            let assessment = assess(current.as_ref(), &self.names, now);
            let Some(current) = current.filter(|_| assessment == Assessment::Valid) else {
                let bundle = renew(bundle_from(&stored).as_ref(), assessment, &self.names, now)?;
                let mut updated = stored.clone();
                updated.data = Some(data_of(&bundle));
                updated.string_data = None;
                // `stored` carries its resourceVersion: the update fails with Conflict if
                // another replica changed the Secret since we read it.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %self.name, ?assessment, "renewed the webhook certificate");
                        return Ok(bundle);
                    }
                    Err(kube::Error::Api(s)) if s.is_conflict() || s.code == 409 => continue,
                    Err(e) => return Err(api_error("updating", e)),
                }
            };
            return Ok(current);
        }
        Err(CertError::Api(format!(
            "Secret {} kept changing while it was being read; will retry",
            self.name
        )))
    }

    fn secret(&self, bundle: &Bundle) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "kube-changejob".to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(data_of(bundle)),
            ..Secret::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn now() -> Timestamp {
        Timestamp::now()
    }

    fn names() -> Vec<String> {
        issue::dns_names("svc", "ns")
    }

    fn fresh() -> Bundle {
        renew(None, Assessment::Reissue, &names(), now()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn nothing_stored_means_reissue() {
        assert_eq!(assess(None, &names(), now()), Assessment::Reissue);
    }

    #[test]
    fn a_fresh_bundle_is_valid_and_round_trips_through_secret_data() {
        let b = fresh();
        assert_eq!(assess(Some(&b), &names(), now()), Assessment::Valid);
        let secret = Secret {
            data: Some(data_of(&b)),
            ..Secret::default()
        };
        assert_eq!(bundle_from(&secret), Some(b));
    }

    #[test]
    fn serving_cert_near_expiry_is_renewed_with_the_same_ca() {
        let b = fresh();
        let start = now() - SignedDuration::from_hours(24 * 300);
        let end = now() + SignedDuration::from_hours(24 * 30);
        let old = Bundle {
            serving: issue::serving_cert_between(&b.ca, &names(), start, end)
                .unwrap_or_else(|e| panic!("{e}")),
            ca: b.ca.clone(),
        };
        assert_eq!(
            assess(Some(&old), &names(), now()),
            Assessment::RenewServing
        );
        let renewed = renew(Some(&old), Assessment::RenewServing, &names(), now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(renewed.ca, b.ca);
        assert_eq!(assess(Some(&renewed), &names(), now()), Assessment::Valid);
    }

    #[test]
    fn other_service_names_need_a_new_serving_cert() {
        let b = fresh();
        assert_eq!(
            assess(Some(&b), &issue::dns_names("other", "ns"), now()),
            Assessment::RenewServing
        );
    }

    #[test]
    fn serving_cert_from_another_ca_is_renewed() {
        let b = fresh();
        let other = fresh();
        let mixed = Bundle {
            ca: b.ca,
            serving: other.serving,
        };
        assert_eq!(
            assess(Some(&mixed), &names(), now()),
            Assessment::RenewServing
        );
    }

    #[test]
    fn ca_with_a_foreign_key_is_reissued() {
        let b = fresh();
        let other = fresh();
        let broken = Bundle {
            ca: PemPair {
                cert_pem: b.ca.cert_pem,
                key_pem: other.ca.key_pem,
            },
            serving: b.serving,
        };
        assert_eq!(assess(Some(&broken), &names(), now()), Assessment::Reissue);
    }

    #[test]
    fn incomplete_secret_has_no_bundle() {
        let mut data = data_of(&fresh());
        data.remove(CA_KEY);
        let secret = Secret {
            data: Some(data),
            ..Secret::default()
        };
        assert_eq!(bundle_from(&secret), None);
    }
}
