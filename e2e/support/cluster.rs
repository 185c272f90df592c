//! Is there a cluster to test against? Reads KUBECONFIG and asks the API server for its version
//! with a short timeout, so a machine without a cluster skips the suite in a few seconds.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Longest the reachability probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// What the probe found.
pub enum Probe {
    /// No usable cluster: skip the suite, saying why (one line).
    Skip(String),
    /// The cluster answered but refused us: that is a failure, not a reason to skip.
    Refused(String),
    /// A cluster to test against.
    Ready(Box<Cluster>),
}

/// A reachable cluster.
pub struct Cluster {
    /// Client for the suite's own requests.
    pub client: Client,
    /// The configuration it was built from (for restricted kubeconfigs and the teardown).
    pub config: Config,
    /// The API server URL.
    pub server: String,
    /// `gitVersion` of the API server.
    pub version: String,
}

/// Probes the cluster named by KUBECONFIG.
pub async fn probe() -> Probe {
    let path = match std::env::var("KUBECONFIG") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => return Probe::Skip("KUBECONFIG is not set".into()),
    };
    // Reading the file ourselves first gives a clearer message than the loader's for a missing
    // or malformed file.
    if let Err(e) = Kubeconfig::read() {
        return Probe::Skip(format!(
            "KUBECONFIG ({path}) cannot be loaded: {}",
            one_line(&e)
        ));
    }
    let config = match Config::from_kubeconfig(&KubeConfigOptions::default()).await {
        Ok(c) => c,
        Err(e) => {
            return Probe::Skip(format!(
                "KUBECONFIG ({path}) cannot be used: {}",
                one_line(&e)
            ));
        }
    };
    let server = config.cluster_url.to_string();

    let mut probe_config = config.clone();
    probe_config.connect_timeout = Some(Duration::from_secs(3));
    probe_config.read_timeout = Some(Duration::from_secs(3));
    probe_config.default_retry = false;
    let unreachable = |why: String| {
        Probe::Skip(format!(
            "the cluster in KUBECONFIG ({server}) is not reachable: {why}"
        ))
    };
    let probe_client = match Client::try_from(probe_config) {
        Ok(c) => c,
        Err(e) => return unreachable(one_line(&e)),
    };
    let version = match tokio::time::timeout(PROBE_TIMEOUT, probe_client.apiserver_version()).await
    {
        Err(_) => return unreachable(format!("no answer within {PROBE_TIMEOUT:?}")),
        // A Kubernetes API server answers errors with a `Status` object; kube marks bodies it
        // could not parse as one. Anything else (a proxy, a captive portal) is not a cluster.
        Ok(Err(kube::Error::Api(status)))
            if status.status.is_some() && status.reason != "Failed to parse error data" =>
        {
            return Probe::Refused(format!(
                "the cluster in KUBECONFIG ({server}) answered GET /version with HTTP {}: {}",
                status.code, status.message
            ));
        }
        Ok(Err(kube::Error::Api(status))) => {
            let body: String = status.message.chars().take(80).collect();
            return unreachable(format!(
                "what answers there is not a Kubernetes API server (HTTP {} to GET /version{})",
                status.code,
                if body.is_empty() {
                    String::new()
                } else {
                    format!(": {body}")
                }
            ));
        }
        Ok(Err(e)) => return unreachable(one_line(&e)),
        Ok(Ok(info)) => info.git_version,
    };

    let mut suite_config = config.clone();
    // Requests of the suite are small; a hung connection must not hang a scenario.
    suite_config.read_timeout = Some(Duration::from_secs(30));
    suite_config.reset_reader_on_write = true;
    match Client::try_from(suite_config) {
        Ok(client) => Probe::Ready(Box::new(Cluster {
            client,
            config,
            server,
            version,
        })),
        Err(e) => Probe::Refused(format!(
            "cannot build a client for {server}: {}",
            one_line(&e)
        )),
    }
}

/// An error and its sources on one line, without repeating a source its parent already quoted.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
