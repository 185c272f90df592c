//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one replica reconciles.
//!
//! Same rules as client-go's `leaderelection` package: every write carries the Lease's
//! `resourceVersion` (a lost race is a 409, never two holders), and a replica judges another
//! holder's Lease expired by its *own* monotonic clock, counted from when it last saw the record
//! change — wall clocks of different machines are never compared. The holder stops considering
//! itself leader `renewDeadline` after the start of its last successful renewal; since
//! `renewDeadline < leaseDuration` and nobody can have seen that renewal before it was sent,
//! the holder always gives up before anyone else may take the Lease.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::metrics::Metrics;

/// Leader election settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timings do not satisfy `leaseDuration > renewDeadline > retryPeriod > 0`.
    #[error(
        "leader election needs leaseDuration ({lease_duration:?}) > renewDeadline ({renew_deadline:?}) > retryPeriod ({retry_period:?}) > 0 and leaseDuration of at least 1s"
    )]
    Timing {
        /// Configured lease duration.
        lease_duration: Duration,
        /// Configured renew deadline.
        renew_deadline: Duration,
        /// Configured retry period.
        retry_period: Duration,
    },
    /// No identity: every replica must name itself (`podName`) for the Lease to mean anything.
    #[error("leader election needs a non-empty identity (podName)")]
    NoIdentity,
}

/// Acquires and renews the Lease and tells subscribers whether this replica may reconcile.
pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
    lease_name: String,
    enabled: bool,
    timing: Timing,
    metrics: Metrics,
    leading: watch::Sender<bool>,
}

#[derive(Clone, Copy, Debug)]
struct Timing {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl Timing {
    fn validate(self) -> Result<Self, LeaderError> {
        let ordered = self.lease_duration > self.renew_deadline
            && self.renew_deadline > self.retry_period
            && !self.retry_period.is_zero()
            && self.lease_duration >= Duration::from_secs(1);
        if ordered {
            Ok(self)
        } else {
            Err(LeaderError::Timing {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            })
        }
    }

