//! Issuing and inspecting the self-managed certificates: a CA (10 years) and a serving
//! certificate for the webhook Service's DNS names (1 year), generated with rcgen (ECDSA
//! P-256). Pure apart from key generation: the caller passes `now`.

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use super::CertError;

/// Validity of the CA.
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 3650);
/// Validity of the serving certificate.
pub const SERVING_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 365);
/// Certificates start this much in the past, so a node whose clock is a little behind still
/// accepts them.
const BACKDATE: SignedDuration = SignedDuration::from_hours(1);

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// The DNS names the API server may use for the webhook Service.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> CertError + '_ {
    move |e| CertError::Issue(format!("{what}: {e}"))
}

fn to_offset(t: Timestamp) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| CertError::Issue(format!("time out of range: {e}")))
}

fn add(t: Timestamp, d: SignedDuration) -> Result<Timestamp, CertError> {
    t.checked_add(d)
        .map_err(|e| CertError::Issue(format!("time out of range: {e}")))
}

/// A new self-signed CA valid from `now` for [`CA_VALIDITY`].
pub fn new_ca(now: Timestamp) -> Result<PemPair, CertError> {
    let key = KeyPair::generate().map_err(rcgen_error("generating the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-changejob webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_offset(add(now, -BACKDATE)?)?;
    params.not_after = to_offset(add(now, CA_VALIDITY)?)?;
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("signing the CA"))?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `dns_names`, signed by `ca`, valid from `now` for
/// [`SERVING_VALIDITY`].
pub fn serving_cert(
    ca: &PemPair,
    dns_names: &[String],
    now: Timestamp,
) -> Result<PemPair, CertError> {
    serving_cert_between(
        ca,
        dns_names,
        add(now, -BACKDATE)?,
        add(now, SERVING_VALIDITY)?,
    )
}

/// A serving certificate with an explicit validity window.
pub fn serving_cert_between(
    ca: &PemPair,
    dns_names: &[String],
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<PemPair, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(rcgen_error("reading the CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(rcgen_error("reading the CA"))?;
    let key = KeyPair::generate().map_err(rcgen_error("generating the serving key"))?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(rcgen_error("serving names"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_error("signing the serving certificate"))?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start, Unix seconds.
    pub not_before: i64,
    /// End, Unix seconds.
    pub not_after: i64,
}

impl Validity {
    /// Whether less than a third of the validity period remains at `now` (or it is over).
    pub fn needs_renewal(&self, now: Timestamp) -> bool {
        let total = self.not_after.saturating_sub(self.not_before);
        let remaining = self.not_after.saturating_sub(now.as_second());
        remaining.saturating_mul(3) < total
    }

    /// Whether `now` lies inside the validity period.
    pub fn covers(&self, now: Timestamp) -> bool {
        (self.not_before..self.not_after).contains(&now.as_second())
    }
}

fn with_cert<T>(
    cert_pem: &str,
    read: impl FnOnce(&X509Certificate<'_>) -> Result<T, CertError>,
) -> Result<T, CertError> {
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| CertError::Pem(format!("certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| CertError::Pem(format!("certificate: {e}")))?;
    read(&cert)
}

/// The validity period of the first certificate in `cert_pem`.
pub fn validity(cert_pem: &str) -> Result<Validity, CertError> {
    with_cert(cert_pem, |cert| {
        Ok(Validity {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    })
}

/// The DNS subject alternative names of the first certificate in `cert_pem`.
pub fn dns_sans(cert_pem: &str) -> Result<Vec<String>, CertError> {
    with_cert(cert_pem, |cert| {
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| CertError::Pem(format!("subjectAltName: {e}")))?;
        Ok(sans
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(name) => Some(name.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default())
    })
}

/// Whether the first certificate of `cert_pem` is signed by the CA in `ca_pem`.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let ca = parse_x509_pem(ca_pem.as_bytes()).ok().map(|(_, pem)| pem);
    let Some(ca) = ca else { return false };
    let Ok(ca) = ca.parse_x509() else {
        return false;
    };
    with_cert(cert_pem, |cert| {
        Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-01-15T10:30:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn service_names_cover_every_form_the_api_server_may_use() {
        assert_eq!(
            dns_names("kcj-webhook", "ops"),
            vec![
                "kcj-webhook",
                "kcj-webhook.ops",
                "kcj-webhook.ops.svc",
                "kcj-webhook.ops.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn ca_lasts_ten_years_and_serving_cert_one() {
        let ca = new_ca(now()).unwrap_or_else(|e| panic!("{e}"));
        let leaf = serving_cert(&ca, &dns_names("s", "n"), now()).unwrap_or_else(|e| panic!("{e}"));
        let ca_v = validity(&ca.cert_pem).unwrap_or_else(|e| panic!("{e}"));
        let leaf_v = validity(&leaf.cert_pem).unwrap_or_else(|e| panic!("{e}"));
        let day = 86_400;
        assert_eq!((ca_v.not_after - now().as_second()) / day, 3650);
        assert_eq!((leaf_v.not_after - now().as_second()) / day, 365);
        assert!(leaf_v.covers(now()));
    }

    #[test]
    fn serving_cert_has_the_service_sans_and_is_signed_by_the_ca() {
        let ca = new_ca(now()).unwrap_or_else(|e| panic!("{e}"));
        let names = dns_names("s", "n");
        let leaf = serving_cert(&ca, &names, now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dns_sans(&leaf.cert_pem).unwrap_or_default(), names);
        assert!(signed_by(&leaf.cert_pem, &ca.cert_pem));
        let other = new_ca(now()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!signed_by(&leaf.cert_pem, &other.cert_pem));
    }

    #[test]
    fn renewal_is_due_when_less_than_a_third_remains() {
        let v = Validity {
            not_before: 0,
            not_after: 300,
        };
        let at = |s: i64| Timestamp::from_second(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(!v.needs_renewal(at(100)));
        assert!(!v.needs_renewal(at(200)));
        assert!(v.needs_renewal(at(201)));
        assert!(v.needs_renewal(at(400)));
    }
}
