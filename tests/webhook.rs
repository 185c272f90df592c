//! The admission webhook end to end: the real TLS server, real HTTPS requests, and the fake
//! API server answering discovery, SubjectAccessReviews and dry-run Job creates.

mod support;
mod support_webhook;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_api::{FakeError, Matcher, Verb};
use support_webhook::harness::{self, Options};
use support_webhook::reviews::{self, User, base_ctj, documented_manifests, review};

const CHANGED_AT: &str = "changetriggeredjobs.triggers.changejob.dev/changed-at";

fn changed_at(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"][CHANGED_AT].as_str()
}

fn is_rfc3339_utc_seconds(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && text.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && text.parse::<jiff::Timestamp>().is_ok()
}

#[tokio::test]
async fn every_manifest_from_the_documentation_is_admitted() {
    let h = harness::start().await;
    let manifests = documented_manifests();
    assert_eq!(manifests.len(), 19, "fixtures: {manifests:?}");
    let mut failures = Vec::new();
    for (file, object) in &manifests {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        h.fake.create_namespace(ns);
        let admitted = h.create(object).await;
        if !admitted.allowed() {
            failures.push(format!(
                "{file}: {} / {}",
                admitted.mutate,
                admitted.message()
            ));
            continue;
        }
        let out = &admitted.object;
        assert!(out["spec"]["condition"].is_string(), "{file}");
        assert!(out["spec"]["cooldown"].is_string(), "{file}");
        assert!(out["spec"]["history"].is_number(), "{file}");
        for r in out["spec"]["resources"].as_array().into_iter().flatten() {
            assert!(
                r["fields"].as_array().is_some_and(|f| !f.is_empty()),
                "{file}"
            );
        }
        assert!(
            changed_at(out).is_some_and(is_rfc3339_utc_seconds),
            "{file}: {out}"
        );
    }
    assert!(failures.is_empty(), "rejected:\n{}", failures.join("\n"));
    // Every manifest's template went through a server-side dry run in its own namespace.
    let dry_runs: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Create && r.resource == "jobs")
        .collect();
    assert_eq!(dry_runs.len(), manifests.len());
    assert!(dry_runs.iter().all(|r| r.dry_run));
    assert!(h.fake.list_json("batch/v1", "jobs", None).is_empty());
}

#[tokio::test]
async fn mutation_fills_defaults_and_stamps_changed_at() {
    let h = harness::start().await;
    let mut object = base_ctj("defaults");
    if let Some(resources) = object["spec"]["resources"].as_array_mut() {
        resources.push(json!({
            "apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": "default", "fields": []
        }));
    }
    let admitted = h.create(&object).await;
    assert!(admitted.allowed(), "{}", admitted.message());
    let out = &admitted.object;
    assert_eq!(out["spec"]["condition"], "Any");
    assert_eq!(out["spec"]["cooldown"], "60s");
    assert_eq!(out["spec"]["history"], 5);
    assert_eq!(out["spec"]["resources"][0]["fields"], json!(["*"]));
    assert_eq!(out["spec"]["resources"][1]["fields"], json!(["*"]));
    let stamp = changed_at(out).unwrap_or_default();
    assert!(is_rfc3339_utc_seconds(stamp), "{stamp}");
    let patch = reviews::patch_of(&admitted.mutate);
    assert!(
        patch
            .as_array()
            .into_iter()
            .flatten()
            .any(|op| op["path"] == "/metadata/annotations"),
        "{patch}"
    );
}

#[tokio::test]
async fn metadata_only_updates_leave_changed_at_alone() {
    let h = harness::start().await;
    let stored = h.create(&base_ctj("steady")).await.object;
    let mut relabelled = stored.clone();
    relabelled["metadata"]["labels"] = json!({ "team": "platform" });
    let admitted = h.update(&relabelled, &stored).await;
    assert!(admitted.allowed());
    assert!(
        admitted.mutate["response"].get("patch").is_none(),
        "{}",
        admitted.mutate
    );
    assert_eq!(changed_at(&admitted.object), changed_at(&stored));
}

