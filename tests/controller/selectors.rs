//! Selector entries against the fake API: the set is served from the shared metadata watch,
//! objects joining or leaving it are changes, non-members are not, and a set beyond the
//! member bound is Degraded rather than watched in part.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube_changejob::api::{CHANGED_RESOURCES_ANNOTATION, LabelSelector, ResourceReference};
use serde_json::json;

use crate::harness::*;
use crate::support::fake_api::Verb;

const SEC: Duration = Duration::from_secs(1);

fn shop_configmaps(labels: &[(&str, &str)]) -> ResourceReference {
    let mut reference = resource("v1", "ConfigMap", Some(NS), "");
    reference.selector = Some(LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    });
    reference
}

fn labelled(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = configmap(NS, name, data);
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    cm
}

fn changed(h: &Harness, ctj: &str, index: usize) -> Option<String> {
    h.jobs(ctj)
        .get(index)
        .and_then(|j| annotation(j, CHANGED_RESOURCES_ANNOTATION).map(str::to_string))
}

fn members(h: &Harness, ctj: &str) -> Option<i64> {
    h.status(ctj)
        .resource_hashes
        .first()
        .and_then(|e| e.members)
}

#[tokio::test(start_paused = true)]
async fn a_matching_object_created_later_runs_one_job_naming_it() {
    let h = Harness::start().await;
    h.create_ctj(&ctj("shop", vec![shop_configmaps(&[("app", "shop")])]))
        .await;
    h.observed("shop", 1).await;
    let entry = h.status("shop").resource_hashes[0].clone();
    assert_eq!(entry.selector.as_deref(), Some("app=shop"));
    assert_eq!(entry.members, Some(0));
    assert!(entry.name.is_empty());
    h.wait(3 * SEC).await;
    assert!(h.jobs("shop").is_empty(), "an empty set is a valid start");

    h.fake
        .put(&labelled("other", &[("app", "cart")], &[("k", "1")]));
    h.wait(3 * SEC).await;
    assert!(
        h.jobs("shop").is_empty(),
        "a non-matching object is no member"
    );

    h.fake
        .put(&labelled("web", &[("app", "shop")], &[("k", "1")]));
    let latency = h.expect_jobs("shop", 1, 10 * SEC).await;
    assert!(
        latency < SEC,
        "the shared watch wakes the CTJ, took {latency:?}"
    );
    assert_eq!(
        changed(&h, "shop", 0).as_deref(),
        Some("ConfigMap/default/web")
    );
    h.eventually("one member", 5 * SEC, || async {
        members(&h, "shop") == Some(1)
    })
    .await;
    h.wait(5 * SEC).await;
    assert_eq!(h.jobs("shop").len(), 1, "one new member, one Job");
}

#[tokio::test(start_paused = true)]
async fn a_member_relabelled_out_runs_one_job_and_is_no_longer_watched() {
    let h = Harness::start().await;
    h.fake
        .put(&labelled("stays", &[("app", "shop")], &[("k", "1")]));
    h.fake
        .put(&labelled("leaves", &[("app", "shop")], &[("k", "1")]));
    let mut entry = shop_configmaps(&[("app", "shop")]);
    entry.fields = Some(vec!["data".into()]);
    h.create_ctj(&ctj("shop", vec![entry])).await;
    h.observed("shop", 1).await;
    assert_eq!(members(&h, "shop"), Some(2));
    h.wait(3 * SEC).await;
    assert!(h.jobs("shop").is_empty());

    h.patch_configmap(
        "leaves",
        json!({"metadata": {"labels": {"app": "elsewhere"}}}),
    )
    .await;
    h.expect_jobs("shop", 1, 5 * SEC).await;
    assert_eq!(
        changed(&h, "shop", 0).as_deref(),
        Some("ConfigMap/default/leaves")
    );
    h.eventually("one member", 5 * SEC, || async {
        members(&h, "shop") == Some(1)
    })
    .await;

    h.patch_configmap("leaves", merge(&[("k", "2")])).await;
    h.wait(5 * SEC).await;
    assert_eq!(h.jobs("shop").len(), 1, "the object left the set");

    // Relabelled back in, it joins again: a change.
    h.patch_configmap("leaves", json!({"metadata": {"labels": {"app": "shop"}}}))
        .await;
    h.expect_jobs("shop", 2, 5 * SEC).await;
    assert_eq!(
        changed(&h, "shop", 1).as_deref(),
        Some("ConfigMap/default/leaves")
    );
}

