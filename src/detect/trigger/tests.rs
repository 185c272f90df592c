use super::*;
use proptest::prelude::*;

fn obj(name: &str) -> WatchedObject {
    WatchedObject {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("default".into()),
        name: name.into(),
        selector: None,
        fields: vec!["*".into()],
    }
}

fn fp(v: &str) -> Observation {
    Observation::Found(Fingerprint(v.into()))
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A CTJ's state as the reconciler would keep it between rounds.
struct Sim {
    condition: TriggerCondition,
    cooldown: Duration,
    suspended: bool,
    manual: Option<String>,
    last_manual: Option<String>,
    last_triggered: Option<Timestamp>,
    tracked: Vec<Tracked>,
    jobs: usize,
}

impl Sim {
    fn new(condition: TriggerCondition, cooldown_secs: u64) -> Self {
        Sim {
            condition,
            cooldown: Duration::from_secs(cooldown_secs),
            suspended: false,
            manual: None,
            last_manual: None,
            last_triggered: None,
            tracked: Vec::new(),
            jobs: 0,
        }
    }

    /// One reconcile: evaluate, and on a trigger "create the Job" and rebaseline.
    fn round(&mut self, observed: &[(WatchedObject, Observation)], now: Timestamp) -> Decision {
        let eval = evaluate(&TriggerInput {
            condition: self.condition,
            cooldown: self.cooldown,
            suspended: self.suspended,
            manual_request: self.manual.as_deref(),
            last_manual: self.last_manual.as_deref(),
            last_triggered: self.last_triggered,
            key_changed: false,
            previous: &self.tracked,
            observed,
            now,
        });
        self.tracked = eval.tracked;
        if let Decision::Trigger { .. } = eval.decision {
            self.tracked = rebaseline(&self.tracked);
            self.last_triggered = Some(trigger_stamp(now));
            self.last_manual = self.manual.clone();
            self.jobs += 1;
        }
        eval.decision
    }
}

fn is_trigger(d: &Decision) -> bool {
    matches!(d, Decision::Trigger { .. })
}

#[test]
fn creating_a_ctj_never_triggers_by_itself() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    let d = sim.round(
        &[(obj("a"), fp("1")), (obj("b"), Observation::Missing)],
        t(0),
    );
    assert_eq!(d, Decision::Idle);
    assert!(sim.tracked.iter().all(|t| !t.pending()));
}

#[test]
fn any_triggers_when_one_object_changed() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("x"))], t(0));
    let d = sim.round(&[(obj("a"), fp("2")), (obj("b"), fp("x"))], t(1));
    assert_eq!(
        d,
        Decision::Trigger {
            reason: TriggerReason::Change,
            changed: vec![obj("a")]
        }
    );
    assert_eq!(sim.jobs, 1);
}

#[test]
fn all_waits_until_every_object_changed() {
    let mut sim = Sim::new(TriggerCondition::All, 0);
    let names = ["a", "b", "c"];
    let round = |sim: &mut Sim, vals: [&str; 3], at: i64| {
        let observed: Vec<_> = names
            .iter()
            .zip(vals)
            .map(|(n, v)| (obj(n), fp(v)))
            .collect();
        sim.round(&observed, t(at))
    };
    assert_eq!(round(&mut sim, ["1", "1", "1"], 0), Decision::Idle);
    assert_eq!(
        round(&mut sim, ["2", "1", "1"], 1),
        Decision::Waiting { pending: 1, of: 3 }
    );
    assert_eq!(
        round(&mut sim, ["2", "2", "1"], 2),
        Decision::Waiting { pending: 2, of: 3 }
    );
    assert!(is_trigger(&round(&mut sim, ["2", "2", "2"], 3)));
    // After the trigger every object must change again.
    assert_eq!(
        round(&mut sim, ["3", "2", "2"], 4),
        Decision::Waiting { pending: 1, of: 3 }
    );
    assert_eq!(sim.jobs, 1);
}

#[test]
fn change_and_change_back_is_not_pending() {
    let mut sim = Sim::new(TriggerCondition::Any, 60);
    sim.last_triggered = Some(t(0));
    sim.round(&[(obj("a"), fp("1"))], t(1));
    assert!(matches!(
        sim.round(&[(obj("a"), fp("2"))], t(2)),
        Decision::Deferred { .. }
    ));
    assert_eq!(sim.round(&[(obj("a"), fp("1"))], t(3)), Decision::Idle);
    assert_eq!(sim.round(&[(obj("a"), fp("1"))], t(100)), Decision::Idle);
    assert_eq!(sim.jobs, 0);
}

