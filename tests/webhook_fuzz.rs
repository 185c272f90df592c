//! Property tests of the admission server: whatever arrives, the answer is well formed. Random
//! bytes, random JSON, and AdmissionReviews carrying random ChangeTriggeredJob-like objects
//! are posted over HTTPS to `/mutate` and `/validate`; the answer is always HTTP 400 with a
//! message, or HTTP 200 with an AdmissionReview echoing the request's uid — and a mutating
//! patch always applies to the object it was computed for.

mod support;
mod support_webhook;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use support_webhook::harness::{self, Harness};
use support_webhook::reviews::{self, User};
use tokio::runtime::Runtime;

const CASES: u32 = 160;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

fn server() -> (Runtime, Harness) {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let h = rt.block_on(harness::start());
    (rt, h)
}

/// Checks one answer; `uid` is the request's uid when the body was a well-formed envelope.
fn check_answer(
    rt: &Runtime,
    h: &Harness,
    path: &str,
    body: Vec<u8>,
    object: Option<&Value>,
) -> Result<Value, TestCaseError> {
    let sent: Option<Value> = serde_json::from_slice(&body).ok();
    let reply = rt.block_on(h.raw("POST", path, body));
    match reply.status {
        400 => {
            prop_assert!(!reply.text().trim().is_empty());
            Ok(Value::Null)
        }
        200 => {
            let answer = reply.json();
            prop_assert_eq!(&answer["apiVersion"], "admission.k8s.io/v1");
            prop_assert_eq!(&answer["kind"], "AdmissionReview");
            let response = &answer["response"];
            prop_assert!(response["allowed"].is_boolean(), "{}", answer);
            let uid = sent
                .as_ref()
                .and_then(|s| s["request"]["uid"].as_str())
                .unwrap_or_default();
            prop_assert_eq!(response["uid"].as_str(), Some(uid));
            if response["allowed"] == false {
                prop_assert!(
                    response["status"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{}",
                    answer
                );
                prop_assert!(
                    response["status"]["code"]
                        .as_u64()
                        .is_some_and(|c| c >= 400)
                );
            }
            if let (Some(patch), Some(object)) = (response["patch"].as_str(), object) {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(patch)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let patch: json_patch::Patch = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut doc = object.clone();
                prop_assert!(
                    json_patch::patch(&mut doc, &patch).is_ok(),
                    "patch {:?} does not apply to {}",
                    patch,
                    object
                );
            }
            Ok(answer)
        }
        other => Err(TestCaseError::fail(format!(
            "unexpected HTTP {other}: {}",
            reply.text()
        ))),
    }
}

/// Any JSON value, a few levels deep, with keys that sometimes hit the envelope's.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("admission.k8s.io/v1"),
            Just("AdmissionReview"),
            Just("CREATE"),
            Just("UPDATE"),
            Just("triggers.changejob.dev"),
            Just("ChangeTriggeredJob"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("apiVersion"),
            Just("kind"),
            Just("request"),
            Just("uid"),
            Just("object"),
            Just("oldObject"),
            Just("operation"),
            Just("userInfo"),
            Just("spec"),
            Just("metadata"),
        ]
        .prop_map(str::to_string),
        "[a-zA-Z]{1,8}",
    ]
}

fn text_or_junk(valid: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(valid).prop_map(Value::from),
        ".{0,10}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([])),
    ]
}

/// One `spec.resources` entry, usually plausible, sometimes junk.
fn resource_entry() -> impl Strategy<Value = Value> {
    (
        text_or_junk(&[
            "v1",
            "apps/v1",
            "batch/v1",
            "apps/v1beta1",
            "example.com/v1",
            "a/b/c",
            "",
        ]),
        text_or_junk(&[
            "ConfigMap",
            "Secret",
            "Node",
            "Deployment",
            "configmap",
            "Widget",
            "",
        ]),
        text_or_junk(&["app", "db", "worker-1", ""]),
        prop::option::of(text_or_junk(&["default", "prod", ""])),
        prop::option::of(prop::collection::vec(
            text_or_junk(&[
                "*",
                "data",
                "spec.replicas",
                "spec.containers[*].image",
                "metadata.annotations['a/b']",
                "a..b",
                "x[",
                "[?(@.a==1)]",
            ]),
            0..4,
        )),
    )
        .prop_map(|(api_version, kind, name, namespace, fields)| {
            let mut entry = json!({ "apiVersion": api_version, "kind": kind, "name": name });
            if let Some(ns) = namespace {
                entry["namespace"] = ns;
            }
            if let Some(fields) = fields {
                entry["fields"] = Value::Array(fields);
            }
            entry
        })
}

