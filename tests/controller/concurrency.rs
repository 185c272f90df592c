//! `spec.concurrencyPolicy` against the fake API: Forbid holds a trigger while a Job runs and
//! fires once when it finishes (across restarts, for manual triggers, with a cooldown), Replace
//! deletes the running Job before creating the new one, Allow runs them side by side.

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use super::harness::*;
use crate::support::fake_api::{FakeError, Matcher, Verb};
use k8s_openapi::api::batch::v1::Job;
use kube_changejob::api::{ConcurrencyPolicy, TRIGGER_REASON_ANNOTATION};

const SEC: Duration = Duration::from_secs(1);

fn with_policy(name: &str, policy: ConcurrencyPolicy) -> kube_changejob::api::ChangeTriggeredJob {
    let mut c = ctj(name, vec![cm("app-config")]);
    c.spec.concurrency_policy = Some(policy);
    c
}

/// Starts a CTJ with `policy`, makes one change and returns the name of the Job it ran.
async fn first_job(h: &Harness, name: &str, policy: ConcurrencyPolicy) -> String {
    h.put_configmap("app-config", &[("k", "0")]);
    h.create_ctj(&with_policy(name, policy)).await;
    h.observed(name, 1).await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.expect_jobs(name, 1, 5 * SEC).await;
    job_names(h, name)[0].clone()
}

