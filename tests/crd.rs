//! The generated CustomResourceDefinition: committed copy, size, schema rules, and what the
//! API server would keep, default and reject.

mod schema;

use std::path::Path;

use kube_changejob::api::{self, ChangeTriggeredJob};
use serde_json::{Value, json};

const COMMITTED: &str = "charts/crds/templates/changetriggeredjobs.yaml";

fn crd_json() -> Value {
    // Generating the schema takes a while in debug builds; do it once.
    static CRD: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    CRD.get_or_init(|| serde_json::to_value(api::crd()).expect("CRD serializes"))
        .clone()
}

fn open_api_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctj");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let value: Value = serde_saphyr::from_str(&text).expect("fixture is YAML");
        out.push((path.display().to_string(), value));
    }
    assert!(
        out.len() >= 9,
        "expected the documented examples as fixtures"
    );
    out
}

/// A fixture as the API server would store it: namespace filled in, pruned, defaulted.
fn stored(mut value: Value) -> Value {
    if value["metadata"].get("namespace").is_none() {
        value["metadata"]["namespace"] = json!("default");
    }
    let schema = open_api_schema();
    let mut spec = value["spec"].take();
    schema::prune_and_default(&schema["properties"]["spec"], &mut spec);
    value["spec"] = spec;
    value
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED))
        .expect("committed CRD exists");
    let generated = api::crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "{COMMITTED} is out of date: run `cargo run -- crd > {COMMITTED}`"
    );
}

#[test]
fn crd_fits_a_client_side_apply() {
    // kubectl stores the whole object in the last-applied-configuration annotation, and all
    // annotations together may not exceed 256 KiB.
    let compact = serde_json::to_string(&crd_json()).expect("json");
    assert!(
        compact.len() < 256 * 1024,
        "CRD JSON is {} bytes",
        compact.len()
    );
}

#[test]
fn crd_names_scope_and_subresources() {
    let crd = crd_json();
    assert_eq!(
        crd["metadata"]["name"],
        "changetriggeredjobs.triggers.changejob.dev"
    );
    assert_eq!(crd["spec"]["group"], "triggers.changejob.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "ChangeTriggeredJob");
    assert_eq!(crd["spec"]["names"]["plural"], "changetriggeredjobs");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ctj", "ctjs"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], json!({}));
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
}

#[test]
fn printer_columns_show_condition_cooldown_last_job_status_triggered_age() {
    let crd = crd_json();
    let columns: Vec<(String, Option<i64>)> =
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["priority"].as_i64(),
                )
            })
            .collect();
    let default_columns: Vec<&str> = columns
        .iter()
        .filter(|(_, p)| p.unwrap_or(0) == 0)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        default_columns,
        vec![
            "Condition",
            "Cooldown",
            "Last Job",
            "Last Status",
            "Last Triggered",
            "Age"
        ]
    );
}

#[test]
fn every_documented_example_is_valid() {
    let schema = open_api_schema();
    for (name, value) in fixtures() {
        let value = stored(value);
        let errors = schema::validate(&schema, &value);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        let typed: Result<ChangeTriggeredJob, _> = serde_json::from_value(value);
        assert!(typed.is_ok(), "{name}: {typed:?}");
    }
}

