//! Helpers for the leader election tests: replicas running a `LeaderElector` on any client,
//! and (in `fake_leases`) a Lease-only fake for faults the shared fake does not inject.

#![allow(dead_code)]

pub mod fake_leases;

use std::time::Duration;

use kube_changejob::config::Settings;
use kube_changejob::leader::{LeaderElector, LeaderError};
use kube_changejob::metrics::Metrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "changejob-system";
pub const LEASE: &str = "kube-changejob";
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// A candidate waits at most the retry period stretched by client-go's jitter factor.
pub const MAX_RETRY_WAIT: Duration = Duration::from_millis(2_400);

/// The default timings (15 s / 10 s / 2 s) for replica `identity`.
pub fn settings(identity: &str) -> Settings {
    Settings {
        pod_name: identity.into(),
        operator_namespace: NAMESPACE.into(),
        lease_name: LEASE.into(),
        leader_election: true,
        lease_duration: LEASE_DURATION,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY_PERIOD,
        ..Settings::default()
    }
}

/// One replica's running elector.
pub struct Replica {
    pub leading: watch::Receiver<bool>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), LeaderError>>,
}

/// Starts an elector for `settings` on `client`.
pub fn start(client: kube::Client, settings: Settings) -> Replica {
    let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let elector = LeaderElector::new(client, &settings, metrics.clone());
    let leading = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(elector.run(shutdown.clone()));
    Replica {
        leading,
        metrics,
        shutdown,
        task,
    }
}

impl Replica {
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until leadership equals `value`; returns how long that took, `None` if not
    /// within `within`.
    pub async fn wait_leading(&mut self, value: bool, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        timeout(within, self.leading.wait_for(|v| *v == value))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|_| start.elapsed())
    }

    /// Cancels and waits for the elector to return.
    pub async fn stop(self) -> Result<(), LeaderError> {
        self.shutdown.cancel();
        self.task
            .await
            .unwrap_or_else(|e| panic!("elector task: {e}"))
    }
}
