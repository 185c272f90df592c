//! The run's shared state: the cluster, the test namespace, the operator processes, what to
//! clean up, and the change-to-Job latencies measured by the scenarios.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::{Client, Config};

use super::cleanup::Cleanup;
use super::operator::{Launch, OperatorProcess, log_tail};
use super::wait::{Poll, wait_for};
use super::{Context, Failure, Outcome, POLL};

/// Leader-election identity of the operator the suite starts first.
pub const PRIMARY: &str = "e2e-operator-a";
/// Identity of the standby the leader scenario adds.
pub const SECONDARY: &str = "e2e-operator-b";

/// What a latency measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyKind {
    /// From a change (or a manual-trigger annotation) to its Job, with the operator running.
    Change,
    /// From the end of a cooldown to the Job a change during it was deferred to.
    Deferred,
    /// From an operator restart or leader handover to the Job of a change made meanwhile.
    Recovery,
}

/// One measured latency.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Scenario number.
    pub scenario: u8,
    /// What it measures.
    pub kind: LatencyKind,
    /// What was measured, e.g. "change → Job".
    pub what: String,
    /// How long it took.
    pub took: Duration,
}

/// Shared by all scenarios of a run.
pub struct Env {
    /// The suite's client (the test user's rights).
    pub client: Client,
    /// The configuration behind it.
    pub config: Config,
    /// API server URL.
    pub server: String,
    /// API server version.
    pub version: String,
    /// The run's namespace, `ctj-e2e-<random>`.
    pub namespace: String,
    /// Where logs go.
    pub log_dir: PathBuf,
    /// The operator(s) under test.
    pub operators: Operators,
    /// What to remove at the end.
    pub cleanup: Arc<Cleanup>,
    latencies: Mutex<Vec<Latency>>,
}

impl Env {
    /// Puts the run together.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        config: Config,
        server: String,
        version: String,
        namespace: String,
        log_dir: PathBuf,
        operators: Operators,
        cleanup: Arc<Cleanup>,
    ) -> Self {
        Env {
            client,
            config,
            server,
            version,
            namespace,
            log_dir,
            operators,
            cleanup,
            latencies: Mutex::new(Vec::new()),
        }
    }

    /// Records a latency for the summary.
    pub fn record_latency(&self, latency: Latency) {
        if let Ok(mut all) = self.latencies.lock() {
            all.push(latency);
        }
    }

    /// All latencies so far.
    pub fn latencies(&self) -> Vec<Latency> {
        self.latencies.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Holder of the run's Lease (named after the namespace, in the namespace).
    pub async fn lease_holder(&self) -> Outcome<Option<String>> {
        lease_holder(&self.client, &self.namespace).await
    }

    /// Waits until `identity` holds the Lease, failing early if an operator process exits.
    pub async fn wait_leader(&self, identity: &str, timeout: Duration) -> Outcome {
        wait_for(
            &format!("operator {identity} to hold Lease {}", self.namespace),
            timeout,
            POLL,
            || async {
                self.operators.check_running().await?;
                let holder = self.lease_holder().await?;
                Ok(if holder.as_deref() == Some(identity) {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("holderIdentity {holder:?}"))
                })
            },
        )
        .await
    }
}

impl Env {
    /// After a scenario that stops operator processes: makes sure one runs and holds the
    /// Lease again, so a failure there does not fail the scenarios after it too.
    pub async fn restore_operators(&self) -> Outcome {
        if !self.operators.is_local() {
            return Ok(());
        }
        for gone in self.operators.reap().await {
            println!("e2e: operator {gone} had exited; forgetting it");
        }
        let running = self.operators.identities().await;
        let leader = match running.first() {
            Some(identity) => identity.clone(),
            None => {
                let pid = self.operators.start(PRIMARY).await?;
                println!("e2e: restarted operator {PRIMARY} (pid {pid})");
                PRIMARY.to_string()
            }
        };
        // A Lease left by a killed process expires after the lease duration.
        let timeout = super::operator::LEASE_DURATION + Duration::from_secs(15);
        wait_for("an operator of the suite to hold the Lease", timeout, POLL, || async {
            self.operators.check_running().await?;
            let holder = self.lease_holder().await?;
            let running = self.operators.identities().await;
            Ok(match holder {
                Some(h) if running.contains(&h) => Poll::Ready(()),
                other => Poll::Pending(format!(
                    "holderIdentity {other:?}, running {running:?} (expected {leader} or another running one)"
                )),
            })
        })
        .await
    }
}

