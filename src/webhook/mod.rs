//! The admission webhook for ChangeTriggeredJobs: `/mutate` fills in defaults and stamps the
//! changed-at annotation, `/validate` rejects specs that cannot work (with the field path, what
//! is wrong and how to fix it) and warns about risky ones, over HTTPS with certificates from
//! files or self-managed.
//!
//! # Wiring
//!
//! ```no_run
//! # async fn wire(
//! #     client: kube::Client,
//! #     discovery: std::sync::Arc<kube_changejob::discovery::DiscoveryCache>,
//! #     metrics: kube_changejob::metrics::Metrics,
//! #     settings: std::sync::Arc<kube_changejob::config::Settings>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use kube_changejob::webhook::{self, WebhookState, certs};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! // TLS first: spawns reload/renew/caBundle tasks; `ready` feeds /readyz.
//! let (tls, ready) = certs::start(client.clone(), &settings, shutdown.clone()).await?;
//! let state = WebhookState::new(client, discovery, metrics, settings.clone());
//! // Returns after `shutdown` is cancelled and in-flight reviews finished (at most 10s).
//! webhook::serve(state, settings.webhook_bind_address, tls, shutdown).await?;
//! # let _ = ready;
//! # Ok(()) }
//! ```
//!
//! When the webhook is disabled but the metrics server still needs TLS, use
//! [`certs::in_memory`] for a self-signed configuration.
//!
//! # Layout
//!
//! - `server`: routes, limits, TLS serving, graceful shutdown, metrics.
//! - `review`: the AdmissionReview envelope in and out.
//! - `admission`: which rules run for which operation.
//! - `mutate`: defaults and the changed-at stamp (pure).
//! - `validate`, `warnings`, `violation`: rules that need no cluster (pure).
//! - `checks`: kinds via discovery, Job template via dry run.
//! - `authorize`: SubjectAccessReviews for the author.
//! - `certs`: TLS material.

pub mod admission;
pub mod authorize;
pub mod certs;
pub mod checks;
#[cfg(test)]
mod fixtures;
pub mod mutate;
pub mod review;
pub mod server;
pub mod validate;
pub mod violation;
pub mod warnings;

pub use certs::{CertError, TlsReadiness};
pub use server::{WebhookError, WebhookState, router, serve, serve_listener};
