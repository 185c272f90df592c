//! When a safety resync of a ChangeTriggeredJob may be answered without evaluating it again.
//!
//! A round that ends settled (nothing to do until an input moves, no deadline) is remembered
//! with the CTJ's resourceVersion and the *epoch* of its inputs: a counter that every wake-up
//! from a watched object's watch, and every event of one of its Jobs, increases. A later
//! resync whose CTJ has the same resourceVersion and whose epoch did not move since the round
//! started has nothing new to look at. The CTJ's resourceVersion covers its spec (generation),
//! its annotations (the manual-trigger value) and its status; the epoch covers its objects and
//! its Jobs. Changes that a watch missed are found by the periodic LIST of each watch stream
//! (see `controller::watches`), which wakes — and so moves the epoch of — the CTJs concerned.

use std::time::Duration;

use crate::detect::trigger::Decision;

/// What a settled round of one ChangeTriggeredJob was based on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The CTJ's resourceVersion the round read.
    pub resource_version: String,
    /// The inputs' epoch when the round started (before it observed anything).
    pub epoch: u64,
}

/// Whether a round may be remembered as settled: it found no problem, its decision waits for
/// an input to move (no Job to create, no cooldown end to come back for), and every watched
/// object is followed by a synced watch (objects read by GET on every round have no epoch).
pub fn settles(decision: &Decision, problems: usize, transient: bool, fully_watched: bool) -> bool {
    let waits_for_input = matches!(
        decision,
        Decision::Idle | Decision::Waiting { .. } | Decision::Suspended { .. }
    );
    waits_for_input && problems == 0 && !transient && fully_watched
}

/// Whether a resync may skip the round: the last round settled on this same resourceVersion
/// and nothing woke the CTJ since that round started.
pub fn unchanged(settled: Option<&Settled>, resource_version: &str, epoch: u64) -> bool {
    settled.is_some_and(|s| s.resource_version == resource_version && s.epoch == epoch)
}

/// Longest slot safety resyncs are gathered into.
pub const RESYNC_SLOT: Duration = Duration::from_secs(5);

/// The wait until the next safety resync: at least `poll`, ending on a boundary of a slot of
/// [`RESYNC_SLOT`] (a quarter of `poll` if that is shorter) counted from `since_epoch` (the
/// time since a fixed origin). Resyncs of CTJs reconciled at different moments then come due
/// together, a few wake-ups per poll interval instead of one per CTJ: at rest the wake-up,
/// not the answer from memory, was the cost (about 0.3 ms of CPU each).
pub fn resync_after(poll: Duration, since_epoch: Duration) -> Duration {
    let slot = RESYNC_SLOT.min(poll / 4).as_millis();
    if slot == 0 {
        return poll;
    }
    let due = since_epoch.as_millis() + poll.as_millis();
    let rest = (slot - due % slot) % slot;
    poll + Duration::from_millis(u64::try_from(rest).unwrap_or(0))
}

/// The wait until the next boundary of a resync slot (see [`resync_after`]), never zero: when
/// the parked CTJs' resyncs come due.
pub fn until_next_slot(poll: Duration, since_epoch: Duration) -> Duration {
    let slot = RESYNC_SLOT.min(poll / 4).as_millis().max(1);
    let rest = slot - since_epoch.as_millis() % slot;
    Duration::from_millis(u64::try_from(rest).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The resync is never earlier than the poll interval, at most one slot later, and
        /// ends on a slot boundary.
        #[test]
        fn resyncs_are_gathered_into_slots(poll_ms in 0u64..600_000, now_ms in 0u64..10_000_000_000) {
            let poll = Duration::from_millis(poll_ms);
            let now = Duration::from_millis(now_ms);
            let wait = resync_after(poll, now);
            let slot = RESYNC_SLOT.min(poll / 4);
            proptest::prop_assert!(wait >= poll);
            proptest::prop_assert!(wait < poll + slot.max(Duration::from_millis(1)));
            if slot.as_millis() > 0 {
                proptest::prop_assert_eq!((now + wait).as_millis() % slot.as_millis(), 0);
            }
        }
    }

    proptest::proptest! {
        /// The sweep's next tick is within one slot, never now, and lands on a slot boundary,
        /// so every resync `resync_after` schedules is met by a tick at its own moment.
        #[test]
        fn sweep_ticks_land_on_the_resync_boundaries(poll_ms in 4u64..600_000, now_ms in 0u64..10_000_000_000) {
            let poll = Duration::from_millis(poll_ms);
            let now = Duration::from_millis(now_ms);
            let slot = RESYNC_SLOT.min(poll / 4);
            let wait = until_next_slot(poll, now);
            proptest::prop_assert!(wait > Duration::ZERO);
            proptest::prop_assert!(wait <= slot);
            proptest::prop_assert_eq!((now + wait).as_millis() % slot.as_millis(), 0);
            let due = now + resync_after(poll, now);
            proptest::prop_assert_eq!(due.as_millis() % slot.as_millis(), 0);
        }
    }

    #[test]
    fn ctjs_reconciled_seconds_apart_resync_together() {
        let poll = Duration::from_secs(60);
        let a =
            Duration::from_millis(1_000_100) + resync_after(poll, Duration::from_millis(1_000_100));
        let b =
            Duration::from_millis(1_003_900) + resync_after(poll, Duration::from_millis(1_003_900));
        assert_eq!(a, b);
    }
    use jiff::Timestamp;

    fn settled(rv: &str, epoch: u64) -> Settled {
        Settled {
            resource_version: rv.into(),
            epoch,
        }
    }

    #[test]
    fn resync_of_an_unchanged_ctj_is_skipped() {
        assert!(unchanged(Some(&settled("41", 3)), "41", 3));
    }

    #[test]
    fn a_new_resource_version_of_the_ctj_needs_a_round() {
        // Spec edits, a new manual-trigger value and status writes all move it.
        assert!(!unchanged(Some(&settled("41", 3)), "42", 3));
    }

    #[test]
    fn a_wake_up_since_the_round_started_needs_a_round() {
        assert!(!unchanged(Some(&settled("41", 3)), "41", 4));
    }

    #[test]
    fn a_ctj_never_settled_needs_a_round() {
        assert!(!unchanged(None, "41", 0));
    }

    #[test]
    fn only_rounds_that_wait_for_an_input_settle() {
        assert!(settles(&Decision::Idle, 0, false, true));
        assert!(settles(
            &Decision::Waiting { pending: 1, of: 2 },
            0,
            false,
            true
        ));
        assert!(settles(&Decision::Suspended { pending: 1 }, 0, false, true));
        let deferred = Decision::Deferred {
            until: Timestamp::UNIX_EPOCH,
            changed: Vec::new(),
        };
        assert!(
            !settles(&deferred, 0, false, true),
            "a cooldown end is a deadline"
        );
    }

    #[test]
    fn rounds_with_problems_or_unwatched_objects_do_not_settle() {
        assert!(!settles(&Decision::Idle, 1, false, true));
        assert!(!settles(&Decision::Idle, 0, true, true));
        assert!(
            !settles(&Decision::Idle, 0, false, false),
            "an object read by GET every round has no watch to wake the CTJ"
        );
    }
}
