//! What the reconcile loop costs the API server: a safety resync of a ChangeTriggeredJob whose
//! inputs did not move is answered from memory, the periodic LIST of each watch stream still
//! catches a change the watch missed, and first observations read objects by LIST.

#[path = "controller/harness.rs"]
#[allow(dead_code)]
mod harness;
mod support;

use std::time::Duration;

use harness::*;
use support::fake_api::{FakeError, Matcher, Verb};

const SEC: Duration = Duration::from_secs(1);

fn unchanged_resyncs(h: &Harness) -> u64 {
    h.metrics.reconciles.with_label_values(&["unchanged"]).get()
}

#[tokio::test(start_paused = true)]
async fn resync_of_an_unchanged_ctj_makes_no_request_and_writes_nothing() {
    let h = Harness::start_with(|s| {
        s.poll_interval = 10 * SEC;
        s.relist_interval = Duration::from_secs(600);
    })
    .await;
    h.put_configmap("a", &[("k", "1")]);
    h.put_configmap("b", &[("k", "1")]);
    h.create_ctj(&ctj("idle", vec![cm("a"), cm("b")])).await;
    h.observed("idle", 2).await;
    h.wait(2 * SEC).await;
    h.fake.clear_requests();
    let before = unchanged_resyncs(&h);

    // Three poll intervals, each up to one resync slot (2.5 s here) longer.
    h.wait(40 * SEC).await;
    let requests: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb != Verb::Watch)
        .map(|r| format!("{} {}", r.verb.as_str(), r.resource))
        .collect();
    assert!(
        requests.is_empty(),
        "three resyncs of an unchanged CTJ cost no request: {requests:?}"
    );
    let resyncs = unchanged_resyncs(&h) - before;
    assert!(
        (3..=4).contains(&resyncs),
        "one resync per poll interval, each answered as unchanged: {resyncs}"
    );

    // Inputs that move still get a full round: a change of a watched object...
    h.put_configmap("a", &[("k", "2")]);
    h.expect_jobs("idle", 1, 5 * SEC).await;
    // ...and a new manual-trigger value.
    h.patch_ctj(
        "idle",
        serde_json::json!({"metadata": {"annotations": {"changejob.dev/trigger": "now"}}}),
    )
    .await;
    h.expect_jobs("idle", 2, 5 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn a_change_a_watch_silently_missed_is_caught_by_the_periodic_list() {
    let h = Harness::start_with(|s| {
        s.poll_interval = 10 * SEC;
        s.relist_interval = 30 * SEC;
    })
    .await;
    h.put_configmap("quiet", &[("k", "1")]);
    h.create_ctj(&ctj("missed", vec![cm("quiet")])).await;
    h.observed("missed", 1).await;
    h.wait(2 * SEC).await;

    h.fake.mute_watches("configmaps");
    h.put_configmap("quiet", &[("k", "2")]);
    // Resyncs trust the watch, which says nothing...
    h.wait(12 * SEC).await;
    assert!(h.jobs("missed").is_empty());
    // ...until the stream's periodic LIST shows the new resourceVersion.
    h.expect_jobs("missed", 1, 30 * SEC).await;
    assert!(
        h.fake.count(Verb::List, "configmaps") >= 2,
        "the initial LIST and at least one periodic LIST"
    );
}

#[tokio::test(start_paused = true)]
async fn first_observation_lists_each_stream_once_instead_of_one_get_per_object() {
    let mut h = Harness::start().await;
    h.stop().await;
    for i in 0..20 {
        h.put_configmap(&format!("cm-{i}"), &[("k", "1")]);
    }
    for i in 0..10 {
        let objects = vec![
            cm(&format!("cm-{}", 2 * i)),
            cm(&format!("cm-{}", 2 * i + 1)),
        ];
        h.create_ctj(&ctj(&format!("ctj-{i}"), objects)).await;
    }
    // One watched object does not exist yet: the LIST shows that too.
    h.create_ctj(&ctj("early", vec![cm("cm-0"), cm("not-yet")]))
        .await;
    h.fake.clear_requests();

    h.restart().await;
    for i in 0..10 {
        h.observed(&format!("ctj-{i}"), 2).await;
    }
    h.observed("early", 2).await;
    let early = h.status("early");
    assert_eq!(
        early
            .resource_hashes
            .iter()
            .map(|r| r.exists)
            .collect::<Vec<_>>(),
        vec![true, false]
    );
    assert_eq!(
        h.fake.count(Verb::Get, "configmaps"),
        0,
        "no object is read one by one"
    );
    assert!(
        h.fake.count(Verb::List, "configmaps") <= 2,
        "one LIST of content and the metadata watch's own LIST"
    );
    assert_eq!(h.fake.count(Verb::Patch, "changetriggeredjobs"), 11);

    // A new leader (a restart here) re-observes everything from LISTs and writes nothing.
    h.wait(2 * SEC).await;
    h.fake.clear_requests();
    h.restart().await;
    h.wait(5 * SEC).await;
    assert_eq!(h.fake.count(Verb::Get, "configmaps"), 0);
    assert_eq!(
        h.fake.count(Verb::Patch, "changetriggeredjobs"),
        0,
        "status is already up to date"
    );
    // And the LIST's fingerprints are the GET's: the objects are not pending.
    h.put_configmap("cm-3", &[("k", "2")]);
    h.expect_jobs("ctj-1", 1, 5 * SEC).await;
    h.wait(2 * SEC).await;
    for i in (0..10).filter(|i| *i != 1) {
        assert!(h.jobs(&format!("ctj-{i}")).is_empty(), "ctj-{i} fired");
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_new_ctjs_is_observed_by_list_pages_not_one_get_per_object() {
    let h = Harness::start().await;
    // Three pages of a LIST.
    for i in 0..600 {
        h.put_configmap(&format!("cm-{i}"), &[("k", "1")]);
    }
    h.create_ctj(&ctj("first", vec![cm("cm-599")])).await;
    h.observed("first", 1).await;
    h.fake.clear_requests();

    // 100 new CTJs at once, 200 objects no CTJ has read yet, one of them absent.
    for i in 0..100 {
        let second = if i == 99 {
            "absent".to_string()
        } else {
            format!("cm-{}", 2 * i + 1)
        };
        let objects = vec![cm(&format!("cm-{}", 2 * i)), cm(&second)];
        h.create_ctj(&ctj(&format!("ctj-{i}"), objects)).await;
    }
    for i in 0..100 {
        h.observed(&format!("ctj-{i}"), 2).await;
    }
    let gets = h.fake.count(Verb::Get, "configmaps");
    let lists = h.fake.count(Verb::List, "configmaps");
    assert!(
        gets + lists <= 40,
        "200 objects read with {gets} GETs and {lists} LIST pages"
    );
    let exists: Vec<bool> = h
        .status("ctj-99")
        .resource_hashes
        .iter()
        .map(|r| r.exists)
        .collect();
    assert_eq!(exists, vec![true, false]);

    // What the LISTs showed is what a GET shows: nothing is pending, and a change still
    // triggers the one CTJ watching it.
    h.put_configmap("cm-41", &[("k", "2")]);
    h.expect_jobs("ctj-20", 1, 5 * SEC).await;
    h.wait(2 * SEC).await;
    let fired: Vec<usize> = (0..100)
        .filter(|i| !h.jobs(&format!("ctj-{i}")).is_empty())
        .collect();
    assert_eq!(fired, vec![20]);
}

#[tokio::test(start_paused = true)]
async fn a_change_seen_by_many_ctjs_is_read_once() {
    let h = Harness::start().await;
    h.put_configmap("shared", &[("k", "1")]);
    for i in 0..24 {
        h.create_ctj(&ctj(&format!("ctj-{i}"), vec![cm("shared")]))
            .await;
    }
    for i in 0..24 {
        h.observed(&format!("ctj-{i}"), 1).await;
    }
    h.wait(2 * SEC).await;
    h.fake.clear_requests();

    h.put_configmap("shared", &[("k", "2")]);
    for i in 0..24 {
        h.expect_jobs(&format!("ctj-{i}"), 1, 5 * SEC).await;
    }
    let gets = h.fake.count(Verb::Get, "configmaps");
    assert!(
        gets <= 2,
        "24 CTJs woken by one change read it with {gets} GETs"
    );
}

/// CTJs watching ConfigMaps in `namespaces` namespaces (`ns-0`, `ns-1`, ...), one each.
async fn spread_over(h: &Harness, namespaces: usize) {
    for i in 0..namespaces {
        let ns = format!("ns-{i}");
        h.fake.create_namespace(&ns);
        h.fake.put(&configmap(&ns, "settings", &[("k", "1")]));
        let watched = resource("v1", "ConfigMap", Some(&ns), "settings");
        h.create_ctj(&ctj(&format!("ctj-{i}"), vec![watched])).await;
    }
    for i in 0..namespaces {
        h.observed(&format!("ctj-{i}"), 1).await;
    }
}

fn configmap_watches(h: &Harness, cluster_wide: bool) -> usize {
    h.fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Watch && r.resource == "configmaps")
        .filter(|r| r.namespace.is_none() == cluster_wide)
        .count()
}

#[tokio::test(start_paused = true)]
async fn past_the_threshold_a_kind_is_watched_cluster_wide() {
    let h = Harness::start_with(|s| s.cluster_watch_threshold = 2).await;
    spread_over(&h, 4).await;
    h.wait(3 * SEC).await;
    assert_eq!(configmap_watches(&h, true), 1, "one cluster-wide watch");

    // A namespace that joins later is served by it: no watch of its own.
    h.fake.clear_requests();
    h.fake.create_namespace("late");
    h.fake.put(&configmap("late", "settings", &[("k", "1")]));
    let late = resource("v1", "ConfigMap", Some("late"), "settings");
    h.create_ctj(&ctj("late", vec![late])).await;
    h.observed("late", 1).await;
    assert_eq!(configmap_watches(&h, false), 0);

    // Changes in every namespace still trigger, from the one watch.
    h.fake.put(&configmap("late", "settings", &[("k", "2")]));
    h.expect_jobs("late", 1, 5 * SEC).await;
    h.fake.put(&configmap("ns-0", "settings", &[("k", "2")]));
    h.expect_jobs("ctj-0", 1, 5 * SEC).await;
    assert!(h.jobs("ctj-1").is_empty());
}

/// The LIST that starts a cluster-wide ConfigMap watch.
fn cluster_wide_configmap_list() -> Matcher {
    Matcher::any()
        .verb(Verb::List)
        .resource("configmaps")
        .cluster_scope()
}

#[tokio::test(start_paused = true)]
async fn without_cluster_wide_list_rights_each_namespace_keeps_its_watch() {
    let h = Harness::start_with(|s| s.cluster_watch_threshold = 2).await;
    h.fake
        .fail_always(cluster_wide_configmap_list(), FakeError::forbidden());
    spread_over(&h, 4).await;
    h.wait(3 * SEC).await;
    assert_eq!(configmap_watches(&h, false), 4, "one watch per namespace");
    h.fake.put(&configmap("ns-3", "settings", &[("k", "2")]));
    h.expect_jobs("ctj-3", 1, 5 * SEC).await;
}

/// CTJs in four namespaces served by one cluster-wide ConfigMap watch that is open.
async fn served_cluster_wide() -> Harness {
    let h = Harness::start_with(|s| s.cluster_watch_threshold = 2).await;
    spread_over(&h, 4).await;
    h.eventually("one cluster-wide watch", 10 * SEC, || async {
        configmap_watches(&h, true) >= 1
    })
    .await;
    h.wait(3 * SEC).await;
    h
}

#[tokio::test(start_paused = true)]
async fn a_cluster_wide_watch_comes_back_quickly_after_an_outage() {
    let h = served_cluster_wide().await;
    for (round, outage) in [4 * SEC, 25 * SEC].into_iter().enumerate() {
        h.refuse_connections_for(outage).await;
        h.fake.put(&configmap(
            "ns-2",
            "settings",
            &[("k", &format!("after {outage:?}"))],
        ));
        let took = h.expect_jobs("ctj-2", round + 1, 3 * SEC).await;
        eprintln!("cluster-wide watch, {outage:?} outage: Job {took:?} after the change");
    }
    // It is still one cluster-wide watch, not one per namespace.
    h.fake.clear_requests();
    h.fake.close_watches();
    h.wait(3 * SEC).await;
    assert_eq!(configmap_watches(&h, false), 0, "no per-namespace watches");
    assert!(
        configmap_watches(&h, true) >= 1,
        "the cluster-wide watch is back"
    );
    assert_eq!(h.jobs("ctj-2").len(), 2, "no duplicate Job");
}

#[tokio::test(start_paused = true)]
async fn while_the_cluster_wide_watch_is_down_its_namespaces_are_read_on_a_timer() {
    let h = served_cluster_wide().await;
    // ConfigMaps can be read but not listed or watched at cluster scope.
    for verb in [Verb::List, Verb::Watch] {
        h.fake.fail_always(
            Matcher::any()
                .verb(verb)
                .resource("configmaps")
                .cluster_scope(),
            FakeError::unavailable(),
        );
    }
    h.fake.close_watches();
    h.wait(5 * SEC).await;
    h.fake.put(&configmap("ns-1", "settings", &[("k", "2")]));
    let took = h.expect_jobs("ctj-1", 1, 3 * SEC).await;
    eprintln!("cluster-wide watch down, reads working: Job {took:?} after the change");
    h.fake.clear_faults();
    h.wait(10 * SEC).await;
    assert_eq!(
        h.jobs("ctj-1").len(),
        1,
        "no duplicate Job once it lists again"
    );
    for i in [0, 2, 3] {
        assert!(h.jobs(&format!("ctj-{i}")).is_empty(), "ctj-{i} fired");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_wide_watch_denied_for_a_moment_is_tried_again_later() {
    let h = Harness::start_with(|s| s.cluster_watch_threshold = 2).await;
    // An API server whose RBAC caches are still loading denies the first attempt.
    h.fake
        .fail_times(cluster_wide_configmap_list(), FakeError::forbidden(), 1);
    spread_over(&h, 4).await;
    h.wait(3 * SEC).await;
    assert_eq!(configmap_watches(&h, true), 0, "denied at first");
    assert_eq!(configmap_watches(&h, false), 4, "one watch per namespace");
    h.fake.put(&configmap("ns-3", "settings", &[("k", "2")]));
    h.expect_jobs("ctj-3", 1, 5 * SEC).await;

    h.fake.clear_requests();
    h.wait(Duration::from_secs(310)).await;
    assert_eq!(configmap_watches(&h, true), 1, "tried again, and allowed");
    h.fake.clear_requests();
    h.fake.close_watches();
    h.wait(3 * SEC).await;
    assert_eq!(
        configmap_watches(&h, false),
        0,
        "the per-namespace watches stopped"
    );
    h.fake.put(&configmap("ns-0", "settings", &[("k", "2")]));
    h.expect_jobs("ctj-0", 1, 5 * SEC).await;
    h.fake.put(&configmap("ns-3", "settings", &[("k", "3")]));
    h.expect_jobs("ctj-3", 2, 5 * SEC).await;
}

/// The periodic LIST reads a large stream page by page (500 objects each) and still finds what
/// the watch missed on any page: a change on the last page and a deletion on the first.
#[tokio::test(start_paused = true)]
async fn the_periodic_list_pages_through_a_large_stream_and_finds_misses_on_every_page() {
    let h = Harness::start_with(|s| {
        s.poll_interval = 10 * SEC;
        s.relist_interval = 30 * SEC;
    })
    .await;
    for i in 0..1100 {
        h.put_configmap(&format!("cm-{i:04}"), &[("k", "1")]);
    }
    h.create_ctj(&ctj("first-page", vec![cm("cm-0000")])).await;
    h.create_ctj(&ctj("last-page", vec![cm("cm-1050")])).await;
    h.observed("first-page", 1).await;
    h.observed("last-page", 1).await;
    h.wait(2 * SEC).await;

    h.fake.mute_watches("configmaps");
    h.fake.clear_requests();
    h.fake
        .remove("v1", "configmaps", Some(NS), "cm-0000")
        .expect("cm-0000 was stored");
    h.put_configmap("cm-1050", &[("k", "2")]);
    h.expect_jobs("last-page", 1, 40 * SEC).await;
    h.eventually("the deletion is seen", 10 * SEC, || async {
        h.status("first-page")
            .resource_hashes
            .iter()
            .any(|r| !r.exists)
    })
    .await;
    let lists = h.fake.count(Verb::List, "configmaps");
    assert!(
        lists >= 3,
        "one check of 1,099 objects is three pages of 500: {lists} LISTs"
    );
}
