//! A stateful fake Kubernetes API server that runs in-process behind `kube::Client`, so
//! integration tests of the reconcile loop, the webhook and leader election need no cluster.
//!
//! ```ignore
//! mod support;
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
//! finalizer, garbage-collection, dry-run and error-Status behaviour. Tests can inject faults,
//! set SubjectAccessReview / TokenReview answers, move the clock, read the request log and
//! write objects directly as other actors would. Every writer the test does not control
//! (garbage collector, namespace controller, CRD establishment) runs synchronously after each
//! request. See the `fake_api` integration tests for one example of every behaviour.
//!
//! Callbacks given to the fake (validators, the SAR policy) run while it holds its lock and
//! must not call back into it.

mod apply;
mod authz;
mod clock;
mod commit;
mod crds;
mod defaults;
mod delete;
mod discovery;
mod dispatch;
mod faults;
mod gc;
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
        kube::Client::new(self.clone(), "default")
    }

    fn lock(&self) -> MutexGuard<'_, store::State> {
        // A test that panicked while holding the lock must not hide its own failure behind a
        // poisoned mutex in later assertions.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
