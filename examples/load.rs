//! Load generator for kube-changejob: creates ConfigMaps and ChangeTriggeredJobs watching them,
//! measures how long the operator takes to observe them all, then changes the ConfigMaps at a
//! steady rate and measures, for every change, the time from the change's write returning to
//! its Job appearing. It talks to whatever API server `KUBECONFIG` names — the fake
//! (`examples/fake_apiserver.rs`, driven by `hack/measure-operator.sh`) or a real cluster where
//! the operator is installed.
//!
//! ```text
//! cargo run --release --example load -- --namespace changejob-load \
//!     --configmaps 100 --ctjs 50 --objects-per-ctj 2 --changes 200 --rate 10
//! ```
//!
//! Jobs are timestamped by a watch on Jobs (not by polling), so a latency is the change's write
//! returning → the watch event that shows its Job. Against the fake API server it also reports
//! the latency as the server saw it: the change's PATCH arriving → its Job's create arriving
//! (from the fake's write log, `GET /__fake/writes`); elsewhere that figure is null. Every change must produce exactly one Job
//! per ChangeTriggeredJob watching the changed ConfigMap: a missing or an extra Job (or a
//! `triggerSequence` that disagrees) fails the run with exit code 1, after the report.
//!
//! The report goes to stderr as text and, with `--json FILE`, as JSON for scripts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use http::HeaderValue;
use http::header::USER_AGENT;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Config, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use kube_changejob::api::{
    CHANGED_RESOURCES_ANNOTATION, ChangeTriggeredJob, OWNER_LABEL, TRIGGER_SEQUENCE_ANNOTATION,
};

/// Label on everything the load generator creates.
const RUN_LABEL: &str = "load.changejob.dev/run";

#[derive(Parser, Debug)]
#[command(about = "Load generator and change→Job latency probe for kube-changejob")]
struct Args {
    /// Namespace for the ConfigMaps and ChangeTriggeredJobs (created if missing); with
    /// `--namespaces` above 1, the prefix of the namespaces.
    #[arg(long, default_value = "changejob-load")]
    namespace: String,
    /// Spread everything over this many namespaces (NAMESPACE-0, NAMESPACE-1, ...): CTJ j and
    /// the ConfigMaps it watches live in namespace j mod S; --configmaps must be a multiple.
    #[arg(long, default_value_t = 1)]
    namespaces: usize,
    /// Prefix of the names of everything created (lets several runs share a namespace).
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Watched ConfigMaps to create (N).
    #[arg(long, default_value_t = 100)]
    configmaps: usize,
    /// Size of each watched ConfigMap's data, e.g. 512, 10Ki, 1Mi (S).
    #[arg(long, default_value = "1Ki", value_parser = parse_size)]
    configmap_size: usize,
    /// ChangeTriggeredJobs to create (C).
    #[arg(long, default_value_t = 50)]
    ctjs: usize,
    /// ConfigMaps each ChangeTriggeredJob watches (K). CTJ j watches ConfigMaps
    /// j·K … j·K+K−1 (mod N), so C·K > N makes CTJs share objects.
    #[arg(long, default_value_t = 2)]
    objects_per_ctj: usize,
    /// Changes to make after the first observation (P); 0 only sets up and observes.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Changes per second (R).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// ConfigMaps nobody watches to create in the namespace first, e.g. to show that
    /// metadata-only watches do not hold their content.
    #[arg(long, default_value_t = 0)]
    unrelated: usize,
    /// Size of each unrelated ConfigMap's data.
    #[arg(long, default_value = "50Ki", value_parser = parse_size)]
    unrelated_size: usize,
    /// Create the ConfigMaps only (watched and unrelated), no ChangeTriggeredJobs.
    #[arg(long)]
    configmaps_only: bool,
    /// Reuse ConfigMaps of an earlier run with the same prefix instead of creating them.
    #[arg(long)]
    reuse_configmaps: bool,
    /// Writes in flight at once while creating objects.
    #[arg(long, default_value_t = 16)]
    create_concurrency: usize,
    /// Image of the Jobs' container.
    #[arg(long, default_value = "busybox:1.36")]
    job_image: String,
    /// Server-side apply the ChangeTriggeredJob CRD first and wait until it is served.
    #[arg(long)]
    apply_crd: bool,
    /// Longest wait for the first observation of every ChangeTriggeredJob, in seconds.
    #[arg(long, default_value_t = 600)]
    observe_timeout: u64,
    /// Longest wait for one change's Job(s), in seconds.
    #[arg(long, default_value_t = 30)]
    job_timeout: u64,
    /// After the last Job, keep watching this many seconds for extra (duplicate) Jobs.
    #[arg(long, default_value_t = 5)]
    quiet_period: u64,
    /// Delete the ChangeTriggeredJobs (and so their Jobs) and ConfigMaps created, at the end.
    #[arg(long)]
    cleanup: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: usize = digits.parse().map_err(|_| format!("bad size {text:?}"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "Ki" | "KiB" | "K" | "KB" | "k" => 1024,
        "Mi" | "MiB" | "M" | "MB" => 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?} (use Ki or Mi)")),
    };
    Ok(n * factor)
}

