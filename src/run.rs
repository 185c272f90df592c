//! `kube-changejob run`: starts the admission server, the metrics server, the leader elector
//! and, while leading, the reconcile loop.

use std::process::ExitCode;

use crate::config::{Overrides, Settings};

/// Entry point of `kube-changejob run`.
pub fn main(overrides: Overrides) -> ExitCode {
    match Settings::load(&overrides) {
        Ok(settings) => {
            eprintln!("error: the operator loop is not wired yet (settings: {settings:?})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
