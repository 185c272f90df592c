//! `kubectl changejob`: the kubectl plugin the binary becomes when it is called as
//! `kubectl-changejob` (a symlink or a copy on PATH). It explains ChangeTriggeredJobs (`why`,
//! `history`) and acts on them (`trigger`, `suspend`, `resume`) with the user's own kube
//! context and rights.
//!
//! The verbs talk to the API server through [`execute`], which tests drive on the fake API; the
//! sentences and tables come from pure functions in `why` and `history`.

mod history;
mod view;
mod why;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

use crate::api::{ChangeTriggeredJob, MANUAL_TRIGGER_ANNOTATION, OWNER_LABEL};
pub use history::history;
pub use view::{CtjView, WatchedEntry};
pub use why::{LiveObject, LiveState, explain};

/// Name of the binary kubectl runs for `kubectl changejob`.
pub const PLUGIN_BINARY: &str = "kubectl-changejob";

/// `kubectl changejob` arguments, as kubectl passes them through.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl changejob",
    version,
    about = "Explain and drive ChangeTriggeredJobs (kube-changejob)",
    after_help = "Exit codes: 0 done, 1 other errors, 2 bad usage, 3 no such ChangeTriggeredJob, \
                  4 not allowed (RBAC), 5 no cluster (no kubeconfig or the API server cannot be reached)."
)]
pub struct PluginCli {
    /// Namespace of the ChangeTriggeredJob (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The plugin's verbs.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Why the last Job ran and why no Job runs now, in sentences.
    Why {
        /// The ChangeTriggeredJob.
        name: String,
    },
    /// Run a Job now, whatever changed and whatever the cooldown (sets changejob.dev/trigger).
    Trigger {
        /// The ChangeTriggeredJob.
        name: String,
    },
    /// Stop creating Jobs (spec.suspend: true); changes seen meanwhile are kept.
    Suspend {
        /// The ChangeTriggeredJob.
        name: String,
    },
    /// Create Jobs again (spec.suspend: false); a change kept while suspended fires.
    Resume {
        /// The ChangeTriggeredJob.
        name: String,
    },
    /// The ChangeTriggeredJob's Jobs, newest first, with their state and what changed.
    History {
        /// The ChangeTriggeredJob.
        name: String,
    },
}

/// What can go wrong, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The ChangeTriggeredJob does not exist.
    #[error(
        "ChangeTriggeredJob {name:?} not found in namespace {namespace:?} (list them with: kubectl get ctj -n {namespace})"
    )]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The API server does not serve ChangeTriggeredJobs.
    #[error(
        "this cluster does not serve ChangeTriggeredJobs (triggers.changejob.dev/v1alpha): install kube-changejob or its CRD first"
    )]
    NoCrd,
    /// RBAC refused a request.
    #[error("not allowed to {action}: {message}")]
    Forbidden {
        /// What was attempted, in words.
        action: String,
        /// The API server's message.
        message: String,
    },
    /// No usable kubeconfig, or the API server cannot be reached.
    #[error("no cluster: {0}")]
    NoCluster(String),
    /// Anything else the API server answered.
    #[error("{action}: {message}")]
    Api {
        /// What was attempted, in words.
        action: String,
        /// The error.
        message: String,
    },
}

impl PluginError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::NotFound { .. } | PluginError::NoCrd => 3,
            PluginError::Forbidden { .. } => 4,
            PluginError::NoCluster(_) => 5,
            PluginError::Api { .. } => 1,
        }
    }
}

/// Maps a kube error for `action` on ChangeTriggeredJob `name`.
fn api_error(e: kube::Error, action: &str, namespace: &str, name: &str) -> PluginError {
    match e {
        kube::Error::Api(status) if status.code == 404 => {
            // A missing object is named in the Status details; a resource type the server
            // does not serve gets a 404 that names nothing (or a plain-text page).
            if status.details.as_ref().is_some_and(|d| !d.name.is_empty()) {
                PluginError::NotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                }
            } else {
                PluginError::NoCrd
            }
        }
        kube::Error::Api(status) if status.code == 403 => PluginError::Forbidden {
            action: action.to_owned(),
            message: status.message,
        },
        kube::Error::Api(status) if status.code == 401 => PluginError::NoCluster(format!(
            "the API server refused the credentials ({})",
            status.message
        )),
        kube::Error::Api(status) => PluginError::Api {
            action: action.to_owned(),
            message: format!("{} ({})", status.message, status.code),
        },
        kube::Error::HyperError(e) => {
            PluginError::NoCluster(format!("cannot reach the API server: {e}"))
        }
        kube::Error::Service(e) => {
            PluginError::NoCluster(format!("cannot reach the API server: {e}"))
        }
        other => PluginError::Api {
            action: action.to_owned(),
            message: other.to_string(),
        },
    }
}

fn ctj_resource() -> ApiResource {
    ApiResource::erase::<ChangeTriggeredJob>(&())
}

