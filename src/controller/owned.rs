//! Which Jobs each ChangeTriggeredJob controls, kept up to date from the Job watch, so a round
//! finds its own Jobs without scanning every Job of the installation (10,000 CTJs with a few
//! Jobs each would make every round copy tens of thousands of references).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

#[derive(Default)]
struct Index {
    /// Controller owner UID → its Jobs.
    by_owner: HashMap<String, HashSet<ObjectRef<Job>>>,
    /// Job → its controller owner UID.
    owner_of: HashMap<ObjectRef<Job>, String>,
    /// The Jobs of a relist under way (it replaces everything when it is done).
    relisting: Option<Vec<(ObjectRef<Job>, Option<String>)>>,
}

impl Index {
    fn remove(&mut self, job: &ObjectRef<Job>) {
        if let Some(owner) = self.owner_of.remove(job)
            && let Some(jobs) = self.by_owner.get_mut(&owner)
        {
            jobs.remove(job);
            if jobs.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    fn set(&mut self, job: ObjectRef<Job>, owner: Option<String>) {
        self.remove(&job);
        if let Some(owner) = owner {
            self.by_owner
                .entry(owner.clone())
                .or_default()
                .insert(job.clone());
            self.owner_of.insert(job, owner);
        }
    }
}

/// The Jobs of each controller owner, by UID.
#[derive(Clone, Default)]
pub struct JobsByOwner {
    index: Arc<Mutex<Index>>,
}

/// The UID of the controller owner of `job`.
fn controller_uid(job: &Job) -> Option<String> {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

impl JobsByOwner {
    /// Follows one event of the Job watch.
    pub fn track(&self, event: &Event<Job>) {
        let Ok(mut index) = self.index.lock() else {
            return;
        };
        match event {
            Event::Init => index.relisting = Some(Vec::new()),
            Event::InitApply(job) => {
                let entry = (ObjectRef::from_obj(job), controller_uid(job));
                match index.relisting.as_mut() {
                    Some(listed) => listed.push(entry),
                    None => index.set(entry.0, entry.1),
                }
            }
            Event::InitDone => {
                if let Some(listed) = index.relisting.take() {
                    *index = Index::default();
                    for (job, owner) in listed {
                        index.set(job, owner);
                    }
                }
            }
            Event::Apply(job) => index.set(ObjectRef::from_obj(job), controller_uid(job)),
            Event::Delete(job) => index.remove(&ObjectRef::from_obj(job)),
        }
    }

    /// The Jobs whose controller owner has `uid`.
    pub fn of(&self, uid: &str) -> Vec<ObjectRef<Job>> {
        self.index
            .lock()
            .ok()
            .and_then(|index| index.by_owner.get(uid).map(|j| j.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use proptest::prelude::*;

    fn job(name: &str, owner: Option<&str>) -> Job {
        let mut job = Job::default();
        job.metadata.name = Some(name.into());
        job.metadata.namespace = Some("ns".into());
        job.metadata.owner_references = owner.map(|uid| {
            vec![OwnerReference {
                api_version: "triggers.changejob.dev/v1alpha".into(),
                kind: "ChangeTriggeredJob".into(),
                name: "owner".into(),
                uid: uid.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]
        });
        job
    }

    fn names(index: &JobsByOwner, uid: &str) -> Vec<String> {
        let mut names: Vec<String> = index.of(uid).into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn jobs_are_found_by_their_controller_owner() {
        let index = JobsByOwner::default();
        index.track(&Event::Apply(job("a-1", Some("a"))));
        index.track(&Event::Apply(job("a-2", Some("a"))));
        index.track(&Event::Apply(job("b-1", Some("b"))));
        index.track(&Event::Apply(job("lonely", None)));
        assert_eq!(names(&index, "a"), ["a-1", "a-2"]);
        assert_eq!(names(&index, "b"), ["b-1"]);
        index.track(&Event::Delete(job("a-1", Some("a"))));
        // Orphaned: its owner reference was removed.
        index.track(&Event::Apply(job("b-1", None)));
        assert_eq!(names(&index, "a"), ["a-2"]);
        assert!(names(&index, "b").is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_once_it_is_done() {
        let index = JobsByOwner::default();
        index.track(&Event::Apply(job("gone", Some("a"))));
        index.track(&Event::Init);
        index.track(&Event::InitApply(job("kept", Some("a"))));
        // Until the relist is done, the old view stays.
        assert_eq!(names(&index, "a"), ["gone"]);
        index.track(&Event::InitDone);
        assert_eq!(names(&index, "a"), ["kept"]);
    }

    proptest! {
        /// After any sequence of watch events, the index agrees with a scan of the Jobs the
        /// events leave behind.
        #[test]
        fn the_index_agrees_with_a_scan(
            events in proptest::collection::vec((0u8..4, 0u8..8, proptest::option::of(0u8..3)), 0..80)
        ) {
            let index = JobsByOwner::default();
            let mut jobs: HashMap<String, Option<String>> = HashMap::new();
            let mut relist: Option<HashMap<String, Option<String>>> = None;
            for (kind, n, owner) in events {
                let name = format!("job-{n}");
                let owner = owner.map(|o| format!("uid-{o}"));
                let object = job(&name, owner.as_deref());
                match (kind, relist.as_mut()) {
                    (0, None) => {
                        index.track(&Event::Init);
                        relist = Some(HashMap::new());
                    }
                    (0 | 1, Some(listed)) => {
                        index.track(&Event::InitApply(object));
                        listed.insert(name, owner);
                    }
                    (2, Some(_)) => {
                        index.track(&Event::InitDone);
                        jobs = relist.take().unwrap_or_default();
                    }
                    (1 | 2, None) => {
                        index.track(&Event::Apply(object));
                        jobs.insert(name, owner);
                    }
                    (_, None) => {
                        index.track(&Event::Delete(object));
                        jobs.remove(&name);
                    }
                    (_, Some(_)) => {}
                }
            }
            for uid in ["uid-0", "uid-1", "uid-2"] {
                let mut expected: Vec<String> = jobs
                    .iter()
                    .filter(|(_, o)| o.as_deref() == Some(uid))
                    .map(|(n, _)| n.clone())
                    .collect();
                expected.sort();
                prop_assert_eq!(names(&index, uid), expected);
            }
        }
    }
}
