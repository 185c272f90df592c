//! End-to-end suite: runs the `kube-changejob` binary against the cluster named by KUBECONFIG
//! and checks the product's rules as numbered scenarios (create objects, change them, assert
//! on Jobs and status).
//!
//! Without a reachable cluster it prints one line saying why and succeeds, so `cargo test
//! --all-targets` works anywhere. With one, it creates a namespace `ctj-e2e-<random>`, applies
//! the CRD, starts the operator, runs the selected scenarios (`E2E_SCENARIOS=1,7,15`) with
//! bounded concurrency (`E2E_CONCURRENCY`, default 4), prints change→Job latencies, and
//! removes the namespace again. `E2E_USE_INSTALLED_OPERATOR=1` tests an operator already
//! installed in the cluster instead of starting the binary. docs/development.md has more.

mod scenarios;
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use support::cleanup::Cleanup;
use support::cluster::{self, Probe};
use support::env::{Env, LatencyKind, Operators, PRIMARY};
use support::runner::{self, Ending, Report, Scenario};
use support::{Context, Outcome, crd};

/// Label on the namespaces the suite creates, so leftovers are easy to find.
const SUITE_LABEL: &str = "e2e.changejob.dev/suite";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selection = match runner::select(scenarios::ALL, std::env::var("E2E_SCENARIOS").ok(), &args)
    {
        Ok(s) => s,
        Err(message) => {
            println!("e2e: {message}");
            return ExitCode::FAILURE;
        }
    };
    if selection.list_only {
        for s in &selection.scenarios {
            println!("{:02}_{}: test", s.number, s.name);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(why) = &selection.empty_because {
        println!("e2e: skipped — {why}");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("e2e: FAILED — cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(suite(selection.scenarios))
}

async fn suite(scenarios: Vec<&'static Scenario>) -> ExitCode {
    // kube uses rustls with ring; install it as the process default explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cluster = match cluster::probe().await {
        Probe::Skip(why) => {
            println!("e2e: skipped — {why}");
            return ExitCode::SUCCESS;
        }
        Probe::Refused(why) => {
            println!("e2e: FAILED — {why}");
            return ExitCode::FAILURE;
        }
        Probe::Ready(cluster) => cluster,
    };
    let concurrency = match std::env::var("E2E_CONCURRENCY") {
        Err(_) => 4,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                println!("e2e: FAILED — E2E_CONCURRENCY must be a whole number ≥ 1, not {text:?}");
                return ExitCode::FAILURE;
            }
        },
    };
    let installed = std::env::var("E2E_USE_INSTALLED_OPERATOR").is_ok_and(|v| v == "1");

    let namespace = format!("ctj-e2e-{}", random_suffix());
    let log_dir = target_dir().join("e2e-logs").join(&namespace);
    let cleanup = Arc::new(Cleanup::new(cluster.config.clone()));
    let operators = if installed {
        Operators::installed(&namespace, log_dir.clone())
    } else {
        Operators::local(
            PathBuf::from(env!("CARGO_BIN_EXE_kube-changejob")),
            &namespace,
            log_dir.clone(),
        )
    };
    let cluster = *cluster;
    let env = Arc::new(Env::new(
        cluster.client,
        cluster.config,
        cluster.server,
        cluster.version,
        namespace,
        log_dir,
        operators,
        cleanup,
    ));
    println!(
        "e2e: cluster {} ({}), namespace {}, operator: {}, concurrency {concurrency}",
        env.server,
        env.version,
        env.namespace,
        if installed {
            "the one installed in the cluster (E2E_USE_INSTALLED_OPERATOR=1)".to_string()
        } else {
            format!("local binary, logs in {}", env.log_dir.display())
        }
    );

    let code = tokio::select! {
        code = run_suite(env.clone(), scenarios, concurrency) => code,
        _ = tokio::signal::ctrl_c() => {
            println!("e2e: interrupted; cleaning up");
            ExitCode::from(130)
        }
    };
    teardown(&env).await;
    code
}

