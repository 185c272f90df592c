//! Settings of `kube-changejob run`, in one place.
//!
//! Precedence: built-in defaults < config file (`--config`) < `KUBE_CHANGEJOB_*` environment
//! variables < command-line flags. Every setting has one name, spelled per layer:
//! `webhookBindAddress` in the file and in Helm's `config:` values,
//! `KUBE_CHANGEJOB_WEBHOOK_BIND_ADDRESS` in the environment, `--webhook-bind-address` as a
//! flag. docs/configuration.md lists them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::detect::duration::{format_duration, parse_duration};

/// A setting that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: config::ConfigError,
    },
    /// A value is out of range or malformed.
    #[error("setting {name}: {message}")]
    Invalid {
        /// camelCase name of the setting.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CertMode {
    /// The operator keeps a CA and serving certificate in a Secret and injects the CA bundle
    /// into its webhook configurations.
    #[default]
    SelfManaged,
    /// PEM files (e.g. mounted from a cert-manager Certificate), re-read when they change.
    Files,
}

/// All settings, with their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// Log filter, e.g. `info` or `kube_changejob=debug,info`.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Namespaces whose ChangeTriggeredJobs are reconciled; empty = all namespaces.
    pub namespaces: Vec<String>,
    /// Namespace the operator runs in (Lease, Secrets). Falls back to `POD_NAMESPACE`, then
    /// the service account's namespace, then `kube-changejob-system`.
    pub operator_namespace: String,
    /// Identity in leader election. Falls back to `POD_NAME`, then the hostname.
    pub pod_name: String,
    /// Safety resync: every ChangeTriggeredJob is re-evaluated at least this often.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Maximum ChangeTriggeredJobs reconciled at the same time.
    pub reconcile_concurrency: u16,
    /// Sustained Kubernetes API requests per second.
    pub api_qps: u32,
    /// Short bursts of Kubernetes API requests allowed above `apiQps`.
    pub api_burst: u32,
    /// Run only the Lease holder's reconcile loop (turn off only for a single replica).
    pub leader_election: bool,
    /// Name of the Lease.
    pub lease_name: String,
    /// How long a Lease is valid without renewal.
    #[serde(with = "duration_text")]
    pub lease_duration: Duration,
    /// The holder stops reconciling if it could not renew for this long.
    #[serde(with = "duration_text")]
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew the Lease.
    #[serde(with = "duration_text")]
    pub retry_period: Duration,
    /// Serve the admission webhook.
    pub webhook_enabled: bool,
    /// Address of the HTTPS admission server.
    pub webhook_bind_address: SocketAddr,
    /// Where the serving certificate comes from.
    pub webhook_cert_mode: CertMode,
    /// Directory with `tls.crt` and `tls.key` (cert mode `files`).
    pub webhook_cert_dir: PathBuf,
    /// Secret holding the self-managed CA and serving certificate.
    pub webhook_cert_secret: String,
    /// Service in front of the webhook; its DNS names go into the serving certificate.
    pub webhook_service_name: String,
    /// MutatingWebhookConfiguration to inject the CA bundle into (self-managed mode).
    pub mutating_webhook_configuration: String,
    /// ValidatingWebhookConfiguration to inject the CA bundle into (self-managed mode).
    pub validating_webhook_configuration: String,
    /// Reject a ChangeTriggeredJob whose author may not `get` every watched object or
    /// `create` Jobs in its namespace (SubjectAccessReview).
    pub webhook_authorize_users: bool,
    /// Validate `jobTemplate` with a server-side dry-run create of the Job.
    pub webhook_dry_run_job_template: bool,
    /// Address of the metrics and health server.
    pub metrics_bind_address: SocketAddr,
    /// Serve metrics over HTTPS with Kubernetes token authentication and authorization;
    /// false serves plain HTTP without authentication.
    pub metrics_secure: bool,
    /// Secret holding the installation's fingerprint key (created if absent).
    pub fingerprint_key_secret: String,

    /// Most objects one selector entry (`spec.resources[].selector`) may match; beyond it the
    /// ChangeTriggeredJob is Degraded with reason TooManyObjects instead of watching part of
    /// the set.
    pub max_selector_members: u32,

    // Cost at rest and at scale.
    /// How often each watch stream is compared with a fresh paginated LIST, to catch changes
    /// a watch missed (unchanged ChangeTriggeredJobs are not re-evaluated until a watch or this
    /// LIST reports a change).
    #[serde(with = "duration_text")]
    pub relist_interval: Duration,
    /// Past this many namespaces with watched objects of one kind, watch that kind with one
    /// cluster-wide metadata watch instead of one per namespace (when RBAC allows it);
    /// 0 never does.
    pub cluster_watch_threshold: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            namespaces: Vec::new(),
            operator_namespace: String::new(),
            pod_name: String::new(),
            poll_interval: Duration::from_secs(60),
            reconcile_concurrency: 8,
            api_qps: 50,
            api_burst: 100,
            leader_election: true,
            lease_name: "kube-changejob".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            webhook_enabled: true,
            webhook_bind_address: SocketAddr::from(([0, 0, 0, 0], 9443)),
            webhook_cert_mode: CertMode::SelfManaged,
            webhook_cert_dir: PathBuf::from("/tmp/k8s-webhook-server/serving-certs"),
            webhook_cert_secret: "kube-changejob-webhook-tls".into(),
            webhook_service_name: "kube-changejob-webhook".into(),
            mutating_webhook_configuration: "kube-changejob".into(),
            validating_webhook_configuration: "kube-changejob".into(),
            webhook_authorize_users: true,
            webhook_dry_run_job_template: true,
            metrics_bind_address: SocketAddr::from(([0, 0, 0, 0], 8443)),
            metrics_secure: true,
            fingerprint_key_secret: "kube-changejob-fingerprint-key".into(),

            max_selector_members: 1000,
            relist_interval: Duration::from_secs(300),
            cluster_watch_threshold: 10,
        }
    }
}