/// Runs one verb against the cluster behind `client`, in `namespace`; returns what to print.
pub async fn execute(
    client: Client,
    namespace: &str,
    verb: &Verb,
    now: jiff::Timestamp,
) -> Result<String, PluginError> {
    let ctjs: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ctj_resource());
    match verb {
        Verb::Why { name } => {
            let raw = get_ctj(&ctjs, namespace, name).await?;
            let view = CtjView::from_json(&raw);
            let jobs = owned_jobs(&client, namespace, name, view.uid.as_deref()).await?;
            let mut live = Vec::new();
            for entry in &view.watched {
                live.push(observe_live(&client, entry).await);
            }
            Ok(explain(&view, &jobs, &live, now))
        }
        Verb::History { name } => {
            let raw = get_ctj(&ctjs, namespace, name).await?;
            let view = CtjView::from_json(&raw);
            let jobs = owned_jobs(&client, namespace, name, view.uid.as_deref()).await?;
            Ok(history(&view, &jobs, now))
        }
        Verb::Trigger { name } => {
            // A value never used before: the operator acts on each new value once.
            let value = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            let patch = json!({"metadata": {"annotations": {MANUAL_TRIGGER_ANNOTATION: value}}});
            patch_ctj(
                &ctjs,
                namespace,
                name,
                "set the trigger annotation on",
                patch,
            )
            .await?;
            Ok(format!(
                "changetriggeredjob {namespace}/{name} triggered ({MANUAL_TRIGGER_ANNOTATION}={value}); \
                 the operator creates a Job at its next reconcile, cooldown or not\n"
            ))
        }
        Verb::Suspend { name } | Verb::Resume { name } => {
            let suspend = matches!(verb, Verb::Suspend { .. });
            let patch = json!({"spec": {"suspend": suspend}});
            patch_ctj(&ctjs, namespace, name, "change spec.suspend of", patch).await?;
            Ok(if suspend {
                format!(
                    "changetriggeredjob {namespace}/{name} suspended: no Job is created until it is resumed; changes seen meanwhile are kept\n"
                )
            } else {
                format!(
                    "changetriggeredjob {namespace}/{name} resumed: a change kept while suspended triggers a Job now\n"
                )
            })
        }
    }
}

async fn get_ctj(
    ctjs: &Api<DynamicObject>,
    namespace: &str,
    name: &str,
) -> Result<serde_json::Value, PluginError> {
    let object = ctjs
        .get(name)
        .await
        .map_err(|e| api_error(e, "get the ChangeTriggeredJob", namespace, name))?;
    serde_json::to_value(&object).map_err(|e| PluginError::Api {
        action: "read the ChangeTriggeredJob".into(),
        message: e.to_string(),
    })
}

async fn patch_ctj(
    ctjs: &Api<DynamicObject>,
    namespace: &str,
    name: &str,
    action: &str,
    patch: serde_json::Value,
) -> Result<(), PluginError> {
    // Patching a missing object would fail the same way, but a GET first tells "no such
    // ChangeTriggeredJob" apart from "no right to patch it".
    get_ctj(ctjs, namespace, name).await?;
    ctjs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| {
            api_error(
                e,
                &format!("{action} the ChangeTriggeredJob"),
                namespace,
                name,
            )
        })
}

/// The CTJ's Jobs: labelled with its name and controlled by it (another CTJ of the same name,
/// deleted and created again, has another uid).
async fn owned_jobs(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<Vec<Job>, PluginError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let list = jobs
        .list(&ListParams::default().labels(&format!("{OWNER_LABEL}={name}")))
        .await
        .map_err(|e| api_error(e, "list the ChangeTriggeredJob's Jobs", namespace, name))?;
    Ok(list
        .items
        .into_iter()
        .filter(|job| {
            uid.is_none_or(|uid| {
                job.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
        })
        .collect())
}

/// Reads one watched object (or set) as it is now; errors become states, not failures.
async fn observe_live(client: &Client, entry: &WatchedEntry) -> LiveObject {
    let (group, version) = match entry.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", entry.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &entry.kind);
    let state = match kube::discovery::pinned_kind(client, &gvk).await {
        Err(e) => LiveState::Unreadable(short_error(&e)),
        Ok((resource, caps)) => {
            let api: Api<DynamicObject> = match (&entry.namespace, caps.scope) {
                (Some(ns), kube::discovery::Scope::Namespaced) => {
                    Api::namespaced_with(client.clone(), ns, &resource)
                }
                _ => Api::all_with(client.clone(), &resource),
            };
            match (&entry.name, &entry.selector) {
                (Some(name), _) => match api.get_opt(name).await {
                    Ok(Some(object)) => LiveState::Exists {
                        last_written: last_write(&object),
                    },
                    Ok(None) => LiveState::Absent,
                    Err(e) => LiveState::Unreadable(short_error(&e)),
                },
                (None, Some(selector)) => {
                    match api
                        .list_metadata(&ListParams::default().labels(selector))
                        .await
                    {
                        Ok(list) => LiveState::Members(list.items.len()),
                        Err(e) => LiveState::Unreadable(short_error(&e)),
                    }
                }
                (None, None) => LiveState::Unreadable("the entry names no object".into()),
            }
        }
    };
    LiveObject { state }
}

/// When the object was last written, from its managedFields (each writer's latest time).
fn last_write(object: &DynamicObject) -> Option<jiff::Timestamp> {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
        .or_else(|| object.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// The client and namespace for the kubeconfig, context and namespace flags, as kubectl
/// chooses them.
pub async fn connect(cli: &PluginCli) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::NoCluster(format!("reading {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| {
        PluginError::NoCluster(format!(
            "{e} (is a kubeconfig set up? kubectl config current-context)"
        ))
    })?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    crate::client::install_crypto_provider();
    let client = Client::try_from(config)
        .map_err(|e| PluginError::NoCluster(format!("building the client: {e}")))?;
    Ok((client, namespace))
}

/// Whether the process was started as the kubectl plugin (its file name).
pub fn called_as_plugin(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == PLUGIN_BINARY)
}

/// The plugin's whole process: parse, connect, run, print. Returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match PluginCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are successful outcomes; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (client, namespace) = connect(&cli).await?;
        execute(client, &namespace, &cli.verb, jiff::Timestamp::now()).await
    });
    match result {
        Ok(text) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
