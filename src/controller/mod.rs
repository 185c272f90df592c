//! The reconcile loop. It runs only while this replica holds the Lease: each leadership term
//! loads the fingerprint key, starts the shared watches and one kube-runtime `Controller` per
//! reconcile scope (all namespaces, or each configured namespace), and is dropped at once when
//! leadership is lost.

mod act;
mod admit;
mod context;
mod error;
mod events;
mod jobs;
pub mod key;
mod observe;
mod observe_set;
mod owned;
mod prime;
mod reconcile;
mod report;
mod resume;
mod round;
mod sets;
mod settled;
mod slim;
pub mod watches;
mod written;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::Api;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use context::{Context, Shared};
pub use error::Error;
pub use reconcile::{FIELD_MANAGER, error_policy, reconcile};

use crate::api::{ChangeTriggeredJob, OWNER_LABEL};
use crate::config::Settings;
use crate::discovery::DiscoveryCache;
use crate::metrics::Metrics;
use watches::{CtjRef, WakeRoutes, WatchHub};

/// The time source of the reconcile loop (tests substitute a controllable one).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// What the reconcile loop needs from the process.
#[derive(Clone)]
pub struct Dependencies {
    /// Time source.
    pub clock: Clock,
    /// API client.
    pub client: Client,
    /// Cached discovery (shared with the webhook).
    pub discovery: Arc<DiscoveryCache>,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Arc<Settings>,
}

/// Runs the reconcile loop whenever `leadership` says this replica leads, until `shutdown`.
pub async fn run(
    deps: Dependencies,
    mut leadership: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    loop {
        // Wait to lead.
        while !*leadership.borrow_and_update() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = leadership.changed() => if changed.is_err() { return },
            }
        }
        info!("leading: starting the reconcile loop");
        let term = shutdown.child_token();
        let lost = async {
            loop {
                if leadership.changed().await.is_err() || !*leadership.borrow_and_update() {
                    return;
                }
            }
        };
        tokio::select! {
            () = run_term(deps.clone(), term.clone()) => {
                term.cancel();
                deps.metrics.ctj_conditions.clear();
                if shutdown.is_cancelled() {
                    return;
                }
                // The term ended by itself (it only does on persistent setup failures): retry.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            () = lost => {
                // Dropping the term's future cancels in-flight reconciles immediately.
                term.cancel();
                // The new leader reports the CTJs' conditions from now on.
                deps.metrics.ctj_conditions.clear();
                warn!("lost leadership: reconcile loop stopped");
            }
            () = shutdown.cancelled() => {
                term.cancel();
                info!("shutting down: reconcile loop stopped");
                return;
            }
        }
    }
}

