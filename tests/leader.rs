//! Leader election against the shared in-process fake API (`tests/support/fake_api`) on tokio's
//! paused clock: acquiring, renewing, taking over from a dead holder, never from a live one,
//! handing over on shutdown, and stepping down when renewals fail.
//! `leader_faults.rs` covers hangs, lost answers, partitions and a randomized run.

mod support;
mod support_leader;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::ObjectMeta;
use kube_changejob::config::Settings;
use kube_changejob::leader::LeaderError;
use support::fake_api::{FakeApi, FakeError, Matcher, Verb};
use support_leader::{LEASE, LEASE_DURATION, MAX_RETRY_WAIT, NAMESPACE, Replica, settings};
use tokio::time::{Instant, sleep};

fn fake() -> FakeApi {
    let fake = FakeApi::new();
    fake.create_namespace(NAMESPACE);
    fake
}

fn start(fake: &FakeApi, identity: &str) -> Replica {
    support_leader::start(fake.client(), settings(identity))
}

fn spec(fake: &FakeApi) -> LeaseSpec {
    fake.get_object::<Lease>(Some(NAMESPACE), LEASE)
        .and_then(|l| l.spec)
        .unwrap_or_else(|| panic!("no Lease {NAMESPACE}/{LEASE}"))
}

fn leases() -> Matcher {
    Matcher::any()
        .group("coordination.k8s.io")
        .resource("leases")
}

