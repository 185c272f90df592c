//! Leader election under faults the shared fake does not inject, on tokio's paused clock and
//! the Lease-only fake in `support_leader::fake_leases`: renewals that never answer or whose
//! answer is lost, a slow answer, a network partition of the leader, the order of stepping down
//! and releasing, and a randomized run with failures, latency, crashes and restarts that checks
//! no two replicas ever lead at the same instant.

mod support_leader;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use support_leader::fake_leases::{Call, FakeApi, Fault, RequestInfo, Rng};
use support_leader::{
    LEASE, LEASE_DURATION, MAX_RETRY_WAIT, NAMESPACE, RENEW_DEADLINE, Replica, settings,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

fn start(fake: &FakeApi, identity: &str) -> Replica {
    support_leader::start(fake.client(identity), settings(identity))
}

fn spec(fake: &FakeApi) -> LeaseSpec {
    fake.lease(NAMESPACE, LEASE)
        .and_then(|l| l.spec)
        .unwrap_or_else(|| panic!("no Lease {NAMESPACE}/{LEASE}"))
}

fn is_lease_write(c: &Call) -> bool {
    c.request.path.contains("/leases") && matches!(c.request.method, Method::PUT | Method::POST)
}

#[tokio::test(start_paused = true)]
async fn the_leader_steps_down_before_its_release_reaches_the_api() {
    let fake = FakeApi::new();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    let mut b = start(&fake, "b");
    sleep(Duration::from_secs(20)).await;
    assert!(!b.is_leading());

    // When a's release reaches the API, a must already have stopped leading.
    let a_watch = a.leading.clone();
    let released_while_leading = Arc::new(AtomicBool::new(false));
    let releases = Arc::new(AtomicUsize::new(0));
    {
        let released_while_leading = released_while_leading.clone();
        let releases = releases.clone();
        fake.inject(move |r: &RequestInfo| {
            let release = r.client == "a"
                && r.method == Method::PUT
                && r.body["spec"]["holderIdentity"].is_null();
            if release {
                releases.fetch_add(1, Ordering::SeqCst);
                if *a_watch.borrow() {
                    released_while_leading.store(true, Ordering::SeqCst);
                }
            }
            Fault::None
        });
    }
    let shutdown_at = Instant::now();
    assert!(a.stop().await.is_ok());
    assert_eq!(releases.load(Ordering::SeqCst), 1);
    assert!(!released_while_leading.load(Ordering::SeqCst));
    let released = spec(&fake);
    assert!(released.holder_identity.is_none(), "holderIdentity cleared");
    assert_eq!(released.lease_duration_seconds, Some(1));

    let took = b
        .wait_leading(true, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("b did not take over"));
    let failover = shutdown_at.elapsed();
    println!("graceful failover took {failover:?} (simulated)");
    assert!(took <= MAX_RETRY_WAIT, "standby took over after {took:?}");
    assert_eq!(spec(&fake).lease_transitions, Some(1));
    assert!(b.stop().await.is_ok());
}

/// The last successful renewal's request (its arrival at the fake: no latency injected).
fn last_successful_write(fake: &FakeApi, client: &str) -> Instant {
    fake.calls()
        .iter()
        .filter(|c| c.request.client == client && is_lease_write(c))
        .filter(|c| matches!(c.status, Some(200 | 201)))
        .map(|c| c.at)
        .max()
        .unwrap_or_else(|| panic!("{client} never wrote the Lease"))
}

async fn steps_down_in_time_when_renewals(fault: Fault) {
    let fake = FakeApi::new();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    sleep(Duration::from_millis(5_500)).await;
    let failing_since = Instant::now();
    fake.inject(move |_| fault);
    let lost_after = a
        .wait_leading(false, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("still leading with {fault:?}"));
    let lost_at = Instant::now();
    let last_ok = last_successful_write(&fake, "a");
    let held_past_last_renewal = lost_at - last_ok;
    assert!(
        held_past_last_renewal <= RENEW_DEADLINE,
        "{fault:?}: led {held_past_last_renewal:?} past the last renewal"
    );
    assert!(held_past_last_renewal < LEASE_DURATION);
    assert!(lost_after <= RENEW_DEADLINE, "{fault:?}: {lost_after:?}");
    assert!(failing_since >= last_ok);
    assert_eq!(a.metrics.leader.get(), 0);

    // Once the API answers again, the same replica leads again (the record still names it).
    fake.heal();
    let regained = a.wait_leading(true, Duration::from_secs(20)).await;
    assert!(
        regained.is_some_and(|d| d <= MAX_RETRY_WAIT + RENEW_DEADLINE),
        "{regained:?}"
    );
    assert_eq!(a.metrics.leader.get(), 1);
    assert!(a.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn renewals_that_never_answer_stop_leading_within_the_renew_deadline() {
    steps_down_in_time_when_renewals(Fault::Hang).await;
}

#[tokio::test(start_paused = true)]
async fn renewals_whose_answers_are_lost_stop_leading_within_the_renew_deadline() {
    steps_down_in_time_when_renewals(Fault::ApplyThenHang).await;
}

#[tokio::test(start_paused = true)]
async fn a_partitioned_leader_steps_down_before_the_standby_takes_over() {
    let fake = FakeApi::new();
    let mut a = start(&fake, "a");
    a.wait_leading(true, Duration::from_secs(1)).await;
    let mut b = start(&fake, "b");
    sleep(Duration::from_secs(7)).await;
    let cut_at = Instant::now();
    fake.partition("a", true);
    a.wait_leading(false, Duration::from_secs(30)).await;
    let a_stopped = Instant::now();
    b.wait_leading(true, Duration::from_secs(30)).await;
    let b_started = Instant::now();
    assert!(b.is_leading());
    let gap = b_started - a_stopped;
    println!(
        "partition: old leader stopped after {:?}, standby led after {:?}, gap {gap:?} (simulated)",
        a_stopped - cut_at,
        b_started - cut_at
    );
    assert!(a_stopped < b_started);
    assert!(
        gap >= LEASE_DURATION - RENEW_DEADLINE,
        "safety margin {gap:?}"
    );
    // The standby sees the last renewal at its next check (≤ 2.4 s), waits a lease duration
    // from then, and takes over at the check after that (≤ 2.4 s).
    let since_last_renewal = b_started - last_successful_write(&fake, "a");
    assert!(
        since_last_renewal >= LEASE_DURATION,
        "{since_last_renewal:?}"
    );
    assert!(
        since_last_renewal <= LEASE_DURATION + MAX_RETRY_WAIT * 2,
        "{since_last_renewal:?}"
    );
    assert!(a_stopped - cut_at <= RENEW_DEADLINE);
    assert_eq!(spec(&fake).holder_identity.as_deref(), Some("b"));
    fake.partition("a", false);
    sleep(Duration::from_secs(60)).await;
    assert!(!a.is_leading(), "the old leader does not grab it back");
    assert!(a.stop().await.is_ok());
    assert!(b.stop().await.is_ok());
}

/// A renewal that lands at once but whose answer is slow proves nothing about when others saw
/// it: leadership is counted from when that request was sent, not from when its answer came.
#[tokio::test(start_paused = true)]
async fn a_slow_answer_does_not_stretch_leadership() {
    for trial in 0..5 {
        let fake = FakeApi::new();
        let mut a = start(&fake, "a");
        a.wait_leading(true, Duration::from_secs(1)).await;
        let mut b = start(&fake, "b");
        sleep(Duration::from_millis(6_000 + 300 * trial)).await;
        let mut first = true;
        fake.inject(move |r: &RequestInfo| match r.client.as_str() {
            "a" if first => {
                first = false;
                Fault::DelayAfter(Duration::from_millis(7_500))
            }
            "a" => Fault::Hang,
            _ => Fault::None,
        });
        let injected_at = Instant::now();
        a.wait_leading(false, Duration::from_secs(30)).await;
        let a_stopped = Instant::now();
        b.wait_leading(true, Duration::from_secs(30)).await;
        let b_started = Instant::now();
        let slow_sent = fake
            .calls()
            .iter()
            .filter(|c| c.request.client == "a" && c.at >= injected_at)
            .map(|c| c.at)
            .min()
            .unwrap_or_else(|| panic!("a sent nothing after {injected_at:?}"));
        assert!(a_stopped < b_started, "trial {trial}");
        assert!(a_stopped <= slow_sent + RENEW_DEADLINE, "trial {trial}");
        assert!(a.stop().await.is_ok());
        assert!(b.stop().await.is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Randomized run.

/// One leadership episode of one replica incarnation.
#[derive(Clone, Debug)]
struct Episode {
    who: String,
    from: Instant,
    to: Option<Instant>,
}

type Episodes = Arc<std::sync::Mutex<Vec<Episode>>>;

/// Follows a replica's leadership and records its episodes; a closed channel (the elector
/// returned or was killed) ends the current one.
fn record(who: String, mut leading: watch::Receiver<bool>, episodes: Episodes) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut open: Option<usize> = None;
        loop {
            let now_leading = *leading.borrow_and_update();
            {
                let mut list = episodes.lock().unwrap_or_else(|e| e.into_inner());
                match (now_leading, open) {
                    (true, None) => {
                        list.push(Episode {
                            who: who.clone(),
                            from: Instant::now(),
                            to: None,
                        });
                        open = Some(list.len() - 1);
                    }
                    (false, Some(i)) => {
                        list[i].to = Some(Instant::now());
                        open = None;
                    }
                    _ => {}
                }
            }
            if leading.changed().await.is_err() {
                if let Some(i) = open {
                    let mut list = episodes.lock().unwrap_or_else(|e| e.into_inner());
                    list[i].to = Some(Instant::now());
                }
                return;
            }
        }
    })
}

struct Slot {
    name: &'static str,
    incarnation: usize,
    running: Option<(Replica, JoinHandle<()>)>,
    partitioned: bool,
}

struct RunStats {
    episodes: usize,
    handovers: usize,
    longest_gap: Duration,
}

async fn randomized_run(seed: u64, total: Duration) -> RunStats {
    let fake = FakeApi::new();
    let episodes: Episodes = Arc::default();
    let mut rng = Rng::new(seed);
    let calm_from = total.mul_f64(0.75);

    // Faults for the first three quarters: errors, latency, hangs, and writes whose answer is
    // lost, with rates drawn per run.
    let error_rate = rng.unit() * 0.3;
    let hang_rate = rng.unit() * 0.05;
    let lost_rate = rng.unit() * 0.05;
    let slow_rate = rng.unit() * 0.3;
    let mut fault_rng = Rng::new(seed ^ 0xDEAD_BEEF);
    fake.inject(move |_| {
        let roll = fault_rng.unit();
        if roll < error_rate {
            Fault::Status(if fault_rng.below(2) == 0 { 500 } else { 503 })
        } else if roll < error_rate + hang_rate {
            Fault::Hang
        } else if roll < error_rate + hang_rate + lost_rate {
            Fault::ApplyThenHang
        } else if roll < error_rate + hang_rate + lost_rate + slow_rate {
            let delay = fault_rng.duration(Duration::from_secs(8));
            if fault_rng.below(2) == 0 {
                Fault::DelayBefore(delay)
            } else {
                Fault::DelayAfter(delay)
            }
        } else {
            Fault::None
        }
    });

    let names = ["r0", "r1", "r2"];
    let replicas = 2 + rng.below(2) as usize;
    let mut slots: Vec<Slot> = names[..replicas]
        .iter()
        .map(|name| Slot {
            name,
            incarnation: 0,
            running: None,
            partitioned: false,
        })
        .collect();
    let launch = |slot: &mut Slot| {
        slot.incarnation += 1;
        let replica = start(&fake, slot.name);
        let recorder = record(
            format!("{}#{}", slot.name, slot.incarnation),
            replica.leading.clone(),
            episodes.clone(),
        );
        slot.running = Some((replica, recorder));
    };
    for slot in &mut slots {
        launch(slot);
    }

    let start_at = Instant::now();
    while start_at.elapsed() < calm_from {
        sleep(rng.duration(Duration::from_secs(20))).await;
        let slot = &mut slots[rng.below(replicas as u64) as usize];
        match (rng.below(4), slot.running.take()) {
            (_, None) => launch(slot),
            (0, Some((replica, recorder))) => {
                // Graceful shutdown: release and exit.
                let _ = replica.stop().await;
                let _ = recorder.await;
            }
            (1, Some((replica, recorder))) => {
                // Crash: the process is gone, no release.
                replica.task.abort();
                let _ = replica.task.await;
                let _ = recorder.await;
            }
            (2, running) => {
                slot.partitioned = !slot.partitioned;
                fake.partition(slot.name, slot.partitioned);
                slot.running = running;
            }
            (_, running) => slot.running = running,
        }
    }

    // Calm: no faults, everyone connected and running. Leadership must come back.
    fake.heal();
    for slot in &mut slots {
        fake.partition(slot.name, false);
        slot.partitioned = false;
        if slot.running.is_none() {
            launch(slot);
        }
    }
    sleep(total - start_at.elapsed()).await;
    let leaders: Vec<&str> = slots
        .iter()
        .filter(|s| s.running.as_ref().is_some_and(|(r, _)| r.is_leading()))
        .map(|s| s.name)
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "seed {seed}: leaders at the end: {leaders:?}"
    );
    assert_eq!(
        spec(&fake).holder_identity.as_deref(),
        Some(leaders[0]),
        "seed {seed}"
    );
    assert_eq!(fake.unconditional_updates(), 0, "seed {seed}");

    for slot in slots {
        if let Some((replica, recorder)) = slot.running {
            let _ = replica.stop().await;
            let _ = recorder.await;
        }
    }

    // No instant with two leaders: episodes (half-open) of different incarnations never overlap.
    let list = episodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let end = Instant::now();
    let mut sorted: Vec<(Instant, Instant, &str)> = list
        .iter()
        .map(|e| (e.from, e.to.unwrap_or(end), e.who.as_str()))
        .filter(|(from, to, _)| to > from)
        .collect();
    sorted.sort();
    let mut handovers = 0;
    let mut longest_gap = Duration::ZERO;
    for pair in sorted.windows(2) {
        let ((_, prev_to, prev), (next_from, _, next)) = (pair[0], pair[1]);
        assert!(
            prev_to <= next_from,
            "seed {seed}: {prev} led until {:?} but {next} from {:?}",
            prev_to - start_at,
            next_from - start_at
        );
        if prev != next {
            handovers += 1;
        }
        longest_gap = longest_gap.max(next_from - prev_to);
    }
    RunStats {
        episodes: sorted.len(),
        handovers,
        longest_gap,
    }
}

#[tokio::test(start_paused = true)]
async fn randomized_failures_and_restarts_never_produce_two_leaders() {
    let mut total_episodes = 0;
    let mut total_handovers = 0;
    let mut longest_gap = Duration::ZERO;
    let seeds = 24;
    for seed in 0..seeds {
        let stats = randomized_run(seed, Duration::from_secs(900)).await;
        total_episodes += stats.episodes;
        total_handovers += stats.handovers;
        longest_gap = longest_gap.max(stats.longest_gap);
    }
    println!(
        "{seeds} runs of 900 s (simulated): {total_episodes} leadership episodes, {total_handovers} handovers, longest leaderless gap {longest_gap:?}"
    );
    // The chaos did exercise failover.
    assert!(
        total_handovers >= seeds as usize,
        "{total_handovers} handovers"
    );
}