async fn run_suite(
    env: Arc<Env>,
    scenarios: Vec<&'static Scenario>,
    concurrency: usize,
) -> ExitCode {
    if let Err(failure) = setup(&env).await {
        println!("e2e: FAILED — setup: {failure}");
        if !failure.message.contains("last log lines") {
            println!("{}", env.operators.log_tails(&[], 40));
        }
        return ExitCode::FAILURE;
    }
    if !env.operators.is_local() {
        println!(
            "e2e: note: scenarios 15-17 need operator processes started by the suite and are skipped; the installed operator must reconcile namespace {}",
            env.namespace
        );
    }
    let reports = runner::run_all(env.clone(), &scenarios, concurrency).await;
    summarize(&env, &reports)
}

async fn setup(env: &Env) -> Outcome {
    env.cleanup.namespace(&env.namespace);
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(env.namespace.clone()),
                    labels: Some([(SUITE_LABEL.to_string(), "true".to_string())].into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .context(format!("creating namespace {}", env.namespace))?;
    let crd = crd::install(&env.client, &env.namespace).await?;
    println!("e2e: CRD {crd} applied and Established");
    if env.operators.is_local() {
        let pid = env.operators.start(PRIMARY).await?;
        env.wait_leader(PRIMARY, Duration::from_secs(30)).await?;
        println!(
            "e2e: operator {PRIMARY} (pid {pid}) holds Lease {0}/{0}",
            env.namespace
        );
    }
    Ok(())
}

async fn teardown(env: &Env) {
    env.operators.stop_all().await;
    for line in env.cleanup.run(&env.client).await {
        println!("e2e: teardown: {line}");
    }
}

fn summarize(env: &Env, reports: &[Report]) -> ExitCode {
    let latencies = env.latencies();
    let mut changes: Vec<Duration> = latencies
        .iter()
        .filter(|l| l.kind == LatencyKind::Change)
        .map(|l| l.took)
        .collect();
    for report in reports {
        let own: Vec<String> = latencies
            .iter()
            .filter(|l| l.scenario == report.number)
            .map(|l| format!("{} {}", l.what, support::secs(l.took)))
            .collect();
        if !own.is_empty() {
            println!(
                "e2e: [{:2}] latency to Job: {}",
                report.number,
                own.join("; ")
            );
        }
    }
    changes.sort();
    if let (Some(min), Some(max)) = (changes.first(), changes.last()) {
        let median = changes[changes.len() / 2];
        println!(
            "e2e: change→Job latency over {} Jobs: min {}, median {}, max {}",
            changes.len(),
            support::secs(*min),
            support::secs(median),
            support::secs(*max)
        );
    }
    let of = |pick: fn(&Ending) -> bool| -> Vec<u8> {
        reports
            .iter()
            .filter(|r| pick(&r.ending))
            .map(|r| r.number)
            .collect()
    };
    let passed = of(|e| matches!(e, Ending::Passed));
    let skipped = of(|e| matches!(e, Ending::Skipped(_)));
    let failed = of(|e| matches!(e, Ending::Failed(_)));
    println!(
        "e2e: {} passed, {} failed, {} skipped",
        passed.len(),
        failed.len(),
        skipped.len()
    );
    for report in reports {
        if let Ending::Skipped(why) = &report.ending {
            println!("e2e: skipped [{:2}] {}: {why}", report.number, report.name);
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for report in reports {
            if let Ending::Failed(text) = &report.ending {
                let first = text.lines().next().unwrap_or_default();
                println!("e2e: FAILED [{:2}] {}: {first}", report.number, report.name);
            }
        }
        ExitCode::FAILURE
    }
}

/// Six lowercase letters and digits from the OS random generator.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // Unlikely; the clock and the pid still make a collision improbable.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ std::process::id()).to_le_bytes().repeat(2)[..6]
            .try_into()
            .unwrap_or([7; 6]);
    }
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Cargo's target directory (the parent of the integration tests' scratch directory).
fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(PathBuf::from).unwrap_or(tmp)
}