/// A Lease written by a replica that is not running (a dead holder).
fn held_by(holder: &str, transitions: i32) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test(start_paused = true)]
async fn acquires_a_free_lease_by_creating_it() {
    let fake = fake();
    assert!(fake.get_object::<Lease>(Some(NAMESPACE), LEASE).is_none());
    let mut a = start(&fake, "a");
    assert!(!a.is_leading());
    let took = a.wait_leading(true, Duration::from_secs(1)).await;
    assert_eq!(
        took,
        Some(Duration::ZERO),
        "a free Lease is taken at the first attempt"
    );
    let spec = spec(&fake);
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    assert_eq!(fake.count(Verb::Create, "leases"), 1);
    assert_eq!(a.metrics.leader.get(), 1);
    assert!(a.metrics.render().contains("changejob_leader 1"));
    assert!(a.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn holder_renews_every_retry_period_without_rereading() {
    let fake = fake();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    let first = spec(&fake);
    sleep(Duration::from_millis(2_100)).await;
    let renewed = spec(&fake);
    assert!(renewed.renew_time > first.renew_time, "renewTime advances");
    assert_eq!(
        renewed.acquire_time, first.acquire_time,
        "acquireTime stays"
    );
    assert_eq!(renewed.lease_transitions, first.lease_transitions);

    let updates_before = fake.count(Verb::Update, "leases");
    let gets_before = fake.count(Verb::Get, "leases");
    sleep(Duration::from_secs(60)).await;
    assert!(a.is_leading());
    assert_eq!(
        fake.count(Verb::Update, "leases") - updates_before,
        30,
        "one renewal per 2 s retry period"
    );
    assert_eq!(
        fake.count(Verb::Get, "leases") - gets_before,
        0,
        "the holder renews its own record without reading it first"
    );
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.verb == Verb::Update)
            .all(|r| r
                .body
                .as_ref()
                .is_some_and(|b| b["metadata"]["resourceVersion"].is_string())),
        "every update is conditional on the resourceVersion read"
    );
    assert!(a.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn takes_over_an_expired_lease_from_a_dead_holder() {
    let fake = fake();
    fake.put(&held_by("dead", 3));
    let before = spec(&fake);
    let mut b = start(&fake, "b");
    // The record's wall-clock times do not matter: b must see it unchanged for a whole lease
    // duration by its own clock before taking over.
    let took = b
        .wait_leading(true, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("b never took over"));
    assert!(took >= LEASE_DURATION, "took over after {took:?}");
    assert!(
        took <= LEASE_DURATION + MAX_RETRY_WAIT,
        "took over after {took:?}"
    );
    let after = spec(&fake);
    assert_eq!(after.holder_identity.as_deref(), Some("b"));
    assert_eq!(after.lease_transitions, Some(4), "leaseTransitions + 1");
    assert_ne!(
        after.acquire_time, before.acquire_time,
        "acquireTime is the takeover"
    );
    assert!(b.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn never_takes_a_live_lease() {
    let fake = fake();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    let mut b = start(&fake, "b");
    assert_eq!(b.wait_leading(true, Duration::from_secs(300)).await, None);
    assert!(a.is_leading());
    assert_eq!(spec(&fake).holder_identity.as_deref(), Some("a"));
    assert_eq!(spec(&fake).lease_transitions, Some(0));
    assert_eq!(b.metrics.leader.get(), 0);
    assert!(a.stop().await.is_ok());
    assert!(b.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn two_candidates_racing_for_a_new_lease_produce_one_leader() {
    let fake = fake();
    let a = start(&fake, "a");
    let b = start(&fake, "b");
    sleep(Duration::from_secs(30)).await;
    assert_eq!(usize::from(a.is_leading()) + usize::from(b.is_leading()), 1);
    let holder = spec(&fake).holder_identity.unwrap_or_default();
    assert_eq!(a.is_leading(), holder == "a");
    assert_eq!(b.is_leading(), holder == "b");
    assert_eq!(spec(&fake).lease_transitions, Some(0));
    assert!(a.stop().await.is_ok());
    assert!(b.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_the_lease_and_a_standby_takes_over_within_a_retry_period() {
    let fake = fake();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    let mut b = start(&fake, "b");
    sleep(Duration::from_secs(20)).await;
    assert!(!b.is_leading());

    let shutdown_at = Instant::now();
    let a_leading = a.leading.clone();
    let a_metrics = a.metrics.clone();
    assert!(a.stop().await.is_ok());
    assert!(!*a_leading.borrow());
    assert_eq!(a_metrics.leader.get(), 0);
    let released = spec(&fake);
    assert!(released.holder_identity.is_none(), "holderIdentity cleared");
    assert_eq!(released.lease_duration_seconds, Some(1));

    let took = b
        .wait_leading(true, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("b did not take over"));
    println!(
        "graceful handover took {:?} (simulated)",
        shutdown_at.elapsed()
    );
    assert!(took <= MAX_RETRY_WAIT, "standby took over after {took:?}");
    assert_eq!(spec(&fake).holder_identity.as_deref(), Some("b"));
    assert_eq!(spec(&fake).lease_transitions, Some(1));
    assert!(b.stop().await.is_ok());
}

async fn steps_down_in_time_when_every_lease_call_fails_with(error: FakeError) {
    let fake = fake();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    sleep(Duration::from_millis(5_500)).await;
    fake.fail_always(leases(), error.clone());
    let lost_after = a
        .wait_leading(false, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("still leading with {error:?}"));
    // Renewals succeeded at 0, 2 and 4 s; failures began at 5.5 s. The renew deadline counts
    // from the start of the last successful renewal: 4 s + 10 s = 14 s, 8.5 s from now.
    assert_eq!(lost_after, Duration::from_millis(8_500), "{error:?}");
    assert_eq!(a.metrics.leader.get(), 0);
    assert_eq!(spec(&fake).holder_identity.as_deref(), Some("a"));

    // Once the API answers again, the same replica leads again (the record still names it).
    fake.clear_faults();
    let regained = a.wait_leading(true, Duration::from_secs(20)).await;
    assert!(
        regained.is_some_and(|d| d <= MAX_RETRY_WAIT),
        "{regained:?}"
    );
    assert_eq!(a.metrics.leader.get(), 1);
    assert!(a.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn internal_errors_on_every_renewal_stop_leading_within_the_renew_deadline() {
    steps_down_in_time_when_every_lease_call_fails_with(FakeError::internal(
        "etcdserver: leader changed",
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn server_timeouts_on_every_renewal_stop_leading_within_the_renew_deadline() {
    steps_down_in_time_when_every_lease_call_fails_with(FakeError::timeout()).await;
}

#[tokio::test(start_paused = true)]
async fn connection_failures_on_every_renewal_stop_leading_within_the_renew_deadline() {
    steps_down_in_time_when_every_lease_call_fails_with(FakeError::connection(
        "connection reset by peer",
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn api_errors_never_stop_the_elector() {
    let fake = fake();
    fake.fail_always(leases(), FakeError::unavailable());
    let mut a = start(&fake, "a");
    assert_eq!(a.wait_leading(true, Duration::from_secs(60)).await, None);
    assert!(!a.task.is_finished());
    let attempts = fake.count(Verb::Get, "leases");
    assert!(
        (25..=31).contains(&attempts),
        "retried every ~2 s: {attempts}"
    );
    fake.clear_faults();
    assert!(a.wait_leading(true, MAX_RETRY_WAIT).await.is_some());
    assert!(a.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn forbidden_is_retried_like_any_other_error() {
    let fake = fake();
    fake.deny(
        Verb::Create,
        "coordination.k8s.io",
        "leases",
        Some(NAMESPACE),
    );
    let mut a = start(&fake, "a");
    assert_eq!(a.wait_leading(true, Duration::from_secs(20)).await, None);
    assert!(fake.count(Verb::Create, "leases") >= 8);
    fake.clear_faults();
    assert!(a.wait_leading(true, MAX_RETRY_WAIT).await.is_some());
    assert!(a.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn without_leader_election_the_replica_leads_at_once_until_shutdown() {
    let fake = fake();
    let mut a = support_leader::start(
        fake.client(),
        Settings {
            leader_election: false,
            ..settings("solo")
        },
    );
    assert_eq!(
        a.wait_leading(true, Duration::from_secs(1)).await,
        Some(Duration::ZERO)
    );
    assert_eq!(a.metrics.leader.get(), 1);
    sleep(Duration::from_secs(60)).await;
    assert!(a.is_leading());
    let leading = a.leading.clone();
    let metrics = a.metrics.clone();
    assert!(a.stop().await.is_ok());
    assert!(!*leading.borrow());
    assert_eq!(metrics.leader.get(), 0);
    assert!(fake.requests().is_empty(), "no API calls");
}

#[tokio::test(start_paused = true)]
async fn settings_that_cannot_be_safe_are_refused() {
    let fake = fake();
    let a = support_leader::start(
        fake.client(),
        Settings {
            renew_deadline: LEASE_DURATION,
            ..settings("a")
        },
    );
    let result = a.task.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(result, Err(LeaderError::Timing { .. })));
    let nameless = support_leader::start(fake.client(), settings(""));
    let result = nameless.task.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(result, Err(LeaderError::NoIdentity)));
    assert!(fake.requests().is_empty());
}
