//! kube-changejob: a Kubernetes operator that creates a Job whenever the objects it watches
//! change.
//!
//! `detect` holds every decision as pure functions; `controller`, `webhook`, `leader` and
//! `metrics` do the I/O around it.

pub mod api;
pub mod client;
pub mod config;
pub mod controller;
pub mod detect;
pub mod dev;
pub mod discovery;
pub mod heap;
pub mod inspect;
pub mod leader;
pub mod metrics;
pub mod metrics_server;
pub mod plugin;
pub mod request_body;
pub mod run;
pub mod telemetry;
pub mod webhook;