/// Flags of `kube-changejob run`; each also reads its `KUBE_CHANGEJOB_*` variable.
#[derive(Args, Debug, Default, Clone)]
pub struct Overrides {
    /// YAML config file (settings in camelCase, see docs/configuration.md).
    #[arg(long, env = "KUBE_CHANGEJOB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter (`info`, `debug`, `kube_changejob=debug,warn`).
    #[arg(long, env = "KUBE_CHANGEJOB_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, env = "KUBE_CHANGEJOB_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Comma-separated namespaces to reconcile (default: all).
    #[arg(long, env = "KUBE_CHANGEJOB_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Option<Vec<String>>,
    /// Namespace of the operator (Lease and Secrets).
    #[arg(long, env = "KUBE_CHANGEJOB_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Leader-election identity.
    #[arg(long, env = "KUBE_CHANGEJOB_POD_NAME")]
    pub pod_name: Option<String>,
    /// Safety resync interval, e.g. 60s.
    #[arg(long, env = "KUBE_CHANGEJOB_POLL_INTERVAL", value_parser = parse_flag_duration)]
    pub poll_interval: Option<Duration>,
    /// Maximum concurrent reconciles.
    #[arg(long, env = "KUBE_CHANGEJOB_RECONCILE_CONCURRENCY")]
    pub reconcile_concurrency: Option<u16>,
    /// Sustained API requests per second.
    #[arg(long, env = "KUBE_CHANGEJOB_API_QPS")]
    pub api_qps: Option<u32>,
    /// API request burst.
    #[arg(long, env = "KUBE_CHANGEJOB_API_BURST")]
    pub api_burst: Option<u32>,
    /// Enable leader election.
    #[arg(long, env = "KUBE_CHANGEJOB_LEADER_ELECTION")]
    pub leader_election: Option<bool>,
    /// Lease name.
    #[arg(long, env = "KUBE_CHANGEJOB_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Lease duration, e.g. 15s.
    #[arg(long, env = "KUBE_CHANGEJOB_LEASE_DURATION", value_parser = parse_flag_duration)]
    pub lease_duration: Option<Duration>,
    /// Renew deadline, e.g. 10s.
    #[arg(long, env = "KUBE_CHANGEJOB_RENEW_DEADLINE", value_parser = parse_flag_duration)]
    pub renew_deadline: Option<Duration>,
    /// Retry period, e.g. 2s.
    #[arg(long, env = "KUBE_CHANGEJOB_RETRY_PERIOD", value_parser = parse_flag_duration)]
    pub retry_period: Option<Duration>,
    /// Serve the admission webhook.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_ENABLED")]
    pub webhook_enabled: Option<bool>,
    /// Admission server address.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_BIND_ADDRESS")]
    pub webhook_bind_address: Option<SocketAddr>,
    /// Certificate source.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_CERT_MODE")]
    pub webhook_cert_mode: Option<CertMode>,
    /// Directory holding tls.crt and tls.key.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Secret for self-managed certificates.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_CERT_SECRET")]
    pub webhook_cert_secret: Option<String>,
    /// Webhook Service name.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_SERVICE_NAME")]
    pub webhook_service_name: Option<String>,
    /// MutatingWebhookConfiguration name.
    #[arg(long, env = "KUBE_CHANGEJOB_MUTATING_WEBHOOK_CONFIGURATION")]
    pub mutating_webhook_configuration: Option<String>,
    /// ValidatingWebhookConfiguration name.
    #[arg(long, env = "KUBE_CHANGEJOB_VALIDATING_WEBHOOK_CONFIGURATION")]
    pub validating_webhook_configuration: Option<String>,
    /// Check the author's permissions with SubjectAccessReviews.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_AUTHORIZE_USERS")]
    pub webhook_authorize_users: Option<bool>,
    /// Dry-run the Job template on admission.
    #[arg(long, env = "KUBE_CHANGEJOB_WEBHOOK_DRY_RUN_JOB_TEMPLATE")]
    pub webhook_dry_run_job_template: Option<bool>,
    /// Metrics and health server address.
    #[arg(long, env = "KUBE_CHANGEJOB_METRICS_BIND_ADDRESS")]
    pub metrics_bind_address: Option<SocketAddr>,
    /// HTTPS with authentication for metrics.
    #[arg(long, env = "KUBE_CHANGEJOB_METRICS_SECURE")]
    pub metrics_secure: Option<bool>,
    /// Secret holding the fingerprint key.
    #[arg(long, env = "KUBE_CHANGEJOB_FINGERPRINT_KEY_SECRET")]
    pub fingerprint_key_secret: Option<String>,

