//! Waiting for the cluster to reach a state, and watching that it does not reach one.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{Failure, Outcome, secs};

/// What a check found.
pub enum Poll<T> {
    /// The awaited state, with what the caller needs from it.
    Ready(T),
    /// Not yet; the text says what was seen instead (it ends up in the timeout message).
    Pending(String),
}

/// Runs `check` every `every` until it is ready, and fails after `timeout` with
/// "timed out after …s waiting for <what>; last seen: …". An error from `check` ends the wait
/// at once.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Outcome<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<Poll<T>>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(seen) => seen,
        };
        if started.elapsed() >= timeout {
            return Err(Failure::new(format!(
                "timed out after {} waiting for {what}; last seen: {last}",
                secs(timeout)
            )));
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs `check` every `every` for `during` and fails as soon as it reports a violation:
/// "expected <what> for …s, but after …s: <violation>".
pub async fn hold_for<F, Fut>(what: &str, during: Duration, every: Duration, check: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<Option<String>>>,
{
    hold_until(what, Instant::now() + during, every, check).await
}

/// Like [`hold_for`], up to an instant.
pub async fn hold_until<F, Fut>(
    what: &str,
    until: Instant,
    every: Duration,
    mut check: F,
) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<Option<String>>>,
{
    let started = Instant::now();
    let during = until.saturating_duration_since(started);
    loop {
        if let Some(violation) = check().await? {
            return Err(Failure::new(format!(
                "expected {what} for {}, but after {}: {violation}",
                secs(during),
                secs(started.elapsed())
            )));
        }
        if Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now()))).await;
    }
}