#[tokio::test]
async fn reapplying_the_original_manifest_is_a_no_op() {
    let h = harness::start().await;
    let original = base_ctj("gitops");
    let mut stored = h.create(&original).await.object;
    stored["metadata"]["annotations"][CHANGED_AT] = json!("2024-12-01T08:00:00Z");
    // kubectl apply / a GitOps tool sends the manifest without the defaulted fields.
    let mut applied = original.clone();
    applied["metadata"]["annotations"] = stored["metadata"]["annotations"].clone();
    let admitted = h.update(&applied, &stored).await;
    assert!(admitted.allowed(), "{}", admitted.message());
    assert_eq!(changed_at(&admitted.object), Some("2024-12-01T08:00:00Z"));
    assert_eq!(admitted.object["spec"], stored["spec"]);
}

#[tokio::test]
async fn spec_changes_restamp_changed_at() {
    let h = harness::start().await;
    let mut stored = h.create(&base_ctj("moving")).await.object;
    stored["metadata"]["annotations"][CHANGED_AT] = json!("2024-12-01T08:00:00Z");
    let mut edited = stored.clone();
    edited["spec"]["cooldown"] = json!("5m");
    let admitted = h.update(&edited, &stored).await;
    assert!(admitted.allowed());
    let stamp = changed_at(&admitted.object).unwrap_or_default();
    assert_ne!(stamp, "2024-12-01T08:00:00Z");
    assert!(is_rfc3339_utc_seconds(stamp));
}

/// A spec change applied to the base manifest, and what the denial must say.
struct Bad {
    change: fn(&mut Value),
    expect: &'static [&'static str],
}

fn resource(object: &mut Value, value: Value) {
    object["spec"]["resources"] = json!([value]);
}

const BAD: &[Bad] = &[
    Bad {
        change: |o| o["spec"]["resources"] = json!([]),
        expect: &["spec.resources: at least one object to watch is required"],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "apps/v1/x", "kind": "Deployment", "name": "a", "namespace": "default" }),
            )
        },
        expect: &["spec.resources[0].apiVersion: apiVersion \"apps/v1/x\" is malformed"],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "v1", "kind": "configmap", "name": "a", "namespace": "default" }),
            )
        },
        expect: &[
            "spec.resources[0].kind: kind \"configmap\" is not served by v1; did you mean \"ConfigMap\"?",
        ],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "apps/v1beta1", "kind": "Deployment", "name": "a", "namespace": "default" }),
            )
        },
        expect: &[
            "spec.resources[0].apiVersion: apiVersion \"apps/v1beta1\" is not served by this cluster; it serves apps/v1",
        ],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "example.com/v1", "kind": "Widget", "name": "a", "namespace": "default" }),
            )
        },
        expect: &[
            "spec.resources[0].apiVersion: apiVersion \"example.com/v1\" is not served by this cluster",
            "install the CustomResourceDefinition",
        ],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": "a" }),
            )
        },
        expect: &[
            "spec.resources[0].namespace: ConfigMap is namespaced, so a namespace is required (for example \"default\")",
        ],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "v1", "kind": "Node", "name": "worker-1", "namespace": "default" }),
            )
        },
        expect: &[
            "spec.resources[0].namespace: Node is cluster-scoped, so it has no namespace; remove namespace \"default\"",
        ],
    },
    Bad {
        change: |o| {
            o["spec"]["resources"] = json!([
                { "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "default" },
                { "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "default", "fields": ["data"] }
            ])
        },
        expect: &["spec.resources[1]: watches the same object as spec.resources[0]"],
    },
    Bad {
        change: |o| o["spec"]["condition"] = json!("Sometimes"),
        expect: &[
            "spec.condition: \"Sometimes\" is not a trigger condition",
            "\"Any\"",
            "\"All\"",
        ],
    },
    Bad {
        change: |o| o["spec"]["history"] = json!(0),
        expect: &["spec.history: must be at least 1 (it is 0)"],
    },
    Bad {
        change: |o| o["spec"]["cooldown"] = json!("-5s"),
        expect: &["spec.cooldown: \"-5s\" is negative"],
    },
    Bad {
        change: |o| o["spec"]["cooldown"] = json!("soon"),
        expect: &["spec.cooldown: \"soon\" is not a duration"],
    },
    Bad {
        change: |o| o["spec"]["resources"][0]["fields"] = json!(["data", "data[0"]),
        expect: &[
            "spec.resources[0].fields[1]: invalid field path \"data[0\"",
            "(at character",
        ],
    },
    Bad {
        change: |o| {
            o["metadata"]["name"] =
                json!("a-very-long-name-that-will-not-fit-into-a-label-value-on-the-job")
        },
        expect: &[
            "metadata.name: the name is 64 characters long",
            "changejob.dev/owner",
        ],
    },
    Bad {
        change: |o| {
            o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("")
        },
        expect: &["spec.jobTemplate.spec.template.spec.containers[0].image: Required value"],
    },
    Bad {
        change: |o| {
            o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always")
        },
        expect: &[
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\"",
        ],
    },
    Bad {
        change: |o| {
            resource(
                o,
                json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "name": "a" }),
            )
        },
        expect: &["spec.resources[0].kind: SubjectAccessReview cannot be read back"],
    },
    Bad {
        change: |o| o["spec"]["resources"] = json!("app-config"),
        expect: &["spec.resources: invalid type: string \"app-config\", expected a sequence"],
    },
];