    /// `leaseDurationSeconds` we write: rounded up, so others never wait less than we assume.
    fn lease_duration_seconds(self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// What this replica last saw of the Lease, and when (by its own clock) the record last changed.
struct Observation {
    lease: Option<Lease>,
    changed_at: Instant,
    last_stamp: Option<Timestamp>,
}

impl Observation {
    fn new() -> Self {
        Observation {
            lease: None,
            changed_at: Instant::now(),
            last_stamp: None,
        }
    }

    /// Records a Lease read from the API; the expiry clock restarts only if the record changed.
    fn observe(&mut self, lease: Lease) {
        let changed = self.lease.as_ref().map(|l| &l.spec) != Some(&lease.spec);
        if changed {
            self.changed_at = Instant::now();
        }
        self.lease = Some(lease);
    }

    /// Records a Lease this replica just wrote.
    fn wrote(&mut self, lease: Lease) {
        self.changed_at = Instant::now();
        self.lease = Some(lease);
    }

    /// The current holder, if the observed record names one.
    fn holder(&self) -> Option<&str> {
        self.lease.as_ref().and_then(holder)
    }

    /// Whether the observed holder's term has run out, judged by our clock.
    fn expired(&self, own_duration: Duration) -> bool {
        let seconds = self
            .lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.lease_duration_seconds)
            .filter(|s| *s > 0);
        // A record without a duration is treated as lasting our own duration: never shorter.
        let duration = seconds.map_or(own_duration, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
        Instant::now() >= self.changed_at + duration
    }

    /// A renew/acquire time that is strictly later than the previous one we wrote, so every
    /// renewal changes the record and observers restart their expiry clocks.
    fn stamp(&mut self) -> MicroTime {
        let now = Timestamp::now();
        let micros = now.as_microsecond();
        let micros = match self.last_stamp {
            Some(last) if last.as_microsecond() >= micros => last.as_microsecond() + 1,
            _ => micros,
        };
        let stamp = Timestamp::from_microsecond(micros).unwrap_or(now);
        self.last_stamp = Some(stamp);
        MicroTime(stamp)
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// Result of one acquire-or-renew attempt.
enum Attempt {
    /// We hold the Lease: the write went through.
    Holding,
    /// Someone else holds a Lease that has not expired.
    HeldBy(String),
    /// The API call failed or lost a race; try again later.
    Failed(String),
}

/// Why holding ended.
enum HoldEnd {
    Lost,
    ShuttingDown,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// An elector for `settings.lease_name` in `settings.operator_namespace`, identified by
    /// `settings.pod_name`.
    ///
    /// Give it a client of its own (a second `client::build_client`), so a burst of reconcile
    /// requests waiting in the shared client-side rate limit cannot delay its renewals.
    pub fn new(client: Client, settings: &Settings, metrics: Metrics) -> Self {
        let (leading, _) = watch::channel(false);
        metrics.leader.set(0);
        LeaderElector {
            api: Api::namespaced(client, &settings.operator_namespace),
            identity: settings.pod_name.clone(),
            lease_name: settings.lease_name.clone(),
            enabled: settings.leader_election,
            timing: Timing {
                lease_duration: settings.lease_duration,
                renew_deadline: settings.renew_deadline,
                retry_period: settings.retry_period,
            },
            metrics,
            leading,
        }
    }

    /// Leadership changes: true while this replica may reconcile.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Runs until `shutdown` is cancelled; then releases the Lease if held and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), LeaderError> {
        if !self.enabled {
            info!(identity = %self.identity, "leader election disabled; this replica reconciles");
            self.set_leading(true);
            shutdown.cancelled().await;
            self.set_leading(false);
            return Ok(());
        }
        self.timing.validate()?;
        if self.identity.is_empty() {
            return Err(LeaderError::NoIdentity);
        }
        let mut seen = Observation::new();
        loop {
            let Some(renewed_from) = self.acquire(&mut seen, &shutdown).await else {
                return Ok(());
            };
            match self.hold(&mut seen, renewed_from, &shutdown).await {
                HoldEnd::Lost => {}
                HoldEnd::ShuttingDown => {
                    self.release(&mut seen).await;
                    return Ok(());
                }
            }
        }
    }

    fn set_leading(&self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
        self.leading.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
    }

    /// Tries every (jittered) retry period until the Lease is ours; returns the instant the
    /// successful request started, or `None` on shutdown.
    async fn acquire(
        &self,
        seen: &mut Observation,
        shutdown: &CancellationToken,
    ) -> Option<Instant> {
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                attempt = timeout(self.timing.renew_deadline, self.try_acquire_or_renew(seen)) => {
                    attempt.unwrap_or_else(|_| Attempt::Failed("request timed out".into()))
                }
            };
            match attempt {
                Attempt::Holding => return Some(started),
                Attempt::HeldBy(holder) => {
                    debug!(identity = %self.identity, lease = %self.lease_name, %holder, "Lease is held by another replica");
                }
                Attempt::Failed(error) => {
                    warn!(identity = %self.identity, lease = %self.lease_name, %error, "could not acquire the Lease; will retry");
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                () = sleep(jittered(self.timing.retry_period)) => {}
            }
        }
    }

    /// Leads and renews every retry period until leadership is lost or shutdown begins.
    async fn hold(
        &self,
        seen: &mut Observation,
        mut renewed_from: Instant,
        shutdown: &CancellationToken,
    ) -> HoldEnd {
        let timing = self.timing;
        if Instant::now() >= renewed_from + timing.renew_deadline {
            return HoldEnd::Lost;
        }
        self.set_leading(true);
        info!(identity = %self.identity, lease = %self.lease_name, "acquired leadership");
        let mut next = renewed_from + timing.retry_period;
        loop {
            let deadline = renewed_from + timing.renew_deadline;
            let started = tokio::select! {
                biased;
                () = sleep_until(deadline) => return self.lose("renew deadline passed"),
                () = shutdown.cancelled() => return HoldEnd::ShuttingDown,
                () = sleep_until(next) => Instant::now(),
            };
            let attempt = tokio::select! {
                biased;
                () = sleep_until(deadline) => return self.lose("renew deadline passed"),
                () = shutdown.cancelled() => return HoldEnd::ShuttingDown,
                attempt = self.try_acquire_or_renew(seen) => attempt,
            };
            match attempt {
                Attempt::Holding => renewed_from = started,
                Attempt::HeldBy(holder) => {
                    return self.lose(&format!("Lease taken over by {holder}"));
                }
                Attempt::Failed(error) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    warn!(identity = %self.identity, lease = %self.lease_name, %error, ?left, "could not renew the Lease");
                }
            }
            next = started + timing.retry_period;
        }
    }

    fn lose(&self, reason: &str) -> HoldEnd {
        self.set_leading(false);
        warn!(identity = %self.identity, lease = %self.lease_name, %reason, "lost leadership; stopped reconciling");
        HoldEnd::Lost
    }

    /// One round of client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&self, seen: &mut Observation) -> Attempt {
        // The holder writes over its own last record without reading first; a 409 means the
        // record moved, so read it and decide again.
        if seen.holder() == Some(self.identity.as_str())
            && let Some(mine) = seen.lease.clone()
        {
            let renewed = self.claim(mine, seen);
            match self
                .api
                .replace(&self.lease_name, &PostParams::default(), &renewed)
                .await
            {
                Ok(written) => {
                    seen.wrote(written);
                    return Attempt::Holding;
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Attempt::Failed(e.to_string()),
            }
        }
        let current = match self.api.get_opt(&self.lease_name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return self.create(seen).await,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        seen.observe(current.clone());
        if let Some(other) = seen.holder().filter(|h| *h != self.identity)
            && !seen.expired(self.timing.lease_duration)
        {
            return Attempt::HeldBy(other.to_string());
        }
        let claimed = self.claim(current, seen);
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &claimed)
            .await
        {
            Ok(written) => {
                seen.wrote(written);
                Attempt::Holding
            }
            Err(e) if is_conflict(&e) => Attempt::Failed("lost a race for the Lease".into()),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// `current` with us as the holder; acquire time and transitions move only on a handover.
    fn claim(&self, mut current: Lease, seen: &mut Observation) -> Lease {
        let now = seen.stamp();
        let spec = current.spec.take().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        current.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration_seconds()),
            acquire_time: if ours {
                spec.acquire_time.or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: if ours {
                spec.lease_transitions
            } else {
                Some(spec.lease_transitions.unwrap_or(0).saturating_add(1))
            },
            ..spec
        });
        current
    }

    async fn create(&self, seen: &mut Observation) -> Attempt {
        let now = seen.stamp();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timing.lease_duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                seen.wrote(written);
                Attempt::Holding
            }
            Err(e) if is_conflict(&e) => Attempt::Failed("lost a race creating the Lease".into()),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// Stops leading, then clears the holder so a standby acquires at its next retry instead of
    /// waiting a whole lease duration. Best effort within `renewDeadline`: if it fails the Lease
    /// simply expires.
    async fn release(&self, seen: &mut Observation) {
        if !*self.leading.borrow() {
            return;
        }
        self.set_leading(false);
        let released = timeout(self.timing.renew_deadline, async {
            // A renewal cut short by shutdown may still have landed, moving resourceVersion:
            // re-read once and retry.
            for _ in 0..3 {
                let Some(mut lease) = seen.lease.clone() else {
                    return Err("no Lease seen".to_string());
                };
                if seen.holder() != Some(self.identity.as_str()) {
                    return Err("the Lease is no longer ours".to_string());
                }
                let now = seen.stamp();
                let spec = lease.spec.take().unwrap_or_default();
                lease.spec = Some(LeaseSpec {
                    holder_identity: None,
                    lease_duration_seconds: Some(1),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..spec
                });
                match self
                    .api
                    .replace(&self.lease_name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => {
                        seen.wrote(written);
                        return Ok(());
                    }
                    Err(e) if is_conflict(&e) => match self.api.get_opt(&self.lease_name).await {
                        Ok(Some(current)) => seen.observe(current),
                        Ok(None) => return Err("the Lease is gone".to_string()),
                        Err(e) => return Err(e.to_string()),
                    },
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("the Lease kept changing".to_string())
        })
        .await
        .unwrap_or_else(|_| Err("request timed out".to_string()));
        match released {
            Ok(()) => {
                info!(identity = %self.identity, lease = %self.lease_name, "released leadership")
            }
            Err(error) => {
                warn!(identity = %self.identity, lease = %self.lease_name, %error, "could not release the Lease; it will expire")
            }
        }
    }
}

/// `period` stretched by up to 20% (client-go's jitter factor 1.2), so candidates that started
/// together do not keep colliding.
fn jittered(period: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // 53 random bits as a fraction in [0, 1).
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(1.0 + 0.2 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(lease: u64, renew: u64, retry: u64) -> Timing {
        Timing {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        }
    }

    #[test]
    fn timings_must_leave_room_for_a_renewal_before_expiry() {
        assert!(timing(15, 10, 2).validate().is_ok());
        assert!(timing(10, 10, 2).validate().is_err());
        assert!(timing(15, 2, 2).validate().is_err());
        assert!(timing(15, 10, 0).validate().is_err());
    }

    #[test]
    fn written_lease_duration_rounds_up_to_whole_seconds() {
        let t = Timing {
            lease_duration: Duration::from_millis(15_200),
            ..timing(15, 10, 2)
        };
        assert_eq!(t.lease_duration_seconds(), 16);
        assert_eq!(timing(15, 10, 2).lease_duration_seconds(), 15);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let period = Duration::from_secs(2);
        for _ in 0..1000 {
            let j = jittered(period);
            assert!(j >= period && j <= Duration::from_millis(2400), "{j:?}");
        }
    }

    #[test]
    fn stamps_strictly_increase() {
        let mut seen = Observation::new();
        let mut last = seen.stamp().0;
        for _ in 0..100 {
            let next = seen.stamp().0;
            assert!(next > last);
            last = next;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_is_counted_from_when_the_record_last_changed() {
        let lease = |renew: &str| Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("other".into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renew.parse().unwrap_or_else(|e| panic!("{e}")))),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        let own = Duration::from_secs(15);
        let mut seen = Observation::new();
        // A record renewed long ago by wall clock is still valid: we only just saw it.
        seen.observe(lease("2000-01-01T00:00:00Z"));
        assert!(!seen.expired(own));
        tokio::time::advance(Duration::from_secs(10)).await;
        seen.observe(lease("2000-01-01T00:00:00Z"));
        assert!(
            !seen.expired(own),
            "an unchanged record does not restart the clock"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(seen.expired(own));
        seen.observe(lease("2000-01-01T00:00:01Z"));
        assert!(!seen.expired(own), "a renewal restarts the clock");
    }
}
