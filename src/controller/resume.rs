//! Watches that come back by themselves, for the shared watches, the ChangeTriggeredJob watch
//! and the Job watch.
//!
//! kube-runtime's `watcher` recovers from errors only as far as it is polled again, and its
//! `default_backoff` keeps doubling towards 30 s until two minutes pass without an error: after
//! a control-plane restart (refused connections, then `410 Expired` from the new server's
//! empty watch cache, then a few 5xx while it warms up) the next attempt could be half a minute
//! away. It also retries a watch that failed to start from the same stale resourceVersion,
//! forever if the server answers that with 410. Here every failure restarts the watcher, so it
//! lists again (as client-go's reflector does), after the wait [`crate::detect::resume`]
//! decides: none after a 410, a short backoff otherwise. Errors never reach the consumer; they
//! are reported through `on_failure`.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;

use crate::detect::resume::{RetryState, WatchFailure};

/// What a resumed watch reports about itself.
pub type OnFailure = Arc<dyn Fn(WatchFailure) + Send + Sync>;
/// The current retry ceiling (it depends on how many watches are broken).
pub type Ceiling = Arc<dyn Fn() -> Duration + Send + Sync>;

/// How a watch failed, for the retry decision.
pub fn classify(error: &watcher::Error) -> WatchFailure {
    let code = match error {
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        },
        watcher::Error::NoResourceVersion => None,
    };
    match code {
        Some(410) => WatchFailure::Expired,
        Some(401 | 403) => WatchFailure::Denied,
        _ => WatchFailure::Broken,
    }
}

/// A random number in `[0, 1)` for jitter (a fixed middle value if the system has none).
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

struct Resuming<K, F> {
    what: String,
    start: F,
    inner: BoxStream<'static, watcher::Result<Event<K>>>,
    retry: RetryState,
    /// When the server first answered since the last failure.
    answered_at: Option<Instant>,
    ceiling: Ceiling,
    on_failure: OnFailure,
}

/// The events of the watch `start` opens, restarted after every failure (see the module
/// documentation); it never yields an error and never ends. `what` names the watch in logs.
pub fn resumed<K, F>(
    what: String,
    start: F,
    ceiling: Ceiling,
    on_failure: OnFailure,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: Send + 'static,
    F: Fn() -> BoxStream<'static, watcher::Result<Event<K>>> + Send + 'static,
{
    let inner = start();
    let state = Resuming {
        what,
        start,
        inner,
        retry: RetryState::default(),
        answered_at: None,
        ceiling,
        on_failure,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            match st.inner.next().await {
                Some(Ok(event)) => {
                    // `Init` is emitted before the list request is made; anything else is an
                    // answer from the server.
                    if !matches!(event, Event::Init) && st.answered_at.is_none() {
                        st.answered_at = Some(Instant::now());
                    }
                    return Some((Ok(event), st));
                }
                Some(Err(error)) => {
                    let failure = classify(&error);
                    st.fail(failure, &error.to_string()).await;
                }
                None => {
                    // kube's watcher never ends; if it does, treat it as a broken stream.
                    st.fail(WatchFailure::Broken, "the watch stream ended")
                        .await;
                }
            }
        }
    })
}

impl<K, F> Resuming<K, F>
where
    F: Fn() -> BoxStream<'static, watcher::Result<Event<K>>>,
{
    async fn fail(&mut self, failure: WatchFailure, error: &str) {
        let healthy_for = self.answered_at.take().map(|at| at.elapsed());
        let wait = self
            .retry
            .fail(failure, healthy_for, jitter(), (self.ceiling)());
        match failure {
            WatchFailure::Expired => {
                tracing::info!(watch = %self.what, %error, retry_in = ?wait, "watch expired; listing again");
            }
            WatchFailure::Denied | WatchFailure::Broken => {
                tracing::warn!(watch = %self.what, %error, retry_in = ?wait, "watch failed; restarting it");
            }
        }
        (self.on_failure)(failure);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.inner = (self.start)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn status(code: u16) -> watcher::Error {
        watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("x", "y").with_code(code),
        ))
    }

    #[test]
    fn failures_are_classified_by_their_status_code() {
        assert_eq!(classify(&status(410)), WatchFailure::Expired);
        assert_eq!(classify(&status(403)), WatchFailure::Denied);
        assert_eq!(classify(&status(500)), WatchFailure::Broken);
        assert_eq!(
            classify(&watcher::Error::NoResourceVersion),
            WatchFailure::Broken
        );
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    /// Each start yields its script; the stream restarts after every error, at once after a
    /// 410, and passes events on in order.
    #[tokio::test(start_paused = true)]
    async fn every_failure_restarts_the_watch_and_a_410_waits_for_nothing() {
        let starts = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let scripts: Vec<Vec<watcher::Result<Event<u32>>>> = vec![
            vec![Ok(Event::Init), Err(status(410))],
            vec![
                Ok(Event::Init),
                Ok(Event::InitApply(1)),
                Ok(Event::InitDone),
                Err(status(503)),
            ],
            vec![Ok(Event::Init), Ok(Event::InitDone), Ok(Event::Apply(2))],
        ];
        let scripts = Arc::new(Mutex::new(scripts.into_iter()));
        let counter = starts.clone();
        let start = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let next = scripts
                .lock()
                .ok()
                .and_then(|mut s| s.next())
                .unwrap_or_default();
            futures::stream::iter(next)
                .chain(futures::stream::pending())
                .boxed()
        };
        let seen = failures.clone();
        let stream = resumed(
            "test".into(),
            start,
            Arc::new(|| Duration::from_secs(2)),
            Arc::new(move |f| seen.lock().map(|mut v| v.push(f)).unwrap_or(())),
        );
        let began = Instant::now();
        let events: Vec<_> = stream.take(7).collect().await;
        let applied: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                Ok(Event::InitApply(n) | Event::Apply(n)) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(applied, vec![1, 2]);
        assert!(events.iter().all(Result::is_ok));
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert_eq!(
            failures.lock().map(|v| v.clone()).unwrap_or_default(),
            vec![WatchFailure::Expired, WatchFailure::Broken]
        );
        // No wait for the 410; at most the first-retry jitter for the 503.
        assert!(
            began.elapsed() <= crate::detect::resume::FIRST_RETRY,
            "{:?}",
            began.elapsed()
        );
    }
}
