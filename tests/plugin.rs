//! `kubectl changejob` on the fake API server: each verb as a user runs it, and its errors.

mod support;

use std::time::Duration;

use kube::CustomResourceExt;
use kube_changejob::api::ChangeTriggeredJob;
use kube_changejob::plugin::{PluginError, Verb, execute};
use serde_json::{Value, json};
use support::fake_api::{FakeApi, Verb as ApiVerb};

const NS: &str = "ci";

fn fake() -> FakeApi {
    let fake = FakeApi::new();
    fake.install_crd(&ChangeTriggeredJob::crd());
    fake.create_namespace(NS);
    fake
}

fn ts(fake: &FakeApi, offset_secs: i64) -> String {
    let t = fake.now() + jiff::SignedDuration::from_secs(offset_secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": at, "observedGeneration": 1})
}

/// A CTJ watching two ConfigMaps (one pending) and a Secret set, in the given state.
fn ctj(
    fake: &FakeApi,
    name: &str,
    spec_extra: Value,
    conditions: Vec<Value>,
    extra_status: Value,
) -> Value {
    let mut spec = json!({
        "cooldown": "10m",
        "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "app", "namespace": NS},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "namespace": NS},
            {"apiVersion": "v1", "kind": "Secret", "namespace": NS, "selector": {"matchLabels": {"app": "web"}}}
        ],
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "run", "image": "busybox"}]}}}}
    });
    merge(&mut spec, &spec_extra);
    let mut status = json!({
        "observedGeneration": 1,
        "conditions": conditions,
        "resourceHashes": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "app", "namespace": NS, "hash": "h2", "baseline": "h1", "exists": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "namespace": NS, "hash": "absent", "baseline": "absent", "exists": false},
            {"apiVersion": "v1", "kind": "Secret", "name": "", "namespace": NS, "hash": "s1", "baseline": "s1", "exists": true}
        ],
        "lastTriggeredTime": ts(fake, -120),
        "lastJobName": format!("{name}-first"),
        "lastJobStatus": "Succeeded",
        "triggerSequence": 1
    });
    merge(&mut status, &extra_status);
    let stored = fake.insert(&json!({
        "apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
        "status": status
    }));
    fake.put(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "app", "namespace": NS}, "data": {"k": "v2"}}));
    fake.put(&json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "web-1", "namespace": NS, "labels": {"app": "web"}}}));
    stored
}

fn merge(base: &mut Value, extra: &Value) {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
}

/// A Job of the CTJ, created `age_secs` ago.
fn job(fake: &FakeApi, owner: &Value, name: &str, age_secs: i64, changed: &str, reason: &str) {
    fake.insert(&json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": NS,
            "creationTimestamp": ts(fake, -age_secs),
            "labels": {"changejob.dev/owner": owner["metadata"]["name"]},
            "annotations": {"changejob.dev/changed-resources": changed, "changejob.dev/trigger-reason": reason},
            "ownerReferences": [{"apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob",
                                 "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                 "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "run", "image": "busybox"}]}}}
    }));
}

async fn run(fake: &FakeApi, verb: Verb) -> Result<String, PluginError> {
    execute(fake.client_in(NS), NS, &verb, fake.now()).await
}

fn why(name: &str) -> Verb {
    Verb::Why { name: name.into() }
}