#[test]
fn change_during_cooldown_fires_when_cooldown_ends() {
    let mut sim = Sim::new(TriggerCondition::Any, 60);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    assert!(is_trigger(&sim.round(&[(obj("a"), fp("2"))], t(10))));
    // A change 5s later lands inside the cooldown. `lastTriggeredTime` says t(10) but the Job
    // may have been created as late as t(10.999), so the cooldown ends at t(71).
    let d = sim.round(&[(obj("a"), fp("3"))], t(15));
    assert_eq!(
        d,
        Decision::Deferred {
            until: t(71),
            changed: vec![obj("a")]
        }
    );
    // Still deferred one second before the end, fired at the end.
    assert!(matches!(
        sim.round(&[(obj("a"), fp("3"))], t(70)),
        Decision::Deferred { .. }
    ));
    assert!(is_trigger(&sim.round(&[(obj("a"), fp("3"))], t(71))));
    assert_eq!(sim.jobs, 2);
}

#[test]
fn deferred_trigger_is_dropped_when_the_change_is_reverted() {
    let mut sim = Sim::new(TriggerCondition::Any, 60);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    assert!(is_trigger(&sim.round(&[(obj("a"), fp("2"))], t(1))));
    assert!(matches!(
        sim.round(&[(obj("a"), fp("3"))], t(2)),
        Decision::Deferred { .. }
    ));
    assert_eq!(sim.round(&[(obj("a"), fp("2"))], t(61)), Decision::Idle);
}

#[test]
fn zero_cooldown_never_defers() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    for i in 2..10 {
        assert!(is_trigger(
            &sim.round(&[(obj("a"), fp(&i.to_string()))], t(0))
        ));
    }
}

#[test]
fn object_missing_then_created_is_a_change() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    assert_eq!(
        sim.round(&[(obj("a"), Observation::Missing)], t(0)),
        Decision::Idle
    );
    assert!(!sim.tracked[0].exists);
    assert!(is_trigger(&sim.round(&[(obj("a"), fp("1"))], t(1))));
    assert!(sim.tracked[0].exists);
}

#[test]
fn object_deleted_is_a_change() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    assert!(is_trigger(
        &sim.round(&[(obj("a"), Observation::Missing)], t(1))
    ));
    assert_eq!(sim.tracked[0].hash, Fingerprint::absent());
}

#[test]
fn new_resource_entry_gets_a_baseline_without_triggering() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    let d = sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("9"))], t(1));
    assert_eq!(d, Decision::Idle);
    assert_eq!(sim.tracked.len(), 2);
}

#[test]
fn removed_resource_entry_is_forgotten() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(0));
    sim.round(&[(obj("a"), fp("1"))], t(1));
    assert_eq!(sim.tracked.len(), 1);
    // Re-adding it later starts from a fresh baseline.
    assert_eq!(
        sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("7"))], t(2)),
        Decision::Idle
    );
}

#[test]
fn editing_the_fields_of_an_entry_rebaselines_it() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("whole"))], t(0));
    let mut narrowed = obj("a");
    narrowed.fields = vec!["data".into()];
    assert_eq!(
        sim.round(&[(narrowed, fp("data-only"))], t(1)),
        Decision::Idle
    );
}

#[test]
fn removing_the_only_changed_entry_cancels_the_pending_trigger() {
    let mut sim = Sim::new(TriggerCondition::Any, 60);
    sim.last_triggered = Some(t(0));
    sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(1));
    assert!(matches!(
        sim.round(&[(obj("a"), fp("2")), (obj("b"), fp("1"))], t(2)),
        Decision::Deferred { .. }
    ));
    assert_eq!(sim.round(&[(obj("b"), fp("1"))], t(100)), Decision::Idle);
}

#[test]
fn manual_trigger_fires_once_ignoring_condition_and_cooldown() {
    let mut sim = Sim::new(TriggerCondition::All, 3600);
    sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(0));
    sim.last_triggered = Some(t(0));
    sim.manual = Some("run-1".into());
    assert_eq!(
        sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(5)),
        Decision::Trigger {
            reason: TriggerReason::Manual,
            changed: vec![]
        }
    );
    // The same value does not fire again.
    assert_eq!(
        sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(6)),
        Decision::Idle
    );
    // A new value does, still inside the cooldown.
    sim.manual = Some("run-2".into());
    assert!(is_trigger(
        &sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(7))
    ));
    assert_eq!(sim.jobs, 2);
}

#[test]
fn manual_trigger_resets_baselines() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    sim.manual = Some("x".into());
    let d = sim.round(&[(obj("a"), fp("2"))], t(1));
    assert_eq!(
        d,
        Decision::Trigger {
            reason: TriggerReason::Manual,
            changed: vec![obj("a")]
        }
    );
    assert_eq!(sim.round(&[(obj("a"), fp("2"))], t(2)), Decision::Idle);
}

