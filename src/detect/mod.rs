//! The pure core: field selection, canonical fingerprints, the trigger decision, the Job built
//! from the template, history pruning, Job state and CTJ conditions.
//!
//! Nothing here does I/O or reads the clock; callers pass `now`.

pub mod canonical;
pub mod duration;
pub mod fingerprint;
pub mod path;
pub mod select;
pub mod trigger;
