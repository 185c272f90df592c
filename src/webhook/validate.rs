//! The validation rules that need no cluster: reading the object as a ChangeTriggeredJob, and
//! checking names, apiVersions, field paths, duplicates, condition, cooldown, history and
//! concurrency policy.
//!
//! Each rule returns [`Violation`]s naming the field, what is wrong, and how to fix it. The
//! rules that ask the API server (kinds, Job dry-run, permissions) live in `checks/` and
//! `authorize.rs`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::violation::{Reason, Violation};
use crate::api::{ChangeTriggeredJob, OWNER_LABEL, ResourceReference, WHOLE_OBJECT};
use crate::detect::duration::parse_duration;
use crate::detect::label_selector::Selector;
use crate::detect::path::FieldPath;
use crate::discovery::split_api_version;

/// Longest ChangeTriggeredJob name: it becomes a label value (`changejob.dev/owner`) on Jobs.
pub const MAX_NAME_LENGTH: usize = 63;

/// Characters the API server appends to `generateName`.
const GENERATED_SUFFIX_LENGTH: usize = 5;

/// The object read as a ChangeTriggeredJob, and what was wrong on the way.
#[derive(Debug)]
pub struct Reading {
    /// The typed object, when its shape allows one (even if some scalar values were rejected:
    /// those are dropped so the remaining rules still run).
    pub ctj: Option<ChangeTriggeredJob>,
    /// Problems found while reading.
    pub violations: Vec<Violation>,
}

/// Path of `spec.resources[i]`.
pub fn resource_field(index: usize) -> String {
    format!("spec.resources[{index}]")
}

/// Reads `object` as a ChangeTriggeredJob, checking `condition`, `cooldown`, `history` and
/// `resources` on the raw JSON first so their messages are specific rather than a type error.
pub fn read(object: &Value) -> Reading {
    let mut violations = Vec::new();
    let Value::Object(root) = object else {
        violations.push(Violation::new(
            "",
            Reason::Invalid,
            "the object is not a JSON object; send a ChangeTriggeredJob",
        ));
        return Reading {
            ctj: None,
            violations,
        };
    };
    let Some(Value::Object(spec)) = root.get("spec") else {
        violations.push(Violation::new(
            "spec",
            Reason::Required,
            "required; a ChangeTriggeredJob needs a spec with jobTemplate and resources",
        ));
        return Reading {
            ctj: None,
            violations,
        };
    };

    let mut spec = spec.clone();
    check_condition(&mut spec, &mut violations);
    check_cooldown(&mut spec, &mut violations);
    check_history(&mut spec, &mut violations);
    check_concurrency_policy(&mut spec, &mut violations);
    check_resources_present(&spec, &mut violations);

    let mut sanitized = root.clone();
    sanitized.insert("spec".into(), Value::Object(spec));
    let sanitized = Value::Object(sanitized);
    let ctj = match serde_path_to_error::deserialize::<_, ChangeTriggeredJob>(&sanitized) {
        Ok(ctj) => Some(ctj),
        Err(error) => {
            let path = error.path().to_string();
            let field = if path == "." { String::new() } else { path };
            violations.push(Violation::new(
                field,
                Reason::Invalid,
                format!(
                    "{}; the value does not have the type the ChangeTriggeredJob API expects here",
                    error.inner()
                ),
            ));
            None
        }
    };
    Reading { ctj, violations }
}

fn check_condition(spec: &mut Map<String, Value>, violations: &mut Vec<Violation>) {
    let problem = match spec.get("condition") {
        None | Some(Value::Null) => return,
        Some(Value::String(s)) if s == "Any" || s == "All" => return,
        Some(Value::String(s))
            if s.eq_ignore_ascii_case("any") || s.eq_ignore_ascii_case("all") =>
        {
            let fixed = if s.eq_ignore_ascii_case("any") {
                "Any"
            } else {
                "All"
            };
            format!("{s:?} is not a trigger condition (case matters); did you mean {fixed:?}?")
        }
        Some(other) => format!(
            "{} is not a trigger condition; use \"Any\" (a Job when at least one watched object \
             changed) or \"All\" (a Job when every watched object changed)",
            short(other)
        ),
    };
    violations.push(Violation::new(
        "spec.condition",
        Reason::NotSupported,
        problem,
    ));
    spec.remove("condition");
}