#[tokio::test]
async fn why_explains_a_change_held_by_the_cooldown() {
    let fake = fake();
    let next = ts(&fake, 480);
    let owner = ctj(
        &fake,
        "build",
        json!({}),
        vec![
            condition(
                "Progressing",
                "True",
                "CooldownActive",
                "ConfigMap/ci/app changed",
                &ts(&fake, -30),
            ),
            condition("Degraded", "False", "AsExpected", "", &ts(&fake, -600)),
        ],
        json!({"nextTriggerTime": next}),
    );
    job(
        &fake,
        &owner,
        "build-first",
        120,
        "ConfigMap/ci/app",
        "change",
    );
    fake.complete_job(NS, "build-first");

    let text = run(&fake, why("build"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sentence in [
        "ChangeTriggeredJob ci/build: condition Any, cooldown 10m, concurrencyPolicy Allow.",
        "Job build-first was created at ",
        "because ConfigMap/ci/app changed. It succeeded.",
        "A change is held by the cooldown of 10m (since ",
        &format!("The Job is created {next} (in 8m0s)."),
        "The cooldown of 10m runs until ",
        "concurrencyPolicy Allow: a new Job may run beside active ones; no Job is active.",
        "ConfigMap ci/app: changed since the last Job (",
        "): pending; last written ",
        "ConfigMap ci/gone: unchanged since the last Job",
        "it does not exist now (its creation would count as a change).",
        "Secret objects labelled app=web in ci: unchanged since the last Job",
        "1 object(s) match now.",
        "none: not Degraded since ",
    ] {
        assert!(text.contains(sentence), "missing {sentence:?} in\n{text}");
    }
}

#[tokio::test]
async fn why_explains_suspend_degraded_and_a_forbid_wait() {
    let fake = fake();
    let owner = ctj(
        &fake,
        "deploy",
        json!({"suspend": true, "concurrencyPolicy": "Forbid", "cooldown": "0s"}),
        vec![
            condition(
                "Progressing",
                "False",
                "WaitingForActiveJob",
                "waiting",
                &ts(&fake, -40),
            ),
            condition(
                "Degraded",
                "True",
                "Forbidden",
                "cannot get ConfigMap ci/gone: forbidden",
                &ts(&fake, -50),
            ),
        ],
        json!({"lastJobName": "deploy-first", "lastJobStatus": "Active"}),
    );
    job(&fake, &owner, "deploy-first", 120, "", "manual");

    let text = run(&fake, why("deploy"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sentence in [
        "concurrencyPolicy Forbid, suspended.",
        "because it was triggered by hand (changejob.dev/trigger). It is still running.",
        "It is suspended (spec.suspend: true): no Job is created until kubectl changejob resume deploy. 1 pending change(s) are kept",
        "The operator reports a problem (Forbidden): cannot get ConfigMap ci/gone: forbidden",
        "A change is waiting (since ",
        "concurrencyPolicy Forbid lets no new Job start while Job deploy-first is active",
        "The cooldown is 0s",
        "concurrencyPolicy Forbid: a new Job waits until the active one finishes; active now: deploy-first.",
        "Forbidden (since ",
    ] {
        assert!(text.contains(sentence), "missing {sentence:?} in\n{text}");
    }
}

#[tokio::test]
async fn why_says_when_the_operator_never_reported() {
    let fake = fake();
    fake.insert(&json!({
        "apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob",
        "metadata": {"name": "fresh", "namespace": NS},
        "spec": {"resources": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "app", "namespace": NS}],
                 "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "run", "image": "busybox"}]}}}}}
    }));
    let text = run(&fake, why("fresh"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains("The operator has not reported on it yet"),
        "{text}"
    );
    assert!(text.contains("No Job has run yet"), "{text}");
    assert!(
        text.contains("ConfigMap ci/app: not observed yet"),
        "{text}"
    );
}

#[tokio::test]
async fn history_lists_the_ctjs_jobs_newest_first_with_state_and_changes() {
    let fake = fake();
    let owner = ctj(&fake, "build", json!({}), vec![], json!({}));
    job(
        &fake,
        &owner,
        "build-old",
        3600,
        "ConfigMap/ci/app",
        "change",
    );
    job(&fake, &owner, "build-mid", 600, "", "manual");
    job(
        &fake,
        &owner,
        "build-new",
        10,
        "ConfigMap/ci/app,Secret/ci/web-1",
        "change",
    );
    fake.complete_job(NS, "build-old");
    fake.fail_job(NS, "build-mid");
    // Another CTJ's Job, even with a look-alike label, is not listed.
    let other = ctj(&fake, "other", json!({}), vec![], json!({}));
    job(&fake, &other, "other-1", 5, "", "manual");

    let text = run(
        &fake,
        Verb::History {
            name: "build".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("JOB") && lines[0].contains("STATE") && lines[0].contains("CHANGED")
    );
    assert!(lines[1].starts_with("build-new") && lines[1].contains("Active"));
    assert!(
        lines[1].ends_with("ConfigMap/ci/app, Secret/ci/web-1"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("build-mid")
            && lines[2].contains("Failed")
            && lines[2].ends_with("manual trigger")
    );
    assert!(
        lines[3].starts_with("build-old")
            && lines[3].contains("Succeeded")
            && lines[3].contains("(1h0m ago)")
    );
}

#[tokio::test]
async fn trigger_sets_a_new_manual_trigger_value_each_time() {
    let fake = fake();
    ctj(&fake, "build", json!({}), vec![], json!({}));
    let read = |fake: &FakeApi| {
        fake.get_json(
            "triggers.changejob.dev/v1alpha",
            "changetriggeredjobs",
            Some(NS),
            "build",
        )
        .and_then(|o| {
            o["metadata"]["annotations"]["changejob.dev/trigger"]
                .as_str()
                .map(str::to_owned)
        })
    };
    let out = run(
        &fake,
        Verb::Trigger {
            name: "build".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("triggered"), "{out}");
    let first = read(&fake).unwrap_or_else(|| panic!("no trigger annotation"));
    fake.advance(Duration::from_secs(1));
    run(
        &fake,
        Verb::Trigger {
            name: "build".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let second = read(&fake).unwrap_or_else(|| panic!("no trigger annotation"));
    assert_ne!(first, second, "a repeated trigger must be a new value");
}

#[tokio::test]
async fn suspend_and_resume_set_spec_suspend() {
    let fake = fake();
    ctj(&fake, "build", json!({}), vec![], json!({}));
    let suspended = |fake: &FakeApi| {
        fake.get_json(
            "triggers.changejob.dev/v1alpha",
            "changetriggeredjobs",
            Some(NS),
            "build",
        )
        .map(|o| o["spec"]["suspend"].clone())
    };
    let out = run(
        &fake,
        Verb::Suspend {
            name: "build".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("suspended"), "{out}");
    assert_eq!(suspended(&fake), Some(json!(true)));
    run(
        &fake,
        Verb::Resume {
            name: "build".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(suspended(&fake), Some(json!(false)));
}

#[tokio::test]
async fn a_missing_ctj_is_exit_code_3_and_says_how_to_list_them() {
    let fake = fake();
    for verb in [
        why("nope"),
        Verb::Trigger {
            name: "nope".into(),
        },
        Verb::History {
            name: "nope".into(),
        },
    ] {
        match run(&fake, verb).await {
            Err(e @ PluginError::NotFound { .. }) => {
                assert_eq!(e.exit_code(), 3);
                assert!(e.to_string().contains("kubectl get ctj -n ci"), "{e}");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_cluster_without_the_crd_is_told_to_install_it() {
    let fake = FakeApi::new();
    fake.unregister("triggers.changejob.dev", "v1alpha", "changetriggeredjobs");
    match run(&fake, why("build")).await {
        Err(e @ PluginError::NoCrd) => {
            assert_eq!(e.exit_code(), 3);
            assert!(e.to_string().contains("install kube-changejob"), "{e}");
        }
        other => panic!("expected NoCrd, got {other:?}"),
    }
}

#[tokio::test]
async fn no_permission_is_exit_code_4_with_the_servers_message() {
    let fake = fake();
    ctj(&fake, "build", json!({}), vec![], json!({}));
    fake.deny(
        ApiVerb::Patch,
        "triggers.changejob.dev",
        "changetriggeredjobs",
        None,
    );
    match run(
        &fake,
        Verb::Suspend {
            name: "build".into(),
        },
    )
    .await
    {
        Err(e @ PluginError::Forbidden { .. }) => {
            assert_eq!(e.exit_code(), 4);
            let text = e.to_string();
            assert!(
                text.starts_with("not allowed to change spec.suspend of the ChangeTriggeredJob"),
                "{text}"
            );
            assert!(text.contains("forbidden"), "{text}");
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    fake.clear_faults();
    fake.deny(
        ApiVerb::Get,
        "triggers.changejob.dev",
        "changetriggeredjobs",
        None,
    );
    assert!(matches!(
        run(&fake, why("build")).await,
        Err(PluginError::Forbidden { .. })
    ));
}

/// The binary, called as `kubectl-changejob` through a symlink, as kubectl runs plugins.
fn plugin_command(dir: &std::path::Path) -> std::process::Command {
    let link = dir.join("kubectl-changejob");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kube-changejob"), &link)
            .unwrap_or_else(|e| panic!("symlink: {e}"));
    }
    let mut cmd = std::process::Command::new(link);
    cmd.env_remove("KUBECONFIG").env("HOME", dir);
    cmd
}

#[test]
fn the_binary_called_kubectl_changejob_is_the_plugin() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let help = plugin_command(dir.path())
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&help.stdout);
    assert_eq!(help.status.code(), Some(0), "{text}");
    for verb in [
        "why",
        "trigger",
        "suspend",
        "resume",
        "history",
        "--namespace",
        "--context",
    ] {
        assert!(text.contains(verb), "missing {verb} in\n{text}");
    }
    let usage = plugin_command(dir.path())
        .arg("frobnicate")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn without_a_kubeconfig_or_a_reachable_cluster_the_exit_code_is_5() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = plugin_command(dir.path())
        .args(["why", "build"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.starts_with("error: no cluster:"), "{err}");

    // A kubeconfig whose server nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: dev\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: dev\n  context:\n    cluster: dev\n    user: dev\n    namespace: team\n- name: other\n  context:\n    cluster: dev\n    user: dev\nusers:\n- name: dev\n  user:\n    token: t\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = plugin_command(dir.path())
        .args(["history", "build", "--kubeconfig"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cannot reach the API server"), "{err}");
    let out = plugin_command(dir.path())
        .args(["why", "build", "--context", "missing", "--kubeconfig"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
