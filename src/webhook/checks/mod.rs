//! Validation rules that ask the API server: whether each watched kind is served (and its
//! scope), and whether a Job built from the template would be accepted (server-side dry run).

pub mod dry_run;
pub mod kinds;
