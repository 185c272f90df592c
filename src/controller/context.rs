//! Everything a reconcile needs, shared by all reconciles of one leadership term.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::runtime::reflector::Store;

use super::watches::WatchHub;
use super::written::WrittenStatuses;
use crate::config::Settings;
use crate::detect::fingerprint::FingerprintKey;
use crate::discovery::DiscoveryCache;
use crate::metrics::Metrics;

/// State shared by every controller of a leadership term.
pub struct Shared {
    /// API client.
    pub client: Client,
    /// Cached discovery.
    pub discovery: Arc<DiscoveryCache>,
    /// Metrics.
    pub metrics: Metrics,
    /// Kubernetes Events.
    pub events: super::events::EventPublisher,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The installation's fingerprint key.
    pub key: FingerprintKey,
    /// Shared watches of watched objects.
    pub hub: WatchHub,
    /// Time source.
    pub clock: super::Clock,
    /// First observations by LIST.
    pub primer: super::prime::Primer,
    /// Consecutive failed reconciles per CTJ UID, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last status written per CTJ UID, in case the informer has not caught up yet.
    written: WrittenStatuses,
    /// When a pending change was first seen, per CTJ UID (for the latency metric).
    first_pending: Mutex<HashMap<String, Instant>>,
    /// The members of each selector entry at its baseline, per CTJ UID, to name the members
    /// that changed.
    pub set_baselines: super::sets::SetBaselines,
}

/// Context of one controller (one reconcile scope).
pub struct Context {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Jobs labelled with the owner label, in this controller's scope.
    pub jobs: Store<Job>,
    /// The Jobs in `jobs` of each controller owner.
    pub jobs_by_owner: super::owned::JobsByOwner,
}

impl Shared {
    /// Exports the watch hub's size: watched objects and open metadata watches.
    pub fn export_watch_gauges(&self) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics
            .watched_objects
            .set(count(self.hub.watched_objects()));
        let (namespaced, cluster) = self.hub.watch_connections();
        for (scope, n) in [("namespace", namespaced), ("cluster", cluster)] {
            self.metrics
                .metadata_watches
                .with_label_values(&[scope])
                .set(count(n));
        }
    }

    /// Creates the shared state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        discovery: Arc<DiscoveryCache>,
        metrics: Metrics,
        events: super::events::EventPublisher,
        settings: Arc<Settings>,
        key: FingerprintKey,
        hub: WatchHub,
        clock: super::Clock,
    ) -> Self {
        Shared {
            primer: super::prime::Primer::new(client.clone(), hub.clone()),
            client,
            discovery,
            metrics,
            events,
            settings,
            key,
            hub,
            clock,
            failures: Mutex::default(),
            written: WrittenStatuses::default(),
            first_pending: Mutex::default(),
            set_baselines: super::sets::SetBaselines::default(),
        }
    }

    /// Records a failure and returns how long to wait before retrying (1s doubling up to
    /// `cap`).
    pub fn backoff(&self, uid: &str, cap: Duration) -> Duration {
        let attempt = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(uid.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        let secs = 1u64
            .checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(cap)
    }

    /// Clears the failure count after a clean reconcile.
    pub fn succeeded(&self, uid: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(uid);
        }
    }

    /// The statuses this replica wrote that the informer may not have delivered yet.
    pub fn written(&self) -> &WrittenStatuses {
        &self.written
    }

    /// Forgets a deleted CTJ.
    pub fn forget(&self, uid: &str) {
        for map in [&self.failures] {
            if let Ok(mut m) = map.lock() {
                m.remove(uid);
            }
        }
        self.written.forget(uid);
        if let Ok(mut m) = self.first_pending.lock() {
            m.remove(uid);
        }
        self.set_baselines.forget(uid);
    }

    /// Tracks when a CTJ's pending change was first seen (at the latest, when this reconcile
    /// started); returns the time since then when `triggered`.
    pub fn pending_since(
        &self,
        uid: &str,
        pending: bool,
        triggered: bool,
        started: Instant,
    ) -> Option<Duration> {
        let Ok(mut m) = self.first_pending.lock() else {
            return None;
        };
        if triggered {
            return Some(m.remove(uid).unwrap_or(started).elapsed());
        }
        if pending {
            m.entry(uid.to_string()).or_insert(started);
        } else {
            m.remove(uid);
        }
        None
    }
}