#[test]
fn empty_manual_trigger_value_is_ignored() {
    assert!(!manual_requested(Some(""), None));
    assert!(!manual_requested(Some("  "), None));
    assert!(!manual_requested(None, Some("a")));
    assert!(manual_requested(Some("a"), None));
    assert!(!manual_requested(Some("a"), Some("a")));
}

#[test]
fn suspend_keeps_pending_changes_until_resume() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1"))], t(0));
    sim.suspended = true;
    assert_eq!(
        sim.round(&[(obj("a"), fp("2"))], t(1)),
        Decision::Suspended { pending: 1 }
    );
    sim.manual = Some("now".into());
    assert_eq!(
        sim.round(&[(obj("a"), fp("2"))], t(2)),
        Decision::Suspended { pending: 1 }
    );
    sim.suspended = false;
    assert!(is_trigger(&sim.round(&[(obj("a"), fp("2"))], t(3))));
    assert_eq!(sim.jobs, 1);
}

#[test]
fn unavailable_object_keeps_its_previous_state() {
    let mut sim = Sim::new(TriggerCondition::Any, 0);
    sim.round(&[(obj("a"), fp("1")), (obj("b"), fp("1"))], t(0));
    let d = sim.round(
        &[(obj("a"), Observation::Unavailable), (obj("b"), fp("1"))],
        t(1),
    );
    assert_eq!(d, Decision::Idle);
    assert_eq!(sim.tracked[0].hash, Fingerprint("1".into()));
    // Other objects still trigger under Any.
    assert!(is_trigger(&sim.round(
        &[(obj("a"), Observation::Unavailable), (obj("b"), fp("2"))],
        t(2)
    )));
}

#[test]
fn all_does_not_trigger_while_an_object_was_never_observed() {
    let mut sim = Sim::new(TriggerCondition::All, 0);
    sim.round(
        &[(obj("a"), fp("1")), (obj("b"), Observation::Unavailable)],
        t(0),
    );
    let d = sim.round(
        &[(obj("a"), fp("2")), (obj("b"), Observation::Unavailable)],
        t(1),
    );
    assert_eq!(d, Decision::Waiting { pending: 1, of: 2 });
}

#[test]
fn key_change_rebaselines_without_triggering_but_keeps_pending_changes() {
    let previous = vec![
        Tracked {
            object: obj("a"),
            hash: Fingerprint("old1".into()),
            baseline: Fingerprint("old1".into()),
            exists: true,
            members: None,
        },
        Tracked {
            object: obj("b"),
            hash: Fingerprint("old2".into()),
            baseline: Fingerprint("old0".into()),
            exists: true,
            members: None,
        },
    ];
    let observed = vec![(obj("a"), fp("new1")), (obj("b"), fp("new2"))];
    let eval = evaluate(&TriggerInput {
        condition: TriggerCondition::All,
        cooldown: Duration::ZERO,
        suspended: false,
        manual_request: None,
        last_manual: None,
        last_triggered: None,
        key_changed: true,
        previous: &previous,
        observed: &observed,
        now: t(0),
    });
    assert!(!eval.tracked[0].pending());
    assert!(eval.tracked[1].pending());
    assert_eq!(eval.decision, Decision::Waiting { pending: 1, of: 2 });
}

#[test]
fn status_round_trip_preserves_state() {
    let tracked = Tracked {
        object: obj("a"),
        hash: Fingerprint("h".into()),
        baseline: Fingerprint("b".into()),
        exists: true,
        members: None,
    };
    assert_eq!(Tracked::from_status(&tracked.to_status()), tracked);
}

#[test]
fn status_entry_without_baseline_is_not_pending() {
    let mut entry = Tracked {
        object: obj("a"),
        hash: Fingerprint("h".into()),
        baseline: Fingerprint("h".into()),
        exists: true,
        members: None,
    }
    .to_status();
    entry.baseline.clear();
    assert!(!Tracked::from_status(&entry).pending());
}

#[test]
fn cooldown_end_is_none_without_previous_trigger_or_when_elapsed() {
    assert_eq!(cooldown_end(None, Duration::from_secs(60), t(0)), None);
    assert_eq!(
        cooldown_end(Some(t(0)), Duration::from_secs(60), t(61)),
        None
    );
    assert_eq!(
        cooldown_end(Some(t(0)), Duration::from_secs(60), t(60)),
        Some(t(61))
    );
    assert_eq!(cooldown_end(Some(t(0)), Duration::ZERO, t(0)), None);
}

