//! Control-plane faults: every watch dropped and answered 410 on resume, connections refused
//! for a while, watches failing while reads work. The loop must come back by itself and a
//! change made once the API answers again must get its Job within 3 s (tokio's paused clock:
//! the figures are virtual time on the fake API), exactly once.

use std::time::Duration;

use super::harness::*;
use crate::support::fake_api::{FakeError, Matcher, Verb};

const SEC: Duration = Duration::from_secs(1);
/// The target: a change made once the API server answers again has its Job by then.
const TARGET: Duration = Duration::from_secs(3);

/// A CTJ on one ConfigMap, observed, with every watch open.
async fn watching(name: &str, configmap: &str) -> Harness {
    let h = Harness::start().await;
    h.put_configmap(configmap, &[("k", "0")]);
    h.create_ctj(&ctj(name, vec![cm(configmap)])).await;
    h.observed(name, 1).await;
    // The ChangeTriggeredJob, Job and ConfigMap watches.
    h.eventually("three open watches", 10 * SEC, || async {
        h.fake.open_watches() >= 3
    })
    .await;
    h
}

#[tokio::test(start_paused = true)]
async fn watches_dropped_and_expired_on_resume_relist_at_once() {
    let h = watching("expiring", "expiring-config").await;
    // Compaction, then every watch ends: each one resumes from its resourceVersion and gets a
    // 410 Expired event, as from a restarted API server's empty watch cache.
    h.fake.compact();
    h.fake.close_watches();
    h.put_configmap("expiring-config", &[("k", "1")]);
    let took = h.expect_jobs("expiring", 1, TARGET).await;
    eprintln!("410 on resume (event): Job {took:?} after the change");

    // The same answered as an HTTP 410 to the watch request itself; kube-runtime's watcher
    // alone would retry that from the same stale resourceVersion.
    h.fake.fail_times(
        Matcher::any().verb(Verb::Watch),
        FakeError::status(410, "Expired", "too old resource version: 1 (40)"),
        3,
    );
    h.fake.close_watches();
    h.put_configmap("expiring-config", &[("k", "2")]);
    let took = h.expect_jobs("expiring", 2, TARGET).await;
    eprintln!("410 on resume (HTTP answer): Job {took:?} after the change");

    // The ChangeTriggeredJob watch came back too: a new CTJ is baselined at once.
    h.put_configmap("other-config", &[("k", "0")]);
    h.create_ctj(&ctj("newcomer", vec![cm("other-config")]))
        .await;
    h.observed("newcomer", 1).await;
    h.wait(30 * SEC).await;
    assert_eq!(h.jobs("expiring").len(), 2, "no duplicate Job");
    assert!(
        h.jobs("newcomer").is_empty(),
        "creating a CTJ never triggers"
    );
}

#[tokio::test(start_paused = true)]
async fn refused_connections_then_a_change_gets_its_job_within_the_target() {
    let h = watching("outage", "outage-config").await;
    for outage in [4 * SEC, 25 * SEC] {
        let jobs = h.jobs("outage").len();
        h.refuse_connections_for(outage).await;
        h.put_configmap("outage-config", &[("k", &format!("after {outage:?}"))]);
        let took = h.expect_jobs("outage", jobs + 1, TARGET).await;
        eprintln!("{outage:?} of refused connections: Job {took:?} after the change");
    }

    // A change made during the outage is not lost, and fires exactly once.
    h.fake
        .fail_always(Matcher::any(), FakeError::connection("connection refused"));
    h.fake.close_watches();
    h.wait(2 * SEC).await;
    h.put_configmap("outage-config", &[("k", "during")]);
    h.wait(8 * SEC).await;
    assert_eq!(
        h.jobs("outage").len(),
        2,
        "nothing can be created while refused"
    );
    h.fake.clear_faults();
    let took = h.expect_jobs("outage", 3, TARGET).await;
    eprintln!("change during a 10s outage: Job {took:?} after recovery");
    h.wait(30 * SEC).await;
    assert_eq!(h.jobs("outage").len(), 3, "no duplicate Job");
    h.eventually("Degraded=False again", 5 * SEC, || async {
        h.condition("outage", "Degraded")
            .is_some_and(|c| c.0 == "False")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn while_a_watch_cannot_come_back_its_objects_are_read_on_a_short_timer() {
    let h = watching("unwatched", "stuck-config").await;
    // ConfigMaps can be read but neither listed nor watched (e.g. a server whose watch cache
    // is not ready): only the re-observe timer can see a change.
    for verb in [Verb::List, Verb::Watch] {
        h.fake.fail_always(
            Matcher::any().verb(verb).resource("configmaps"),
            FakeError::unavailable(),
        );
    }
    h.fake.close_watches();
    h.wait(5 * SEC).await;
    h.put_configmap("stuck-config", &[("k", "1")]);
    let took = h.expect_jobs("unwatched", 1, TARGET).await;
    eprintln!("watch down, reads work: Job {took:?} after the change");
    h.wait(20 * SEC).await;
    assert_eq!(h.jobs("unwatched").len(), 1, "no duplicate Job");
    h.fake.clear_faults();
}
