//! Client-side rate limit for Kubernetes API requests: a token bucket refilled at `qps` tokens a
//! second and holding at most `burst`, like client-go's default limiter.
//!
//! A request waits (never fails) until a token is free. The token pays for *starting* the
//! request only: a watch that stays open for minutes holds nothing, unlike a concurrency limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep};
use tower::{Layer, Service};

/// Tokens refilled continuously at `rate` a second, at most `burst` banked.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. `qps` and `burst` of 0 are treated as 1.
    pub fn new(qps: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(qps.max(1)),
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Takes a token and returns how long the caller must wait before using it. Tokens may go
    /// negative: each waiter reserves the next free slot, so waiters are served in order and
    /// none polls in a loop.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Takes a token if one is free now; never waits.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        let free = self.tokens >= 1.0;
        if free {
            self.tokens -= 1.0;
        }
        free
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }
}

/// Adds a shared [`TokenBucket`] in front of a service.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl RateLimitLayer {
    /// `qps` sustained requests a second, bursts of up to `burst`.
    pub fn new(qps: u32, burst: u32) -> Self {
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(TokenBucket::new(qps, burst))),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            state: State::Idle,
        }
    }
}

/// Waits for a token in `poll_ready`, so callers queue in front of the service (kube puts a
/// buffer in front of its stack, which serves them in order).
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Mutex<TokenBucket>>,
    state: State,
}

enum State {
    /// No token reserved yet.
    Idle,
    /// A token is reserved and becomes usable when the sleep ends.
    Waiting(Pin<Box<Sleep>>),
    /// A token is ours; the next `call` uses it.
    Ready,
}

impl<S, Request> Service<Request> for RateLimit<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let wait = self
                        .bucket
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .reserve(Instant::now());
                    self.state = if wait.is_zero() {
                        State::Ready
                    } else {
                        State::Waiting(Box::pin(sleep(wait)))
                    };
                }
                State::Waiting(wait) => {
                    ready!(wait.as_mut().poll(cx));
                    self.state = State::Ready;
                }
                State::Ready => return self.inner.poll_ready(cx),
            }
        }
    }

    fn call(&mut self, request: Request) -> S::Future {
        self.state = State::Idle;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_allows_a_burst_then_waits() {
        let mut bucket = TokenBucket::new(10, 5);
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(bucket.reserve(now), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(now), Duration::from_millis(100));
        assert_eq!(bucket.reserve(now), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn try_take_refuses_instead_of_waiting() {
        let mut bucket = TokenBucket::new(2, 2);
        let now = Instant::now();
        assert!(bucket.try_take(now));
        assert!(bucket.try_take(now));
        assert!(!bucket.try_take(now));
        assert!(bucket.try_take(now + Duration::from_millis(500)));
        assert!(!bucket.try_take(now + Duration::from_millis(500)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_only_up_to_the_burst() {
        let mut bucket = TokenBucket::new(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.reserve(start);
        }
        let later = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert!(bucket.reserve(later) > Duration::ZERO);
    }

    /// Sends `count` requests through one rate-limited service the way kube does (one buffered
    /// caller after another) and returns when each was let through, relative to the start.
    async fn admit(qps: u32, burst: u32, count: usize) -> Vec<Duration> {
        let start = Instant::now();
        let inner =
            tower::service_fn(move |()| async move { Ok::<_, Infallible>(start.elapsed()) });
        let service =
            tower::buffer::Buffer::new(RateLimitLayer::new(qps, burst).layer(inner), 1024);
        let calls = (0..count).map(|_| service.clone().oneshot(()));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_passes_at_once_and_the_rest_at_the_sustained_rate() {
        let admitted = admit(50, 100, 600).await;
        let immediate = admitted.iter().filter(|d| d.is_zero()).count();
        assert_eq!(immediate, 100, "exactly the burst passes without waiting");
        let last = admitted.iter().max().copied().unwrap_or_default();
        // 500 requests beyond the burst at 50/s take 10 s.
        assert!(
            last >= Duration::from_millis(9_990) && last <= Duration::from_millis(10_010),
            "{last:?}"
        );
        // In any 1 s window after the burst, at most 50 (+1 for the window edge) start.
        for second in 1..10 {
            let from = Duration::from_secs(second);
            let to = from + Duration::from_secs(1);
            let n = admitted.iter().filter(|d| **d > from && **d <= to).count();
            assert!((49..=51).contains(&n), "{n} requests in second {second}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_finishes_holds_no_token() {
        let start = Instant::now();
        let started = Arc::new(tokio::sync::Notify::new());
        let watch_started = started.clone();
        let inner = tower::service_fn(move |watch: bool| {
            let watch_started = watch_started.clone();
            async move {
                if watch {
                    watch_started.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(start.elapsed())
            }
        });
        let service = tower::buffer::Buffer::new(RateLimitLayer::new(1, 1).layer(inner), 16);
        let watch = tokio::spawn(service.clone().oneshot(true));
        started.notified().await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the watch used the one banked token"
        );
        let first = service.clone().oneshot(false).await;
        let second = service.clone().oneshot(false).await;
        assert_eq!(first.ok(), Some(Duration::from_secs(1)));
        assert_eq!(second.ok(), Some(Duration::from_secs(2)));
        assert!(!watch.is_finished());
        watch.abort();
    }
}
