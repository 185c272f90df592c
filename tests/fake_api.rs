//! Tests of the in-process fake API server (`tests/support/fake_api`): every behaviour the
//! fake promises, driven through a real `kube::Client` (typed and dynamic `Api`s, discovery,
//! kube-runtime watchers, reflectors and a Controller).

mod support;

#[path = "fake_api/actors.rs"]
mod actors;
#[path = "fake_api/apply.rs"]
mod apply;
#[path = "fake_api/authz.rs"]
mod authz;
#[path = "fake_api/crud.rs"]
mod crud;
#[path = "fake_api/delete.rs"]
mod delete;
#[path = "fake_api/discovery.rs"]
mod discovery;
#[path = "fake_api/faults.rs"]
mod faults;
#[path = "fake_api/helpers.rs"]
mod helpers;
#[path = "fake_api/jobs.rs"]
mod jobs;
#[path = "fake_api/patch.rs"]
mod patch;
#[path = "fake_api/read.rs"]
mod read;
#[path = "fake_api/robustness.rs"]
mod robustness;
#[path = "fake_api/runtime.rs"]
mod runtime;
#[path = "fake_api/side_channel.rs"]
mod side_channel;
#[path = "fake_api/watch.rs"]
mod watch;
