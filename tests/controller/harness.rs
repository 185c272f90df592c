//! Runs the real reconcile loop against the in-process fake API, on tokio's paused clock: the
//! reconcile loop's clock follows tokio time, so cooldowns pass instantly and exactly.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec};
use kube::CustomResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use kube_changejob::api::{
    ChangeTriggeredJob, ChangeTriggeredJobSpec, ChangeTriggeredJobStatus, JobTemplate, OWNER_LABEL,
    ResourceReference, TriggerCondition,
};
use kube_changejob::config::Settings;
use kube_changejob::controller::{self, Clock, Dependencies};
use kube_changejob::discovery::DiscoveryCache;
use kube_changejob::metrics::Metrics;

use crate::support::fake_api::{FakeApi, FakeError, Matcher};

pub const NS: &str = "default";
pub const OPERATOR_NS: &str = "kube-changejob-system";

pub struct Harness {
    pub fake: FakeApi,
    pub client: kube::Client,
    pub metrics: Metrics,
    pub settings: Arc<Settings>,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    origin_wall: Timestamp,
    origin: tokio::time::Instant,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Settings)) -> Harness {
        let fake = FakeApi::new();
        fake.create_namespace(OPERATOR_NS);
        fake.create_namespace("prod");
        fake.install_crd(&ChangeTriggeredJob::crd());
        let mut settings = Settings {
            operator_namespace: OPERATOR_NS.into(),
            pod_name: "test-replica".into(),
            ..Settings::default()
        };
        edit(&mut settings);
        let origin_wall = Timestamp::from_second(1_800_000_000).expect("timestamp");
        fake.set_time(origin_wall);
        let (leader, _) = watch::channel(true);
        let mut h = Harness {
            client: fake.client(),
            fake,
            metrics: Metrics::new().expect("metrics"),
            settings: Arc::new(settings),
            leader,
            shutdown: CancellationToken::new(),
            task: None,
            origin_wall,
            origin: tokio::time::Instant::now(),
        };
        h.launch();
        h
    }

    fn clock(&self) -> Clock {
        let (wall, origin) = (self.origin_wall, self.origin);
        Arc::new(move || {
            let elapsed = jiff::SignedDuration::try_from(tokio::time::Instant::now() - origin)
                .unwrap_or_default();
            wall.checked_add(elapsed).unwrap_or(wall)
        })
    }

    fn launch(&mut self) {
        let deps = Dependencies {
            clock: self.clock(),
            client: self.client.clone(),
            discovery: Arc::new(DiscoveryCache::new(
                self.client.clone(),
                Duration::from_secs(1),
                Duration::from_secs(600),
            )),
            metrics: self.metrics.clone(),
            settings: self.settings.clone(),
        };
        self.shutdown = CancellationToken::new();
        let rx = self.leader.subscribe();
        self.task = Some(tokio::spawn(controller::run(
            deps,
            rx,
            self.shutdown.clone(),
        )));
    }

    /// Stops the loop, as a process exit would; in-memory state is lost.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops and starts the loop again (a restart of the operator).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.send_replace(leading);
    }

    pub async fn create_ctj(&self, ctj: &ChangeTriggeredJob) {
        let api: Api<ChangeTriggeredJob> = Api::namespaced(
            self.client.clone(),
            ctj.metadata.namespace.as_deref().unwrap_or(NS),
        );
        api.create(&PostParams::default(), ctj)
            .await
            .expect("create CTJ");
    }

    pub async fn patch_ctj(&self, name: &str, patch: Value) {
        let api: Api<ChangeTriggeredJob> = Api::namespaced(self.client.clone(), NS);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch CTJ");
    }

    pub async fn delete_ctj(&self, name: &str) {
        let api: Api<ChangeTriggeredJob> = Api::namespaced(self.client.clone(), NS);
        api.delete(name, &Default::default())
            .await
            .expect("delete CTJ");
    }

    pub fn ctj(&self, name: &str) -> Option<ChangeTriggeredJob> {
        self.fake.get_object::<ChangeTriggeredJob>(Some(NS), name)
    }

    pub fn status(&self, name: &str) -> ChangeTriggeredJobStatus {
        self.ctj(name).and_then(|c| c.status).unwrap_or_default()
    }

    pub fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        self.status(name)
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason, c.message))
    }

    /// Jobs labelled as owned by `ctj`, oldest trigger first.
    pub fn jobs(&self, ctj: &str) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .fake
            .list_objects::<Job>(Some(NS))
            .into_iter()
            .filter(|j| {
                j.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(OWNER_LABEL))
                    .map(String::as_str)
                    == Some(ctj)
            })
            .collect();
        jobs.sort_by_key(|j| {
            j.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("changejob.dev/trigger-sequence"))
                .and_then(|s| s.parse::<i64>().ok())
        });
        jobs
    }

    /// Writes a ConfigMap as another actor would (creating it if needed).
    pub fn put_configmap(&self, name: &str, data: &[(&str, &str)]) {
        self.fake.put(&configmap(NS, name, data));
    }

    pub async fn patch_configmap(&self, name: &str, patch: Value) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), NS);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch configmap");
    }

    /// Waits (in tokio time) until `check` holds, or fails the test with `what`.
    pub async fn eventually<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check().await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `ctj` has exactly `n` Jobs and returns how long that took.
    pub async fn expect_jobs(&self, ctj: &str, n: usize, timeout: Duration) -> Duration {
        let start = tokio::time::Instant::now();
        self.eventually(&format!("{ctj} to have {n} Job(s)"), timeout, || async {
            self.jobs(ctj).len() == n
        })
        .await;
        start.elapsed()
    }

    /// Lets `d` of tokio time pass (reconciles run meanwhile).
    /// The API server refuses every connection for `outage`, then comes back with an empty
    /// watch history (as after a control-plane restart); every open watch is dropped.
    pub async fn refuse_connections_for(&self, outage: Duration) {
        self.fake
            .fail_always(Matcher::any(), FakeError::connection("connection refused"));
        self.fake.close_watches();
        self.wait(outage).await;
        self.fake.compact();
        self.fake.clear_faults();
    }

    pub async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Waits until the CTJ's status has recorded every watched object once.
    pub async fn observed(&self, ctj: &str, objects: usize) {
        self.eventually(
            &format!("{ctj} to record {objects} object(s)"),
            Duration::from_secs(10),
            || async { self.status(ctj).resource_hashes.len() == objects },
        )
        .await;
    }
}

