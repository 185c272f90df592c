//! What every scenario needs: failures that say what was expected and what was seen, waiting
//! with deadlines, the cluster probe, the operator processes, manifests and status readers.

pub mod cleanup;
pub mod cluster;
pub mod crd;
pub mod ctx;
pub mod env;
pub mod jobs;
pub mod manifests;
pub mod operator;
pub mod runner;
pub mod status;
pub mod wait;

use std::fmt::Display;
use std::time::Duration;

/// Most a change may take to produce its Job. Watches should make it about a second; the poll
/// interval the suite runs the operator with (5s) is the fallback, so 10s still catches a
/// regression to poll-only detection on a slow cluster.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// How long "nothing happens" is watched for after something that must not create a Job. It
/// covers a watch notification and one safety resync of the operator (poll interval 5s).
pub const QUIET: Duration = Duration::from_secs(5);

/// How long the operator gets to record its first observation of a new ChangeTriggeredJob.
pub const FIRST_OBSERVATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Poll period of all waits.
pub const POLL: Duration = Duration::from_millis(200);

/// Why a scenario failed: one message that says what was expected and what was seen.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
        }
    }
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result of a step of a scenario.
pub type Outcome<T = ()> = Result<T, Failure>;

/// Adds what was being done to an error.
pub trait Context<T> {
    /// Turns the error into a [`Failure`] saying what was being done.
    fn context(self, doing: impl Display) -> Outcome<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, doing: impl Display) -> Outcome<T> {
        self.map_err(|e| Failure::new(format!("{doing}: {e}")))
    }
}

/// Returns a [`Failure`] from the enclosing function.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::support::Failure::new(format!($($arg)*)))
    };
}

/// Fails with the message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::fail!($($arg)*);
        }
    };
}

/// Fails unless `seen == expected`, naming what was compared.
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, expected: T, seen: T) -> Outcome {
    if expected == seen {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "{what}: expected {expected:?}, saw {seen:?}"
        )))
    }
}

/// Seconds with one decimal, for messages.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Whether a Kubernetes API error has this HTTP status code.
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
