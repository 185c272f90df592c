//! How a broken watch comes back: when to try again after a failure, and how often the objects
//! behind a broken watch are read directly meanwhile.
//!
//! A `410 Gone`/`Expired` answer means "relist", not "the server is in trouble": it is retried
//! at once. Other failures (connection refused, end of stream, 5xx) back off, from almost
//! nothing on the first retry to a ceiling of a couple of seconds, and the count starts over
//! once the watch has worked for a few seconds. The ceiling grows with the number of broken watches so
//! that their retries use at most half of the client's request rate, and the direct reads a
//! quarter; the rest is left for status writes and Job creates.

use std::time::Duration;

/// The longest first retry after a failure (it is jittered between zero and this).
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The second retry waits about this long; each further one doubles it.
pub const SECOND_RETRY: Duration = Duration::from_millis(200);
/// Retries are never further apart than this while the client's rate allows it.
pub const RETRY_CEILING: Duration = Duration::from_secs(2);
/// However many watches are broken, one retries at least this often.
pub const RETRY_CEILING_MAX: Duration = Duration::from_secs(30);
/// The shortest interval between direct reads of the objects behind a broken watch.
pub const REOBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// A watch that has worked this long since its last failure counts as recovered: its next
/// failure backs off from the beginning again. (Counting from the first answer alone would
/// let a server that lists but refuses to watch make the watch spin.)
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// What a watch failed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFailure {
    /// `410 Gone`/`Expired`: the resourceVersion is too old; list again.
    Expired,
    /// `401`/`403`: retrying soon will not help until someone changes RBAC or credentials.
    Denied,
    /// Anything else: the connection, the server, or a broken stream.
    Broken,
}

/// Consecutive failures of one watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryState {
    /// Failures that back off.
    pub failures: u32,
    /// Whether the previous failure was a 410 (a second one in a row backs off, so a server
    /// that answers nothing else cannot make the watch spin).
    pub expired: bool,
}

impl RetryState {
    /// Records a failure and says how long to wait before the next attempt. `healthy_for` is
    /// how long the watch had worked since the server last answered it (`None` when it has
    /// not answered since the previous failure); `jitter` is a random number in `[0, 1)`;
    /// `ceiling` comes from [`retry_ceiling`].
    pub fn fail(
        &mut self,
        failure: WatchFailure,
        healthy_for: Option<Duration>,
        jitter: f64,
        ceiling: Duration,
    ) -> Duration {
        if healthy_for.is_some_and(|d| d >= HEALTHY_AFTER) {
            *self = RetryState::default();
        }
        if failure == WatchFailure::Expired && !self.expired {
            self.expired = true;
            return Duration::ZERO;
        }
        self.expired = failure == WatchFailure::Expired;
        self.failures = self.failures.saturating_add(1);
        let ceiling = match failure {
            WatchFailure::Denied => RETRY_CEILING_MAX,
            WatchFailure::Expired | WatchFailure::Broken => ceiling,
        };
        retry_delay(self.failures, jitter, ceiling)
    }
}

/// The wait before retry number `failures` (1 for the first), jittered by `jitter` in `[0, 1)`.
pub fn retry_delay(failures: u32, jitter: f64, ceiling: Duration) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    if failures <= 1 {
        return FIRST_RETRY.mul_f64(jitter);
    }
    let doublings = (failures - 2).min(16);
    let base = SECOND_RETRY.saturating_mul(1 << doublings).min(ceiling);
    // Equal jitter: between half and all of the step, so retries of many watches spread out
    // but none comes back much sooner than planned.
    base.mul_f64(0.5 + 0.5 * jitter)
}

/// The retry ceiling when `broken` watches retry at once and the client may send `qps`
/// requests a second: [`RETRY_CEILING`], or more when their retries would take over half of
/// the rate, never more than [`RETRY_CEILING_MAX`].
pub fn retry_ceiling(broken: usize, qps: u32) -> Duration {
    let share = f64::from(qps.max(1)) / 2.0;
    let spread = Duration::from_secs_f64(count(broken) / share);
    spread.clamp(RETRY_CEILING, RETRY_CEILING_MAX)
}

