//! One reconcile of one ChangeTriggeredJob: check the spec, observe the watched objects,
//! decide, act (create or adopt the Job, prune history), report status, and say when to come
//! back.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use tokio::time::Instant;
use tracing::warn;

use super::act;
use super::context::Context;
use super::error::Error;
use super::observe;
use super::report;
use super::round::Round;
use crate::api::{ChangeTriggeredJob, DEFAULT_COOLDOWN, OWNER_LABEL};
use crate::detect::conditions::{Problem, ProblemScope, reasons};
use crate::detect::duration::{format_duration, parse_duration};
use crate::detect::resync;
use crate::detect::trigger::{Decision, Tracked, TriggerInput, evaluate};

pub use report::FIELD_MANAGER;

/// Longest wait between retries of a failing CTJ.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Reconciles one CTJ (wrapped so a malformed object is reported instead of breaking the
/// watch).
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<ChangeTriggeredJob>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ctj = match &guarded.0 {
        Ok(ctj) => ctj,
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
            warn!(%namespace, %name, error = %invalid.error, "ChangeTriggeredJob cannot be decoded; skipping it");
            return Ok(Action::requeue(ctx.shared.settings.poll_interval));
        }
    };
    let metrics = ctx.shared.metrics.clone();
    if resync_unchanged(ctj, &ctx) {
        metrics.reconciles.with_label_values(&["unchanged"]).inc();
        // Parked: the resync sweep checks it from here on, with no reconcile of its own,
        // until something it depends on moves.
        if let Some(watch_ref) = watch_ref_of(ctj)
            && park_until_resync(&ctx.shared, &watch_ref)
        {
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(next_resync(&ctx.shared)));
    }
    let started = Instant::now();
    let result = reconcile_ctj(ctj, &ctx, started).await;
    metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => metrics.reconciles.with_label_values(&["ok"]).inc(),
        Err(e) => {
            metrics.reconciles.with_label_values(&["error"]).inc();
            metrics
                .reconcile_errors
                .with_label_values(&[e.metric_label()])
                .inc();
        }
    }
    result
}

/// Whether nothing `ctj` depends on moved since its last settled round (`detect::resync`), and
/// each of its objects is still followed by a synced watch (while one is down, rounds read the
/// objects again).
fn resync_unchanged(ctj: &ChangeTriggeredJob, ctx: &Context) -> bool {
    let (Some(watch_ref), Some(resource_version)) =
        (watch_ref_of(ctj), &ctj.metadata.resource_version)
    else {
        return false;
    };
    let hub = &ctx.shared.hub;
    hub.settled().unchanged(&watch_ref, resource_version)
        && hub.fully_watched(&watch_ref, ctj.spec.resources.len())
}

fn watch_ref_of(ctj: &ChangeTriggeredJob) -> Option<super::watches::CtjRef> {
    let namespace = ctj.metadata.namespace.as_deref()?;
    Some(super::watches::CtjRef::new(&ctj.name_any()).within(namespace))
}

/// Checks the parked CTJs whose resync is due (see `settled`): one still unchanged is parked
/// again until its next resync, the others are woken for a full round.
pub fn resync_parked(shared: &super::context::Shared, stores: &[Store<GuardedCtj>]) {
    let hub = &shared.hub;
    let now = Instant::now();
    let mut unchanged = 0u64;
    for watch_ref in hub.settled().due(now) {
        let still = stores.iter().find_map(|s| s.get(&watch_ref));
        let Some(guarded) = still else {
            // Deleted: the deletion sweep forgets it.
            hub.settled().forget(&watch_ref);
            continue;
        };
        if let Ok(ctj) = &guarded.0
            && let Some(uid) = ctj.metadata.uid.as_deref()
        {
            let version = ctj.metadata.resource_version.as_deref();
            shared
                .written()
                .forget_delivered(uid, ctj.status.as_ref(), version);
        }
        let settled = match &guarded.0 {
            Ok(ctj) => ctj.metadata.resource_version.as_deref().is_some_and(|rv| {
                hub.settled().unchanged(&watch_ref, rv)
                    && hub.fully_watched(&watch_ref, ctj.spec.resources.len())
            }),
            Err(_) => false,
        };
        if settled {
            park_until_resync(shared, &watch_ref);
            unchanged += 1;
        } else {
            hub.wake(&watch_ref);
        }
    }
    shared
        .metrics
        .reconciles
        .with_label_values(&["unchanged"])
        .inc_by(unchanged);
}

