//! The "TLS material loaded" flag that `/readyz` reports: false while the server still runs on
//! a placeholder certificate, true once a real one is in place.

use tokio::sync::watch;

/// Read side of the flag; cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsReadiness {
    rx: watch::Receiver<bool>,
}

impl TlsReadiness {
    /// Whether real TLS material is being served.
    pub fn is_ready(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until real TLS material is served (returns at once if it already is, or if the
    /// certificate tasks have stopped).
    pub async fn wait_ready(&mut self) {
        let _ = self.rx.wait_for(|ready| *ready).await;
    }

    /// A flag that is always true (TLS material that cannot change, e.g. in tests).
    pub fn always_ready() -> Self {
        let (tx, rx) = watch::channel(true);
        drop(tx);
        TlsReadiness { rx }
    }
}

/// A new flag with its write side.
pub(crate) fn flag(initial: bool) -> (watch::Sender<bool>, TlsReadiness) {
    let (tx, rx) = watch::channel(initial);
    (tx, TlsReadiness { rx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flag_follows_the_sender() {
        let (tx, mut ready) = flag(false);
        assert!(!ready.is_ready());
        let _ = tx.send(true);
        ready.wait_ready().await;
        assert!(ready.is_ready());
        assert!(TlsReadiness::always_ready().is_ready());
    }
}
