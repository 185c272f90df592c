//! PEM certificate chains and private keys turned into a rustls server configuration (ring
//! provider, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::CertError;

/// The crypto provider for every TLS configuration we build. Chosen explicitly so that no
/// process-wide default (and no aws-lc-rs) is needed.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A parsed certificate chain and its private key.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key.
    pub key: PrivateKeyDer<'static>,
}

/// Parses PEM: every `CERTIFICATE` block of `cert_pem`, and the first private key of `key_pem`
/// in any of the PKCS#8, PKCS#1 or SEC1 forms.
pub fn parse_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsMaterial, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Pem(
            "certificate: no CERTIFICATE block found".to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::Pem(format!("private key: {e}")))?;
    Ok(TlsMaterial { chain, key })
}

/// A server configuration serving `material`. Fails when the key does not belong to the
/// leaf certificate.
pub fn server_config(material: TlsMaterial) -> Result<Arc<ServerConfig>, CertError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(material.chain, material.key)
        .map_err(|e| CertError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`parse_pem`] then [`server_config`].
pub fn config_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, CertError> {
    server_config(parse_pem(cert_pem, key_pem)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::certs::issue;

    fn pair() -> (String, String) {
        let ca = issue::new_ca(jiff::Timestamp::now()).unwrap_or_else(|e| panic!("{e}"));
        let leaf = issue::serving_cert(&ca, &["svc".to_string()], jiff::Timestamp::now())
            .unwrap_or_else(|e| panic!("{e}"));
        (leaf.cert_pem, leaf.key_pem)
    }

    #[test]
    fn pkcs8_pem_builds_a_config_with_alpn() {
        let (cert, key) = pair();
        let config =
            config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    const RSA_CERT: &str = include_str!("../../../tests/fixtures/tls/rsa.crt");
    const RSA_PKCS1_KEY: &str = include_str!("../../../tests/fixtures/tls/rsa-pkcs1.key");
    const EC_CERT: &str = include_str!("../../../tests/fixtures/tls/ec.crt");
    const EC_SEC1_KEY: &str = include_str!("../../../tests/fixtures/tls/ec-sec1.key");

    #[test]
    fn pkcs1_rsa_keys_are_accepted() {
        let material = parse_pem(RSA_CERT.as_bytes(), RSA_PKCS1_KEY.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(material.key, PrivateKeyDer::Pkcs1(_)));
        assert!(server_config(material).is_ok());
    }

    #[test]
    fn sec1_ec_keys_are_accepted() {
        let material =
            parse_pem(EC_CERT.as_bytes(), EC_SEC1_KEY.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(material.key, PrivateKeyDer::Sec1(_)));
        assert!(server_config(material).is_ok());
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let (cert, _) = pair();
        let (_, other_key) = pair();
        assert!(config_from_pem(cert.as_bytes(), other_key.as_bytes()).is_err());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            parse_pem(b"nope", b"nope"),
            Err(CertError::Pem(_))
        ));
    }
}