fn job_names(h: &Harness, ctj: &str) -> Vec<String> {
    h.jobs(ctj)
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

fn events(h: &Harness, reason: &str) -> Vec<Value> {
    h.fake
        .list_json("events.k8s.io/v1", "events", Some(NS))
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

fn pending(h: &Harness, ctj: &str) -> bool {
    h.status(ctj)
        .resource_hashes
        .iter()
        .any(|r| r.hash != r.baseline)
}

#[tokio::test(start_paused = true)]
async fn forbid_holds_changes_while_the_job_runs_and_fires_once_when_it_completes() {
    let h = Harness::start().await;
    let first = first_job(&h, "forbid", ConcurrencyPolicy::Forbid).await;
    for v in ["2", "3", "4"] {
        h.put_configmap("app-config", &[("k", v)]);
        h.wait(SEC).await;
    }
    h.wait(5 * SEC).await;
    assert_eq!(job_names(&h, "forbid"), vec![first.clone()], "held");
    let progressing = h.condition("forbid", "Progressing").expect("progressing");
    assert_eq!(
        (progressing.0.as_str(), progressing.1.as_str()),
        ("True", "WaitingForActiveJob")
    );
    assert!(progressing.2.contains(&first), "{}", progressing.2);
    assert!(
        pending(&h, "forbid"),
        "the held change stays pending in status"
    );
    let held = events(&h, "WaitingForActiveJob");
    assert_eq!(
        held.len(),
        1,
        "one event for the hold, not one per change: {held:#?}"
    );
    assert!(
        held[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains(&first)
    );

    h.fake.complete_job(NS, &first);
    h.expect_jobs("forbid", 2, 5 * SEC).await;
    h.wait(5 * SEC).await;
    assert_eq!(h.jobs("forbid").len(), 2, "one Job for every change held");
    assert!(!pending(&h, "forbid"));
    assert_eq!(
        h.condition("forbid", "Progressing").map(|c| c.1),
        Some("JobActive".into())
    );
}

#[tokio::test(start_paused = true)]
async fn forbid_hold_survives_a_restart_and_fires_when_the_job_fails() {
    let mut h = Harness::start().await;
    let first = first_job(&h, "forbid-restart", ConcurrencyPolicy::Forbid).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.eventually("the hold", 5 * SEC, || async {
        h.condition("forbid-restart", "Progressing").map(|c| c.1)
            == Some("WaitingForActiveJob".into())
    })
    .await;

    h.restart().await;
    h.wait(5 * SEC).await;
    assert_eq!(
        job_names(&h, "forbid-restart"),
        vec![first.clone()],
        "a restart does not release the hold"
    );
    h.fake.fail_job(NS, &first);
    h.expect_jobs("forbid-restart", 2, 5 * SEC).await;
    h.wait(3 * SEC).await;
    assert_eq!(h.jobs("forbid-restart").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn forbid_counts_a_job_deleted_by_a_user_as_finished() {
    let h = Harness::start().await;
    let first = first_job(&h, "forbid-deleted", ConcurrencyPolicy::Forbid).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.wait(3 * SEC).await;
    assert_eq!(h.jobs("forbid-deleted").len(), 1);
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), NS);
    jobs.delete(&first, &DeleteParams::background())
        .await
        .expect("delete Job");
    h.expect_jobs("forbid-deleted", 1, 5 * SEC).await;
    h.eventually("a new Job", 5 * SEC, || async {
        job_names(&h, "forbid-deleted")
            .first()
            .is_some_and(|n| n != &first)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn forbid_holds_a_manual_trigger_too() {
    let h = Harness::start().await;
    let first = first_job(&h, "forbid-manual", ConcurrencyPolicy::Forbid).await;
    h.patch_ctj(
        "forbid-manual",
        json!({"metadata": {"annotations": {"changejob.dev/trigger": "run-1"}}}),
    )
    .await;
    h.wait(3 * SEC).await;
    assert_eq!(h.jobs("forbid-manual").len(), 1);
    let progressing = h.condition("forbid-manual", "Progressing").expect("cond");
    assert!(
        progressing.2.starts_with("A manual trigger waits"),
        "{}",
        progressing.2
    );
    h.fake.complete_job(NS, &first);
    h.expect_jobs("forbid-manual", 2, 5 * SEC).await;
    let second = &h.jobs("forbid-manual")[1];
    assert_eq!(
        annotation(second, TRIGGER_REASON_ANNOTATION),
        Some("manual")
    );
    assert_eq!(
        h.status("forbid-manual").last_manual_trigger.as_deref(),
        Some("run-1")
    );
}

#[tokio::test(start_paused = true)]
async fn forbid_and_cooldown_both_hold() {
    let h = Harness::start().await;
    h.put_configmap("app-config", &[("k", "0")]);
    let mut c = with_policy("forbid-cool", ConcurrencyPolicy::Forbid);
    c.spec.cooldown = Some("30s".into());
    h.create_ctj(&c).await;
    h.observed("forbid-cool", 1).await;
    h.put_configmap("app-config", &[("k", "1")]);
    h.expect_jobs("forbid-cool", 1, 5 * SEC).await;
    let started = tokio::time::Instant::now();
    let first = job_names(&h, "forbid-cool")[0].clone();
    h.put_configmap("app-config", &[("k", "2")]);
    h.wait(2 * SEC).await;
    // The Job finishes early; the cooldown (from the first Job's creation) still holds.
    h.fake.complete_job(NS, &first);
    h.wait(20 * SEC).await;
    assert_eq!(h.jobs("forbid-cool").len(), 1, "inside the cooldown");
    h.expect_jobs("forbid-cool", 2, 15 * SEC).await;
    assert!(
        started.elapsed() >= 28 * SEC,
        "second Job after {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn forbid_creates_nothing_when_the_jobs_cannot_be_listed() {
    let h = Harness::start().await;
    let first = first_job(&h, "forbid-list", ConcurrencyPolicy::Forbid).await;
    h.fake.complete_job(NS, &first);
    h.wait(2 * SEC).await;
    h.fake.fail_always(
        Matcher::any().verb(Verb::List).resource("jobs"),
        FakeError::internal("etcd leader changed"),
    );
    h.put_configmap("app-config", &[("k", "2")]);
    h.eventually("JobListFailed", 10 * SEC, || async {
        h.condition("forbid-list", "Degraded").map(|c| c.1) == Some("JobListFailed".into())
    })
    .await;
    assert_eq!(h.jobs("forbid-list").len(), 1);
    assert!(pending(&h, "forbid-list"));
    h.fake.clear_faults();
    h.expect_jobs("forbid-list", 2, 30 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn replace_deletes_the_running_job_then_creates_the_new_one() {
    let h = Harness::start().await;
    let first = first_job(&h, "replace", ConcurrencyPolicy::Replace).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.eventually("the replacement", 5 * SEC, || async {
        let names = job_names(&h, "replace");
        names.len() == 1 && names[0] != first
    })
    .await;
    let deletes: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Delete && r.resource == "jobs")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].name.as_deref(), Some(first.as_str()));
    assert_eq!(deletes[0].propagation_policy.as_deref(), Some("Background"));
    let replaced = events(&h, "JobReplaced");
    assert_eq!(replaced.len(), 1);
    assert!(
        replaced[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains(&first)
    );
    assert_eq!(h.status("replace").trigger_sequence, Some(2));
}

#[tokio::test(start_paused = true)]
async fn replace_leaves_finished_jobs_alone() {
    let h = Harness::start().await;
    let first = first_job(&h, "replace-done", ConcurrencyPolicy::Replace).await;
    h.fake.complete_job(NS, &first);
    h.wait(SEC).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("replace-done", 2, 5 * SEC).await;
    assert_eq!(h.fake.count(Verb::Delete, "jobs"), 0);
}

#[tokio::test(start_paused = true)]
async fn allow_runs_a_new_job_next_to_a_running_one() {
    let h = Harness::start().await;
    first_job(&h, "allow", ConcurrencyPolicy::Allow).await;
    h.put_configmap("app-config", &[("k", "2")]);
    h.expect_jobs("allow", 2, 5 * SEC).await;
    assert_eq!(h.fake.count(Verb::Delete, "jobs"), 0);
    let own_lists = h
        .fake
        .requests()
        .iter()
        .filter(|r| {
            r.verb == Verb::List
                && r.resource == "jobs"
                && r.query_param("labelSelector") == Some("changejob.dev/owner=allow")
        })
        .count();
    assert_eq!(own_lists, 0, "Allow needs no extra list of Jobs");
}
