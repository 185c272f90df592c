//! One scenario's handle on the run: its names, the objects it creates and changes, waiting on
//! its ChangeTriggeredJobs' status, its notes, and what to print when it fails.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kube_changejob::api::ChangeTriggeredJob;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::env::{Env, Latency, LatencyKind};
use super::jobs::{JobTracker, list_jobs, names, sequence};
use super::status::{observed, summary};
use super::wait::{Poll, wait_for};
use super::{Context, FIRST_OBSERVATION_TIMEOUT, Outcome, POLL, secs};

/// A scenario's view of the run.
pub struct Ctx {
    /// The run.
    pub env: Arc<Env>,
    /// Scenario number.
    pub number: u8,
    /// Scenario name.
    pub scenario: &'static str,
    ctjs: Mutex<Vec<(String, String)>>,
    notes: Mutex<Vec<String>>,
    step: Mutex<String>,
}

impl Ctx {
    /// A fresh context for scenario `number`.
    pub fn new(env: Arc<Env>, number: u8, scenario: &'static str) -> Self {
        Ctx {
            env,
            number,
            scenario,
            ctjs: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            step: Mutex::new("starting".into()),
        }
    }

    /// The run's namespace.
    pub fn ns(&self) -> &str {
        &self.env.namespace
    }

    /// The suite's client.
    pub fn client(&self) -> Client {
        self.env.client.clone()
    }