#[test]
fn job_template_labels_and_annotations_survive_pruning() {
    let (_, backup) = fixtures()
        .into_iter()
        .find(|(n, _)| n.ends_with("backup-onfailure.yaml"))
        .expect("backup fixture");
    let value = stored(backup);
    let template = &value["spec"]["jobTemplate"];
    assert_eq!(template["metadata"]["labels"]["app"], "backup");
    assert_eq!(template["metadata"]["annotations"]["owner"], "data-team");
    assert_eq!(
        template["spec"]["template"]["metadata"]["labels"]["component"],
        "backup-pod"
    );
    assert_eq!(
        template["spec"]["template"]["metadata"]["annotations"]["sidecar.example.com/inject"],
        "false"
    );
    assert_eq!(template["spec"]["backoffLimit"], 3);
    assert_eq!(
        template["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
            ["key"],
        "url"
    );
}

#[test]
fn unknown_fields_are_pruned() {
    let (_, basic) = fixtures()
        .into_iter()
        .find(|(n, _)| n.ends_with("basic-configmap.yaml"))
        .expect("basic");
    let mut basic = basic;
    basic["spec"]["bogus"] = json!(1);
    basic["spec"]["resources"][0]["bogus"] = json!(1);
    let value = stored(basic);
    assert!(value["spec"].get("bogus").is_none());
    assert!(value["spec"]["resources"][0].get("bogus").is_none());
}

#[test]
fn schema_defaults_condition_cooldown_history_and_fields() {
    let (_, basic) = fixtures()
        .into_iter()
        .find(|(n, _)| n.ends_with("basic-configmap.yaml"))
        .expect("basic");
    let value = stored(basic);
    assert_eq!(value["spec"]["condition"], "Any");
    assert_eq!(value["spec"]["cooldown"], "60s");
    assert_eq!(value["spec"]["history"], 5);
    assert_eq!(value["spec"]["resources"][0]["fields"], json!(["*"]));
}

#[test]
fn schema_rejects_bad_specs() {
    let schema = open_api_schema();
    let (_, basic) = fixtures()
        .into_iter()
        .find(|(n, _)| n.ends_with("basic-configmap.yaml"))
        .expect("basic");
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut v = basic.clone();
        edit(&mut v);
        schema::validate(&schema, &stored(v))
    };
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "history 0",
            Box::new(|v| v["spec"]["history"] = json!(0)),
            ".spec.history",
        ),
        (
            "condition Some",
            Box::new(|v| v["spec"]["condition"] = json!("Some")),
            ".spec.condition",
        ),
        (
            "no resources",
            Box::new(|v| v["spec"]["resources"] = json!([])),
            ".spec.resources",
        ),
        (
            "resources missing",
            Box::new(|v| {
                v["spec"].as_object_mut().map(|m| m.remove("resources"));
            }),
            ".spec.resources",
        ),
        (
            "jobTemplate missing",
            Box::new(|v| {
                v["spec"].as_object_mut().map(|m| m.remove("jobTemplate"));
            }),
            ".spec.jobTemplate",
        ),
        (
            "negative cooldown",
            Box::new(|v| v["spec"]["cooldown"] = json!("-5s")),
            ".spec.cooldown",
        ),
        (
            "cooldown without unit",
            Box::new(|v| v["spec"]["cooldown"] = json!("5")),
            ".spec.cooldown",
        ),
        (
            "cooldown in days",
            Box::new(|v| v["spec"]["cooldown"] = json!("1d")),
            ".spec.cooldown",
        ),
        (
            "empty kind",
            Box::new(|v| v["spec"]["resources"][0]["kind"] = json!("")),
            ".spec.resources[0].kind",
        ),
        (
            "name missing",
            Box::new(|v| {
                v["spec"]["resources"][0]
                    .as_object_mut()
                    .map(|m| m.remove("name"));
            }),
            ".spec.resources[0].name",
        ),
        (
            "name and selector",
            Box::new(|v| {
                v["spec"]["resources"][0]["selector"] = json!({"matchLabels": {"a": "b"}})
            }),
            ".spec.resources[0]: must validate one and only one schema",
        ),
        (
            "selector operator in lower case",
            Box::new(|v| {
                v["spec"]["resources"][0] = json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
                    "selector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["b"]}]}
                })
            }),
            ".spec.resources[0].selector.matchExpressions[0].operator: Unsupported value",
        ),
        (
            "selector expression without key",
            Box::new(|v| {
                v["spec"]["resources"][0] = json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
                    "selector": {"matchExpressions": [{"operator": "Exists"}]}
                })
            }),
            ".spec.resources[0].selector.matchExpressions[0].key",
        ),
    ];
    for (what, edit, path) in cases {
        let errors = bad(edit.as_ref());
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{what}: {errors:?}"
        );
    }
}

#[test]
fn schema_accepts_every_documented_cooldown_spelling() {
    let schema = open_api_schema();
    let cooldown = &schema["properties"]["spec"]["properties"]["cooldown"];
    for ok in [
        "30s", "60s", "5m", "10m", "1h", "2h", "1h30m", "2h15m30s", "0s", "300s", "3600s", "1.5h",
        "0",
    ] {
        assert!(schema::validate(cooldown, &json!(ok)).is_empty(), "{ok}");
    }
}

#[test]
fn every_field_of_ours_has_a_description() {
    /// Every property needs a description; array item schemas are described by their array.
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if path.ends_with(".jobTemplate") || path.ends_with(".conditions") {
            return; // upstream Kubernetes types
        }
        if schema
            .get("description")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            missing.push(path.to_string());
        }
        walk_children(schema, path, missing);
    }
    fn walk_children(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, &format!("{path}.{k}"), missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk_children(items, path, missing);
        }
    }
    let schema = open_api_schema();
    let mut missing = Vec::new();
    walk(&schema["properties"]["spec"], "spec", &mut missing);
    walk(&schema["properties"]["status"], "status", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}