/// The values of `spec.concurrencyPolicy`.
const CONCURRENCY_POLICIES: [&str; 3] = ["Allow", "Forbid", "Replace"];

fn check_concurrency_policy(spec: &mut Map<String, Value>, violations: &mut Vec<Violation>) {
    let problem = match spec.get("concurrencyPolicy") {
        None | Some(Value::Null) => return,
        Some(Value::String(s)) if CONCURRENCY_POLICIES.contains(&s.as_str()) => return,
        Some(Value::String(s)) => match CONCURRENCY_POLICIES
            .iter()
            .find(|p| p.eq_ignore_ascii_case(s))
        {
            Some(fixed) => {
                format!("{s:?} is not a concurrency policy (case matters); did you mean {fixed:?}?")
            }
            None => unknown_policy(&Value::String(s.clone())),
        },
        Some(other) => unknown_policy(other),
    };
    violations.push(Violation::new(
        "spec.concurrencyPolicy",
        Reason::NotSupported,
        problem,
    ));
    spec.remove("concurrencyPolicy");
}

fn unknown_policy(value: &Value) -> String {
    format!(
        "{} is not a concurrency policy; use \"Allow\" (a new Job next to a running one), \
             \"Forbid\" (wait until the running Job finishes) or \"Replace\" (delete the running \
             Job, then create the new one)",
        short(value)
    )
}

fn check_cooldown(spec: &mut Map<String, Value>, violations: &mut Vec<Violation>) {
    let problem = match spec.get("cooldown") {
        None | Some(Value::Null) => return,
        Some(Value::String(s)) => match parse_duration(s) {
            Ok(_) => return,
            Err(e) => e.to_string(),
        },
        Some(other) => format!(
            "{} is not a duration; write it as text such as \"60s\", \"5m\" or \"1h30m\"",
            short(other)
        ),
    };
    violations.push(Violation::new("spec.cooldown", Reason::Invalid, problem));
    spec.remove("cooldown");
}

fn check_history(spec: &mut Map<String, Value>, violations: &mut Vec<Violation>) {
    let problem = match spec.get("history") {
        None | Some(Value::Null) => return,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(h) if h < 1 => {
                format!("must be at least 1 (it is {h}); it is how many of the newest Jobs to keep")
            }
            Some(h) if i32::try_from(h).is_ok() => return,
            Some(h) => format!("{h} is too large; the most is {}", i32::MAX),
            None if n.is_u64() => format!("{n} is too large; the most is {}", i32::MAX),
            None => format!("{n} is not a whole number; write how many Jobs to keep, at least 1"),
        },
        Some(other) => format!(
            "{} is not a number; write how many Jobs to keep, at least 1",
            short(other)
        ),
    };
    violations.push(Violation::new("spec.history", Reason::Invalid, problem));
    spec.remove("history");
}

fn check_resources_present(spec: &Map<String, Value>, violations: &mut Vec<Violation>) {
    let empty = match spec.get("resources") {
        None | Some(Value::Null) => true,
        Some(Value::Array(list)) => list.is_empty(),
        // A non-list is reported as a type error when the object is read.
        Some(_) => false,
    };
    if empty {
        violations.push(Violation::new(
            "spec.resources",
            Reason::Required,
            "at least one object to watch is required; add an entry with apiVersion, kind and \
             name (and namespace for namespaced kinds)",
        ));
    }
}

