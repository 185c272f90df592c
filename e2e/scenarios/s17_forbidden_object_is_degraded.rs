//! Scenario 17: When the operator's own RBAC does not let it read a watched object, the
//! ChangeTriggeredJob says so — Degraded=True/Forbidden naming `spec.resources[0]`, Ready=False
//! — instead of failing silently.
//!
//! The operator normally runs here with the test user's rights, so this scenario starts a
//! separate operator in its own namespace with a ServiceAccount token whose Role covers what
//! the operator needs there but not ServiceAccounts, and watches a ServiceAccount. It is
//! skipped when the test user may not set that up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube_changejob::api::ChangeTriggeredJob;
use serde_json::json;

use crate::support::ctx::Ctx;
use crate::support::env::lease_holder;
use crate::support::manifests::{CtjBuilder, watch};
use crate::support::operator::{OperatorProcess, log_tail};
use crate::support::runner::{Scenario, Verdict};
use crate::support::status::{condition, has_condition, summary};
use crate::support::wait::{Poll, wait_for};
use crate::support::{Context, Outcome, POLL, is_status, secs};

pub const SCENARIO: Scenario = Scenario {
    number: 17,
    name: "forbidden_object_is_degraded",
    exclusive: false,
    needs_local_operator: true,
    run: |ctx| Box::pin(run(ctx)),
};

const ACCOUNT: &str = "restricted-operator";
const IDENTITY: &str = "e2e-restricted-operator";
/// How long the restricted operator gets to start and take its Lease.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a setup step that the test user may not be allowed to do came to.
enum Allowed<T> {
    Yes(T),
    No(String),
}

fn allowed<T>(doing: &str, result: Result<T, kube::Error>) -> Outcome<Allowed<T>> {
    match result {
        Ok(v) => Ok(Allowed::Yes(v)),
        Err(e) if is_status(&e, 403) => {
            Ok(Allowed::No(format!("the test user may not {doing}: {e}")))
        }
        Err(e) => Err(e).context(doing),
    }
}

macro_rules! or_skip {
    ($doing:expr, $call:expr) => {
        match allowed($doing, $call.await)? {
            Allowed::Yes(v) => v,
            Allowed::No(why) => return Ok(Verdict::Skipped(why)),
        }
    };
}

