//! The statuses this replica wrote, kept until the CTJ informer delivers them.
//!
//! A round reads its CTJ from the informer, which can lag behind the status write of the
//! round before. Until the write shows up there, the copy kept here stands in for it: the
//! trigger sequence must never go back (it names the Jobs), and a status already written
//! must not be written again. Once the informer has it, the copy is dropped, so at rest no
//! CTJ has a second status in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::api::ChangeTriggeredJobStatus;

/// A status this replica wrote, and the resourceVersion of the CTJ it was written over.
struct Written {
    status: ChangeTriggeredJobStatus,
    over: Option<String>,
}

/// Written statuses per CTJ UID.
#[derive(Default)]
pub struct WrittenStatuses {
    by_uid: Mutex<HashMap<String, Written>>,
}

fn sequence(status: &ChangeTriggeredJobStatus) -> i64 {
    status.trigger_sequence.unwrap_or(0)
}

impl WrittenStatuses {
    /// The status to start from: the informer's (at `informer_version`), unless we wrote a
    /// newer one it has not delivered yet (the trigger sequence only grows). A copy the
    /// informer has delivered is dropped on the way (`forget_delivered`).
    pub fn freshest(
        &self,
        uid: &str,
        from_informer: Option<&ChangeTriggeredJobStatus>,
        informer_version: Option<&str>,
    ) -> ChangeTriggeredJobStatus {
        self.forget_delivered(uid, from_informer, informer_version);
        let informer = from_informer.cloned().unwrap_or_default();
        let Ok(written) = self.by_uid.lock() else {
            return informer;
        };
        match written.get(uid) {
            Some(ours) if sequence(&ours.status) > sequence(&informer) => ours.status.clone(),
            _ => informer,
        }
    }

    /// The status the server holds now, as far as this replica knows: the informer's, unless
    /// the informer's copy (at `informer_version`) is the one this replica last wrote over
    /// and has not delivered that write yet. Any other version (someone wrote since, or the
    /// write arrived) gives the informer's status.
    pub fn shown(
        &self,
        uid: &str,
        from_informer: Option<&ChangeTriggeredJobStatus>,
        informer_version: Option<&str>,
    ) -> Option<ChangeTriggeredJobStatus> {
        let ours = informer_version.and_then(|version| {
            let written = self.by_uid.lock().ok()?;
            let ours = written.get(uid)?;
            (ours.over.as_deref() == Some(version)).then(|| ours.status.clone())
        });
        ours.or_else(|| from_informer.cloned())
    }

    /// Remembers the status just written over the CTJ at resourceVersion `over`.
    pub fn wrote(&self, uid: &str, status: &ChangeTriggeredJobStatus, over: Option<String>) {
        if let Ok(mut written) = self.by_uid.lock() {
            let status = status.clone();
            written.insert(uid.to_string(), Written { status, over });
        }
    }

    /// Drops the copy once the informer has delivered it: the informer is past the version
    /// written over and its trigger sequence has caught up. From then on `freshest` and
    /// `shown` give the informer's status anyway.
    pub fn forget_delivered(
        &self,
        uid: &str,
        from_informer: Option<&ChangeTriggeredJobStatus>,
        informer_version: Option<&str>,
    ) {
        let Ok(mut written) = self.by_uid.lock() else {
            return;
        };
        let informer_sequence = from_informer.map(sequence).unwrap_or(0);
        let delivered = written.get(uid).is_some_and(|ours| {
            ours.over.as_deref() != informer_version && informer_sequence >= sequence(&ours.status)
        });
        if delivered {
            written.remove(uid);
        }
    }

    /// Forgets a deleted CTJ.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut written) = self.by_uid.lock() {
            written.remove(uid);
        }
    }

    /// How many copies are held.
    pub fn held(&self) -> usize {
        self.by_uid.lock().map(|w| w.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(sequence: i64, job: &str) -> ChangeTriggeredJobStatus {
        ChangeTriggeredJobStatus {
            trigger_sequence: Some(sequence),
            last_job_name: Some(job.to_string()),
            ..ChangeTriggeredJobStatus::default()
        }
    }

    #[test]
    fn a_lagging_informer_is_overridden_until_it_delivers_the_write() {
        let written = WrittenStatuses::default();
        let before = status(4, "w-4");
        let ours = status(5, "w-5");
        written.wrote("u", &ours, Some("10".into()));

        // Still at the version written over: the write stands in for it.
        assert_eq!(written.freshest("u", Some(&before), Some("10")), ours);
        assert_eq!(
            written.shown("u", Some(&before), Some("10")),
            Some(ours.clone())
        );
        written.forget_delivered("u", Some(&before), Some("10"));
        assert_eq!(written.held(), 1);

        // A newer version without the write (someone else wrote in between): kept.
        written.forget_delivered("u", Some(&before), Some("11"));
        assert_eq!(written.held(), 1);
        assert_eq!(written.freshest("u", Some(&before), Some("11")), ours);
        assert_eq!(written.held(), 1);

        // The write arrives: the copy goes, and the informer's status is used.
        let delivered = status(5, "w-5");
        assert_eq!(
            written.freshest("u", Some(&delivered), Some("12")),
            delivered
        );
        assert_eq!(written.held(), 0);
        assert_eq!(
            written.shown("u", Some(&delivered), Some("12")),
            Some(delivered)
        );
    }

    #[test]
    fn forgetting_one_ctj_keeps_the_others() {
        let written = WrittenStatuses::default();
        written.wrote("a", &status(1, "a-1"), Some("1".into()));
        written.wrote("b", &status(1, "b-1"), Some("1".into()));
        written.forget("a");
        assert_eq!(written.held(), 1);
        assert_eq!(written.freshest("b", None, Some("1")), status(1, "b-1"));
        assert_eq!(
            written.freshest("a", None, Some("1")),
            ChangeTriggeredJobStatus::default()
        );
    }
}
