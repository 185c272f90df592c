//! Cost of the pure core on realistic objects: fingerprinting whole objects and selected
//! fields, and evaluating the trigger decision for a CTJ with many watched objects.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use serde_json::{Value, json};

use kube_changejob::api::TriggerCondition;
use kube_changejob::detect::fingerprint::{Fingerprint, FingerprintKey};
use kube_changejob::detect::select::Selection;
use kube_changejob::detect::trigger::{
    Observation, Tracked, TriggerInput, WatchedObject, evaluate,
};

fn configmap(bytes: usize) -> Value {
    let mut data = serde_json::Map::new();
    let value = "x".repeat(100);
    for i in 0..(bytes / 110).max(1) {
        data.insert(format!("key-{i:05}"), json!(value));
    }
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app", "namespace": "default", "resourceVersion": "12345",
                     "uid": "0b1c", "labels": {"app": "web"},
                     "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "data": data
    })
}

fn deployment(containers: usize) -> Value {
    let containers: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example.com/app/c{i}:1.2.{i}"),
                         "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "annotations": {"deployment.kubernetes.io/revision": "3"}},
           "spec": {"replicas": 3, "template": {"spec": {"containers": containers}}},
           "status": {"replicas": 3, "readyReplicas": 3}})
}

fn fingerprints(c: &mut Criterion) {
    let key = FingerprintKey::development();
    let whole = Selection::parse(&["*"]).unwrap_or_else(|e| panic!("{e}"));
    let images = Selection::parse(&["spec.template.spec.containers[*].image"])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("fingerprint");
    for (label, object) in [
        ("configmap_1KiB", configmap(1024)),
        ("configmap_100KiB", configmap(100 * 1024)),
        ("configmap_1MiB", configmap(1024 * 1024)),
    ] {
        group.bench_function(format!("{label}_whole"), |b| {
            b.iter(|| key.fingerprint(&whole.select(black_box(&object))))
        });
    }
    let dep = deployment(10);
    group.bench_function("deployment_10_containers_whole", |b| {
        b.iter(|| key.fingerprint(&whole.select(black_box(&dep))))
    });
    group.bench_function("deployment_10_containers_images", |b| {
        b.iter(|| key.fingerprint(&images.select(black_box(&dep))))
    });
    group.finish();
}

fn decision(c: &mut Criterion) {
    let objects: Vec<WatchedObject> = (0..100)
        .map(|i| WatchedObject {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: format!("cm-{i}"),
            selector: None,
            fields: vec!["*".into()],
        })
        .collect();
    let previous: Vec<Tracked> = objects
        .iter()
        .map(|o| Tracked {
            object: o.clone(),
            hash: Fingerprint("a".repeat(64)),
            baseline: Fingerprint("a".repeat(64)),
            exists: true,
            members: None,
        })
        .collect();
    let observed: Vec<(WatchedObject, Observation)> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                o.clone(),
                Observation::Found(Fingerprint(if i == 57 {
                    "b".repeat(64)
                } else {
                    "a".repeat(64)
                })),
            )
        })
        .collect();
    let now = Timestamp::now();
    c.bench_function("evaluate_100_objects_one_changed", |b| {
        b.iter(|| {
            evaluate(black_box(&TriggerInput {
                condition: TriggerCondition::Any,
                cooldown: Duration::from_secs(60),
                suspended: false,
                manual_request: None,
                last_manual: None,
                last_triggered: None,
                key_changed: false,
                previous: &previous,
                observed: &observed,
                now,
            }))
        })
    });
}

criterion_group!(benches, fingerprints, decision);
criterion_main!(benches);
