//! Which Jobs to delete to keep the newest `history` Jobs of a CTJ.

use jiff::Timestamp;

/// What history pruning needs to know about one Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// Job name.
    pub name: String,
    /// `metadata.creationTimestamp` (second precision).
    pub created: Option<Timestamp>,
    /// Trigger sequence number from the Job's annotation, to order Jobs created in the same
    /// second.
    pub sequence: Option<i64>,
    /// Whether the Job already has a deletionTimestamp.
    pub deleting: bool,
}

/// Names of the Jobs to delete so that only the newest `keep` (at least 1) remain. Jobs
/// already being deleted are neither counted nor returned; the newest Job and `protect` (the
/// last Job recorded in status) are never returned.
pub fn jobs_to_prune(jobs: &[JobRecord], keep: usize, protect: Option<&str>) -> Vec<String> {
    let keep = keep.max(1);
    let mut live: Vec<&JobRecord> = jobs.iter().filter(|j| !j.deleting).collect();
    // Newest first.
    live.sort_by(|a, b| (b.created, b.sequence, &b.name).cmp(&(a.created, a.sequence, &a.name)));
    live.into_iter()
        .skip(keep)
        .filter(|j| Some(j.name.as_str()) != protect)
        .map(|j| j.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(name: &str, secs: i64, seq: i64) -> JobRecord {
        JobRecord {
            name: name.into(),
            created: Timestamp::from_second(1_700_000_000 + secs).ok(),
            sequence: Some(seq),
            deleting: false,
        }
    }

    #[test]
    fn keeps_the_newest_and_deletes_the_rest() {
        let jobs = [
            job("a", 1, 1),
            job("b", 2, 2),
            job("c", 3, 3),
            job("d", 4, 4),
            job("e", 5, 5),
        ];
        let mut pruned = jobs_to_prune(&jobs, 2, Some("e"));
        pruned.sort();
        assert_eq!(pruned, vec!["a", "b", "c"]);
    }

    #[test]
    fn nothing_to_delete_within_the_limit() {
        let jobs = [job("a", 1, 1), job("b", 2, 2)];
        assert!(jobs_to_prune(&jobs, 5, None).is_empty());
    }

    #[test]
    fn same_second_jobs_are_ordered_by_sequence() {
        let jobs = [job("x", 1, 2), job("y", 1, 1), job("z", 1, 3)];
        assert_eq!(jobs_to_prune(&jobs, 1, None), vec!["x", "y"]);
    }

    #[test]
    fn history_below_one_keeps_one() {
        let jobs = [job("a", 1, 1), job("b", 2, 2)];
        assert_eq!(jobs_to_prune(&jobs, 0, None), vec!["a"]);
    }

    #[test]
    fn jobs_being_deleted_do_not_count() {
        let mut gone = job("c", 3, 3);
        gone.deleting = true;
        let jobs = [job("a", 1, 1), job("b", 2, 2), gone];
        assert!(jobs_to_prune(&jobs, 2, None).is_empty());
    }

    #[test]
    fn protected_job_is_never_deleted_even_if_old() {
        // Clock skew could make the recorded last Job look older than others.
        let jobs = [job("last", 1, 9), job("b", 2, 2), job("c", 3, 3)];
        let pruned = jobs_to_prune(&jobs, 1, Some("last"));
        assert!(!pruned.contains(&"last".to_string()));
    }

    proptest! {
        #[test]
        fn history_never_deletes_the_newest_job(
            times in prop::collection::vec((0i64..50, 0i64..50), 1..20),
            keep in 0usize..8,
        ) {
            let jobs: Vec<JobRecord> = times.iter().enumerate()
                .map(|(i, (t, s))| job(&format!("j{i}"), *t, *s)).collect();
            let newest = jobs.iter().max_by(|a, b| (a.created, a.sequence, &a.name).cmp(&(b.created, b.sequence, &b.name)))
                .map(|j| j.name.clone()).unwrap_or_default();
            let pruned = jobs_to_prune(&jobs, keep, None);
            prop_assert!(!pruned.contains(&newest));
            prop_assert_eq!(jobs.len() - pruned.len(), jobs.len().min(keep.max(1)));
        }
    }
}