/// A JSON value shortened for a message.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// The rules on a typed ChangeTriggeredJob that need no cluster.
pub fn check(ctj: &ChangeTriggeredJob) -> Vec<Violation> {
    let mut violations = Vec::new();
    check_name(ctj, &mut violations);
    for (index, resource) in ctj.spec.resources.iter().enumerate() {
        check_resource(index, resource, &mut violations);
    }
    check_duplicates(&ctj.spec.resources, &mut violations);
    violations
}

fn check_name(ctj: &ChangeTriggeredJob, violations: &mut Vec<Violation>) {
    let meta = &ctj.metadata;
    match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(name), _) if !name.is_empty() => {
            let length = name.chars().count();
            if length > MAX_NAME_LENGTH {
                violations.push(Violation::new(
                    "metadata.name",
                    Reason::TooLong,
                    format!(
                        "the name is {length} characters long, but at most {MAX_NAME_LENGTH} are \
                         allowed because it becomes the value of the {OWNER_LABEL} label on the \
                         Jobs; choose a shorter name"
                    ),
                ));
            }
        }
        (_, Some(prefix)) if prefix.chars().count() + GENERATED_SUFFIX_LENGTH > MAX_NAME_LENGTH => {
            violations.push(Violation::new(
                "metadata.generateName",
                Reason::TooLong,
                format!(
                    "the generated name would be longer than {MAX_NAME_LENGTH} characters, the \
                     limit for the {OWNER_LABEL} label value on the Jobs; use a prefix of at most \
                     {} characters",
                    MAX_NAME_LENGTH - GENERATED_SUFFIX_LENGTH
                ),
            ));
        }
        _ => {}
    }
}

fn check_resource(index: usize, resource: &ResourceReference, violations: &mut Vec<Violation>) {
    let at = resource_field(index);
    if resource.api_version.is_empty() {
        violations.push(Violation::new(
            format!("{at}.apiVersion"),
            Reason::Required,
            "required; use \"v1\" for core kinds or \"group/version\" such as \"apps/v1\"",
        ));
    } else if let Err(e) = split_api_version(&resource.api_version) {
        violations.push(Violation::new(
            format!("{at}.apiVersion"),
            Reason::Invalid,
            e.to_string(),
        ));
    }
    if resource.kind.is_empty() {
        violations.push(Violation::new(
            format!("{at}.kind"),
            Reason::Required,
            "required; write the kind as the API serves it, for example ConfigMap or Deployment",
        ));
    }
    match (resource.name.is_empty(), &resource.selector) {
        (true, None) => violations.push(Violation::new(
            format!("{at}.name"),
            Reason::Required,
            "required unless selector is set; name the object to watch, or choose objects by \
             label with selector (matchLabels or matchExpressions)",
        )),
        (false, Some(_)) => violations.push(Violation::new(
            format!("{at}.selector"),
            Reason::Forbidden,
            "may not be set together with name; an entry watches either one object (name) or \
             the objects a label selector matches (selector); remove one of them",
        )),
        (true, Some(selector)) => {
            if let Err(errors) = Selector::from_api(selector) {
                violations.extend(errors.into_iter().map(|e| {
                    let reason = if e.required {
                        Reason::Required
                    } else if e.field.ends_with(".operator") {
                        Reason::NotSupported
                    } else {
                        Reason::Invalid
                    };
                    Violation::new(format!("{at}.selector.{}", e.field), reason, e.message)
                }));
            }
        }
        (false, None) => {}
    }
    for (j, field) in resource.fields.iter().flatten().enumerate() {
        if field.trim() == WHOLE_OBJECT {
            continue;
        }
        if let Err(e) = FieldPath::parse(field) {
            violations.push(Violation::new(
                format!("{at}.fields[{j}]"),
                Reason::Invalid,
                e.to_string(),
            ));
        }
    }
}

/// What an entry watches, as (apiVersion, kind, namespace, name, selector in canonical form):
/// entries with the same one watch the same objects.
type Identity<'a> = (&'a str, &'a str, &'a str, &'a str, Option<String>);