/// `spec.holderIdentity` of Lease `name` in namespace `name` (`None` when absent or free).
pub async fn lease_holder(client: &Client, name: &str) -> Outcome<Option<String>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), name);
    let lease = api
        .get_opt(name)
        .await
        .context(format!("reading Lease {name}/{name}"))?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// The operator processes of the run, or none when an installed operator is tested.
pub struct Operators {
    installed: bool,
    binary: PathBuf,
    namespace: String,
    log_dir: PathBuf,
    running: tokio::sync::Mutex<Vec<OperatorProcess>>,
}

impl Operators {
    /// Local processes of `binary`, reconciling `namespace`.
    pub fn local(binary: PathBuf, namespace: &str, log_dir: PathBuf) -> Self {
        Operators {
            installed: false,
            binary,
            namespace: namespace.to_string(),
            log_dir,
            running: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// An operator already installed in the cluster; nothing is started or killed.
    pub fn installed(namespace: &str, log_dir: PathBuf) -> Self {
        Operators {
            installed: true,
            binary: PathBuf::new(),
            namespace: namespace.to_string(),
            log_dir,
            running: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether the suite runs its own operator processes.
    pub fn is_local(&self) -> bool {
        !self.installed
    }

    /// How to start `identity` against the run's namespace.
    pub fn launch(&self, identity: &str) -> Launch {
        Launch {
            binary: self.binary.clone(),
            namespace: self.namespace.clone(),
            identity: identity.to_string(),
            kubeconfig: None,
            log_dir: self.log_dir.clone(),
        }
    }

    /// Starts an operator process with this identity; returns its pid.
    pub async fn start(&self, identity: &str) -> Outcome<u32> {
        if self.installed {
            return Err(Failure::new(
                "cannot start a local operator while testing an installed one",
            ));
        }
        let mut running = self.running.lock().await;
        if running.iter().any(|p| p.identity == identity) {
            return Err(Failure::new(format!(
                "operator {identity} is already running"
            )));
        }
        let process = OperatorProcess::spawn(&self.launch(identity))?;
        let pid = process.pid;
        running.push(process);
        Ok(pid)
    }

    /// SIGKILLs operator `identity`.
    pub async fn kill9(&self, identity: &str) -> Outcome {
        let mut process = self.take(identity).await?;
        process.kill9().await
    }

    /// SIGTERMs operator `identity` and waits up to `within` for it to exit.
    pub async fn terminate(
        &self,
        identity: &str,
        within: Duration,
    ) -> Outcome<std::process::ExitStatus> {
        let mut process = self.take(identity).await?;
        process.terminate(within).await
    }

    async fn take(&self, identity: &str) -> Outcome<OperatorProcess> {
        let mut running = self.running.lock().await;
        match running.iter().position(|p| p.identity == identity) {
            Some(i) => Ok(running.remove(i)),
            None => Err(Failure::new(format!("operator {identity} is not running"))),
        }
    }

    /// Identities of the running processes.
    pub async fn identities(&self) -> Vec<String> {
        self.running
            .lock()
            .await
            .iter()
            .map(|p| p.identity.clone())
            .collect()
    }

    /// Fails if a process the suite started has exited by itself.
    pub async fn check_running(&self) -> Outcome {
        let mut running = self.running.lock().await;
        for process in running.iter_mut() {
            if let Some(status) = process.exited() {
                return Err(Failure::new(format!(
                    "operator {} (pid {}) exited unexpectedly with {status}; last log lines:\n{}",
                    process.identity,
                    process.pid,
                    log_tail(&process.log_path, &[], 30)
                )));
            }
        }
        Ok(())
    }

    /// Forgets processes that have exited; returns who they were and how they ended.
    pub async fn reap(&self) -> Vec<String> {
        let mut running = self.running.lock().await;
        let mut gone = Vec::new();
        running.retain_mut(|p| match p.exited() {
            Some(status) => {
                gone.push(format!("{} ({status})", p.identity));
                false
            }
            None => true,
        });
        gone
    }

    /// Kills every process (teardown).
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for mut process in running.drain(..) {
            let _ = process.kill9().await;
        }
    }

    /// The last `lines` log lines of every operator log of the run (only lines mentioning one
    /// of `needles`, when given), or a note when the operator is installed.
    pub fn log_tails(&self, needles: &[String], lines: usize) -> String {
        if self.installed {
            return "(installed operator: read its logs with kubectl logs)".into();
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.log_dir)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                format!(
                    "--- {} (last {lines}{}):\n{}",
                    p.display(),
                    if needles.is_empty() {
                        " lines".to_string()
                    } else {
                        format!(" lines mentioning {}", needles.join(" or "))
                    },
                    log_tail(p, needles, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
