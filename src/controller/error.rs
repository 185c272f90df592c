//! Errors of one reconcile, each with a short label for metrics.

/// Why a reconcile failed (status could not be written, or a transient API problem).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object lacks a namespace or UID (never true for objects from the API server).
    #[error("ChangeTriggeredJob {0} has no namespace or uid")]
    MissingMetadata(String),
    /// Writing status failed.
    #[error("writing status of {name}: {source}")]
    Status {
        /// CTJ name.
        name: String,
        /// The error.
        source: kube::Error,
    },
    /// A problem that should clear by itself (API errors, RBAC that may be granted later).
    #[error("{0}")]
    Transient(String),
}

impl Error {
    /// Label for `changejob_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingMetadata(_) => "MissingMetadata",
            Error::Status { .. } => "StatusWriteFailed",
            Error::Transient(_) => "Transient",
        }
    }
}