type GuardedCtj = DeserializeGuard<ChangeTriggeredJob>;

/// What the error policy does after a failed reconcile: retry with capped exponential
/// backoff.
pub fn error_policy(
    guarded: Arc<DeserializeGuard<ChangeTriggeredJob>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let uid = match &guarded.0 {
        Ok(ctj) => ctj.uid().unwrap_or_default(),
        Err(invalid) => invalid.metadata.uid.clone().unwrap_or_default(),
    };
    let wait = ctx.shared.backoff(&uid, MAX_BACKOFF);
    warn!(%error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

#[tracing::instrument(skip_all, fields(namespace = %ctj.namespace().unwrap_or_default(), name = %ctj.name_any()))]
async fn reconcile_ctj(
    ctj: &ChangeTriggeredJob,
    ctx: &Context,
    started: Instant,
) -> Result<Action, Error> {
    let mut round = Round::new(ctx, ctj, started)?;
    let shared = round.shared();
    if ctj.metadata.deletion_timestamp.is_some() {
        // Its Jobs go with it through their owner references.
        shared.hub.forget(&round.watch_ref());
        shared.forget(&round.uid);
        return Ok(Action::await_change());
    }
    // Read before observing: a wake-up from here on keeps this round from settling.
    let epoch = shared.hub.settled().epoch(&round.watch_ref());
    let previous = shared.written().freshest(
        &round.uid,
        ctj.status.as_ref(),
        ctj.metadata.resource_version.as_deref(),
    );
    let limits = check_spec(&mut round);
    let observed = observe::observe_all(&mut round).await;

    let tracked: Vec<Tracked> = previous
        .resource_hashes
        .iter()
        .map(Tracked::from_status)
        .collect();
    let manual_request = ctj
        .annotations()
        .get(crate::api::MANUAL_TRIGGER_ANNOTATION)
        .cloned();
    let mut evaluation = evaluate(&TriggerInput {
        condition: ctj.spec.condition(),
        cooldown: limits.cooldown.unwrap_or(Duration::ZERO),
        suspended: ctj.spec.suspended(),
        manual_request: manual_request.as_deref(),
        last_manual: previous.last_manual_trigger.as_deref(),
        last_triggered: previous.last_triggered_time.as_ref().map(|t| t.0),
        key_changed: match &previous.fingerprint_key_id {
            Some(id) => id != shared.key.id(),
            None => !tracked.is_empty(),
        },
        previous: &tracked,
        observed: &observed,
        now: round.now,
    });
    if !limits.may_trigger {
        // An unusable cooldown or name must not fire Jobs; pending changes are kept.
        if let Decision::Trigger { .. } | Decision::Deferred { .. } = evaluation.decision {
            evaluation.decision = Decision::Idle;
        }
    }

    shared.set_baselines.name_members(
        &round.uid,
        &shared.key,
        &evaluation.tracked,
        &round.sets,
        &mut evaluation.decision,
    );

    let owned = round.owned_jobs();
    let outcome = act::carry_out(&mut round, &previous, &owned, evaluation).await;
    shared
        .set_baselines
        .remember(&round.uid, &outcome.tracked, &round.sets);
    act::prune_history(&mut round, &owned, &outcome).await;
    let decision = report::report(
        &mut round,
        &previous,
        outcome,
        &owned,
        &limits.cooldown_shown,
    )
    .await?;
    let watch_ref = round.watch_ref();
    let fully_watched = shared
        .hub
        .fully_watched(&watch_ref, ctj.spec.resources.len());
    if resync::settles(
        &decision,
        round.problems.len(),
        round.transient,
        fully_watched,
    ) && let Some(resource_version) = &ctj.metadata.resource_version
    {
        shared
            .hub
            .settled()
            .settle(&watch_ref, epoch, resource_version);
        // Parked at once: its next resync is a check in the resync sweep, not a reconcile. A
        // wake-up during the round kept it from settling, and then it is not parked.
        if park_until_resync(shared, &watch_ref) {
            shared.succeeded(&round.uid);
            return Ok(Action::await_change());
        }
    }
    Ok(next_visit(&round, &decision))
}

/// What the spec allows, after checking what the webhook would have rejected (it may not have
/// run: disabled, bypassed, or objects older than it).
struct Limits {
    cooldown: Option<Duration>,
    cooldown_shown: String,
    may_trigger: bool,
}

fn check_spec(round: &mut Round<'_>) -> Limits {
    let mut may_trigger = true;
    if round.name.len() > 63 {
        may_trigger = false;
        round.problems.push(Problem {
            scope: ProblemScope::Spec,
            reason: reasons::INVALID_SPEC,
            message: format!(
                "metadata.name is {} characters long; it becomes the {OWNER_LABEL} label value of created Jobs, which allows at most 63",
                round.name.len()
            ),
        });
    }
    let written = round
        .ctj
        .spec
        .cooldown
        .clone()
        .unwrap_or_else(|| DEFAULT_COOLDOWN.to_string());
    match parse_duration(&written) {
        Ok(d) => Limits {
            cooldown: Some(d),
            cooldown_shown: format_duration(d),
            may_trigger,
        },
        Err(e) => {
            round.problems.push(Problem {
                scope: ProblemScope::Spec,
                reason: reasons::INVALID_COOLDOWN,
                message: format!("spec.cooldown: {e}"),
            });
            Limits {
                cooldown: None,
                cooldown_shown: written,
                may_trigger: false,
            }
        }
    }
}

/// When to reconcile again: soon with backoff after transient problems, at the end of a
/// cooldown for a deferred trigger, otherwise at the safety resync.
fn next_visit(round: &Round<'_>, decision: &Decision) -> Action {
    let shared = round.shared();
    let poll = shared.settings.poll_interval;
    if round.transient {
        return Action::requeue(shared.backoff(
            &round.uid,
            MAX_BACKOFF.min(poll.max(Duration::from_secs(1))),
        ));
    }
    if round
        .problems
        .iter()
        .any(|p| p.scope == ProblemScope::Observation)
    {
        return Action::requeue(shared.backoff(&round.uid, poll));
    }
    shared.succeeded(&round.uid);
    match decision {
        Decision::Deferred { until, .. } => {
            let wait = Duration::try_from(until.duration_since((shared.clock)()))
                .unwrap_or(Duration::ZERO);
            Action::requeue((wait + Duration::from_millis(50)).min(poll))
        }
        _ => Action::requeue(next_resync(shared)),
    }
}

/// The time since the Unix epoch by the operator's clock (zero before it): a fixed origin for
/// the resync slots, the same on every replica.
pub(super) fn since_epoch(clock: &super::Clock) -> Duration {
    let ms = clock().as_millisecond();
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// When a settled CTJ resyncs next (see `detect::resync::resync_after`).
/// Parks a settled `ctj` until its next safety resync (see `settled`); false if it is not
/// settled.
fn park_until_resync(shared: &super::context::Shared, ctj: &super::watches::CtjRef) -> bool {
    shared
        .hub
        .settled()
        .park(ctj, Instant::now() + next_resync(shared))
}

fn next_resync(shared: &super::context::Shared) -> Duration {
    resync::resync_after(shared.settings.poll_interval, since_epoch(&shared.clock))
}