    /// Most objects one selector entry may match.
    #[arg(long, env = "KUBE_CHANGEJOB_MAX_SELECTOR_MEMBERS")]
    pub max_selector_members: Option<u32>,
    /// How often each watch stream is checked with a fresh LIST, e.g. 5m.
    #[arg(long, env = "KUBE_CHANGEJOB_RELIST_INTERVAL", value_parser = parse_flag_duration)]
    pub relist_interval: Option<Duration>,
    /// Namespaces per kind past which the kind is watched cluster-wide (0: never).
    #[arg(long, env = "KUBE_CHANGEJOB_CLUSTER_WATCH_THRESHOLD")]
    pub cluster_watch_threshold: Option<u32>,
}

fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

impl Settings {
    /// Loads defaults, then the config file, then environment variables and flags (`overrides`,
    /// which clap already filled from both, flags winning).
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        let mut settings = match &overrides.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        settings.apply(overrides);
        settings.fill_from_environment();
        settings.validate()?;
        Ok(settings)
    }

    /// Defaults overlaid with a YAML config file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let file_error = |source| ConfigError::File {
            path: path.to_path_buf(),
            source,
        };
        config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Yaml))
            .build()
            .and_then(config::Config::try_deserialize::<Settings>)
            .map_err(file_error)
    }

    fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        set(&mut self.log_level, &o.log_level);
        set(&mut self.log_format, &o.log_format);
        set(&mut self.namespaces, &o.namespaces);
        set(&mut self.operator_namespace, &o.operator_namespace);
        set(&mut self.pod_name, &o.pod_name);
        set(&mut self.poll_interval, &o.poll_interval);
        set(&mut self.reconcile_concurrency, &o.reconcile_concurrency);
        set(&mut self.api_qps, &o.api_qps);
        set(&mut self.api_burst, &o.api_burst);
        set(&mut self.leader_election, &o.leader_election);
        set(&mut self.lease_name, &o.lease_name);
        set(&mut self.lease_duration, &o.lease_duration);
        set(&mut self.renew_deadline, &o.renew_deadline);
        set(&mut self.retry_period, &o.retry_period);
        set(&mut self.webhook_enabled, &o.webhook_enabled);
        set(&mut self.webhook_bind_address, &o.webhook_bind_address);
        set(&mut self.webhook_cert_mode, &o.webhook_cert_mode);
        set(&mut self.webhook_cert_dir, &o.webhook_cert_dir);
        set(&mut self.webhook_cert_secret, &o.webhook_cert_secret);
        set(&mut self.webhook_service_name, &o.webhook_service_name);
        set(
            &mut self.mutating_webhook_configuration,
            &o.mutating_webhook_configuration,
        );
        set(
            &mut self.validating_webhook_configuration,
            &o.validating_webhook_configuration,
        );
        set(
            &mut self.webhook_authorize_users,
            &o.webhook_authorize_users,
        );
        set(
            &mut self.webhook_dry_run_job_template,
            &o.webhook_dry_run_job_template,
        );
        set(&mut self.metrics_bind_address, &o.metrics_bind_address);
        set(&mut self.metrics_secure, &o.metrics_secure);
        set(&mut self.fingerprint_key_secret, &o.fingerprint_key_secret);
        set(&mut self.max_selector_members, &o.max_selector_members);
        set(&mut self.relist_interval, &o.relist_interval);
        set(
            &mut self.cluster_watch_threshold,
            &o.cluster_watch_threshold,
        );
        self.namespaces.retain(|ns| !ns.trim().is_empty());
    }

    /// Fills identity and namespace from the downward API variables when not set.
    fn fill_from_environment(&mut self) {
        if self.operator_namespace.is_empty() {
            self.operator_namespace = std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    std::fs::read_to_string(
                        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                    )
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| "kube-changejob-system".into());
        }
        if self.pod_name.is_empty() {
            self.pod_name = std::env::var("POD_NAME")
                .ok()
                .filter(|s| !s.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| format!("kube-changejob-{}", std::process::id()));
        }
    }

    /// Checks relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, message: &str| {
            Err(ConfigError::Invalid {
                name,
                message: message.to_string(),
            })
        };
        if self.poll_interval < Duration::from_secs(1) {
            return invalid("pollInterval", "must be at least 1s");
        }
        if self.reconcile_concurrency == 0 {
            return invalid("reconcileConcurrency", "must be at least 1");
        }
        if self.api_qps == 0 {
            return invalid("apiQps", "must be at least 1");
        }
        if self.api_burst < self.api_qps {
            return invalid("apiBurst", "must be at least apiQps");
        }
        if self.retry_period.is_zero() {
            return invalid("retryPeriod", "must be more than 0s");
        }
        if self.renew_deadline <= self.retry_period {
            return invalid("renewDeadline", "must be longer than retryPeriod");
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid("leaseDuration", "must be longer than renewDeadline");
        }
        if self.lease_name.is_empty() {
            return invalid("leaseName", "must not be empty");
        }
        if self.fingerprint_key_secret.is_empty() {
            return invalid("fingerprintKeySecret", "must not be empty");
        }
        if self.max_selector_members == 0 {
            return invalid("maxSelectorMembers", "must be at least 1");
        }
        if self.relist_interval < Duration::from_secs(10) {
            return invalid("relistInterval", "must be at least 10s");
        }
        Ok(())
    }
}