fn at_millis(millis: i64) -> Timestamp {
    t(0).checked_add(SignedDuration::from_millis(millis))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

#[test]
fn the_cooldown_counts_from_the_end_of_the_recorded_second() {
    // The Job of the 20s-cooldown report: created at .85 s, recorded as the whole second.
    let created = at_millis(850);
    let recorded = trigger_stamp(created);
    assert_eq!(recorded, t(0));
    let end = cooldown_end(Some(recorded), Duration::from_secs(20), created);
    assert_eq!(end, Some(t(21)));
    // 19.3 s after the first Job (where the seed fired) is still inside the cooldown.
    assert!(
        cooldown_end(
            Some(recorded),
            Duration::from_secs(20),
            at_millis(850 + 19_300)
        )
        .is_some()
    );
    assert!(end.is_some_and(|end| end.duration_since(created) >= SignedDuration::from_secs(20)));
}

#[test]
fn trigger_stamp_is_the_whole_second_the_time_falls_in() {
    assert_eq!(trigger_stamp(at_millis(999)), t(0));
    assert_eq!(trigger_stamp(at_millis(1000)), t(1));
    let before_1970 = Timestamp::from_millisecond(-1500).unwrap_or(Timestamp::UNIX_EPOCH);
    assert_eq!(
        trigger_stamp(before_1970),
        Timestamp::from_second(-2).unwrap_or(Timestamp::UNIX_EPOCH)
    );
}

/// One beat of a scenario in real (millisecond) time, for the cooldown-gap property.
#[derive(Clone, Debug)]
enum Beat {
    /// The watched object changes and a reconcile starts `after_ms` later.
    Change { after_ms: u32 },
    /// A reconcile starts `after_ms` later with nothing new.
    Reconcile { after_ms: u32 },
    /// The operator restarts: what it remembered is lost, status is read back from the
    /// API server.
    Restart,
    /// The user edits `spec.cooldown`.
    Cooldown(u64),
    /// The next Job create takes this long (observation, queueing, the API call).
    CreateLatency(u32),
}

fn beats() -> impl Strategy<Value = Vec<Beat>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u32..30_000).prop_map(|after_ms| Beat::Change { after_ms }),
            4 => (0u32..30_000).prop_map(|after_ms| Beat::Reconcile { after_ms }),
            1 => Just(Beat::Restart),
            1 => (0u64..30).prop_map(Beat::Cooldown),
            2 => (0u32..3_000).prop_map(Beat::CreateLatency),
        ],
        0..60,
    )
}

/// One step of a random scenario.
#[derive(Clone, Debug)]
enum Step {
    /// Set object `i`'s content to `v`.
    Set(usize, u8),
    /// Let `secs` pass and reconcile.
    Wait(u16),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (0usize..3, 0u8..4).prop_map(|(i, v)| Step::Set(i, v)),
            (0u16..200).prop_map(Step::Wait),
        ],
        0..40,
    )
}

