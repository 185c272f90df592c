//! The `kube-changejob` binary's offline commands.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-changejob"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("binary finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  resourceVersion: "17"
  annotations:
    example.com/rotated-by: vault
type: Opaque
data:
  password: aHVudGVyMg==
  user: YWRtaW4=
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-1
  labels:
    kubernetes.io/hostname: worker-1
    node.kubernetes.io/instance-type: m5.large
spec:
  podCIDR: 10.244.1.0/24
  taints:
    - key: dedicated
      value: gpu
      effect: NoSchedule
status:
  conditions:
    - type: Ready
      status: "True"
      lastHeartbeatTime: "2026-01-01T00:00:00Z"
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: blue
  namespace: default
spec:
  size: 3
  parts:
    - name: a
      color: red
    - name: b
      color: green
"#;

#[test]
fn crd_command_prints_the_committed_crd() {
    let out = run(&["crd"], "");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/crds/templates/changetriggeredjobs.yaml"
    ))
    .expect("committed CRD");
    assert_eq!(stdout(&out), committed);
}

#[test]
fn version_command_prints_the_version() {
    let out = run(&["version"], "");
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("kube-changejob {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn fields_shows_secret_data_keys_and_dotted_annotation_keys() {
    let out = run(
        &[
            "fields",
            "-f",
            "-",
            "--field",
            "data.password",
            "--field",
            "metadata.annotations['example.com/rotated-by']",
        ],
        SECRET,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Secret prod/db"));
    assert!(text.contains("\"aHVudGVyMg==\""));
    assert!(text.contains("\"vault\""));
    assert!(stderr(&out).contains("development key"));
}

#[test]
fn fields_whole_node_ignores_status() {
    let with_status = run(&["fields", "-f", "-", "-o", "json"], NODE);
    let without_status = run(
        &["fields", "-f", "-", "-o", "json"],
        &NODE.replace(
            "lastHeartbeatTime: \"2026-01-01T00:00:00Z\"",
            "lastHeartbeatTime: \"2026-06-01T00:00:00Z\"",
        ),
    );
    let a: serde_json::Value = serde_json::from_slice(&with_status.stdout).expect("json");
    let b: serde_json::Value = serde_json::from_slice(&without_status.stdout).expect("json");
    assert_eq!(a[0]["fingerprint"], b[0]["fingerprint"]);
    assert!(a[0]["fields"][0]["value"].get("status").is_none());
}

#[test]
fn fields_on_custom_resources_with_wildcards_and_filters() {
    let out = run(
        &[
            "fields",
            "-f",
            "-",
            "-o",
            "json",
            "--field",
            "spec.parts[*].color",
            "--field",
            "spec.parts[?(@.name=='b')].color",
        ],
        WIDGET,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v[0]["fields"][0]["value"],
        serde_json::json!(["red", "green"])
    );
    assert_eq!(v[0]["fields"][1]["value"], serde_json::json!(["green"]));
}

#[test]
fn fields_reports_missing_fields_as_absent() {
    let out = run(
        &[
            "fields",
            "-f",
            "-",
            "-o",
            "json",
            "--field",
            "spec.replicas",
        ],
        NODE,
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["fields"][0]["present"], false);
}

#[test]
fn fields_reads_a_file_and_a_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let obj = dir.path().join("node.yaml");
    std::fs::write(&obj, NODE).expect("write");
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("write");
    let with_key = run(
        &[
            "fields",
            "-f",
            obj.to_str().unwrap_or_default(),
            "--key-file",
            key.to_str().unwrap_or_default(),
            "-o",
            "json",
        ],
        "",
    );
    assert!(with_key.status.success(), "{}", stderr(&with_key));
    assert!(!stderr(&with_key).contains("development key"));
    let without = run(
        &[
            "fields",
            "-f",
            obj.to_str().unwrap_or_default(),
            "-o",
            "json",
        ],
        "",
    );
    let a: serde_json::Value = serde_json::from_slice(&with_key.stdout).expect("json");
    let b: serde_json::Value = serde_json::from_slice(&without.stdout).expect("json");
    assert_ne!(a[0]["fingerprint"], b[0]["fingerprint"]);
}

#[test]
fn malformed_paths_exit_2_with_a_message() {
    for bad in ["spec[", "spec..", "a b", "data['x", "spec.[0]"] {
        let out = run(&["fields", "-f", "-", "--field", bad], NODE);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("invalid field path"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_files_exit_2_with_a_message() {
    let out = run(&["fields", "-f", "/definitely/not/here.yaml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"));
    let out = run(&["fields", "-f", "-"], "key: [unclosed");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not valid YAML"));
    let out = run(&["fields", "-f", "-"], "");
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("short");
    std::fs::write(&key, "abc").expect("write");
    let out = run(
        &[
            "fields",
            "-f",
            "-",
            "--key-file",
            key.to_str().unwrap_or_default(),
        ],
        NODE,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 16"));
}

const SHOP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: shop, labels: {app: shop, tier: web}}
data: {color: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: db, namespace: shop, labels: {app: shop, tier: db}}
data: {color: red}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: legacy, namespace: shop}
data: {color: grey}
"#;

#[test]
fn fields_with_a_selector_shows_the_members_and_the_set_fingerprint() {
    let out = run(
        &[
            "fields",
            "-f",
            "-",
            "--selector",
            "app=shop,tier in (web,api)",
            "--field",
            "data",
        ],
        SHOP,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("selector app=shop,tier in (api,web): 1 of 3 object(s) match"),
        "{text}"
    );
    assert!(text.contains("does not match: ConfigMap shop/db"), "{text}");
    assert!(
        text.contains("does not match: ConfigMap shop/legacy"),
        "{text}"
    );
    assert!(text.contains("ConfigMap shop/web\n"), "{text}");
    assert!(
        text.contains("fingerprint of the set (1 member(s))"),
        "{text}"
    );

    let json_out = run(&["fields", "-f", "-", "-l", "!tier", "-o", "json"], SHOP);
    assert_eq!(json_out.status.code(), Some(0), "{}", stderr(&json_out));
    let report: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("JSON output");
    assert_eq!(report["selector"], "!tier");
    assert_eq!(report["members"][0]["object"], "ConfigMap shop/legacy");
    assert_eq!(report["fingerprint"].as_str().map(str::len), Some(64));
}

#[test]
fn a_selector_that_does_not_parse_exits_2_with_a_message() {
    for bad in ["tier in web", "app==", "app>1", "=x"] {
        let out = run(&["fields", "-f", "-", "--selector", bad], SHOP);
        if bad == "app==" {
            // An empty value after == is the empty label value, as in kubectl.
            assert_eq!(out.status.code(), Some(0), "{bad}: {}", stderr(&out));
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("--selector: invalid selector"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}