pub fn configmap(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

pub fn resource(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> ResourceReference {
    ResourceReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.map(str::to_string),
        selector: None,
        fields: None,
    }
}

pub fn cm(name: &str) -> ResourceReference {
    resource("v1", "ConfigMap", Some(NS), name)
}

pub fn job_template() -> JobTemplateSpec {
    JobTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([(
                "from-template".to_string(),
                "yes".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "template-note".to_string(),
                "kept".to_string(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "run".into(),
                        image: Some("busybox:1.36".into()),
                        command: Some(vec!["true".into()]),
                        ..Container::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
    }
}

/// A CTJ in the test namespace; adjust the returned value's spec as needed.
pub fn ctj(name: &str, resources: Vec<ResourceReference>) -> ChangeTriggeredJob {
    let mut ctj = ChangeTriggeredJob::new(
        name,
        ChangeTriggeredJobSpec {
            job_template: JobTemplate::new(&job_template()).expect("the test template encodes"),
            resources,
            condition: Some(TriggerCondition::Any),
            cooldown: Some("0s".into()),
            history: Some(5),
            suspend: None,
            concurrency_policy: None,
        },
    );
    ctj.metadata.namespace = Some(NS.into());
    ctj.metadata.labels = Some(BTreeMap::from([(
        "ctj-own-label".to_string(),
        "not-copied".to_string(),
    )]));
    ctj
}

pub fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

pub fn merge(data: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({ "data": map })
}