/// A ChangeTriggeredJob-shaped object with random contents.
fn ctj_like() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9-]{0,70}",
        prop::option::of(text_or_junk(&["Any", "All", "any", "Sometimes"])),
        prop::option::of(text_or_junk(&["0s", "60s", "1h30m", "-5s", "soon", "1.5h"])),
        prop::option::of(prop_oneof![any::<i64>().prop_map(Value::from), Just(json!("5")), Just(json!(2.5))]),
        prop_oneof![
            prop::collection::vec(resource_entry(), 0..4).prop_map(Value::Array),
            any_json(),
        ],
        prop_oneof![
            Just(json!({ "spec": { "template": { "spec": {
                "containers": [{ "name": "c", "image": "busybox" }], "restartPolicy": "Never" } } } })),
            Just(json!({ "spec": { "template": { "spec": { "containers": [] } } } })),
            any_json(),
        ],
        prop::option::of(any_json()),
    )
        .prop_map(|(name, condition, cooldown, history, resources, template, annotations)| {
            let mut spec = json!({ "jobTemplate": template, "resources": resources });
            for (key, value) in [("condition", condition), ("cooldown", cooldown), ("history", history)] {
                if let Some(v) = value {
                    spec[key] = v;
                }
            }
            let mut object = json!({
                "apiVersion": "triggers.changejob.dev/v1alpha",
                "kind": "ChangeTriggeredJob",
                "metadata": { "name": name, "namespace": "default" },
                "spec": spec
            });
            if let Some(a) = annotations {
                object["metadata"]["annotations"] = a;
            }
            object
        })
}

#[test]
fn random_bytes_get_400_or_a_review() {
    let (rt, h) = server();
    let strategy = prop::collection::vec(any::<u8>(), 0..2048);
    let result = runner().run(&strategy, |bytes| {
        for path in ["/mutate", "/validate"] {
            check_answer(&rt, &h, path, bytes.clone(), None)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn random_json_gets_400_or_a_review_with_the_uid() {
    let (rt, h) = server();
    let result = runner().run(&any_json(), |value| {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        for path in ["/mutate", "/validate"] {
            check_answer(&rt, &h, path, body.clone(), None)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn reviews_of_random_objects_are_always_answered_with_their_uid() {
    let (rt, h) = server();
    let operations = prop::sample::select(&["CREATE", "UPDATE", "DELETE", "CONNECT"][..]);
    let strategy = (operations, ctj_like(), ctj_like(), any_json());
    let user = User::named("fuzzer");
    let result = runner().run(&strategy, |(operation, object, old, junk)| {
        let old = (operation == "UPDATE" || operation == "DELETE").then_some(&old);
        let review = reviews::review(operation, Some(&object), old, &user);
        let body = serde_json::to_vec(&review).unwrap_or_default();
        let mutated = check_answer(&rt, &h, "/mutate", body, Some(&object))?;
        prop_assert!(!mutated.is_null(), "a well-formed review got HTTP 400");
        // Validate what the API server would send on: the object with the patch applied.
        let patched = reviews::apply_patch(&object, &mutated);
        let review = reviews::review(operation, Some(&patched), old, &user);
        let body = serde_json::to_vec(&review).unwrap_or_default();
        let validated = check_answer(&rt, &h, "/validate", body, None)?;
        prop_assert!(!validated.is_null());
        // And a review whose object is arbitrary JSON.
        let review = reviews::review(operation, Some(&junk), None, &user);
        let body = serde_json::to_vec(&review).unwrap_or_default();
        for path in ["/mutate", "/validate"] {
            let answer = check_answer(&rt, &h, path, body.clone(), Some(&junk))?;
            prop_assert!(!answer.is_null());
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
