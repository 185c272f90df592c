//! One reconcile of one ChangeTriggeredJob: who it is about, the clock reading it uses, and the
//! problems it found so far.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use tokio::time::Instant;
use tracing::warn;

use super::context::{Context, Shared};
use super::error::Error;
use super::events::{Occurrence, Severity};
use crate::api::ChangeTriggeredJob;
use crate::detect::conditions::Problem;
use crate::detect::job::is_owned_by;
use crate::detect::member_set::Members;
use crate::detect::trigger::WatchedObject;

/// State of one reconcile.
pub(super) struct Round<'a> {
    /// The controller's context.
    pub ctx: &'a Context,
    /// The object being reconciled.
    pub ctj: &'a ChangeTriggeredJob,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its UID.
    pub uid: String,
    /// The time every decision of this round uses.
    pub now: Timestamp,
    /// When the round started (monotonic).
    pub started: Instant,
    /// Problems found, in the order found.
    pub problems: Vec<Problem>,
    /// Whether a problem should clear by itself (retry soon with backoff).
    pub transient: bool,
    /// The members of each selector entry observed this round.
    pub sets: HashMap<WatchedObject, Members>,
}

impl<'a> Round<'a> {
    /// Starts a round; objects from the API server always have a namespace and a UID.
    pub fn new(
        ctx: &'a Context,
        ctj: &'a ChangeTriggeredJob,
        started: Instant,
    ) -> Result<Self, Error> {
        let name = ctj.name_any();
        let (Some(namespace), Some(uid)) = (ctj.namespace(), ctj.uid()) else {
            return Err(Error::MissingMetadata(name));
        };
        Ok(Round {
            ctx,
            ctj,
            name,
            namespace,
            uid,
            now: (ctx.shared.clock)(),
            started,
            problems: Vec::new(),
            transient: false,
            sets: HashMap::new(),
        })
    }

    /// State shared by all rounds.
    pub fn shared(&self) -> &'a Shared {
        &self.ctx.shared
    }

    /// How the watch hub names this CTJ.
    pub fn watch_ref(&self) -> super::watches::CtjRef {
        super::watches::CtjRef::new(&self.name).within(&self.namespace)
    }

    /// Jobs this CTJ controls, from the informer.
    pub fn owned_jobs(&self) -> Vec<Arc<Job>> {
        self.ctx
            .jobs_by_owner
            .of(&self.uid)
            .into_iter()
            .filter_map(|job| self.ctx.jobs.get(&job))
            .filter(|j| {
                j.metadata.namespace.as_deref() == Some(self.namespace.as_str())
                    && is_owned_by(j, &self.uid)
            })
            .collect()
    }

    /// Records an event about this CTJ; a failure to record is logged, not fatal.
    pub async fn publish(
        &self,
        severity: Severity,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let what = Occurrence {
            severity,
            reason: reason.to_string(),
            action: action.to_string(),
            note,
            related,
        };
        let shared = self.shared();
        if let Err(error) = shared
            .events
            .publish(self.ctj, what, (shared.clock)())
            .await
        {
            warn!(%error, reason, "could not record an event");
        }
    }
}

/// Joins display names with commas.
pub(super) fn names(objects: &[WatchedObject]) -> String {
    objects
        .iter()
        .map(|o| o.display_name())
        .collect::<Vec<_>>()
        .join(", ")
}