/// Durations as Go-style text (`60s`, `1m30s`) in the config file.
mod duration_text {
    use super::{Duration, format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile()
            .unwrap_or_else(|e| panic!("tempfile: {e}"));
        let _ = f.write_all(content.as_bytes());
        f
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn config_file_overrides_defaults_with_camel_case_names() {
        let f = file(
            "pollInterval: 30s\nwebhookBindAddress: 127.0.0.1:9000\nnamespaces: [a, b]\nmetricsSecure: false\n",
        );
        let s = Settings::from_file(f.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.poll_interval, Duration::from_secs(30));
        assert_eq!(
            s.webhook_bind_address,
            SocketAddr::from(([127, 0, 0, 1], 9000))
        );
        assert_eq!(s.namespaces, vec!["a".to_string(), "b".to_string()]);
        assert!(!s.metrics_secure);
        assert_eq!(s.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn unknown_setting_in_file_is_an_error() {
        let f = file("pollIntervall: 30s\n");
        assert!(Settings::from_file(f.path()).is_err());
    }

    #[test]
    fn bad_duration_in_file_is_an_error() {
        let f = file("pollInterval: soon\n");
        assert!(Settings::from_file(f.path()).is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let f = file("pollInterval: 30s\nleaseName: from-file\n");
        let overrides = Overrides {
            config: Some(f.path().to_path_buf()),
            poll_interval: Some(Duration::from_secs(5)),
            ..Overrides::default()
        };
        let s = Settings::load(&overrides).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        assert_eq!(s.lease_name, "from-file");
        assert!(!s.pod_name.is_empty());
        assert!(!s.operator_namespace.is_empty());
    }

    #[test]
    fn lease_timings_must_be_ordered() {
        let s = Settings {
            renew_deadline: Duration::from_secs(20),
            ..Settings::default()
        };
        assert!(matches!(
            s.validate(),
            Err(ConfigError::Invalid {
                name: "leaseDuration",
                ..
            })
        ));
    }

    #[test]
    fn every_setting_has_a_flag_and_an_env_variable() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            o: Overrides,
        }
        let cmd = Cli::command();
        let names = setting_names();
        assert!(!names.is_empty());
        for (name, kebab, env) in names {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(kebab.as_str()));
            let arg = arg.unwrap_or_else(|| panic!("no flag --{kebab} for setting {name}"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(env.as_str()),
                "{name}"
            );
        }
    }
}

/// Every setting as (config-file name, flag name without `--`, environment variable).
#[cfg(test)]
fn setting_names() -> Vec<(String, String, String)> {
    let defaults = serde_json::to_value(Settings::default()).unwrap_or_default();
    let names = defaults
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>());
    names
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            let kebab: String = name
                .chars()
                .flat_map(|c| {
                    if c.is_ascii_uppercase() {
                        vec!['-', c.to_ascii_lowercase()]
                    } else {
                        vec![c]
                    }
                })
                .collect();
            let env = format!("KUBE_CHANGEJOB_{}", kebab.replace('-', "_").to_uppercase());
            (name, kebab, env)
        })
        .collect()
}

#[cfg(test)]
mod documentation {
    use super::*;

    /// docs/configuration.md lists every setting under all three of its names.
    #[test]
    fn every_setting_is_documented() {
        let doc = include_str!("../docs/configuration.md");
        for (name, kebab, env) in setting_names() {
            let row = format!("| `{name}` | `{env}` | `--{kebab}` |");
            assert!(
                doc.contains(&row),
                "docs/configuration.md lacks the row for {name}: {row}"
            );
        }
    }
}