/// How long to wait before reading the objects behind broken watches again, when that takes
/// `reads` requests and the client may send `qps` a second: [`REOBSERVE_INTERVAL`], or more
/// so the reads take at most a quarter of the rate, never more than `poll_interval` (the safety
/// resync that runs anyway). Jittered by ±20 % with `jitter` in `[0, 1)`.
pub fn reobserve_interval(
    reads: usize,
    qps: u32,
    poll_interval: Duration,
    jitter: f64,
) -> Duration {
    let share = f64::from(qps.max(1)) / 4.0;
    let interval = Duration::from_secs_f64(count(reads) / share)
        .max(REOBSERVE_INTERVAL)
        .min(poll_interval.max(REOBSERVE_INTERVAL));
    interval.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

fn count(n: usize) -> f64 {
    // Counts are far below 2^52; the conversion is exact for them.
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CEILING: Duration = RETRY_CEILING;

    const HEALTHY: Option<Duration> = Some(HEALTHY_AFTER);

    #[test]
    fn a_410_relists_at_once_but_a_second_one_in_a_row_backs_off() {
        let mut state = RetryState::default();
        assert_eq!(
            state.fail(WatchFailure::Expired, None, 0.9, CEILING),
            Duration::ZERO
        );
        assert!(
            state.fail(WatchFailure::Expired, Some(Duration::ZERO), 0.9, CEILING) > Duration::ZERO
        );
        assert_eq!(
            state.fail(WatchFailure::Expired, HEALTHY, 0.9, CEILING),
            Duration::ZERO
        );
    }

    #[test]
    fn the_first_retry_after_a_failure_is_almost_immediate() {
        let mut state = RetryState::default();
        assert!(state.fail(WatchFailure::Broken, None, 0.999, CEILING) <= FIRST_RETRY);
    }

    #[test]
    fn repeated_failures_back_off_to_the_ceiling_and_a_recovery_starts_over() {
        let mut state = RetryState::default();
        let waits: Vec<Duration> = (0..10)
            .map(|_| state.fail(WatchFailure::Broken, None, 0.999_999, CEILING))
            .collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(
            waits[9] <= CEILING && waits[9] >= CEILING.mul_f64(0.99),
            "{waits:?}"
        );
        // A list that worked but a watch that failed right after is no recovery.
        assert!(
            state.fail(
                WatchFailure::Broken,
                Some(Duration::from_millis(20)),
                0.999,
                CEILING
            ) >= CEILING.mul_f64(0.99)
        );
        assert!(state.fail(WatchFailure::Broken, HEALTHY, 0.999, CEILING) <= FIRST_RETRY);
    }

    #[test]
    fn an_expired_answer_after_broken_connections_relists_at_once() {
        // The restart of an API server: refused connections, then 410 from its empty cache.
        let mut state = RetryState::default();
        for _ in 0..5 {
            state.fail(WatchFailure::Broken, None, 0.5, CEILING);
        }
        assert_eq!(
            state.fail(WatchFailure::Expired, Some(Duration::ZERO), 0.5, CEILING),
            Duration::ZERO
        );
    }

    #[test]
    fn denied_watches_back_off_further() {
        let mut state = RetryState::default();
        let waits: Vec<Duration> = (0..12)
            .map(|_| state.fail(WatchFailure::Denied, None, 0.999_999, CEILING))
            .collect();
        assert!(
            waits[11] > CEILING && waits[11] <= RETRY_CEILING_MAX,
            "{waits:?}"
        );
    }

    #[test]
    fn many_broken_watches_stretch_the_ceiling_to_half_the_rate() {
        assert_eq!(retry_ceiling(1, 50), RETRY_CEILING);
        assert_eq!(retry_ceiling(50, 50), RETRY_CEILING);
        assert_eq!(retry_ceiling(100, 50), Duration::from_secs(4));
        assert_eq!(retry_ceiling(100_000, 50), RETRY_CEILING_MAX);
        assert_eq!(retry_ceiling(3, 0), Duration::from_secs(6));
    }

    #[test]
    fn reads_behind_broken_watches_take_a_quarter_of_the_rate() {
        let mid = 0.5;
        assert_eq!(
            reobserve_interval(1, 50, Duration::from_secs(60), mid),
            REOBSERVE_INTERVAL
        );
        assert_eq!(
            reobserve_interval(100, 50, Duration::from_secs(60), mid),
            Duration::from_secs(8)
        );
        assert_eq!(
            reobserve_interval(100_000, 50, Duration::from_secs(60), mid),
            Duration::from_secs(60)
        );
    }

    proptest! {
        /// Whatever the failures, no wait exceeds the ceiling, and the first retry after a
        /// recovery is at most [`FIRST_RETRY`].
        #[test]
        fn waits_stay_under_the_ceiling(
            failures in prop::collection::vec((any::<bool>(), 0.0f64..1.0), 1..40),
            broken in 0usize..500,
            qps in 1u32..200,
        ) {
            let ceiling = retry_ceiling(broken, qps);
            let mut state = RetryState::default();
            for (expired, jitter) in failures {
                let kind = if expired { WatchFailure::Expired } else { WatchFailure::Broken };
                prop_assert!(state.fail(kind, None, jitter, ceiling) <= ceiling);
            }
            prop_assert!(state.fail(WatchFailure::Broken, HEALTHY, 0.99, ceiling) <= FIRST_RETRY);
        }

        /// The direct reads never go over a quarter of the rate (once past the one-second
        /// floor) and never wait longer than the poll interval allows.
        #[test]
        fn reobserve_reads_respect_the_rate(reads in 0usize..10_000, qps in 1u32..500, jitter in 0.0f64..1.0) {
            let poll = Duration::from_secs(60);
            let interval = reobserve_interval(reads, qps, poll, jitter);
            prop_assert!(interval <= poll.mul_f64(1.2));
            prop_assert!(interval >= REOBSERVE_INTERVAL.mul_f64(0.8));
            let unjittered = interval.as_secs_f64() / (0.8 + 0.4 * jitter);
            if unjittered < poll.as_secs_f64() - 1e-6 && reads > 0 {
                let rate = reads as f64 / unjittered;
                prop_assert!(rate <= f64::from(qps) / 4.0 + 1e-6, "{rate} reads/s");
            }
        }
    }
}
