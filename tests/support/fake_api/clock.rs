//! The server clock behind `creationTimestamp`, `deletionTimestamp`, managed-fields times and
//! Job condition times: real time until a test sets it, then frozen and moved by hand.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::FakeApi;

#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    fixed: Option<Timestamp>,
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        self.fixed.unwrap_or_else(Timestamp::now)
    }

    /// `2025-01-02T03:04:05Z`: the second-precision form of `metav1.Time`.
    pub fn now_rfc3339(&self) -> String {
        format_time(self.now())
    }

    pub fn set(&mut self, at: Timestamp) {
        self.fixed = Some(at);
    }

    pub fn advance(&mut self, by: Duration) {
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        let now = self.now();
        self.fixed = Some(now.checked_add(by).unwrap_or(now));
    }
}

pub(crate) fn format_time(at: Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", at).unwrap_or_else(|_| at.to_string())
}

/// The clock, for tests.
impl FakeApi {
    /// The server's current time.
    pub fn now(&self) -> Timestamp {
        self.lock().clock.now()
    }

    /// Freezes the server clock at `at`; later timestamps come from it until it is moved.
    pub fn set_time(&self, at: Timestamp) {
        self.lock().clock.set(at);
    }

    /// Moves the server clock forward (freezing it if it was following real time).
    pub fn advance(&self, by: Duration) {
        self.lock().clock.advance(by);
    }
}
