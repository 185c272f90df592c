//! The operator under test as child processes of the suite: started from the binary Cargo just
//! built, killed with SIGKILL (a crash) or stopped with SIGTERM (a rolling update), and their
//! logs kept under `target/e2e-logs/<namespace>/`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Context, Failure, Outcome, secs};

/// Lease timings the suite runs the operator with (the documented defaults, spelled out so the
/// leader scenarios can rely on them).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_FLAGS: [&str; 6] = [
    "--lease-duration",
    "15s",
    "--renew-deadline",
    "10s",
    "--retry-period",
    "2s",
];

/// Everything needed to start one operator process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `kube-changejob` binary.
    pub binary: PathBuf,
    /// Namespace it reconciles, keeps its Lease and key Secret in, and names its Lease after.
    pub namespace: String,
    /// Leader-election identity (`--pod-name`).
    pub identity: String,
    /// A kubeconfig other than the suite's own (for a restricted operator).
    pub kubeconfig: Option<PathBuf>,
    /// Directory of the log files.
    pub log_dir: PathBuf,
}

impl Launch {
    /// The log file of this identity (restarts append to it).
    pub fn log_path(&self) -> PathBuf {
        self.log_dir.join(format!("operator-{}.log", self.identity))
    }

    /// Arguments of `kube-changejob run`.
    pub fn args(&self, metrics_port: u16) -> Vec<String> {
        let ns = self.namespace.as_str();
        let mut args: Vec<String> = [
            "run",
            "--namespaces",
            ns,
            "--operator-namespace",
            ns,
            "--lease-name",
            ns,
            "--pod-name",
            self.identity.as_str(),
            // `Option<bool>` flags take a value; `--flag=false` is the unambiguous spelling.
            "--webhook-enabled=false",
            "--metrics-secure=false",
            "--poll-interval",
            "5s",
            "--log-level",
            "kube_changejob=debug,info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--metrics-bind-address".into());
        args.push(format!("127.0.0.1:{metrics_port}"));
        args.extend(LEASE_FLAGS.iter().map(|s| s.to_string()));
        args
    }
}

/// One running operator process.
pub struct OperatorProcess {
    /// Its leader-election identity.
    pub identity: String,
    /// Its process id.
    pub pid: u32,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
    child: Child,
}

impl OperatorProcess {
    /// Starts the binary; stdout and stderr are appended to the identity's log file.
    pub fn spawn(launch: &Launch) -> Outcome<Self> {
        std::fs::create_dir_all(&launch.log_dir)
            .context(format!("creating {}", launch.log_dir.display()))?;
        let log_path = launch.log_path();
        let metrics_port = free_port()?;
        let args = launch.args(metrics_port);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context(format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "=== e2e: starting {} {} ===",
            launch.binary.display(),
            args.join(" ")
        )
        .context(format!("writing {}", log_path.display()))?;
        let stderr = log
            .try_clone()
            .context(format!("duplicating {}", log_path.display()))?;

        let mut command = Command::new(&launch.binary);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1");
        // Settings from the developer's shell must not leak into the operator under test.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("KUBE_CHANGEJOB_")
                || name_text == "POD_NAME"
                || name_text == "POD_NAMESPACE"
            {
                command.env_remove(&name);
            }
        }
        if let Some(kubeconfig) = &launch.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command
            .spawn()
            .context(format!("starting {}", launch.binary.display()))?;
        Ok(OperatorProcess {
            identity: launch.identity.clone(),
            pid: child.id(),
            log_path,
            child,
        })
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, as in a crash or an OOM kill, and reap the process.
    pub async fn kill9(&mut self) -> Outcome {
        if self.exited().is_some() {
            return Err(Failure::new(format!(
                "operator {} had already exited before it could be killed",
                self.identity
            )));
        }
        // `Child::kill` sends SIGKILL on Unix.
        self.child
            .kill()
            .context(format!("SIGKILL to operator {}", self.identity))?;
        self.wait_exit(Duration::from_secs(5)).await.map(|_| ())
    }

    /// SIGTERM, as in a rolling update, then wait for the process to end by itself.
    pub async fn terminate(&mut self, within: Duration) -> Outcome<ExitStatus> {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.pid)])
            .status()
            .context(format!("sending SIGTERM to operator {}", self.identity))?;
        if !status.success() {
            return Err(Failure::new(format!(
                "`kill -TERM {}` failed with {status}",
                self.pid
            )));
        }
        self.wait_exit(within).await
    }

    async fn wait_exit(&mut self, within: Duration) -> Outcome<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if started.elapsed() >= within {
                return Err(Failure::new(format!(
                    "operator {} (pid {}) did not exit within {}",
                    self.identity,
                    self.pid,
                    secs(within)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Outcome<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free local port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port's address")?
        .port())
}

/// The last `lines` lines of a log file; only lines containing one of `needles` when given.
pub fn log_tail(path: &Path, needles: &[String], lines: usize) -> String {
    let text = match File::open(path).and_then(|mut f| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).map(|_| s)
    }) {
        Ok(t) => t,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let selected: Vec<&str> = text
        .lines()
        .filter(|l| needles.is_empty() || needles.iter().any(|n| l.contains(n.as_str())))
        .collect();
    let start = selected.len().saturating_sub(lines);
    selected[start..].join("\n")
}
