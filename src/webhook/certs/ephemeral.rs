//! An in-memory self-signed certificate, for when no real one is available yet (the server
//! starts on it and reports not ready) or not needed (the metrics server's HTTPS when the
//! webhook is disabled). Never written anywhere.

use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;

use super::CertError;
use super::tls::config_from_pem;

/// A server configuration with a fresh self-signed certificate for `names` (names rcgen
/// refuses are replaced by `localhost`: a placeholder must never keep the server from starting).
pub fn self_signed_config(names: &[String]) -> Result<Arc<ServerConfig>, CertError> {
    let usable: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
    let certified = rcgen::generate_simple_self_signed(usable)
        .or_else(|_| rcgen::generate_simple_self_signed(vec!["localhost".to_string()]))
        .map_err(|e| CertError::Issue(format!("self-signed certificate: {e}")))?;
    config_from_pem(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
}

/// [`self_signed_config`] wrapped for axum-server.
pub fn in_memory(names: &[String]) -> Result<RustlsConfig, CertError> {
    Ok(RustlsConfig::from_config(self_signed_config(names)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_without_names() {
        assert!(self_signed_config(&[]).is_ok());
        assert!(self_signed_config(&[String::new(), "bad name\u{0}".to_string()]).is_ok());
        assert!(in_memory(&["kube-changejob-metrics".to_string()]).is_ok());
    }
}