proptest! {
    /// Whatever happens, once the cooldown is over a reconcile fires exactly when some object's
    /// content differs from what it was at the last trigger: no change is lost and no Job is
    /// created for a net no-change.
    #[test]
    fn a_pending_change_is_never_lost(script in steps(), cooldown in 0u64..120) {
        let names = ["a", "b", "c"];
        let mut sim = Sim::new(TriggerCondition::Any, cooldown);
        let mut content = [0u8; 3];
        let mut now = 0i64;
        let observe = |content: &[u8; 3]| -> Vec<(WatchedObject, Observation)> {
            names.iter().zip(content).map(|(n, v)| (obj(n), fp(&v.to_string()))).collect()
        };
        sim.round(&observe(&content), t(now));
        let mut at_trigger = content;
        for step in script {
            match step {
                Step::Set(i, v) => content[i] = v,
                Step::Wait(s) => now += i64::from(s),
            }
            if is_trigger(&sim.round(&observe(&content), t(now))) {
                at_trigger = content;
            }
        }
        now += 1000;
        let d = sim.round(&observe(&content), t(now));
        prop_assert_eq!(is_trigger(&d), content != at_trigger);
    }

    /// Any fires iff at least one object is pending; All iff every object is.
    #[test]
    fn any_all_truth_table(pending in prop::collection::vec(any::<bool>(), 1..6)) {
        let previous: Vec<Tracked> = pending.iter().enumerate().map(|(i, _)| Tracked {
            object: obj(&i.to_string()),
            hash: Fingerprint("0".into()),
            baseline: Fingerprint("0".into()),
            exists: true,
            members: None,
        }).collect();
        let observed: Vec<_> = pending.iter().enumerate()
            .map(|(i, p)| (obj(&i.to_string()), fp(if *p { "1" } else { "0" })))
            .collect();
        for condition in [TriggerCondition::Any, TriggerCondition::All] {
            let eval = evaluate(&TriggerInput {
                condition,
                cooldown: Duration::ZERO,
                suspended: false,
                manual_request: None,
                last_manual: None,
                last_triggered: Some(t(0)),
                key_changed: false,
                previous: &previous,
                observed: &observed,
                now: t(1),
            });
            let expected = match condition {
                TriggerCondition::Any => pending.iter().any(|p| *p),
                TriggerCondition::All => pending.iter().all(|p| *p),
            };
            prop_assert_eq!(is_trigger(&eval.decision), expected, "{:?}", condition);
        }
    }

    /// Inside the cooldown nothing fires, and the deferral names the cooldown's end.
    #[test]
    fn inside_the_cooldown_the_trigger_is_deferred_to_its_end(cooldown in 1u64..10_000, elapsed in 0u64..10_000) {
        prop_assume!(elapsed < cooldown);
        let previous = vec![Tracked { object: obj("a"), hash: Fingerprint("0".into()), baseline: Fingerprint("0".into()), exists: true, members: None }];
        let observed = vec![(obj("a"), fp("1"))];
        let elapsed_secs = i64::try_from(elapsed).unwrap_or(0);
        let cooldown_secs = i64::try_from(cooldown).unwrap_or(0);
        let eval = evaluate(&TriggerInput {
            condition: TriggerCondition::Any,
            cooldown: Duration::from_secs(cooldown),
            suspended: false,
            manual_request: None,
            last_manual: None,
            last_triggered: Some(t(0)),
            key_changed: false,
            previous: &previous,
            observed: &observed,
            now: t(elapsed_secs),
        });
        prop_assert_eq!(eval.decision, Decision::Deferred { until: t(cooldown_secs + 1), changed: vec![obj("a")] });
    }

    /// Whatever the cooldowns, create latencies and restarts, two Jobs of one CTJ are never
    /// closer than the cooldown in force when the later one was decided. Status goes through
    /// its JSON form, which keeps whole seconds, on every restart.
    #[test]
    fn no_two_jobs_are_closer_than_the_cooldown(script in beats(), start_ms in 0i64..1_000, cooldown in 0u64..30) {
        let mut cooldown = cooldown;
        let mut now = start_ms;
        let mut latency = 0i64;
        let mut content = 0u32;
        let mut tracked: Vec<Tracked> = Vec::new();
        // What the running process remembers, and what the API server has.
        let mut remembered: Option<Timestamp> = None;
        let mut stored = serde_json::Value::Null;
        let mut jobs: Vec<(i64, u64)> = Vec::new();
        for beat in script {
            match beat {
                Beat::Change { after_ms } => { content += 1; now += i64::from(after_ms); }
                Beat::Reconcile { after_ms } => now += i64::from(after_ms),
                Beat::Restart => {
                    let read: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> =
                        serde_json::from_value(stored.clone()).ok();
                    remembered = read.map(|t| t.0);
                    continue;
                }
                Beat::Cooldown(secs) => { cooldown = secs; continue; }
                Beat::CreateLatency(ms) => { latency = i64::from(ms); continue; }
            }
            let observed = vec![(obj("a"), fp(&content.to_string()))];
            let eval = evaluate(&TriggerInput {
                condition: TriggerCondition::Any,
                cooldown: Duration::from_secs(cooldown),
                suspended: false,
                manual_request: None,
                last_manual: None,
                last_triggered: remembered,
                key_changed: false,
                previous: &tracked,
                observed: &observed,
                now: at_millis(now),
            });
            tracked = eval.tracked;
            if is_trigger(&eval.decision) {
                tracked = rebaseline(&tracked);
                // The Job exists somewhere during the create call; the stamp is taken after it.
                let created = now + latency / 2;
                now += latency;
                jobs.push((created, cooldown));
                let stamp = trigger_stamp(at_millis(now));
                remembered = Some(stamp);
                stored = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(stamp))
                    .unwrap_or(serde_json::Value::Null);
            }
        }
        for pair in jobs.windows(2) {
            let ((first, _), (second, cooldown)) = (pair[0], pair[1]);
            let gap = second - first;
            let cooldown_ms = i64::try_from(cooldown * 1000).unwrap_or(i64::MAX);
            prop_assert!(gap >= cooldown_ms, "Jobs {gap} ms apart with a {cooldown}s cooldown");
        }
    }
}
