//! The numbered scenarios. Each states its rule in its module comment, creates its own objects
//! (names start with `sNN-`), and can run alongside the others, except those marked exclusive,
//! which stop or add operator processes.

use crate::support::runner::Scenario;

mod s01_configmap_change_creates_one_job;
mod s02_secret_data_field;
mod s03_any_of_two;
mod s04_all_of_three;
mod s05_deployment_image_field;
mod s06_cluster_scoped_node;
mod s07_cooldown_defers_to_its_end;
mod s08_flip_back_is_not_a_change;
mod s09_history_two_keeps_newest_two;
mod s10_missing_object_then_created_then_deleted;
mod s11_deleting_the_ctj_deletes_its_jobs;
mod s12_manual_trigger_annotation;
mod s13_suspend_keeps_changes_until_resume;
mod s14_unknown_kind_is_degraded;
mod s15_restart_does_not_duplicate_or_lose;
mod s16_two_replicas_one_leader;
mod s17_forbidden_object_is_degraded;
mod s18_selector_object_created_runs_one_job;
mod s19_selector_member_relabelled_out_runs_one_job;
mod s20_selector_non_member_change_runs_none;
mod s21_forbid_holds_until_the_job_finishes;
mod s22_replace_deletes_the_running_job;

/// Every scenario, in number order.
pub static ALL: &[Scenario] = &[
    s01_configmap_change_creates_one_job::SCENARIO,
    s02_secret_data_field::SCENARIO,
    s03_any_of_two::SCENARIO,
    s04_all_of_three::SCENARIO,
    s05_deployment_image_field::SCENARIO,
    s06_cluster_scoped_node::SCENARIO,
    s07_cooldown_defers_to_its_end::SCENARIO,
    s08_flip_back_is_not_a_change::SCENARIO,
    s09_history_two_keeps_newest_two::SCENARIO,
    s10_missing_object_then_created_then_deleted::SCENARIO,
    s11_deleting_the_ctj_deletes_its_jobs::SCENARIO,
    s12_manual_trigger_annotation::SCENARIO,
    s13_suspend_keeps_changes_until_resume::SCENARIO,
    s14_unknown_kind_is_degraded::SCENARIO,
    s15_restart_does_not_duplicate_or_lose::SCENARIO,
    s16_two_replicas_one_leader::SCENARIO,
    s17_forbidden_object_is_degraded::SCENARIO,
    s18_selector_object_created_runs_one_job::SCENARIO,
    s19_selector_member_relabelled_out_runs_one_job::SCENARIO,
    s20_selector_non_member_change_runs_none::SCENARIO,
    s21_forbid_holds_until_the_job_finishes::SCENARIO,
    s22_replace_deletes_the_running_job::SCENARIO,
];