fn identity(resource: &ResourceReference) -> Identity<'_> {
    (
        resource.api_version.as_str(),
        resource.kind.as_str(),
        resource.namespace.as_deref().unwrap_or(""),
        resource.name.as_str(),
        resource
            .selector
            .as_ref()
            .and_then(|s| Selector::from_api(s).ok())
            .map(|s| s.to_string()),
    )
}

fn check_duplicates(resources: &[ResourceReference], violations: &mut Vec<Violation>) {
    let mut first_seen: HashMap<Identity<'_>, usize> = HashMap::new();
    for (index, resource) in resources.iter().enumerate() {
        match first_seen.get(&identity(resource)) {
            Some(first) => violations.push(Violation::new(
                resource_field(index),
                Reason::Duplicate,
                format!(
                    "watches the same {} as {} ({} {}); merge the two entries into one and \
                     list all the fields you need in it",
                    if resource.selector.is_some() {
                        "objects"
                    } else {
                        "object"
                    },
                    resource_field(*first),
                    resource.api_version,
                    resource.display_name()
                ),
            )),
            None => {
                first_seen.insert(identity(resource), index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Value {
        crate::webhook::fixtures::ctj_json("default", crate::webhook::fixtures::one_configmap())
    }

    fn problems(object: &Value) -> Vec<String> {
        let reading = read(object);
        let mut all: Vec<String> = reading.violations.iter().map(|v| v.to_string()).collect();
        if let Some(ctj) = &reading.ctj {
            all.extend(check(ctj).iter().map(|v| v.to_string()));
        }
        all
    }

    fn one_problem(object: &Value) -> String {
        let all = problems(object);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn a_good_object_has_no_problems() {
        assert!(problems(&object()).is_empty());
    }

    #[test]
    fn missing_resources_are_rejected() {
        let mut o = object();
        o["spec"]["resources"] = json!([]);
        assert!(
            one_problem(&o).starts_with("spec.resources: at least one object to watch is required")
        );
        if let Some(spec) = o["spec"].as_object_mut() {
            spec.remove("resources");
        }
        assert!(problems(&o)[0].starts_with("spec.resources: at least one object"));
    }

    #[test]
    fn missing_spec_is_rejected() {
        let o = json!({ "metadata": { "name": "x" } });
        assert!(one_problem(&o).starts_with("spec: required"));
    }

    #[test]
    fn non_object_is_rejected() {
        assert!(one_problem(&json!([1])).contains("not a JSON object"));
    }

    #[test]
    fn unknown_condition_is_rejected() {
        let mut o = object();
        o["spec"]["condition"] = json!("Sometimes");
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.condition: \"Sometimes\" is not a trigger condition"),
            "{p}"
        );
        assert!(p.contains("\"Any\"") && p.contains("\"All\""), "{p}");
    }

    #[test]
    fn wrong_case_condition_gets_a_suggestion() {
        let mut o = object();
        o["spec"]["condition"] = json!("all");
        assert!(one_problem(&o).contains("did you mean \"All\"?"));
    }

    #[test]
    fn unknown_concurrency_policy_is_rejected_with_the_choices() {
        let mut o = object();
        o["spec"]["concurrencyPolicy"] = json!("Queue");
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.concurrencyPolicy: \"Queue\" is not a concurrency policy"),
            "{p}"
        );
        assert!(
            p.contains("\"Allow\"") && p.contains("\"Forbid\"") && p.contains("\"Replace\""),
            "{p}"
        );
        o["spec"]["concurrencyPolicy"] = json!(1);
        assert!(one_problem(&o).starts_with("spec.concurrencyPolicy: 1 is not"));
    }

    #[test]
    fn wrong_case_concurrency_policy_gets_a_suggestion() {
        let mut o = object();
        o["spec"]["concurrencyPolicy"] = json!("forbid");
        assert!(one_problem(&o).contains("did you mean \"Forbid\"?"));
    }

    #[test]
    fn every_concurrency_policy_is_accepted() {
        for policy in CONCURRENCY_POLICIES {
            let mut o = object();
            o["spec"]["concurrencyPolicy"] = json!(policy);
            assert!(problems(&o).is_empty(), "{policy}: {:?}", problems(&o));
        }
    }

    #[test]
    fn history_below_one_is_rejected() {
        for bad in [json!(0), json!(-3)] {
            let mut o = object();
            o["spec"]["history"] = bad;
            assert!(one_problem(&o).starts_with("spec.history: must be at least 1"));
        }
    }

    #[test]
    fn history_of_the_wrong_type_is_rejected() {
        let mut o = object();
        o["spec"]["history"] = json!("five");
        assert!(one_problem(&o).starts_with("spec.history: \"five\" is not a number"));
        o["spec"]["history"] = json!(2.5);
        assert!(one_problem(&o).starts_with("spec.history: 2.5 is not a whole number"));
        o["spec"]["history"] = json!(1_u64 << 40);
        assert!(one_problem(&o).contains("too large"));
        o["spec"]["history"] = json!(u64::MAX);
        assert!(one_problem(&o).contains("too large"));
    }

    #[test]
    fn negative_cooldown_is_rejected() {
        let mut o = object();
        o["spec"]["cooldown"] = json!("-5s");
        let p = one_problem(&o);
        assert!(p.starts_with("spec.cooldown: \"-5s\" is negative"), "{p}");
    }

    #[test]
    fn unparseable_cooldown_is_rejected() {
        let mut o = object();
        o["spec"]["cooldown"] = json!("soon");
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.cooldown: \"soon\" is not a duration"),
            "{p}"
        );
        o["spec"]["cooldown"] = json!(60);
        assert!(one_problem(&o).starts_with("spec.cooldown: 60 is not a duration"));
    }

    #[test]
    fn zero_cooldown_is_allowed() {
        let mut o = object();
        o["spec"]["cooldown"] = json!("0s");
        assert!(problems(&o).is_empty());
    }

    #[test]
    fn malformed_api_version_is_rejected() {
        let mut o = object();
        o["spec"]["resources"][0]["apiVersion"] = json!("apps/v1/extra");
        let p = one_problem(&o);
        assert!(
            p.starts_with(
                "spec.resources[0].apiVersion: apiVersion \"apps/v1/extra\" is malformed"
            ),
            "{p}"
        );
    }

    #[test]
    fn empty_identity_fields_are_required() {
        let mut o = object();
        o["spec"]["resources"][0] = json!({ "apiVersion": "", "kind": "", "name": "" });
        let all = problems(&o);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].starts_with("spec.resources[0].apiVersion: required"));
        assert!(all[1].starts_with("spec.resources[0].kind: required"));
        assert!(all[2].starts_with("spec.resources[0].name: required"));
    }

    #[test]
    fn unparseable_field_path_names_its_position() {
        let mut o = object();
        o["spec"]["resources"][0]["fields"] = json!(["data", "spec.containers[0"]);
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.resources[0].fields[1]: invalid field path"),
            "{p}"
        );
        assert!(p.contains("at character"), "{p}");
    }

    #[test]
    fn whole_object_marker_is_a_valid_field() {
        let mut o = object();
        o["spec"]["resources"][0]["fields"] = json!(["*", " * "]);
        assert!(problems(&o).is_empty());
    }

    #[test]
    fn duplicate_entries_name_both_indices() {
        let mut o = object();
        let entry = o["spec"]["resources"][0].clone();
        let mut with_fields = entry.clone();
        with_fields["fields"] = json!(["data"]);
        o["spec"]["resources"] = json!([
            entry,
            { "apiVersion": "v1", "kind": "Secret", "name": "a", "namespace": "default" },
            with_fields
        ]);
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.resources[2]: watches the same object as spec.resources[0]"),
            "{p}"
        );
    }

    #[test]
    fn a_selector_entry_needs_no_name() {
        let mut o = object();
        o["spec"]["resources"][0] = json!({
            "apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
            "selector": {"matchLabels": {"app": "shop"},
                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}
        });
        assert!(problems(&o).is_empty(), "{:?}", problems(&o));
        o["spec"]["resources"][0]["selector"] = json!({});
        assert!(
            problems(&o).is_empty(),
            "an empty selector selects everything"
        );
    }

    #[test]
    fn name_and_selector_together_are_rejected() {
        let mut o = object();
        o["spec"]["resources"][0]["selector"] = json!({"matchLabels": {"app": "shop"}});
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.resources[0].selector: may not be set together with name"),
            "{p}"
        );
    }

    #[test]
    fn neither_name_nor_selector_is_rejected() {
        let mut o = object();
        if let Some(entry) = o["spec"]["resources"][0].as_object_mut() {
            entry.remove("name");
        }
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.resources[0].name: required unless selector is set"),
            "{p}"
        );
    }

    #[test]
    fn selector_problems_carry_the_full_field_path() {
        let mut o = object();
        o["spec"]["resources"][0] = json!({
            "apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
            "selector": {
                "matchLabels": {"app": "-bad"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In"},
                    {"key": "env", "operator": "Exists", "values": ["prod"]},
                    {"key": "x", "operator": "Equals", "values": ["y"]},
                    {"key": "bad key", "operator": "Exists"}
                ]
            }
        });
        let all = problems(&o);
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all[0].starts_with("spec.resources[0].selector.matchLabels[\"app\"]: \"-bad\" is not a valid label value"), "{}", all[0]);
        assert!(all[1].starts_with("spec.resources[0].selector.matchExpressions[0].values: at least one value is required"), "{}", all[1]);
        assert!(
            all[2].starts_with(
                "spec.resources[0].selector.matchExpressions[1].values: must be empty"
            ),
            "{}",
            all[2]
        );
        assert!(all[3].starts_with("spec.resources[0].selector.matchExpressions[2].operator: \"Equals\" is not a selector operator"), "{}", all[3]);
        assert!(
            all[4].starts_with("spec.resources[0].selector.matchExpressions[3].key:"),
            "{}",
            all[4]
        );
    }

    #[test]
    fn the_same_selector_written_twice_is_a_duplicate() {
        let mut o = object();
        o["spec"]["resources"] = json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
             "selector": {"matchLabels": {"app": "shop"}}},
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
             "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["shop"]}]}},
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
             "selector": {"matchLabels": {"app": "cart"}}}
        ]);
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.resources[1]: watches the same objects as spec.resources[0]"),
            "{p}"
        );
    }

    #[test]
    fn long_names_are_rejected_because_they_become_label_values() {
        let mut o = object();
        o["metadata"]["name"] = json!("a".repeat(64));
        let p = one_problem(&o);
        assert!(
            p.starts_with("metadata.name: the name is 64 characters long"),
            "{p}"
        );
        assert!(p.contains(OWNER_LABEL), "{p}");
        o["metadata"]["name"] = json!("a".repeat(63));
        assert!(problems(&o).is_empty());
    }

    #[test]
    fn long_generate_name_is_rejected() {
        let mut o = object();
        o["metadata"] = json!({ "generateName": "b".repeat(59), "namespace": "default" });
        assert!(one_problem(&o).starts_with("metadata.generateName:"));
        o["metadata"] = json!({ "generateName": "b".repeat(58), "namespace": "default" });
        assert!(problems(&o).is_empty());
    }

    #[test]
    fn type_errors_name_the_field_path() {
        let mut o = object();
        o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] = json!("busybox");
        let p = one_problem(&o);
        assert!(
            p.starts_with("spec.jobTemplate.spec.template.spec.containers: invalid type"),
            "{p}"
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut o = object();
        o["spec"]["condition"] = json!("Maybe");
        o["spec"]["history"] = json!(0);
        o["spec"]["cooldown"] = json!("-1m");
        o["spec"]["resources"][0]["apiVersion"] = json!("Apps/v1");
        let all = problems(&o);
        assert_eq!(all.len(), 4, "{all:?}");
    }
}
