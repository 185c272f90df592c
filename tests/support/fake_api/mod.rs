//! A stateful fake Kubernetes API server that runs in-process behind `kube::Client`, so
//! integration tests of the reconcile loop, the webhook and leader election need no cluster.
//!
//! ```ignore
//! mod support; // in tests/<name>.rs; tests/support/mod.rs declares `pub mod fake_api;`
//! use support::fake_api::{FakeApi, FakeError, Matcher, ResourceType, Verb};
//!
//! let fake = FakeApi::new();
//! let client = fake.client();                 // kube::Client, default namespace "default"
//! let cms: Api<ConfigMap> = Api::default_namespaced(client);
//! cms.create(&PostParams::default(), &cm).await?;
//! assert_eq!(fake.count(Verb::Create, "configmaps"), 1);
//! ```
//!
//! It serves discovery, GET/LIST/WATCH/CREATE/UPDATE/PATCH (merge, strategic, JSON patch,
//! server-side apply)/DELETE on the built-in kinds our operator touches and on any kind a
//! test registers, with the API server's resourceVersion, generation, status-subresource,
//! finalizer, garbage-collection, dry-run and error-Status behaviour. Every writer the test
//! does not control (garbage collector, namespace controller, CRD establishment) runs
//! synchronously after each request. The `fake_api` integration tests show every behaviour.
//!
//! What a test can do with a [`FakeApi`], by module:
//! - kinds (`crds`): [`FakeApi::register`], [`FakeApi::unregister`], [`FakeApi::install_crd`]
//! - objects (`objects`): [`FakeApi::insert`], [`FakeApi::put`], [`FakeApi::remove`],
//!   [`FakeApi::get_json`], [`FakeApi::list_json`], [`FakeApi::get_object`],
//!   [`FakeApi::list_objects`], [`FakeApi::resource_version`], [`FakeApi::create_namespace`],
//!   [`FakeApi::set_namespace_lifecycle`]
//! - watches (`watch`): [`FakeApi::close_watches`], [`FakeApi::expire_watches`],
//!   [`FakeApi::send_bookmarks`], [`FakeApi::compact`], [`FakeApi::open_watches`]
//! - faults (`faults`): [`FakeApi::fail_next`], [`FakeApi::fail_times`],
//!   [`FakeApi::fail_always`], [`FakeApi::deny`], [`FakeApi::clear_faults`],
//!   [`FakeApi::set_latency`], [`FakeApi::set_user`]
//! - validation (`validation`): [`FakeApi::set_validator`], [`FakeApi::clear_validator`]
//! - reviews (`authz`): [`FakeApi::set_sar_policy`], [`FakeApi::subject_access_reviews`],
//!   [`FakeApi::set_token`], [`FakeApi::token_reviews`]
//! - clock (`clock`): [`FakeApi::now`], [`FakeApi::set_time`], [`FakeApi::advance`]
//! - request log (`requests`): [`FakeApi::requests`], [`FakeApi::count`],
//!   [`FakeApi::discovery_count`], [`FakeApi::clear_requests`]
//! - Jobs (`jobs`): [`FakeApi::set_job_condition`], [`FakeApi::complete_job`],
//!   [`FakeApi::fail_job`]
//!
//! Callbacks given to the fake (validators, the SAR policy) run while it holds its lock and
//! must not call back into it.

mod apply;
mod authz;
mod clock;
mod commit;
mod crds;
mod create;
mod defaults;
mod delete;
mod discovery;
mod dispatch;
mod faults;
mod gc;
pub mod http;
mod jobs;
mod managed_fields;
mod media;
mod objects;
mod patch;
mod read;
mod requests;
mod resources;
mod route;
mod selector;
mod service;
mod status;
mod store;
mod update;
mod validation;
mod watch;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

// Re-exported for test files; a test binary that uses only part of the fake would warn.
#[allow(unused_imports)]
pub use faults::{FakeError, Matcher};
#[allow(unused_imports)]
pub use requests::{RecordedRequest, Verb};
#[allow(unused_imports)]
pub use resources::ResourceType;
#[allow(unused_imports)]
pub use service::{ConnectionError, FakeBody};

/// Handle to one fake API server; clones share its state.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<store::State>>,
}

impl Default for FakeApi {
    fn default() -> Self {
        FakeApi::new()
    }
}

impl FakeApi {
    /// A fresh server: built-in kinds registered, namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease` present, clock following real time.
    pub fn new() -> Self {
        FakeApi {
            state: Arc::new(Mutex::new(store::State::new())),
        }
    }

    /// A `kube::Client` talking to this server, with default namespace `default`. Must be
    /// called inside a tokio runtime (the client spawns its request buffer).
    pub fn client(&self) -> kube::Client {
        self.client_in("default")
    }

    /// A `kube::Client` whose default namespace is `namespace` (like an in-cluster client of
    /// a pod in that namespace).
    pub fn client_in(&self, namespace: &str) -> kube::Client {
        kube::Client::new(self.clone(), namespace)
    }

    fn lock(&self) -> MutexGuard<'_, store::State> {
        // A test that panicked while holding the lock must not hide its own failure behind a
        // poisoned mutex in later assertions.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