/// Latency figures in milliseconds.
fn distribution(samples: &mut [f64]) -> Value {
    samples.sort_by(f64::total_cmp);
    let pick = |p: f64| -> Value {
        if samples.is_empty() {
            return Value::Null;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        json!(round(samples[rank.clamp(1, samples.len()) - 1]))
    };
    json!({
        "count": samples.len(),
        "min_ms": pick(0.0),
        "p50_ms": pick(50.0),
        "p90_ms": pick(90.0),
        "p95_ms": pick(95.0),
        "p99_ms": pick(99.0),
        "max_ms": pick(100.0),
    })
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1000.0)
}

/// One Job as the Job watch first saw it.
#[derive(Clone, Debug)]
struct SeenJob {
    name: String,
    owner: String,
    sequence: Option<i64>,
    changed: String,
    at: Instant,
}

/// Jobs seen by the watch, by owner, in order of appearance.
#[derive(Default)]
struct JobLog {
    synced: bool,
    names: BTreeSet<String>,
    by_owner: HashMap<String, Vec<SeenJob>>,
}

struct Jobs {
    log: Mutex<JobLog>,
    changed: Notify,
}

impl Jobs {
    fn with<T>(&self, f: impl FnOnce(&mut JobLog) -> T) -> T {
        f(&mut self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn count(&self, owner: &str) -> usize {
        self.with(|l| l.by_owner.get(owner).map_or(0, Vec::len))
    }

    /// Waits until `done` holds or `timeout` passes; returns whether it held.
    async fn wait(&self, timeout: Duration, mut done: impl FnMut(&JobLog) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.with(|l| done(l)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.with(|l| done(l));
            }
        }
    }
}

/// Watches the run's Jobs (those that carry the owner label) and timestamps each new one.
fn watch_jobs(api: Api<Job>, prefix: &str) -> Arc<Jobs> {
    let jobs = Arc::new(Jobs {
        log: Mutex::default(),
        changed: Notify::new(),
    });
    let shared = jobs.clone();
    let prefix = format!("{prefix}-ctj-");
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().labels(OWNER_LABEL));
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let at = Instant::now();
            match event {
                Ok(Event::Apply(job) | Event::InitApply(job)) => {
                    let owner = job.labels().get(OWNER_LABEL).cloned().unwrap_or_default();
                    if !owner.starts_with(&prefix) {
                        continue;
                    }
                    let name = job.name_any();
                    shared.with(|l| {
                        if l.names.insert(name.clone()) {
                            let annotations = job.annotations();
                            l.by_owner.entry(owner.clone()).or_default().push(SeenJob {
                                name,
                                owner,
                                sequence: annotations
                                    .get(TRIGGER_SEQUENCE_ANNOTATION)
                                    .and_then(|s| s.parse().ok()),
                                changed: annotations
                                    .get(CHANGED_RESOURCES_ANNOTATION)
                                    .cloned()
                                    .unwrap_or_default(),
                                at,
                            });
                        }
                    });
                    shared.changed.notify_waiters();
                }
                Ok(Event::InitDone) => {
                    shared.with(|l| l.synced = true);
                    shared.changed.notify_waiters();
                }
                Ok(Event::Init | Event::Delete(_)) => {}
                Err(e) => eprintln!("load: Job watch error (it retries): {e}"),
            }
        }
    });
    jobs
}

