//! What the suite leaves behind and must remove: its namespaces and the labels it put on Nodes.
//!
//! The teardown runs at the end of every run, failed or not. If the suite panics before that,
//! `Drop` does the same work on a thread with its own runtime (the suite's runtime may already
//! be gone, and a kube `Client` only works on the runtime that created it).

use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::json;

use super::is_status;

/// Objects to remove at the end of the run.
pub struct Cleanup {
    config: Config,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    namespaces: Vec<String>,
    node_labels: Vec<(String, String)>,
    done: bool,
}

impl Cleanup {
    /// Nothing registered yet; `config` builds a client if `Drop` has to clean up.
    pub fn new(config: Config) -> Self {
        Cleanup {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// Deletes this namespace at the end of the run (register it before creating it).
    pub fn namespace(&self, name: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.namespaces.push(name.to_string());
        }
    }

    /// Removes label `key` from Node `node` at the end of the run.
    pub fn node_label(&self, node: &str, key: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.node_labels.push((node.to_string(), key.to_string()));
        }
    }

    /// Removes everything registered; returns one line per action for the report.
    pub async fn run(&self, client: &Client) -> Vec<String> {
        let (namespaces, labels) = match self.state.lock() {
            Ok(mut s) => {
                s.done = true;
                (s.namespaces.clone(), s.node_labels.clone())
            }
            Err(_) => return vec!["cleanup state is poisoned; nothing removed".into()],
        };
        remove(client, &namespaces, &labels).await
    }
}

async fn remove(
    client: &Client,
    namespaces: &[String],
    labels: &[(String, String)],
) -> Vec<String> {
    let mut report = Vec::new();
    let nodes: Api<Node> = Api::all(client.clone());
    for (node, key) in labels {
        let patch = json!({ "metadata": { "labels": { key.as_str(): null } } });
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => report.push(format!("removed label {key} from Node {node}")),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => report.push(format!(
                "could not remove label {key} from Node {node}: {e}"
            )),
        }
    }
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        match api.delete(ns, &DeleteParams::background()).await {
            Ok(_) => report.push(format!("deleted namespace {ns}")),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => report.push(format!("could not delete namespace {ns}: {e}")),
        }
    }
    report
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (namespaces, labels) = match self.state.lock() {
            Ok(s) if !s.done => (s.namespaces.clone(), s.node_labels.clone()),
            _ => return,
        };
        if namespaces.is_empty() && labels.is_empty() {
            return;
        }
        let config = self.config.clone();
        let worker = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    println!("e2e: teardown: no runtime to clean up with: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                match Client::try_from(config) {
                    Ok(client) => {
                        for line in remove(&client, &namespaces, &labels).await {
                            println!("e2e: teardown: {line}");
                        }
                    }
                    Err(e) => println!("e2e: teardown: cannot build a client: {e}"),
                }
            });
        });
        let _ = worker.join();
    }
}
