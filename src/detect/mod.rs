//! The pure core: field selection, label selectors, canonical fingerprints of objects and of
//! selector sets, the trigger decision, the Job built from the template, the concurrency
//! policy, history pruning, Job state and CTJ conditions.
//!
//! Nothing here does I/O or reads the clock; callers pass `now`.

pub mod canonical;
pub mod concurrency;
pub mod conditions;
pub mod duration;
pub mod fingerprint;
pub mod history;
pub mod job;
pub mod job_state;
pub mod label_selector;
pub mod member_set;
pub mod path;
pub mod resume;
pub mod resync;
pub mod select;
pub mod trigger;
