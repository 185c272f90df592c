use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::api::TriggerCondition;
use crate::detect::fingerprint::Fingerprint;
use crate::detect::trigger::{
    Observation, Tracked, TriggerInput, TriggerReason, WatchedObject, evaluate, manual_requested,
    rebaseline,
};

fn job(name: &str, state: JobState) -> OwnedJob {
    OwnedJob {
        name: name.into(),
        state,
        deleting: false,
    }
}

fn deleting(name: &str) -> OwnedJob {
    OwnedJob {
        deleting: true,
        ..job(name, JobState::Active)
    }
}

fn creates(replace: &[&str]) -> Admission {
    Admission::Create {
        replace: replace.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn allow_creates_next_to_running_jobs() {
    let jobs = [job("a", JobState::Active)];
    assert_eq!(admit(ConcurrencyPolicy::Allow, &jobs), creates(&[]));
}

#[test]
fn forbid_holds_while_a_job_runs() {
    let jobs = [job("a", JobState::Succeeded), job("b", JobState::Active)];
    assert_eq!(
        admit(ConcurrencyPolicy::Forbid, &jobs),
        Admission::Hold {
            running: vec!["b".into()]
        }
    );
}

#[test]
fn forbid_creates_when_every_job_finished() {
    let jobs = [job("a", JobState::Succeeded), job("b", JobState::Failed)];
    assert_eq!(admit(ConcurrencyPolicy::Forbid, &jobs), creates(&[]));
    assert_eq!(admit(ConcurrencyPolicy::Forbid, &[]), creates(&[]));
}

#[test]
fn forbid_counts_every_running_job_not_only_the_last() {
    // Left running by an earlier Allow: the older one still holds the trigger.
    let jobs = [
        job("old", JobState::Active),
        job("last", JobState::Succeeded),
    ];
    assert_eq!(
        admit(ConcurrencyPolicy::Forbid, &jobs),
        Admission::Hold {
            running: vec!["old".into()]
        }
    );
}

#[test]
fn a_job_being_deleted_has_finished() {
    assert_eq!(
        admit(ConcurrencyPolicy::Forbid, &[deleting("a")]),
        creates(&[])
    );
    assert_eq!(
        admit(ConcurrencyPolicy::Replace, &[deleting("a")]),
        creates(&[])
    );
}

#[test]
fn replace_deletes_every_running_job_and_creates() {
    let jobs = [
        job("c", JobState::Active),
        job("a", JobState::Active),
        job("b", JobState::Succeeded),
    ];
    assert_eq!(
        admit(ConcurrencyPolicy::Replace, &jobs),
        creates(&["a", "c"])
    );
}

#[test]
fn replace_without_running_jobs_only_creates() {
    let jobs = [job("a", JobState::Failed)];
    assert_eq!(admit(ConcurrencyPolicy::Replace, &jobs), creates(&[]));
}

#[test]
fn a_held_trigger_keeps_its_reason_and_changes() {
    let changed = vec![object(0)];
    let held = hold(
        Decision::Trigger {
            reason: TriggerReason::Manual,
            changed: changed.clone(),
        },
        vec!["a".into()],
    );
    assert_eq!(
        held,
        Decision::WaitingForActiveJob {
            reason: TriggerReason::Manual,
            changed,
            active: vec!["a".into()],
        }
    );
    assert_eq!(hold(Decision::Idle, vec!["a".into()]), Decision::Idle);
}

fn object(i: usize) -> WatchedObject {
    WatchedObject {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("default".into()),
        name: format!("cm-{i}"),
        fields: vec!["*".into()],
        selector: None,
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One Job in the model cluster.
#[derive(Clone, Debug)]
struct ModelJob {
    sequence: i64,
    state: JobState,
    created: Timestamp,
}

/// A CTJ, its watched objects, its Jobs and its persisted status, reconciled the way the
/// controller does: evaluate, adopt a Job created before a crash, admit by policy, create.
struct Model {
    policy: ConcurrencyPolicy,
    cooldown: Duration,
    now: i64,
    values: Vec<u8>,
    manual: Option<String>,
    jobs: Vec<ModelJob>,
    // Persisted status: the only state that survives a restart.
    tracked: Vec<Tracked>,
    sequence: i64,
    last_triggered: Option<Timestamp>,
    last_manual: Option<String>,
}

#[derive(Clone, Debug)]
enum Step {
    /// A watched object gets a new value (possibly its old one: a flip-back).
    Change(usize, u8),
    /// A new value of the manual-trigger annotation.
    Manual(u8),
    /// The n-th running Job succeeds, fails or is deleted by a user.
    Finish(usize, u8),
    /// Time passes.
    Tick(u8),
    /// A reconcile; `crash` ends the process right after the Job was created, before the
    /// status write (a restart or leader handover at the worst moment).
    Reconcile { crash: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..2, 0u8..3).prop_map(|(i, v)| Step::Change(i, v)),
        1 => (0u8..3).prop_map(Step::Manual),
        2 => (0usize..3, 0u8..3).prop_map(|(n, how)| Step::Finish(n, how)),
        2 => (0u8..40).prop_map(Step::Tick),
        4 => any::<bool>().prop_map(|crash| Step::Reconcile { crash }),
    ]
}

impl Model {
    fn new(policy: ConcurrencyPolicy, cooldown_secs: u64) -> Self {
        Model {
            policy,
            cooldown: Duration::from_secs(cooldown_secs),
            now: 0,
            values: vec![0, 0],
            manual: None,
            jobs: Vec::new(),
            tracked: Vec::new(),
            sequence: 0,
            last_triggered: None,
            last_manual: None,
        }
    }

    fn running(&self) -> usize {
        self.jobs
            .iter()
            .filter(|j| j.state == JobState::Active)
            .count()
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Change(i, v) => self.values[i] = v,
            Step::Manual(v) => self.manual = Some(format!("run-{v}")),
            Step::Finish(n, how) => {
                let running: Vec<usize> = (0..self.jobs.len())
                    .filter(|&i| self.jobs[i].state == JobState::Active)
                    .collect();
                if running.is_empty() {
                    return;
                }
                let i = running[n % running.len()];
                match how {
                    0 => self.jobs[i].state = JobState::Succeeded,
                    1 => self.jobs[i].state = JobState::Failed,
                    _ => {
                        self.jobs.remove(i);
                    }
                }
            }
            Step::Tick(secs) => self.now += i64::from(secs),
            Step::Reconcile { crash } => self.reconcile(crash),
        }
    }

    fn job_name(sequence: i64) -> String {
        format!("job-{sequence}")
    }

    fn reconcile(&mut self, crash: bool) {
        let now = t(self.now);
        let observed: Vec<(WatchedObject, Observation)> = self
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| (object(i), Observation::Found(Fingerprint(format!("v{v}")))))
            .collect();
        let evaluation = evaluate(&TriggerInput {
            condition: TriggerCondition::Any,
            cooldown: self.cooldown,
            suspended: false,
            manual_request: self.manual.as_deref(),
            last_manual: self.last_manual.as_deref(),
            last_triggered: self.last_triggered,
            key_changed: false,
            previous: &self.tracked,
            observed: &observed,
            now,
        });
        // Adoption: the Job of the next sequence number exists, so the trigger was carried out.
        if let Some(existing) = self.jobs.iter().find(|j| j.sequence == self.sequence + 1) {
            self.tracked = rebaseline(&evaluation.tracked);
            self.sequence += 1;
            self.last_triggered = Some(existing.created);
            self.last_manual = self.manual.clone().or(self.last_manual.take());
            return;
        }
        let mut tracked = evaluation.tracked;
        if let Decision::Trigger { .. } = evaluation.decision {
            let owned: Vec<OwnedJob> = self
                .jobs
                .iter()
                .map(|j| job(&Self::job_name(j.sequence), j.state))
                .collect();
            if let Admission::Create { replace } = admit(self.policy, &owned) {
                self.jobs
                    .retain(|j| !replace.contains(&Self::job_name(j.sequence)));
                self.jobs.push(ModelJob {
                    sequence: self.sequence + 1,
                    state: JobState::Active,
                    created: now,
                });
                if crash {
                    return;
                }
                tracked = rebaseline(&tracked);
                self.sequence += 1;
                self.last_triggered = Some(now);
                if manual_requested(self.manual.as_deref(), self.last_manual.as_deref()) {
                    self.last_manual = self.manual.clone();
                }
            }
        }
        if !crash {
            self.tracked = tracked;
        }
    }

    /// Lets every running Job finish and the cooldown pass, reconciling until quiet; returns
    /// how many Jobs that created.
    fn settle(&mut self) -> usize {
        let before = self.jobs.len();
        for _ in 0..3 {
            for j in &mut self.jobs {
                j.state = JobState::Succeeded;
            }
            self.now += i64::try_from(self.cooldown.as_secs()).unwrap_or(0) + 1;
            self.reconcile(false);
            self.reconcile(false);
        }
        self.jobs.len() - before
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Under Forbid, no interleaving of changes, Job completions, deletions, manual triggers,
    /// time and restarts ever has two Jobs running, and no change or manual trigger is lost:
    /// once the running Job finishes and the cooldown passes, one Job covers them all.
    #[test]
    fn forbid_never_runs_two_jobs_and_never_loses_a_trigger(
        cooldown in prop_oneof![Just(0u64), Just(30u64)],
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let mut model = Model::new(ConcurrencyPolicy::Forbid, cooldown);
        model.reconcile(false);
        for step in &steps {
            model.apply(step);
            prop_assert!(model.running() <= 1, "two Jobs running after {:?}: {:?}", step, model.jobs);
        }
        // Due: some object's current value differs from its value at the last Job (a change
        // undone before then is none), or a manual run was asked for.
        let pending_before = model
            .tracked
            .iter()
            .zip(&model.values)
            .any(|(t, v)| t.baseline != Fingerprint(format!("v{v}")))
            || manual_requested(model.manual.as_deref(), model.last_manual.as_deref());
        // A Job created just before a crash is adopted instead of created again.
        let adoptable = model.jobs.iter().any(|j| j.sequence == model.sequence + 1);
        let created = model.settle();
        prop_assert!(created <= 1, "{} Jobs for the changes held meanwhile", created);
        prop_assert!(!model.tracked.iter().any(Tracked::pending), "a change was lost: {:?}", model.tracked);
        prop_assert!(!manual_requested(model.manual.as_deref(), model.last_manual.as_deref()), "a manual trigger was lost");
        let expected: Vec<Fingerprint> = model.values.iter().map(|v| Fingerprint(format!("v{v}"))).collect();
        let seen: Vec<Fingerprint> = model.tracked.iter().map(|t| t.hash.clone()).collect();
        prop_assert_eq!(seen, expected);
        if pending_before && !adoptable {
            prop_assert_eq!(created, 1, "the held trigger did not fire");
        }
    }

    /// Under Replace the same holds: the running Job is deleted before the new one exists.
    #[test]
    fn replace_never_runs_two_jobs_and_never_loses_a_trigger(
        cooldown in prop_oneof![Just(0u64), Just(30u64)],
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let mut model = Model::new(ConcurrencyPolicy::Replace, cooldown);
        model.reconcile(false);
        for step in &steps {
            model.apply(step);
            prop_assert!(model.running() <= 1, "two Jobs running after {:?}: {:?}", step, model.jobs);
        }
        model.settle();
        prop_assert!(!model.tracked.iter().any(Tracked::pending), "a change was lost: {:?}", model.tracked);
        prop_assert!(!manual_requested(model.manual.as_deref(), model.last_manual.as_deref()), "a manual trigger was lost");
    }
}

#[test]
fn forbid_fires_once_when_the_job_finishes_however_many_changes_came() {
    let mut model = Model::new(ConcurrencyPolicy::Forbid, 0);
    model.reconcile(false);
    model.apply(&Step::Change(0, 1));
    model.reconcile(false);
    assert_eq!(model.jobs.len(), 1);
    for v in [2, 1, 2] {
        model.apply(&Step::Change(0, v));
        model.apply(&Step::Change(1, v));
        model.reconcile(false);
    }
    model.apply(&Step::Manual(1));
    model.reconcile(false);
    assert_eq!(model.jobs.len(), 1, "held while the Job runs");
    model.apply(&Step::Finish(0, 0));
    model.reconcile(false);
    model.reconcile(false);
    assert_eq!(model.jobs.len(), 2, "one Job for everything held");
    assert!(!model.tracked.iter().any(Tracked::pending));
    assert_eq!(model.last_manual.as_deref(), Some("run-1"));
}

#[test]
fn forbid_crash_after_create_adopts_the_job_instead_of_waiting_for_it() {
    let mut model = Model::new(ConcurrencyPolicy::Forbid, 0);
    model.reconcile(false);
    model.apply(&Step::Change(0, 1));
    model.reconcile(true);
    assert_eq!(model.sequence, 0, "the status write was lost");
    model.reconcile(false);
    assert_eq!(
        model.sequence, 1,
        "the Job created before the crash is adopted"
    );
    assert!(!model.tracked.iter().any(Tracked::pending));
    model.apply(&Step::Finish(0, 0));
    model.reconcile(false);
    assert_eq!(model.jobs.len(), 1, "nothing left to run");
}
