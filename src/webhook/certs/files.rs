//! Certificates from files (`tls.crt`, `tls.key`), e.g. a cert-manager Secret mounted as a
//! volume, re-read when their content changes.
//!
//! The files are polled by content hash rather than watched with inotify: the kubelet updates
//! Secret volumes by swapping a `..data` symlink, which file watches on the visible paths
//! miss. A new pair that does not load (half-written, key not matching) is logged and the
//! current one kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::CertError;
use super::tls::config_from_pem;

/// Certificate chain file name (PEM).
pub const CERT_FILE: &str = "tls.crt";
/// Private key file name (PEM).
pub const KEY_FILE: &str = "tls.key";

/// Pause before re-reading a pair that did not load, in case it was caught mid-rotation.
const SETTLE: Duration = Duration::from_millis(500);

/// Hash of a certificate/key pair's content.
pub type PairDigest = [u8; 32];

/// Reads both files.
pub async fn read_pair(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let read = |name: &str| {
        let path = dir.join(name);
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| CertError::Io(format!("{}: {e}", path.display())))
        }
    };
    Ok((read(CERT_FILE).await?, read(KEY_FILE).await?))
}

/// Content hash of a pair.
pub fn digest(cert: &[u8], key: &[u8]) -> PairDigest {
    let mut hasher = Sha256::new();
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}

/// Loads the pair in `dir` into a new server configuration.
pub async fn load(dir: &Path) -> Result<(RustlsConfig, PairDigest), CertError> {
    let (cert, key) = read_pair(dir).await?;
    let config = config_from_pem(&cert, &key)?;
    Ok((RustlsConfig::from_config(config), digest(&cert, &key)))
}

/// Polls `dir` every `interval` and reloads `tls` when the pair changes; `loaded` is the digest
/// of what `tls` serves now (`None` for a placeholder). Sets `ready` once a pair is loaded.
pub async fn keep_reloaded(
    dir: PathBuf,
    tls: RustlsConfig,
    loaded: Option<PairDigest>,
    interval: Duration,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut loaded = loaded;
    // The last pair we tried, good or bad, so a broken pair is reported once, not every poll.
    let mut seen = loaded;
    // Whether "cannot read" was already reported since the files were last readable.
    let mut unreadable_reported = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match try_reload(&dir, &tls, loaded, seen).await {
            Reload::Unchanged => unreadable_reported = false,
            Reload::Loaded(d) => {
                unreadable_reported = false;
                loaded = Some(d);
                seen = Some(d);
                ready.send_replace(true);
                tracing::info!(dir = %dir.display(), "reloaded the webhook certificate from files");
            }
            Reload::Broken(d, e) => {
                unreadable_reported = false;
                seen = Some(d);
                tracing::error!(dir = %dir.display(), error = %e,
                    "the new certificate files cannot be used; still serving the previous certificate");
            }
            Reload::Unreadable(e) => {
                if !unreadable_reported {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the certificate files");
                    unreadable_reported = true;
                }
                seen = None;
            }
        }
    }
}

enum Reload {
    Unchanged,
    Loaded(PairDigest),
    Broken(PairDigest, CertError),
    Unreadable(CertError),
}

async fn try_reload(
    dir: &Path,
    tls: &RustlsConfig,
    loaded: Option<PairDigest>,
    seen: Option<PairDigest>,
) -> Reload {
    let mut attempt = 0;
    loop {
        let (cert, key) = match read_pair(dir).await {
            Ok(pair) => pair,
            Err(e) => return Reload::Unreadable(e),
        };
        let d = digest(&cert, &key);
        if Some(d) == loaded || Some(d) == seen {
            return Reload::Unchanged;
        }
        match config_from_pem(&cert, &key) {
            Ok(config) => {
                tls.reload_from_config(config);
                return Reload::Loaded(d);
            }
            Err(e) if attempt > 0 => return Reload::Broken(d, e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(SETTLE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_either_file() {
        let a = digest(b"cert", b"key");
        assert_eq!(a, digest(b"cert", b"key"));
        assert_ne!(a, digest(b"cert2", b"key"));
        assert_ne!(a, digest(b"cert", b"key2"));
        // The length prefix keeps the boundary between the two files unambiguous.
        assert_ne!(digest(b"ab", b"c"), digest(b"a", b"bc"));
    }

    #[tokio::test]
    async fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = load(dir.path())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("tls.crt"), "{err}");
    }
}