#[tokio::test(start_paused = true)]
async fn changes_to_non_members_run_no_job() {
    let h = Harness::start().await;
    h.fake
        .put(&labelled("member", &[("app", "shop")], &[("k", "1")]));
    h.fake
        .put(&labelled("outsider", &[("app", "cart")], &[("k", "1")]));
    h.put_configmap("unlabelled", &[("k", "1")]);
    h.create_ctj(&ctj("shop", vec![shop_configmaps(&[("app", "shop")])]))
        .await;
    h.observed("shop", 1).await;
    h.wait(3 * SEC).await;
    h.fake.clear_requests();

    h.patch_configmap("outsider", merge(&[("k", "2")])).await;
    h.patch_configmap("unlabelled", merge(&[("k", "2")])).await;
    h.wait(10 * SEC).await;
    assert!(h.jobs("shop").is_empty(), "non-members changed");
    let member_reads = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Get && r.resource == "configmaps")
        .count();
    assert_eq!(member_reads, 0, "no member moved, so none is read again");

    h.patch_configmap("member", merge(&[("k", "2")])).await;
    h.expect_jobs("shop", 1, 5 * SEC).await;
    assert_eq!(
        changed(&h, "shop", 0).as_deref(),
        Some("ConfigMap/default/member")
    );
    let member_reads: Vec<String> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Get && r.resource == "configmaps")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        member_reads,
        vec!["/api/v1/namespaces/default/configmaps/member"],
        "only the member whose resourceVersion moved is read in full"
    );
}

#[tokio::test(start_paused = true)]
async fn a_set_beyond_the_member_bound_is_degraded_not_truncated() {
    let h = Harness::start_with(|s| s.max_selector_members = 3).await;
    for i in 0..4 {
        h.fake.put(&labelled(
            &format!("cm-{i}"),
            &[("app", "shop")],
            &[("k", "1")],
        ));
    }
    h.create_ctj(&ctj("shop", vec![shop_configmaps(&[("app", "shop")])]))
        .await;
    h.eventually("Degraded TooManyObjects", 10 * SEC, || async {
        h.condition("shop", "Degraded")
            .is_some_and(|(status, reason, _)| status == "True" && reason == "TooManyObjects")
    })
    .await;
    let (_, _, message) = h.condition("shop", "Degraded").unwrap_or_default();
    assert!(message.contains("spec.resources[0]"), "{message}");
    assert!(message.contains("maxSelectorMembers"), "{message}");
    assert!(h.jobs("shop").is_empty());

    // Back within the bound: observed (first observation, so no Job) and no longer Degraded.
    h.fake.remove("v1", "configmaps", Some(NS), "cm-3");
    h.eventually("Degraded cleared", 10 * SEC, || async {
        h.condition("shop", "Degraded")
            .is_some_and(|(status, _, _)| status == "False")
    })
    .await;
    assert_eq!(members(&h, "shop"), Some(3));
    h.wait(3 * SEC).await;
    assert!(
        h.jobs("shop").is_empty(),
        "the first observation sets the baseline"
    );
}

#[tokio::test(start_paused = true)]
async fn many_changed_members_are_named_up_to_the_cap() {
    let h = Harness::start().await;
    h.create_ctj(&ctj("shop", vec![shop_configmaps(&[("app", "shop")])]))
        .await;
    h.observed("shop", 1).await;
    h.wait(2 * SEC).await;
    // 25 members join while suspended; the Job on resume names 20 of them and counts the rest.
    h.patch_ctj("shop", json!({"spec": {"suspend": true}}))
        .await;
    h.wait(2 * SEC).await;
    for i in 0..25 {
        h.fake.put(&labelled(
            &format!("cm-{i:02}"),
            &[("app", "shop")],
            &[("k", "1")],
        ));
    }
    h.eventually("25 members", 10 * SEC, || async {
        members(&h, "shop") == Some(25)
    })
    .await;
    h.patch_ctj("shop", json!({"spec": {"suspend": false}}))
        .await;
    h.expect_jobs("shop", 1, 10 * SEC).await;
    let names = changed(&h, "shop", 0).unwrap_or_default();
    let listed: Vec<&str> = names.split(',').collect();
    assert_eq!(listed.len(), 21, "{names}");
    assert_eq!(listed[0], "ConfigMap/default/cm-00");
    assert_eq!(listed[20], "+5 more");
}
