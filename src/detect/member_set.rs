//! A selector entry's set of objects: its fingerprint, which members changed, and how many
//! of them a Job annotation names.
//!
//! The set's fingerprint is a keyed hash over the members' (name, fingerprint) pairs in name
//! order, so the order the watch reports objects in never matters, and an object joining,
//! leaving or changing its selected fields changes the set. The empty set has a fingerprint
//! of its own (not "absent"): the first matching object to appear is a change.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fingerprint::{Fingerprint, FingerprintKey};

/// The members of a set: object name → fingerprint of its selected content.
pub type Members = BTreeMap<String, Fingerprint>;

/// How many changed objects the changed-resources annotation names before "+N more".
pub const MAX_NAMED_CHANGES: usize = 20;

/// The fingerprint of a set of members.
pub fn set_fingerprint(key: &FingerprintKey, members: &Members) -> Fingerprint {
    let pairs: Vec<Value> = members
        .iter()
        .map(|(name, fp)| json!([name, fp.as_str()]))
        .collect();
    // The tag keeps a set's content apart from any single object's selected content.
    key.fingerprint(&json!(["selector-set", pairs]))
}

/// Names of the members that joined, left or changed between `before` and `now`, sorted.
pub fn changed_members(before: &Members, now: &Members) -> Vec<String> {
    let mut names: Vec<String> = now
        .iter()
        .filter(|(name, fp)| before.get(*name) != Some(*fp))
        .map(|(name, _)| name.clone())
        .chain(
            before
                .keys()
                .filter(|name| !now.contains_key(*name))
                .cloned(),
        )
        .collect();
    names.sort();
    names
}

/// The members that changed since the baseline, if `remembered` are the members the baseline
/// fingerprint was made from (after a restart, or when the baseline moved without us, they
/// are not known and the set can only be named as a whole).
pub fn changes_since(
    key: &FingerprintKey,
    baseline: &Fingerprint,
    remembered: Option<&Members>,
    now: &Members,
) -> Option<Vec<String>> {
    let remembered = remembered.filter(|m| set_fingerprint(key, m) == *baseline)?;
    Some(changed_members(remembered, now))
}

/// At most `limit` names, then `+N more` for the rest.
pub fn cap(mut names: Vec<String>, limit: usize) -> Vec<String> {
    if names.len() > limit {
        let rest = names.len() - limit;
        names.truncate(limit);
        names.push(format!("+{rest} more"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(pairs: &[(&str, &str)]) -> Members {
        pairs
            .iter()
            .map(|(n, f)| (n.to_string(), Fingerprint(f.to_string())))
            .collect()
    }

    fn key() -> FingerprintKey {
        FingerprintKey::development()
    }

    #[test]
    fn a_joining_member_changes_the_set() {
        let before = members(&[("a", "1")]);
        let after = members(&[("a", "1"), ("b", "2")]);
        assert_ne!(
            set_fingerprint(&key(), &before),
            set_fingerprint(&key(), &after)
        );
        assert_eq!(changed_members(&before, &after), vec!["b"]);
    }

    #[test]
    fn a_leaving_member_changes_the_set() {
        let before = members(&[("a", "1"), ("b", "2")]);
        let after = members(&[("a", "1")]);
        assert_ne!(
            set_fingerprint(&key(), &before),
            set_fingerprint(&key(), &after)
        );
        assert_eq!(changed_members(&before, &after), vec!["b"]);
    }

    #[test]
    fn a_changed_member_changes_the_set() {
        let before = members(&[("a", "1"), ("b", "2")]);
        let after = members(&[("a", "1"), ("b", "3")]);
        assert_ne!(
            set_fingerprint(&key(), &before),
            set_fingerprint(&key(), &after)
        );
        assert_eq!(changed_members(&before, &after), vec!["b"]);
    }

    #[test]
    fn a_renamed_member_with_the_same_content_changes_the_set() {
        let before = members(&[("a", "1")]);
        let after = members(&[("b", "1")]);
        assert_ne!(
            set_fingerprint(&key(), &before),
            set_fingerprint(&key(), &after)
        );
        assert_eq!(changed_members(&before, &after), vec!["a", "b"]);
    }

    #[test]
    fn the_empty_set_has_a_fingerprint_that_is_not_absent() {
        let empty = set_fingerprint(&key(), &Members::new());
        assert!(!empty.is_absent());
        assert_eq!(empty, set_fingerprint(&key(), &Members::new()));
        assert_ne!(empty, set_fingerprint(&key(), &members(&[("a", "1")])));
    }

    #[test]
    fn the_set_fingerprint_is_keyed() {
        let set = members(&[("a", "1")]);
        let other = FingerprintKey::new(vec![9; 32]).unwrap_or_else(|_| key());
        assert_ne!(set_fingerprint(&key(), &set), set_fingerprint(&other, &set));
    }

    #[test]
    fn changes_are_named_only_against_the_members_the_baseline_was_made_from() {
        let before = members(&[("a", "1"), ("b", "2")]);
        let now = members(&[("a", "1"), ("c", "3")]);
        let baseline = set_fingerprint(&key(), &before);
        assert_eq!(
            changes_since(&key(), &baseline, Some(&before), &now),
            Some(vec!["b".to_string(), "c".to_string()])
        );
        let stale = members(&[("a", "1")]);
        assert_eq!(changes_since(&key(), &baseline, Some(&stale), &now), None);
        assert_eq!(changes_since(&key(), &baseline, None, &now), None);
    }

    #[test]
    fn long_lists_are_capped_with_a_count_of_the_rest() {
        let names: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
        let capped = cap(names, MAX_NAMED_CHANGES);
        assert_eq!(capped.len(), MAX_NAMED_CHANGES + 1);
        assert_eq!(capped.last().map(String::as_str), Some("+5 more"));
        assert_eq!(cap(vec!["a".into()], 1), vec!["a"]);
    }

    proptest! {
        /// However the members are gathered, the same set has the same fingerprint.
        #[test]
        fn set_fingerprint_is_independent_of_member_order(
            pairs in prop::collection::vec(("[a-z]{1,6}", "[0-9a-f]{4}"), 0..20),
            seed in any::<u64>(),
        ) {
            let forward: Members = pairs.iter().map(|(n, f)| (n.clone(), Fingerprint(f.clone()))).collect();
            let mut shuffled: Vec<_> = forward.clone().into_iter().collect();
            // A deterministic shuffle driven by the seed.
            let len = shuffled.len();
            for i in 0..len {
                let j = usize::try_from(seed.rotate_left(u32::try_from(i % 64).unwrap_or(0)) % (len as u64)).unwrap_or(0);
                shuffled.swap(i, j);
            }
            let rebuilt: Members = shuffled.into_iter().collect();
            prop_assert_eq!(set_fingerprint(&key(), &forward), set_fingerprint(&key(), &rebuilt));
        }

        /// The set changes exactly when some member joined, left or changed.
        #[test]
        fn set_changes_exactly_when_some_member_does(
            before in prop::collection::btree_map("[a-d]", "[0-2]", 0..4),
            after in prop::collection::btree_map("[a-d]", "[0-2]", 0..4),
        ) {
            let to_members = |m: &BTreeMap<String, String>| -> Members {
                m.iter().map(|(n, f)| (n.clone(), Fingerprint(f.clone()))).collect()
            };
            let (b, a) = (to_members(&before), to_members(&after));
            let changed = !changed_members(&b, &a).is_empty();
            prop_assert_eq!(changed, set_fingerprint(&key(), &b) != set_fingerprint(&key(), &a));
            prop_assert_eq!(changed, before != after);
        }
    }
}