fn cm_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-cm-{i}")
}

fn ctj_name(prefix: &str, j: usize) -> String {
    format!("{prefix}-ctj-{j}")
}

/// The namespace of everything numbered `i` (CTJ or ConfigMap).
fn namespace_of(args: &Args, i: usize) -> String {
    if args.namespaces <= 1 {
        args.namespace.clone()
    } else {
        format!("{}-{}", args.namespace, i % args.namespaces)
    }
}

/// Every namespace the run uses.
fn all_namespaces(args: &Args) -> Vec<String> {
    (0..args.namespaces.max(1))
        .map(|s| namespace_of(args, s))
        .collect()
}

/// The ConfigMaps CTJ `j` watches: in its own namespace, consecutive ones of that
/// namespace's share of the pool (wrapping around), so C·K > N makes CTJs share objects.
fn watched_by(args: &Args, j: usize) -> Vec<usize> {
    let spread = args.namespaces.max(1);
    let per_namespace = args.configmaps / spread;
    let (home, local) = (j % spread, j / spread);
    (0..args.objects_per_ctj)
        .map(|k| home + spread * ((local * args.objects_per_ctj + k) % per_namespace))
        .collect()
}

/// An API of a namespaced kind in `namespace`, or across all namespaces of the run.
fn api_in<K>(client: &Client, args: &Args, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None if args.namespaces <= 1 => Api::namespaced(client.clone(), &args.namespace),
        None => Api::all(client.clone()),
    }
}

fn configmap(name: &str, namespace: &str, run: &str, size: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {RUN_LABEL: run}},
        "data": {"payload": "x".repeat(size), "version": "0"},
    }))
    .unwrap_or_default()
}

fn change_triggered_job(args: &Args, j: usize, run: &str) -> anyhow::Result<ChangeTriggeredJob> {
    let resources: Vec<Value> = watched_by(args, j)
        .into_iter()
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": cm_name(&args.prefix, i),
                   "namespace": namespace_of(args, i)})
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "triggers.changejob.dev/v1alpha",
        "kind": "ChangeTriggeredJob",
        "metadata": {"name": ctj_name(&args.prefix, j), "namespace": namespace_of(args, j),
                     "labels": {RUN_LABEL: run}},
        "spec": {
            "resources": resources,
            "condition": "Any",
            "cooldown": "0s",
            "history": 2,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "load", "image": args.job_image,
                                "command": ["sh", "-c", "true"]}],
            }}}},
        },
    }))?)
}