#[tokio::test]
async fn each_rule_rejects_with_its_field_path() {
    let h = harness::start().await;
    let mut wrong = Vec::new();
    for (i, bad) in BAD.iter().enumerate() {
        let mut object = base_ctj(&format!("bad-{i}"));
        (bad.change)(&mut object);
        let admitted = h.create(&object).await;
        let response = &admitted.validate["response"];
        let message = admitted.message();
        let ok = response["allowed"] == false
            && response["status"]["code"] == 422
            && response["status"]["reason"] == "Invalid"
            && bad.expect.iter().all(|e| message.contains(e));
        if !ok {
            wrong.push(format!(
                "case {i}: expected {:?}\n  got {}",
                bad.expect, admitted.validate
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn all_problems_of_a_request_are_reported_together() {
    let h = harness::start().await;
    let mut object = base_ctj("many-problems");
    object["spec"]["condition"] = json!("Maybe");
    object["spec"]["history"] = json!(-1);
    object["spec"]["resources"] = json!([
        { "apiVersion": "v1", "kind": "configmap", "name": "a", "namespace": "default" },
        { "apiVersion": "v1", "kind": "Node", "name": "n", "namespace": "default" }
    ]);
    let admitted = h.create(&object).await;
    let status = &admitted.validate["response"]["status"];
    let causes: Vec<String> = status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["field"].as_str().unwrap_or_default().to_string())
        .collect();
    for field in [
        "spec.condition",
        "spec.history",
        "spec.resources[0].kind",
        "spec.resources[1].namespace",
    ] {
        assert!(
            causes.iter().any(|c| c == field),
            "{field} missing in {causes:?}"
        );
    }
    assert_eq!(
        status["message"].as_str().map(|m| m.lines().count()),
        Some(causes.len())
    );
    assert_eq!(status["details"]["kind"], "ChangeTriggeredJob");
    assert_eq!(status["details"]["group"], "triggers.changejob.dev");
    assert_eq!(status["details"]["name"], "many-problems");
}

#[tokio::test]
async fn mutate_denies_an_object_without_a_spec() {
    let h = harness::start().await;
    let object = json!({ "apiVersion": "triggers.changejob.dev/v1alpha", "kind": "ChangeTriggeredJob",
        "metadata": { "name": "x", "namespace": "default" } });
    let answer = h
        .post(
            "/mutate",
            &review("CREATE", Some(&object), None, &User::named("a")),
        )
        .await;
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spec:")
    );
}

#[tokio::test]
async fn an_object_that_is_not_a_change_triggered_job_is_denied_with_its_uid() {
    let h = harness::start().await;
    for object in [json!(42), json!("text"), json!([1, 2])] {
        for path in ["/mutate", "/validate"] {
            let answer = h
                .post(
                    path,
                    &review("CREATE", Some(&object), None, &User::named("a")),
                )
                .await;
            assert_eq!(answer["response"]["allowed"], false, "{path} {object}");
            assert!(
                !answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty()
            );
        }
    }
}

#[tokio::test]
async fn authors_must_be_able_to_read_what_they_watch_and_create_jobs() {
    let h = harness::start().await;
    h.fake.create_namespace("prod");
    h.fake.set_sar_policy(|spec| {
        let attrs = spec.resource_attributes.clone().unwrap_or_default();
        let denied = spec.user.as_deref() == Some("alice")
            && (attrs.resource.as_deref() == Some("secrets")
                || attrs.resource.as_deref() == Some("jobs"));
        (!denied, String::new())
    });
    let mut object = base_ctj("nosy");
    object["metadata"]["namespace"] = json!("prod");
    object["spec"]["resources"] = json!([
        { "apiVersion": "v1", "kind": "Secret", "name": "db", "namespace": "prod", "fields": ["data"] },
        { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "prod" }
    ]);
    let admitted = h.create(&object).await;
    let message = admitted.message();
    assert!(
        message.contains("spec.resources[0]: user \"alice\" may not get secrets \"db\" in namespace \"prod\"; a ChangeTriggeredJob may only watch objects its author can read"),
        "{message}"
    );
    assert!(
        message.contains(
            "spec.jobTemplate: user \"alice\" may not create jobs.batch in namespace \"prod\""
        ),
        "{message}"
    );
    assert!(!message.contains("deployments"), "{message}");
    let reviews = h.fake.subject_access_reviews();
    assert_eq!(reviews.len(), 3);
    let secret = reviews
        .iter()
        .find(|r| {
            r.resource_attributes
                .as_ref()
                .and_then(|a| a.resource.as_deref())
                == Some("secrets")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(secret.user.as_deref(), Some("alice"));
    assert_eq!(secret.uid.as_deref(), Some("uid-alice"));
    assert!(
        secret
            .groups
            .unwrap_or_default()
            .contains(&"developers".to_string())
    );
    assert!(
        secret
            .extra
            .is_some_and(|e| e.contains_key("authentication.kubernetes.io/credential-id"))
    );
    let attrs = secret.resource_attributes.unwrap_or_default();
    assert_eq!(
        (
            attrs.verb.as_deref(),
            attrs.group.as_deref(),
            attrs.namespace.as_deref(),
            attrs.name.as_deref()
        ),
        (Some("get"), Some(""), Some("prod"), Some("db"))
    );

    // Someone allowed everything may create the same object.
    let bob = h.admit("CREATE", &object, None, &User::named("bob")).await;
    assert!(bob.allowed(), "{}", bob.message());
}

#[tokio::test]
async fn permissions_and_dry_run_are_checked_only_for_what_an_update_changes() {
    let h = harness::start().await;
    let stored = h.create(&base_ctj("updates")).await.object;
    let reviews_after_create = h.fake.subject_access_reviews().len();
    let dry_runs = |h: &harness::Harness| h.fake.count(Verb::Create, "jobs");
    assert_eq!(dry_runs(&h), 1);

    let mut cooldown = stored.clone();
    cooldown["spec"]["cooldown"] = json!("10m");
    assert!(h.update(&cooldown, &stored).await.allowed());
    assert_eq!(h.fake.subject_access_reviews().len(), reviews_after_create);
    assert_eq!(dry_runs(&h), 1);

    let mut watched = stored.clone();
    watched["spec"]["resources"][0]["name"] = json!("other-config");
    assert!(h.update(&watched, &stored).await.allowed());
    assert!(h.fake.subject_access_reviews().len() > reviews_after_create);
    assert_eq!(dry_runs(&h), 1);

    let mut template = stored.clone();
    template["spec"]["jobTemplate"]["spec"]["backoffLimit"] = json!(2);
    assert!(h.update(&template, &stored).await.allowed());
    assert_eq!(dry_runs(&h), 2);
}

#[tokio::test]
async fn an_update_that_leaves_the_spec_alone_is_allowed_even_if_the_spec_is_now_invalid() {
    let h = harness::start().await;
    // Stored before a rule existed: watches a kind that is no longer served.
    let mut stored = base_ctj("legacy");
    stored["spec"]["resources"][0]["kind"] = json!("Widget");
    let mut finalizer_removed = stored.clone();
    finalizer_removed["metadata"]["labels"] = json!({ "x": "y" });
    let answer = h
        .post(
            "/validate",
            &review(
                "UPDATE",
                Some(&finalizer_removed),
                Some(&stored),
                &User::named("gc"),
            ),
        )
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(h.fake.discovery_count(), 0);
}

#[tokio::test]
async fn the_dry_run_job_is_built_like_the_operator_builds_it() {
    let h = harness::start().await;
    h.fake.create_namespace("team-a");
    let mut object = base_ctj("shape");
    object["metadata"]["namespace"] = json!("team-a");
    object["spec"]["jobTemplate"]["metadata"] = json!({ "labels": { "app": "x" } });
    assert!(h.create(&object).await.allowed());
    let request = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Create && r.resource == "jobs")
        .unwrap_or_else(|| panic!("no dry run"));
    assert!(request.dry_run);
    assert_eq!(request.namespace.as_deref(), Some("team-a"));
    let job = request.body.unwrap_or_default();
    assert_eq!(job["metadata"]["labels"]["changejob.dev/owner"], "shape");
    assert_eq!(job["metadata"]["labels"]["app"], "x");
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["kind"],
        "ChangeTriggeredJob"
    );
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["uid"],
        "00000000-0000-0000-0000-000000000000"
    );
}

#[tokio::test]
async fn unreachable_discovery_asks_for_a_retry_and_recovers() {
    let h = harness::start().await;
    h.fake.fail_always(
        Matcher::any().verb(Verb::Discovery),
        FakeError::unavailable(),
    );
    let object = base_ctj("flaky");
    let admitted = h.create(&object).await;
    let status = &admitted.validate["response"]["status"];
    assert_eq!(admitted.validate["response"]["allowed"], false);
    assert_eq!(status["code"], 503, "{status}");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert!(
        status["details"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|s| s > 0)
    );
    let message = admitted.message();
    assert!(
        message.contains("could not check whether the cluster serves ConfigMap in v1"),
        "{message}"
    );
    assert!(message.contains("retry"), "{message}");

    h.fake.clear_faults();
    let again = h.create(&object).await;
    assert!(again.allowed(), "{}", again.message());
}

#[tokio::test]
async fn failing_permission_checks_ask_for_a_retry() {
    let h = harness::start().await;
    h.fake.fail_always(
        Matcher::any().resource("subjectaccessreviews"),
        FakeError::internal("authorizer overloaded"),
    );
    let admitted = h.create(&base_ctj("sar-down")).await;
    assert_eq!(admitted.validate["response"]["status"]["code"], 503);
    assert!(
        admitted
            .message()
            .contains("could not check whether user \"alice\" may get configmaps"),
        "{}",
        admitted.message()
    );
}

#[tokio::test]
async fn slow_api_server_is_cut_off_before_the_webhook_timeout() {
    let h = harness::start_with(Options {
        check_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    h.fake.set_latency(Some(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let admitted = h.create(&base_ctj("slow")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(admitted.validate["response"]["status"]["code"], 503);
    assert!(
        admitted.message().contains("did not finish within 0.3s"),
        "{}",
        admitted.message()
    );
}

#[tokio::test]
async fn the_api_servers_announced_timeout_shortens_the_checks() {
    // The default ceiling is 8s; the API server announces that it waits only 2s, so the
    // checks must give up after 1s and still answer in time.
    let h = harness::start().await;
    h.fake.set_latency(Some(Duration::from_secs(5)));
    let object = base_ctj("short-timeout");
    let review = reviews::review("CREATE", Some(&object), None, &User::named("alice"));
    let started = std::time::Instant::now();
    let answer = h.post("/validate?timeout=2s", &review).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 503);
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("did not finish within 1s"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_on_a_cold_cache_share_one_discovery_request() {
    let fake = support::fake_api::FakeApi::new();
    fake.set_latency(Some(Duration::from_millis(100)));
    let cache = std::sync::Arc::new(kube_changejob::discovery::DiscoveryCache::new(
        fake.client(),
        Duration::from_secs(2),
        Duration::from_secs(600),
    ));
    let lookups: Vec<_> = (0..8)
        .map(|i| {
            let cache = cache.clone();
            let kind = if i % 2 == 0 { "ConfigMap" } else { "Secret" };
            tokio::spawn(async move { cache.resolve("v1", kind).await })
        })
        .collect();
    for lookup in lookups {
        let info = lookup
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(info.namespaced);
    }
    assert_eq!(fake.discovery_count(), 1, "{:?}", fake.request_summaries());
    // A miss on another group-version still asks.
    let deployments = cache.resolve("apps/v1", "Deployment").await;
    assert!(deployments.is_ok());
    assert_eq!(fake.discovery_count(), 2);
}

#[tokio::test]
async fn checks_can_be_turned_off() {
    let h = harness::start_with(Options {
        authorize_users: false,
        dry_run: false,
        ..Options::default()
    })
    .await;
    let admitted = h.create(&base_ctj("trusting")).await;
    assert!(admitted.allowed());
    assert!(h.fake.subject_access_reviews().is_empty());
    assert_eq!(h.fake.count(Verb::Create, "jobs"), 0);
}

#[tokio::test]
async fn deletes_connects_subresources_and_other_kinds_pass() {
    let h = harness::start().await;
    let broken = json!({ "metadata": { "name": "x" }, "spec": { "history": 0 } });
    let user = User::named("a");
    for path in ["/mutate", "/validate"] {
        let delete = h
            .post(path, &review("DELETE", None, Some(&broken), &user))
            .await;
        assert_eq!(delete["response"]["allowed"], true);
        let connect = h
            .post(path, &review("CONNECT", Some(&broken), None, &user))
            .await;
        assert_eq!(connect["response"]["allowed"], true);
        let mut status = review("UPDATE", Some(&broken), Some(&broken), &user);
        status["request"]["subResource"] = json!("status");
        assert_eq!(h.post(path, &status).await["response"]["allowed"], true);
        let mut pod = review("CREATE", Some(&broken), None, &user);
        pod["request"]["kind"] = json!({ "group": "", "version": "v1", "kind": "Pod" });
        let pod = h.post(path, &pod).await;
        assert_eq!(pod["response"]["allowed"], true);
        assert!(pod["response"].get("patch").is_none());
    }
}

#[tokio::test]
async fn risky_but_legal_specs_get_warnings() {
    let h = harness::start().await;
    let mut object = base_ctj("risky");
    object["metadata"]["annotations"] = json!({ "changejob.dev/trigger": "now" });
    object["spec"]["cooldown"] = json!("0s");
    object["spec"]["history"] = json!(500);
    object["spec"]["jobTemplate"]["metadata"] = json!({ "name": "fixed" });
    object["spec"]["resources"] = json!([
        { "apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": "default" },
        { "apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "default" }
    ]);
    let admitted = h.create(&object).await;
    assert!(admitted.allowed(), "{}", admitted.message());
    let warnings = admitted.warnings();
    for expected in [
        "spec.cooldown: 0s turns the cooldown off",
        "spec.jobTemplate.metadata.name is ignored",
        "spec.resources[0]: watching the whole Secret",
        "spec.resources[1]: a whole Pod changes often",
        "spec.history: keeping 500 Jobs",
        "metadata.annotations[changejob.dev/trigger]",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(expected)),
            "{expected} not in {warnings:?}"
        );
    }
    // Re-sending the same object with only a label changed repeats none of them.
    let mut labelled = admitted.object.clone();
    labelled["metadata"]["labels"] = json!({ "a": "b" });
    let again = h.update(&labelled, &admitted.object).await;
    assert!(again.warnings().is_empty(), "{:?}", again.warnings());
}

#[tokio::test]
async fn malformed_bodies_get_http_400_with_a_message() {
    let h = harness::start().await;
    for (body, says) in [
        (b"not json at all".to_vec(), "not JSON"),
        (b"{\"kind\":\"Pod\"}".to_vec(), "not an admission.k8s.io/v1 AdmissionReview"),
        (b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}".to_vec(), "no request"),
        (
            b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":1}}".to_vec(),
            "not a valid AdmissionReview",
        ),
        (Vec::new(), "not JSON"),
    ] {
        for path in ["/mutate", "/validate"] {
            let reply = h.raw("POST", path, body.clone()).await;
            assert_eq!(reply.status, 400, "{path} {}", reply.text());
            assert!(reply.content_type.starts_with("text/plain"));
            assert!(reply.text().contains(says), "{path}: {}", reply.text());
        }
    }
}

#[tokio::test]
async fn wrong_method_unknown_path_and_huge_body_are_refused() {
    let h = harness::start().await;
    assert_eq!(h.raw("GET", "/validate", Vec::new()).await.status, 405);
    assert_eq!(h.raw("PUT", "/mutate", Vec::new()).await.status, 405);
    let missing = h.raw("POST", "/admit", Vec::new()).await;
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("/validate"));
    let huge = vec![b' '; 4 * 1024 * 1024];
    assert_eq!(h.raw("POST", "/validate", huge).await.status, 413);
}

/// An 8 MiB review, as in the report from a real cluster: the whole upload is read, the
/// client gets 413 naming the limit, and the TLS connection then ends in order (no reset).
#[tokio::test]
async fn an_oversized_review_gets_413_over_tls_and_a_clean_close() {
    use support::raw_http::upload;
    use support_webhook::https::tls_connect;
    let h = harness::start().await;
    let size = 8 * 1024 * 1024;
    for path in ["/validate", "/mutate"] {
        let tls = tls_connect(
            h.addr,
            &h.pki.ca.cert_pem,
            "localhost",
            &[b"http/1.1"],
            rustls::DEFAULT_VERSIONS,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        );
        let got = upload(tls, &head, size).await;
        assert_eq!(got.status(), Some(413), "{path}: {got:?}");
        assert!(
            got.response.contains("larger than the limit of 3 MiB"),
            "{path}: {}",
            got.response
        );
        assert_eq!(got.sent, Ok(()), "{path}: the upload was cut off");
        assert_eq!(
            got.end,
            Ok(()),
            "{path}: the connection did not end cleanly"
        );
    }

    // A client that waits for `100 Continue` gets the answer without sending the body.
    let tls = tls_connect(
        h.addr,
        &h.pki.ca.cert_pem,
        "localhost",
        &[b"http/1.1"],
        rustls::DEFAULT_VERSIONS,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\nExpect: 100-continue\r\n\r\n"
    );
    let got = upload(tls, &head, 0).await;
    assert_eq!(got.status(), Some(413), "{got:?}");
    assert!(!got.response.contains("100 Continue"), "{}", got.response);
    assert_eq!(got.end, Ok(()));
}

#[tokio::test]
async fn requests_are_counted_by_webhook_and_result() {
    let h = harness::start().await;
    assert!(h.create(&base_ctj("counted")).await.allowed());
    let mut bad = base_ctj("counted-bad");
    bad["spec"]["history"] = json!(0);
    assert!(!h.create(&bad).await.allowed());
    assert_eq!(h.raw("POST", "/validate", b"{".to_vec()).await.status, 400);
    let text = h.metrics.render();
    for line in [
        "changejob_webhook_requests_total{result=\"allowed\",webhook=\"mutate\"} 2",
        "changejob_webhook_requests_total{result=\"allowed\",webhook=\"validate\"} 1",
        "changejob_webhook_requests_total{result=\"denied\",webhook=\"validate\"} 1",
        "changejob_webhook_requests_total{result=\"error\",webhook=\"validate\"} 1",
        "changejob_webhook_duration_seconds_count{webhook=\"validate\"} 3",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn http2_and_tls12_clients_are_served() {
    use support_webhook::https::tls_connect;
    let h = harness::start().await;
    let h2 = tls_connect(
        h.addr,
        &h.pki.ca.cert_pem,
        "localhost",
        &[b"h2", b"http/1.1"],
        rustls::DEFAULT_VERSIONS,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let tls12 = tls_connect(
        h.addr,
        &h.pki.ca.cert_pem,
        "localhost",
        &[b"http/1.1"],
        &[&rustls::version::TLS12],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn shutdown_finishes_in_flight_reviews_then_stops() {
    let mut h = harness::start().await;
    h.fake.set_latency(Some(Duration::from_millis(600)));
    let mut conn = h.connect().await;
    let body = serde_json::to_vec(&review(
        "CREATE",
        Some(&base_ctj("inflight")),
        None,
        &User::named("a"),
    ))
    .unwrap_or_default();
    let in_flight = tokio::spawn(async move { conn.send("POST", "/validate", body).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.shutdown.cancel();
    let reply = in_flight
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("in-flight request failed: {e}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["response"]["allowed"], true);
    let stopped = tokio::time::timeout(Duration::from_secs(5), &mut h.server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    assert!(
        support_webhook::https::Connection::open(h.addr, &h.pki.ca.cert_pem)
            .await
            .is_err()
    );
}