async fn run(ctx: Arc<Ctx>) -> Outcome<Verdict> {
    let client = ctx.client();
    let ns = format!("{}-rbac", ctx.ns());
    let post = PostParams::default();

    ctx.step(&format!(
        "creating namespace {ns} with a restricted ServiceAccount"
    ));
    ctx.env.cleanup.namespace(&ns);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    or_skip!(
        "create namespaces",
        namespaces.create(
            &post,
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    labels: Some(
                        [("e2e.changejob.dev/suite".to_string(), "true".to_string())].into()
                    ),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    or_skip!(
        "create ServiceAccounts",
        accounts.create(
            &post,
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(ACCOUNT.into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
    );
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    or_skip!("create Roles", roles.create(&post, &operator_role()));
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    or_skip!(
        "create RoleBindings",
        bindings.create(&post, &operator_binding(&ns))
    );
    let token = or_skip!(
        "request ServiceAccount tokens",
        accounts.create_token_request(
            ACCOUNT,
            &post,
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: Vec::new(),
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            },
        )
    );
    let token = token
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| crate::support::Failure::new("the TokenRequest returned no token"))?;

    ctx.step("starting an operator with the restricted token");
    let mut launch = ctx.env.operators.launch(IDENTITY);
    launch.namespace = ns.clone();
    std::fs::create_dir_all(&launch.log_dir)
        .context(format!("creating {}", launch.log_dir.display()))?;
    let kubeconfig = launch.log_dir.join("restricted-kubeconfig.json");
    write_kubeconfig(&ctx, &kubeconfig, &token, &ns)?;
    launch.kubeconfig = Some(kubeconfig.clone());
    let mut operator = OperatorProcess::spawn(&launch)?;
    let outcome = check_forbidden(&ctx, &ns, &mut operator).await;
    let _ = operator.kill9().await;
    let _ = std::fs::remove_file(&kubeconfig);
    outcome.map(|()| Verdict::Passed)
}

async fn check_forbidden(ctx: &Ctx, ns: &str, operator: &mut OperatorProcess) -> Outcome {
    let client = ctx.client();
    let started = Instant::now();
    loop {
        if let Some(status) = operator.exited() {
            crate::fail!(
                "the restricted operator exited with {status}; last log lines:\n{}",
                log_tail(&operator.log_path, &[], 30)
            );
        }
        let holder = lease_holder(&client, ns).await?;
        if holder.as_deref() == Some(IDENTITY) {
            break;
        }
        if started.elapsed() >= LEADER_TIMEOUT {
            crate::fail!(
                "timed out after {} waiting for the restricted operator to hold Lease {ns}/{ns} (it has only a namespaced Role); holderIdentity {holder:?}; last log lines:\n{}",
                secs(LEADER_TIMEOUT),
                log_tail(&operator.log_path, &[], 30)
            );
        }
        tokio::time::sleep(POLL).await;
    }

    ctx.step("creating a ChangeTriggeredJob watching a ServiceAccount the operator may not read");
    let name = ctx.name("unreadable");
    let ctj = CtjBuilder::new(ns, &name)
        .watch(watch("v1", "ServiceAccount", ns, "default"))
        .cooldown("0s")
        .build();
    ctx.track_ctj(ns, &name);
    let api: Api<ChangeTriggeredJob> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &ctj)
        .await
        .context(format!("creating ChangeTriggeredJob {ns}/{name}"))?;
    wait_for(
        &format!(
            "ChangeTriggeredJob {ns}/{name}: Degraded=True/Forbidden naming spec.resources[0], Ready=False"
        ),
        Duration::from_secs(20),
        POLL,
        || async {
            let c = api
                .get(&name)
                .await
                .context(format!("reading ChangeTriggeredJob {ns}/{name}"))?;
            let degraded = has_condition(&c, "Degraded", "True", "Forbidden")
                && condition(&c, "Degraded")
                    .is_some_and(|d| d.message.contains("spec.resources[0]"))
                && condition(&c, "Ready").is_some_and(|r| r.status == "False");
            Ok(if degraded {
                Poll::Ready(())
            } else {
                Poll::Pending(summary(&c))
            })
        },
    )
    .await
}

/// What the operator needs in its namespace — but not ServiceAccounts.
fn operator_role() -> Role {
    let rule = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["*".into()],
        ..PolicyRule::default()
    };
    Role {
        metadata: ObjectMeta {
            name: Some(ACCOUNT.into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
            rule("", &["configmaps", "secrets", "events", "pods"]),
            rule("batch", &["jobs"]),
            rule("coordination.k8s.io", &["leases"]),
            rule("events.k8s.io", &["events"]),
            rule(
                "triggers.changejob.dev",
                &["changetriggeredjobs", "changetriggeredjobs/status"],
            ),
        ]),
    }
}

fn operator_binding(ns: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(ACCOUNT.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: ACCOUNT.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: ACCOUNT.into(),
            namespace: Some(ns.into()),
            ..Subject::default()
        }]),
    }
}

/// A kubeconfig for the same API server as the suite's, authenticating with `token`.
fn write_kubeconfig(ctx: &Ctx, path: &std::path::Path, token: &str, ns: &str) -> Outcome {
    let config = &ctx.env.config;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut cluster = serde_json::Map::new();
    cluster.insert("server".into(), json!(config.cluster_url.to_string()));
    if let Some(certs) = &config.root_cert {
        let pem: String = certs
            .iter()
            .map(|der| {
                let body = engine.encode(der);
                let lines: Vec<&str> = body
                    .as_bytes()
                    .chunks(64)
                    .map(|c| std::str::from_utf8(c).unwrap_or_default())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect();
        cluster.insert(
            "certificate-authority-data".into(),
            json!(engine.encode(pem)),
        );
    }
    if config.accept_invalid_certs {
        cluster.insert("insecure-skip-tls-verify".into(), json!(true));
    }
    if let Some(name) = &config.tls_server_name {
        cluster.insert("tls-server-name".into(), json!(name));
    }
    if let Some(proxy) = &config.proxy_url {
        cluster.insert("proxy-url".into(), json!(proxy.to_string()));
    }
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "e2e", "cluster": cluster }],
        "users": [{ "name": ACCOUNT, "user": { "token": token } }],
        "contexts": [{ "name": "e2e", "context": { "cluster": "e2e", "user": ACCOUNT, "namespace": ns } }],
        "current-context": "e2e",
    });
    let text = serde_json::to_string_pretty(&kubeconfig).context("rendering the kubeconfig")?;
    // It holds a token: readable by the owner only, from the start.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .context(format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .context(format!("writing {}", path.display()))
}