/// Creates `objects`, each in its own namespace, with at most `concurrency` writes in flight;
/// AlreadyExists is an error (stale objects of an earlier run would skew the figures).
async fn create_all<K>(client: &Client, objects: Vec<K>, concurrency: usize) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    futures::stream::iter(objects)
        .map(|o| async move {
            let api: Api<K> = Api::namespaced(client.clone(), &o.namespace().unwrap_or_default());
            api.create(&PostParams::default(), &o)
                .await
                .with_context(|| format!("creating {}", o.name_any()))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn apply_crd(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = ChangeTriggeredJob::crd();
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("kube-changejob-load").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the ChangeTriggeredJob CRD")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd = api.get(&name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("CRD {name} not Established after 60s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ensure_namespace(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).context(format!("creating namespace {namespace}")),
    }
}

fn observed(ctj: &ChangeTriggeredJob, count: usize) -> bool {
    ctj.status.as_ref().is_some_and(|s| {
        s.resource_hashes.len() == count && s.resource_hashes.iter().all(|h| !h.hash.is_empty())
    })
}

/// Waits, through a watch on ChangeTriggeredJobs, until every name in `names` shows the first
/// observation of all its objects; returns when each was first seen observed.
async fn wait_observed(
    api: Api<ChangeTriggeredJob>,
    names: BTreeSet<String>,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, Instant>> {
    let mut done: HashMap<String, Instant> = HashMap::new();
    let stream = watcher(api, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let deadline = Instant::now() + timeout;
    while done.len() < names.len() {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(Some(event)) = next else {
            bail!(
                "only {} of {} ChangeTriggeredJobs observed all their objects within {}s",
                done.len(),
                names.len(),
                timeout.as_secs()
            );
        };
        let at = Instant::now();
        match event {
            Ok(Event::Apply(c) | Event::InitApply(c)) => {
                let name = c.name_any();
                if names.contains(&name) && observed(&c, count) {
                    done.entry(name).or_insert(at);
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("load: ChangeTriggeredJob watch error (it retries): {e}"),
        }
    }
    Ok(done)
}

/// One change: which ConfigMap, which CTJs must each create exactly one Job for it (with
/// which trigger sequence number), and when its write returned.
struct Change {
    configmap: String,
    /// The `data.version` the change wrote (tells apart changes of one ConfigMap).
    version: String,
    expected: Vec<(String, usize)>,
    written: Instant,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(report) => {
            let failed = report["problems"].as_array().is_some_and(|p| !p.is_empty());
            if let Some(path) = &args.json
                && let Err(e) = std::fs::write(path, format!("{report:#}\n"))
            {
                eprintln!("load: writing {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
            if failed {
                eprintln!("load: FAILED — see problems above");
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("load: error: {e:#}");
            if let Some(path) = &args.json {
                let _ = std::fs::write(path, format!("{:#}\n", json!({"error": format!("{e:#}")})));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    if args.configmaps == 0 || args.objects_per_ctj == 0 || args.objects_per_ctj > args.configmaps {
        bail!("need 1 ≤ --objects-per-ctj ≤ --configmaps");
    }
    if args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let mut config = Config::infer().await.context("loading KUBECONFIG")?;
    // Tells the fake's request statistics (and an audit log) apart from the operator's.
    config.headers.push((
        USER_AGENT,
        HeaderValue::from_static(concat!("kube-changejob-load/", env!("CARGO_PKG_VERSION"))),
    ));
    let client = Client::try_from(config).context("building the client")?;
    let ns = args.namespace.as_str();
    let run_id = args.prefix.clone();
    let mut report = json!({
        "namespace": ns,
        "namespaces": args.namespaces,
        "configmaps": args.configmaps,
        "configmap_size": args.configmap_size,
        "ctjs": if args.configmaps_only { 0 } else { args.ctjs },
        "objects_per_ctj": args.objects_per_ctj,
        "unrelated": args.unrelated,
        "unrelated_size": args.unrelated_size,
    });
    let mut problems: Vec<String> = Vec::new();

    if args.apply_crd {
        apply_crd(&client).await?;
    }
    if args.namespaces == 0 || !args.configmaps.is_multiple_of(args.namespaces) {
        bail!("--configmaps must be a positive multiple of --namespaces");
    }
    if args.objects_per_ctj > args.configmaps / args.namespaces {
        bail!("need --objects-per-ctj ≤ --configmaps / --namespaces");
    }
    futures::stream::iter(all_namespaces(args))
        .map(|ns| {
            let client = client.clone();
            async move { ensure_namespace(&client, &ns).await }
        })
        .buffer_unordered(args.create_concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let ctjs: Api<ChangeTriggeredJob> = api_in(&client, args, None);

    if args.unrelated > 0 {
        let started = Instant::now();
        let objects = (0..args.unrelated)
            .map(|i| {
                configmap(
                    &format!("{}-unrelated-{i}", args.prefix),
                    &namespace_of(args, i),
                    &run_id,
                    args.unrelated_size,
                )
            })
            .collect();
        create_all(&client, objects, args.create_concurrency).await?;
        eprintln!(
            "load: created {} unrelated ConfigMaps of {} bytes in {:.1}s",
            args.unrelated,
            args.unrelated_size,
            started.elapsed().as_secs_f64()
        );
        report["unrelated_create_s"] = json!(round(started.elapsed().as_secs_f64()));
    }
    if !args.reuse_configmaps {
        let started = Instant::now();
        let objects = (0..args.configmaps)
            .map(|i| {
                configmap(
                    &cm_name(&args.prefix, i),
                    &namespace_of(args, i),
                    &run_id,
                    args.configmap_size,
                )
            })
            .collect();
        create_all(&client, objects, args.create_concurrency).await?;
        eprintln!(
            "load: created {} ConfigMaps of {} bytes in {:.1}s",
            args.configmaps,
            args.configmap_size,
            started.elapsed().as_secs_f64()
        );
        report["configmaps_create_s"] = json!(round(started.elapsed().as_secs_f64()));
    }
    if args.configmaps_only {
        report["problems"] = json!(problems);
        return Ok(report);
    }

    // Jobs are watched from before the CTJs exist: creating a CTJ must not run a Job.
    let jobs = watch_jobs(api_in(&client, args, None), &args.prefix);
    if !jobs.wait(Duration::from_secs(60), |l| l.synced).await {
        bail!("the Job watch did not sync within 60s");
    }

    let names: BTreeSet<String> = (0..args.ctjs).map(|j| ctj_name(&args.prefix, j)).collect();
    let objects = (0..args.ctjs)
        .map(|j| change_triggered_job(args, j, &run_id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let observing = tokio::spawn(wait_observed(
        ctjs.clone(),
        names.clone(),
        args.objects_per_ctj,
        Duration::from_secs(args.observe_timeout),
    ));
    create_all(&client, objects, args.create_concurrency).await?;
    let created = started.elapsed();
    let observed_at = observing.await??;
    let all_observed = observed_at
        .values()
        .max()
        .map_or(Duration::ZERO, |t| t.duration_since(started));
    eprintln!(
        "load: created {} ChangeTriggeredJobs in {:.1}s; all observed {:.2}s after the first create",
        args.ctjs,
        created.as_secs_f64(),
        all_observed.as_secs_f64()
    );
    report["ctjs_create_s"] = json!(round(created.as_secs_f64()));
    report["time_to_observe_all_s"] = json!(round(all_observed.as_secs_f64()));
    let early: Vec<String> = jobs.with(|l| l.names.iter().cloned().collect());
    if !early.is_empty() {
        problems.push(format!(
            "creating ChangeTriggeredJobs must not run Jobs, but {} ran: {early:?}",
            early.len()
        ));
    }

    if args.changes > 0 {
        let outcome = change_phase(args, &client, &ctjs, &jobs, &mut problems).await?;
        report["changes"] = outcome;
    }

    report["problems"] = json!(problems);
    for p in &problems {
        eprintln!("load: PROBLEM: {p}");
    }
    if args.cleanup {
        let selector = ListParams::default().labels(&format!("{RUN_LABEL}={run_id}"));
        let background = DeleteParams::background();
        for ns in all_namespaces(args) {
            let ctjs: Api<ChangeTriggeredJob> = api_in(&client, args, Some(&ns));
            let cms: Api<ConfigMap> = api_in(&client, args, Some(&ns));
            ctjs.delete_collection(&background, &selector).await?;
            cms.delete_collection(&background, &selector).await?;
        }
        eprintln!("load: deleted what this run created");
    }
    Ok(report)
}

/// Makes the changes at the requested rate and checks that each produces exactly its Jobs.
async fn change_phase(
    args: &Args,
    client: &Client,
    ctjs: &Api<ChangeTriggeredJob>,
    jobs: &Jobs,
    problems: &mut Vec<String>,
) -> anyhow::Result<Value> {
    // Which CTJs watch each ConfigMap.
    let mut watchers: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for j in 0..args.ctjs {
        for i in watched_by(args, j) {
            watchers
                .entry(i)
                .or_default()
                .push(ctj_name(&args.prefix, j));
        }
    }
    let baseline: HashMap<String, usize> = (0..args.ctjs)
        .map(|j| {
            let name = ctj_name(&args.prefix, j);
            let n = jobs.count(&name);
            (name, n)
        })
        .collect();
    let mut expected_count = baseline.clone();
    let mut changes: Vec<Change> = Vec::with_capacity(args.changes);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let job_timeout = Duration::from_secs(args.job_timeout);
    let mut delayed = 0usize;
    let first = Instant::now();
    for n in 0..args.changes {
        // Spread over the CTJs: the n-th change goes to CTJ n mod C, alternating its objects.
        let j = n % args.ctjs;
        let objects = watched_by(args, j);
        let i = objects[(n / args.ctjs) % objects.len()];
        let affected = watchers.get(&i).cloned().unwrap_or_default();
        tokio::time::sleep_until(first + interval.mul_f64(n as f64)).await;
        // Two changes in flight for one CTJ may rightly become one Job; keep them apart so that
        // "one Job per change" is a fair check.
        let ready = |l: &JobLog| {
            affected.iter().all(|c| {
                l.by_owner.get(c).map_or(0, Vec::len) >= expected_count.get(c).copied().unwrap_or(0)
            })
        };
        if !jobs.with(|l| ready(l)) {
            delayed += 1;
            if !jobs.wait(job_timeout, ready).await {
                problems.push(format!(
                    "change {n}: an earlier change of a CTJ watching {} got no Job within {}s",
                    cm_name(&args.prefix, i),
                    args.job_timeout
                ));
            }
        }
        let name = cm_name(&args.prefix, i);
        let version = (n + 1).to_string();
        let patch = json!({"data": {"version": version}});
        let cms: Api<ConfigMap> = api_in(client, args, Some(&namespace_of(args, i)));
        cms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("changing ConfigMap {name}"))?;
        let written = Instant::now();
        let mut expected = Vec::with_capacity(affected.len());
        for c in &affected {
            let e = expected_count.entry(c.clone()).or_default();
            *e += 1;
            expected.push((c.clone(), *e));
        }
        changes.push(Change {
            configmap: name,
            version,
            expected,
            written,
        });
    }
    let last_write = Instant::now();
    let writing = last_write.duration_since(first);
    let all_arrived = jobs
        .wait(job_timeout, |l| {
            expected_count
                .iter()
                .all(|(c, n)| l.by_owner.get(c).map_or(0, Vec::len) >= *n)
        })
        .await;
    // Extra Jobs (duplicates) would appear after the expected ones.
    tokio::time::sleep(Duration::from_secs(args.quiet_period)).await;

    let seen: HashMap<String, Vec<SeenJob>> = jobs.with(|l| l.by_owner.clone());
    let mut latencies: Vec<f64> = Vec::new();
    let mut missing = 0usize;
    for (n, change) in changes.iter().enumerate() {
        for (ctj, ordinal) in &change.expected {
            let Some(job) = seen.get(ctj).and_then(|v| v.get(ordinal - 1)) else {
                missing += 1;
                problems.push(format!(
                    "change {n} ({}): no Job from {ctj} (expected its Job #{ordinal})",
                    change.configmap
                ));
                continue;
            };
            let sequence = i64::try_from(*ordinal).unwrap_or(i64::MAX);
            if job.sequence.is_some_and(|s| s != sequence) {
                problems.push(format!(
                    "change {n}: Job {} of {} has trigger sequence {:?}, expected {sequence}",
                    job.name, job.owner, job.sequence
                ));
            }
            if !job.changed.contains(&format!("/{}", change.configmap)) {
                problems.push(format!(
                    "change {n}: Job {} names {:?} as changed, expected ConfigMap {}",
                    job.name, job.changed, change.configmap
                ));
            }
            latencies.push(ms(job.at.saturating_duration_since(change.written)));
        }
    }
    let mut extra = 0usize;
    for (ctj, n) in &expected_count {
        let got = seen.get(ctj).map_or(0, Vec::len);
        if got > *n {
            extra += got - n;
            let names: Vec<&str> = seen[ctj][*n..].iter().map(|j| j.name.as_str()).collect();
            problems.push(format!(
                "{ctj}: {} Job(s) more than changes (duplicates): {names:?}",
                got - n
            ));
        }
    }
    // The operator's own count must agree.
    let list = ctjs.list(&ListParams::default()).await?;
    for ctj in list.items {
        let name = ctj.name_any();
        let Some(want) = expected_count.get(&name) else {
            continue;
        };
        let got = ctj
            .status
            .as_ref()
            .and_then(|s| s.trigger_sequence)
            .unwrap_or(0);
        if usize::try_from(got).ok() != Some(*want) {
            problems.push(format!(
                "{name}: status.triggerSequence is {got}, expected {want}"
            ));
        }
    }
    let jobs_expected: usize = changes.iter().map(|c| c.expected.len()).sum();
    let distribution = distribution(&mut latencies);
    let server = match server_latencies(client, &changes).await {
        Ok((mut samples, unmatched)) => {
            if unmatched > 0 {
                problems.push(format!(
                    "{unmatched} change→Job pair(s) not found in the fake API's write log"
                ));
            }
            let d = self::distribution(&mut samples);
            eprintln!("load: change→Job latency as the API server saw it (ms): {d}");
            d
        }
        Err(e) => {
            eprintln!("load: no server-side timestamps ({e:#}); only the client-side latency");
            Value::Null
        }
    };
    eprintln!(
        "load: {} changes in {:.1}s ({:.1}/s, {} waited for an earlier Job); {} Jobs expected, {} missing, {} extra{}",
        changes.len(),
        writing.as_secs_f64(),
        changes.len() as f64 / writing.as_secs_f64().max(1e-9),
        delayed,
        jobs_expected,
        missing,
        extra,
        if all_arrived {
            ""
        } else {
            " (timed out waiting)"
        }
    );
    eprintln!("load: change→Job latency (ms): {distribution}");
    Ok(json!({
        "count": changes.len(),
        "rate_requested": args.rate,
        "rate_achieved": round(changes.len() as f64 / writing.as_secs_f64().max(1e-9)),
        "waited_for_earlier_job": delayed,
        "jobs_expected": jobs_expected,
        "jobs_missing": missing,
        "jobs_extra": extra,
        "latency": distribution,
        "latency_server": server,
    }))
}

/// Change→Job latency as the fake API server (examples/fake_apiserver.rs) saw it: from the
/// arrival of each change's PATCH of the ConfigMap to the arrival of the POST that created its
/// Job, from the fake's write log (`GET /__fake/writes`). Returns the samples and how many
/// expected pairs the log lacked; an error when the server is not the fake.
async fn server_latencies(
    client: &Client,
    changes: &[Change],
) -> anyhow::Result<(Vec<f64>, usize)> {
    let request = http::Request::get("/__fake/writes?resource=configmaps&resource=jobs")
        .body(Vec::new())
        .context("building the request")?;
    let log: Value = client
        .request(request)
        .await
        .context("GET /__fake/writes")?;
    let text = |v: &Value, path: &[&str]| -> Option<String> {
        let mut v = v;
        for key in path {
            v = v.get(key)?;
        }
        v.as_str().map(str::to_string)
    };
    // First arrival of each change's PATCH, by (ConfigMap, data.version), and of each Job's
    // create, by (owner, trigger sequence).
    let mut patched: HashMap<(String, String), f64> = HashMap::new();
    let mut created: HashMap<(String, String), f64> = HashMap::new();
    for w in log["writes"].as_array().into_iter().flatten() {
        let Some(at) = w["at"].as_f64() else { continue };
        match (w["verb"].as_str(), w["resource"].as_str()) {
            (Some("patch"), Some("configmaps")) => {
                if let (Some(name), Some(version)) =
                    (text(w, &["name"]), text(w, &["body", "data", "version"]))
                {
                    patched.entry((name, version)).or_insert(at);
                }
            }
            (Some("create"), Some("jobs")) => {
                if let (Some(owner), Some(sequence)) = (
                    text(w, &["body", "metadata", "labels", OWNER_LABEL]),
                    text(
                        w,
                        &[
                            "body",
                            "metadata",
                            "annotations",
                            TRIGGER_SEQUENCE_ANNOTATION,
                        ],
                    ),
                ) {
                    created.entry((owner, sequence)).or_insert(at);
                }
            }
            _ => {}
        }
    }
    let mut samples = Vec::new();
    let mut unmatched = 0;
    for change in changes {
        let Some(&from) = patched.get(&(change.configmap.clone(), change.version.clone())) else {
            unmatched += change.expected.len();
            continue;
        };
        for (ctj, ordinal) in &change.expected {
            match created.get(&(ctj.clone(), ordinal.to_string())) {
                Some(&to) => samples.push(round((to - from) * 1000.0)),
                None => unmatched += 1,
            }
        }
    }
    Ok((samples, unmatched))
}