    /// A name unique to this scenario: `sNN-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("s{:02}-{suffix}", self.number)
    }

    /// Says what the scenario does now (shown if it fails; printed with `E2E_VERBOSE=1`).
    pub fn step(&self, text: &str) {
        if let Ok(mut s) = self.step.lock() {
            *s = text.to_string();
        }
        self.trace(text);
    }

    /// Prints a progress line with `E2E_VERBOSE=1`.
    pub fn trace(&self, text: &str) {
        if std::env::var("E2E_VERBOSE").is_ok_and(|v| v == "1") {
            println!("e2e: [{:2}] {}: {text}", self.number, self.scenario);
        }
    }

    /// The current step.
    pub fn current_step(&self) -> String {
        self.step.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A note printed with the scenario's result (e.g. a sub-check that could not run here).
    pub fn note(&self, text: &str) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(text.to_string());
        }
    }

    /// The notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Records a latency for the summary.
    pub fn record_latency(&self, kind: LatencyKind, what: &str, took: Duration) {
        self.env.record_latency(Latency {
            scenario: self.number,
            kind,
            what: what.to_string(),
            took,
        });
    }

    /// The API of a namespaced kind in the run's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client(), self.ns())
    }

    /// Creates an object in the run's namespace.
    pub async fn create<K>(&self, object: &K) -> Outcome<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        <K as Resource>::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        self.api::<K>()
            .create(&PostParams::default(), object)
            .await
            .context(format!("creating {kind} {}", object.name_any()))
    }

    /// Creates a ChangeTriggeredJob and remembers it for the failure report.
    pub async fn create_ctj(&self, ctj: &ChangeTriggeredJob) -> Outcome<ChangeTriggeredJob> {
        let namespace = ctj.namespace().unwrap_or_else(|| self.ns().to_string());
        self.track_ctj(&namespace, &ctj.name_any());
        Api::<ChangeTriggeredJob>::namespaced(self.client(), &namespace)
            .create(&PostParams::default(), ctj)
            .await
            .context(format!("creating ChangeTriggeredJob {}", ctj.name_any()))
    }

    /// Includes a ChangeTriggeredJob in the failure report.
    pub fn track_ctj(&self, namespace: &str, name: &str) {
        if let Ok(mut c) = self.ctjs.lock() {
            c.push((namespace.to_string(), name.to_string()));
        }
    }

    /// Merge-patches an object in the run's namespace; returns the instant just before the
    /// request, from which change→Job latency is measured.
    pub async fn merge_patch<K>(&self, name: &str, patch: Value) -> Outcome<Instant>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        <K as Resource>::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let started = Instant::now();
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(format!("patching {kind} {name} with {patch}"))?;
        Ok(started)
    }

    /// Deletes an object in the run's namespace; returns the instant just before the request.
    pub async fn delete<K>(&self, name: &str) -> Outcome<Instant>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        <K as Resource>::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let started = Instant::now();
        self.api::<K>()
            .delete(name, &DeleteParams::background())
            .await
            .context(format!("deleting {kind} {name}"))?;
        Ok(started)
    }

    /// Sets one entry of a ConfigMap's data.
    pub async fn set_config(&self, name: &str, key: &str, value: &str) -> Outcome<Instant> {
        self.merge_patch::<k8s_openapi::api::core::v1::ConfigMap>(
            name,
            serde_json::json!({ "data": { key: value } }),
        )
        .await
    }

    /// A ChangeTriggeredJob of the run's namespace as it is now.
    pub async fn ctj(&self, name: &str) -> Outcome<ChangeTriggeredJob> {
        self.api::<ChangeTriggeredJob>()
            .get(name)
            .await
            .context(format!("reading ChangeTriggeredJob {name}"))
    }

    /// Waits until a ChangeTriggeredJob of the run's namespace satisfies `ready`.
    pub async fn wait_ctj<F>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        ready: F,
    ) -> Outcome<ChangeTriggeredJob>
    where
        F: Fn(&ChangeTriggeredJob) -> bool,
    {
        let ready = &ready;
        wait_for(
            &format!("ChangeTriggeredJob {name}: {what}"),
            timeout,
            POLL,
            || async move {
                let ctj = self.ctj(name).await?;
                Ok(if ready(&ctj) {
                    Poll::Ready(ctj)
                } else {
                    Poll::Pending(summary(&ctj))
                })
            },
        )
        .await
    }

    /// Waits until the operator has fingerprinted all `count` watched objects (its first
    /// observation, which sets the baselines).
    pub async fn wait_observed(&self, name: &str, count: usize) -> Outcome<ChangeTriggeredJob> {
        self.wait_ctj(
            name,
            &format!("fingerprints of all {count} watched object(s) in status.resourceHashes"),
            FIRST_OBSERVATION_TIMEOUT,
            |c| observed(c, count),
        )
        .await
    }

    /// Creates a ChangeTriggeredJob and waits for the operator's first observation of all its
    /// watched objects; only after that does changing them count as a change.
    ///
    /// Creating a ChangeTriggeredJob never runs a Job, so any Job found then fails the
    /// scenario (and could not be mistaken later for the Job of the scenario's first change).
    pub async fn create_observed(&self, ctj: &ChangeTriggeredJob) -> Outcome<ChangeTriggeredJob> {
        let name = ctj.name_any();
        self.create_ctj(ctj).await?;
        let observed = self.wait_observed(&name, ctj.spec.resources.len()).await?;
        let existing = list_jobs(&self.api(), &name).await?;
        if !existing.is_empty() {
            crate::fail!(
                "creating ChangeTriggeredJob {name} must not run a Job, but it ran {:?}",
                names(&existing)
            );
        }
        Ok(observed)
    }

    /// Tracks the Jobs of a ChangeTriggeredJob in the run's namespace.
    pub fn jobs(self: &Arc<Self>, ctj: &str) -> JobTracker {
        JobTracker::new(self.clone(), self.ns(), ctj)
    }

    /// Events (events.k8s.io/v1) about a ChangeTriggeredJob with this reason.
    pub async fn events(&self, namespace: &str, ctj: &str, reason: &str) -> Outcome<Vec<Event>> {
        Ok(self
            .all_events(namespace, ctj)
            .await?
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect())
    }

    async fn all_events(&self, namespace: &str, ctj: &str) -> Outcome<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client(), namespace);
        let mut events: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .context(format!("listing Events in {namespace}"))?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kube_changejob::api::KIND)
                        && r.name.as_deref() == Some(ctj)
                })
            })
            .collect();
        events.sort_by_key(|e| e.creation_timestamp().map(|t| t.0));
        Ok(events)
    }

    /// What to print when the scenario fails: status, Jobs and Events of its
    /// ChangeTriggeredJobs, and the operator's log lines about them.
    pub async fn dump(&self) -> String {
        let tracked = self.ctjs.lock().map(|c| c.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for (namespace, name) in &tracked {
            let api: Api<ChangeTriggeredJob> = Api::namespaced(self.client(), namespace);
            match api.get_opt(name).await {
                Ok(Some(ctj)) => out.push(format!(
                    "--- ChangeTriggeredJob {namespace}/{name} status:\n{}",
                    serde_json::to_string_pretty(&ctj.status)
                        .unwrap_or_else(|e| format!("(unprintable: {e})"))
                )),
                Ok(None) => out.push(format!("--- ChangeTriggeredJob {namespace}/{name}: gone")),
                Err(e) => out.push(format!(
                    "--- ChangeTriggeredJob {namespace}/{name}: cannot read: {e}"
                )),
            }
            let jobs_api = Api::namespaced(self.client(), namespace);
            match list_jobs(&jobs_api, name).await {
                Ok(jobs) => {
                    out.push(format!("--- Jobs of {name}: {:?}", names(&jobs)));
                    for job in &jobs {
                        let conditions = job
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.clone())
                            .unwrap_or_default()
                            .iter()
                            .map(|c| format!("{}={}", c.type_, c.status))
                            .collect::<Vec<_>>();
                        out.push(format!(
                            "    {} sequence={:?} created={:?} annotations={:?} conditions={conditions:?}",
                            job.name_any(),
                            sequence(job),
                            job.creation_timestamp().map(|t| t.0.to_string()),
                            job.metadata.annotations.clone().unwrap_or_default(),
                        ));
                    }
                }
                Err(e) => out.push(format!("--- Jobs of {name}: {e}")),
            }
            match self.all_events(namespace, name).await {
                Ok(events) => {
                    out.push(format!("--- Events about {name}:"));
                    for e in events {
                        out.push(format!(
                            "    {} {}: {}",
                            e.type_.unwrap_or_default(),
                            e.reason.unwrap_or_default(),
                            e.note.unwrap_or_default()
                        ));
                    }
                }
                Err(e) => out.push(format!("--- Events about {name}: {e}")),
            }
        }
        let needles: Vec<String> = tracked.iter().map(|(_, n)| n.clone()).collect();
        out.push(self.env.operators.log_tails(&needles, 30));
        if self.env.operators.is_local() {
            out.push(self.env.operators.log_tails(&[], 15));
        }
        out.join("\n")
    }

    /// Sleeps, saying why in the trace.
    pub async fn sleep(&self, d: Duration, why: &str) {
        self.trace(&format!("waiting {} {why}", secs(d)));
        tokio::time::sleep(d).await;
    }
}
