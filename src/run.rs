//! `kube-changejob run`: starts the admission server, the metrics and health server and the
//! leader elector on every replica, and the reconcile loop while leading; shuts them down in
//! the order that hands over fastest and loses nothing.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::client::{ClientError, build_client, install_crypto_provider};
use crate::config::{Overrides, Settings};
use crate::controller::{self, Dependencies, system_clock};
use crate::discovery::DiscoveryCache;
use crate::leader::{LeaderElector, LeaderError};
use crate::metrics::{Metrics, MetricsError};
use crate::metrics_server::{self, MetricsServerError, Readiness, spawn_api_reachability_check};
use crate::telemetry::init_tracing;
use crate::webhook::{self, CertError, TlsReadiness, WebhookError, WebhookState, certs};

/// Why the operator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable Kubernetes client configuration.
    #[error("connecting to Kubernetes: {0}")]
    Client(#[from] ClientError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// TLS material could not be prepared.
    #[error("preparing TLS certificates: {0}")]
    Certs(#[from] CertError),
    /// The admission server failed.
    #[error("admission server: {0}")]
    Webhook(#[from] WebhookError),
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    MetricsServer(#[from] MetricsServerError),
    /// Leader election could not run.
    #[error("leader election: {0}")]
    Leader(#[from] LeaderError),
    /// A task ended unexpectedly.
    #[error("{0} stopped unexpectedly")]
    TaskEnded(&'static str),
}

/// How long the admission and metrics servers get to finish in-flight requests.
const DRAIN: Duration = Duration::from_secs(10);
/// How long the reconcile loop and the elector get to stop.
const STOP: Duration = Duration::from_secs(5);

/// Entry point of `kube-changejob run`.
pub fn main(overrides: Overrides) -> ExitCode {
    let settings = match Settings::load(&overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_tracing(&settings.log_level, settings.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    install_crypto_provider();
    let Some(runtime) = start_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(Arc::new(settings))) {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Runs until SIGTERM/SIGINT, then shuts down in order.
pub async fn run(settings: Arc<Settings>) -> Result<(), RunError> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    run_until(settings, shutdown).await
}

/// Runs until `shutdown` is cancelled (or a component fails), then: stops reconciling,
/// releases the Lease, drains in-flight admission and metrics requests, and returns.
pub async fn run_until(
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        identity = %settings.pod_name,
        namespace = %settings.operator_namespace,
        "starting kube-changejob"
    );
    let client = build_client(&settings).await?;
    // The elector has its own client, so reconcile traffic queued behind the shared rate limit
    // can never delay a Lease renewal into a lost leadership.
    let lease_client = build_client(&settings).await?;
    run_with_clients(settings, client, lease_client, shutdown).await
}

/// [`run_until`] with the API clients given: `client` for everything but the Lease, which
/// `lease_client` renews.
pub async fn run_with_clients(
    settings: Arc<Settings>,
    client: kube::Client,
    lease_client: kube::Client,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let discovery = Arc::new(DiscoveryCache::new(
        client.clone(),
        Duration::from_secs(2),
        Duration::from_secs(600),
    ));

    // Servers stop last, after reconciling stopped and the Lease was released.
    let servers = CancellationToken::new();
    let readiness = Readiness::new();
    let api_ready = readiness.add_check("api-reachable");
    let tls_ready_flag = readiness.add_check("tls-loaded");
    spawn_api_reachability_check(
        client.clone(),
        api_ready,
        Duration::from_secs(10),
        servers.clone(),
    );

    let service_names =
        certs::issue::dns_names(&settings.webhook_service_name, &settings.operator_namespace);
    let (tls, mut tls_ready) = if settings.webhook_enabled {
        certs::start(client.clone(), &settings, servers.clone()).await?
    } else {
        (
            certs::in_memory(&service_names)?,
            TlsReadiness::always_ready(),
        )
    };
    tokio::spawn(async move {
        tls_ready.wait_ready().await;
        tls_ready_flag.set(true);
    });

    let mut webhook_task: Option<JoinHandle<Result<(), WebhookError>>> = None;
    if settings.webhook_enabled {
        let state = WebhookState::new(
            client.clone(),
            discovery.clone(),
            metrics.clone(),
            settings.clone(),
        );
        webhook_task = Some(tokio::spawn(webhook::serve(
            state,
            settings.webhook_bind_address,
            tls.clone(),
            servers.clone(),
        )));
    }
    let metrics_task = tokio::spawn(metrics_server::serve(
        metrics.clone(),
        readiness,
        client.clone(),
        settings.clone(),
        settings.metrics_secure.then(|| tls.clone()),
        servers.clone(),
    ));

    let elector = LeaderElector::new(lease_client, &settings, metrics.clone());
    let leadership = elector.subscribe();
    let lease = CancellationToken::new();
    let mut elector_task = tokio::spawn(elector.run(lease.clone()));

    let reconciling = CancellationToken::new();
    let deps = Dependencies {
        clock: system_clock(),
        client,
        discovery,
        metrics,
        settings: settings.clone(),
    };
    let mut controller_task = tokio::spawn(controller::run(deps, leadership, reconciling.clone()));

    // Run until asked to stop, or until a server or the elector fails.
    let failure: Option<RunError> = tokio::select! {
        () = shutdown.cancelled() => None,
        result = wait_opt(&mut webhook_task) => Some(match result {
            Ok(Err(e)) => e.into(),
            _ => RunError::TaskEnded("admission server"),
        }),
        result = &mut elector_task => Some(match result {
            Ok(Err(e)) => e.into(),
            _ => RunError::TaskEnded("leader election"),
        }),
        result = &mut controller_task => {
            let _ = result;
            Some(RunError::TaskEnded("reconcile loop"))
        }
    };
    if let Some(e) = &failure {
        error!(error = %e, "shutting down after a failure");
    } else {
        info!("shutting down: stop reconciling, release the Lease, drain admission requests");
    }

    // 1. Stop reconciling at once.
    reconciling.cancel();
    if !controller_task.is_finished()
        && tokio::time::timeout(STOP, &mut controller_task)
            .await
            .is_err()
    {
        warn!("reconcile loop did not stop in time; aborting it");
        controller_task.abort();
    }
    // 2. Release the Lease so a standby takes over within a retry period.
    lease.cancel();
    if !elector_task.is_finished() && tokio::time::timeout(STOP, &mut elector_task).await.is_err() {
        warn!("leader elector did not stop in time; the Lease will expire instead");
        elector_task.abort();
    }
    // 3. Finish in-flight admission and metrics requests.
    servers.cancel();
    if let Some(task) = webhook_task.as_mut()
        && !task.is_finished()
        && tokio::time::timeout(DRAIN, task).await.is_err()
    {
        warn!("admission requests still running after the drain period");
    }
    match tokio::time::timeout(DRAIN, metrics_task).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "metrics server"),
        Err(_) => warn!("metrics server did not stop in time"),
        _ => {}
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits for an optional task; never completes when there is none.
async fn wait_opt<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
/// The multi-threaded tokio runtime of a long-running command; `None` (after saying why on
/// stderr) when it cannot start.
pub(crate) fn start_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            None
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM; relying on SIGINT");
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => info!("received SIGTERM"),
                _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    });
}