/// One leadership term.
async fn run_term(deps: Dependencies, term: CancellationToken) {
    let settings = deps.settings.clone();
    let key = loop {
        match key::load_or_create(
            &deps.client,
            &settings.operator_namespace,
            &settings.fingerprint_key_secret,
        )
        .await
        {
            Ok(key) => break key,
            Err(e) => {
                error!(error = %e, "cannot load the fingerprint key; retrying in 5s");
                tokio::select! {
                    () = term.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    info!(key_id = key.id(), "fingerprint key loaded");

    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut routes = WakeRoutes::default();
    let mut receivers = Vec::new();
    for scope in &scopes {
        let (tx, rx) = mpsc::unbounded_channel::<CtjRef>();
        routes.add(scope.clone(), tx);
        receivers.push(rx);
    }
    let hub = WatchHub::new(deps.client.clone(), routes, term.clone())
        .relist_every(settings.relist_interval)
        .cluster_watch_past(usize::try_from(settings.cluster_watch_threshold).unwrap_or(usize::MAX))
        .with_request_rate(settings.api_qps, settings.poll_interval);
    tokio::spawn(hub.clone().reobserve_while_broken());
    let recorder = events::EventPublisher::new(deps.client.clone(), &settings.pod_name);
    let shared = Arc::new(Shared::new(
        deps.client.clone(),
        deps.discovery.clone(),
        deps.metrics.clone(),
        recorder,
        settings.clone(),
        key,
        hub.clone(),
        deps.clock.clone(),
    ));

    let mut controllers = Vec::new();
    let mut stores = Vec::new();
    for (scope, rx) in scopes.into_iter().zip(receivers) {
        let (store, future) = controller_for(shared.clone(), scope, rx, term.clone());
        stores.push(store);
        controllers.push(future);
    }
    shared.primer.use_stores(stores.clone());
    let resyncs = resync_parked(shared.clone(), stores.clone(), term.clone());
    let sweep = sweep_deleted(shared.clone(), stores, term.clone());
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        () = sweep => {}
        () = resyncs => {}
    }
}

type GuardedCtj = DeserializeGuard<ChangeTriggeredJob>;

fn controller_for(
    shared: Arc<Shared>,
    scope: Option<String>,
    wakeups: mpsc::UnboundedReceiver<CtjRef>,
    term: CancellationToken,
) -> (Store<GuardedCtj>, futures::future::BoxFuture<'static, ()>) {
    let client = shared.client.clone();
    let (ctj_api, jobs_api): (Api<GuardedCtj>, Api<Job>) = match &scope {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    // Both watches restart by themselves after any failure, listing again at once after a
    // 410 (see `resume`); they never yield errors, so the controller's own trigger backoff,
    // which would also hold back every other trigger, never engages.
    let ceiling: resume::Ceiling = {
        let hub = shared.hub.clone();
        Arc::new(move || hub.retry_ceiling())
    };
    let scope_name = scope.as_deref().unwrap_or("all namespaces").to_string();
    let (job_reader, job_writer) = reflector::store();
    let jobs_by_owner = owned::JobsByOwner::default();
    let index = jobs_by_owner.clone();
    let settled_of = shared.clone();
    let job_events = resume::resumed(
        format!("Jobs in {scope_name}"),
        move || {
            watcher(
                jobs_api.clone(),
                watcher::Config::default().labels(OWNER_LABEL),
            )
            .boxed()
        },
        ceiling.clone(),
        Arc::new(|_| {}),
    )
    .modify(slim::slim_job)
    .reflect(job_writer)
    .inspect(move |event| {
        if let Ok(event) = event {
            index.track(event);
        }
    })
    .touched_objects()
    // A Job's state is an input of its owner's status: the owner is not settled any more.
    .inspect_ok(move |job| {
        if let Some(owner) = controlling_ctj(job) {
            settled_of.hub.settled().invalidate(&owner);
        }
    });
    let wakeups =
        futures::stream::unfold(
            wakeups,
            |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
        );
    let concurrency = shared.settings.reconcile_concurrency;
    let context = Arc::new(Context {
        shared,
        jobs: job_reader,
        jobs_by_owner,
    });
    let (ctj_reader, ctj_writer) = reflector::store();
    let ctjs = resume::resumed(
        format!("ChangeTriggeredJobs in {scope_name}"),
        move || watcher(ctj_api.clone(), watcher::Config::default()).boxed(),
        ceiling,
        Arc::new(|_| {}),
    )
    .modify(|guarded: &mut GuardedCtj| {
        if let Ok(ctj) = guarded.0.as_mut() {
            slim::slim_ctj(ctj);
        }
    })
    .reflect(ctj_writer)
    .applied_objects();
    let controller = Controller::for_stream(ctjs, ctj_reader)
        .owns_stream(job_events)
        .reconcile_on(wakeups)
        .with_config(
            controller::Config::default()
                .concurrency(concurrency)
                .debounce(Duration::from_millis(100)),
        )
        .graceful_shutdown_on(term.cancelled_owned());
    let store = controller.store();
    let future = controller
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(e) = result {
                match e {
                    controller::Error::ObjectNotFound(_) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
            futures::future::ready(())
        })
        .boxed();
    (store, future)
}

/// The ChangeTriggeredJob that controls `job`, as the watch hub names it.
fn controlling_ctj(job: &Job) -> Option<CtjRef> {
    let namespace = job.metadata.namespace.as_deref()?;
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == crate::api::KIND)
        .map(|o| CtjRef::new(&o.name).within(namespace))
}

/// The safety resyncs of parked ChangeTriggeredJobs (see `settled`): on every resync slot
/// boundary, those due are checked from memory, and woken for a full round if something
/// they depend on moved.
async fn resync_parked(
    shared: Arc<Shared>,
    stores: Vec<Store<GuardedCtj>>,
    term: CancellationToken,
) {
    loop {
        let wait = crate::detect::resync::until_next_slot(
            shared.settings.poll_interval,
            reconcile::since_epoch(&shared.clock),
        );
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        reconcile::resync_parked(&shared, &stores);
    }
}

/// Drops the watch interest of ChangeTriggeredJobs that were deleted (a deleted object is not
/// reconciled again, so nothing else would notice), and once per pass hands freed heap pages
/// back to the OS (`heap`).
async fn sweep_deleted(
    shared: Arc<Shared>,
    stores: Vec<Store<GuardedCtj>>,
    term: CancellationToken,
) {
    for store in &stores {
        // Until a store has listed once, "not in the store" means nothing.
        tokio::select! {
            () = term.cancelled() => return,
            ready = store.wait_until_ready() => if ready.is_err() { return },
        }
    }
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(shared.settings.poll_interval) => {}
        }
        for ctj in shared.hub.known_ctjs() {
            if !stores.iter().any(|s| s.get(&ctj).is_some()) {
                shared.hub.forget(&ctj);
            }
        }
        shared.metrics.ctj_conditions.retain(|namespace, name| {
            let ctj = CtjRef::new(name).within(namespace);
            stores.iter().any(|s| s.get(&ctj).is_some())
        });
        shared.export_watch_gauges();
        crate::heap::release_free_pages();
    }
}
