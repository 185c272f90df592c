use super::*;
use proptest::prelude::*;
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn api(value: serde_json::Value) -> LabelSelector {
    serde_json::from_value(value).unwrap_or_default()
}

fn parsed(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn errors(value: serde_json::Value) -> Vec<String> {
    match Selector::from_api(&api(value)) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn empty_selector_matches_everything() {
    let everything = Selector::from_api(&LabelSelector::default()).unwrap_or_else(|_| parsed("x"));
    assert!(everything.is_everything());
    assert!(everything.matches(&labels(&[])));
    assert!(everything.matches(&labels(&[("app", "shop")])));
    assert!(parsed("").matches(&labels(&[])));
    assert!(parsed("  ").is_everything());
}

#[test]
fn match_labels_require_each_label_with_its_value() {
    let s = Selector::from_api(&api(json!({"matchLabels": {"app": "shop", "tier": "web"}})))
        .unwrap_or_default();
    assert!(s.matches(&labels(&[("app", "shop"), ("tier", "web"), ("x", "y")])));
    assert!(!s.matches(&labels(&[("app", "shop")])));
    assert!(!s.matches(&labels(&[("app", "shop"), ("tier", "api")])));
}

#[test]
fn in_requires_the_label_with_one_of_the_values() {
    let s = parsed("tier in (web,api)");
    assert!(s.matches(&labels(&[("tier", "web")])));
    assert!(s.matches(&labels(&[("tier", "api")])));
    assert!(!s.matches(&labels(&[("tier", "db")])));
    assert!(!s.matches(&labels(&[])));
}

#[test]
fn not_in_matches_objects_without_the_key() {
    let s = parsed("tier notin (web)");
    assert!(s.matches(&labels(&[])));
    assert!(s.matches(&labels(&[("tier", "db")])));
    assert!(!s.matches(&labels(&[("tier", "web")])));
    let api_form = Selector::from_api(&api(
        json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}),
    ))
    .unwrap_or_default();
    assert_eq!(api_form, s);
}

#[test]
fn not_equals_matches_objects_without_the_key() {
    let s = parsed("app!=shop");
    assert!(s.matches(&labels(&[])));
    assert!(!s.matches(&labels(&[("app", "shop")])));
}

#[test]
fn exists_and_does_not_exist_look_only_at_the_key() {
    assert!(parsed("app").matches(&labels(&[("app", "")])));
    assert!(!parsed("app").matches(&labels(&[])));
    assert!(parsed("!app").matches(&labels(&[])));
    assert!(!parsed("!app").matches(&labels(&[("app", "x")])));
}

#[test]
fn every_requirement_must_hold() {
    let s = parsed("app=shop,tier in (web,api),!legacy");
    assert!(s.matches(&labels(&[("app", "shop"), ("tier", "api")])));
    assert!(!s.matches(&labels(&[
        ("app", "shop"),
        ("tier", "api"),
        ("legacy", "1")
    ])));
    assert!(!s.matches(&labels(&[("tier", "api")])));
}

#[test]
fn text_and_api_forms_agree_and_print_canonically() {
    let text = parsed("tier in (web,api), app == shop ,!legacy,env, x notin (b,a)");
    let object = Selector::from_api(&api(json!({
        "matchLabels": {"app": "shop"},
        "matchExpressions": [
            {"key": "x", "operator": "NotIn", "values": ["a", "b"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "In", "values": ["api", "web"]},
            {"key": "env", "operator": "Exists"}
        ]
    })))
    .unwrap_or_default();
    assert_eq!(text, object);
    assert_eq!(
        text.to_string(),
        "app=shop,env,!legacy,tier in (api,web),x notin (a,b)"
    );
    // The canonical text parses back to the same selector.
    assert_eq!(parsed(&text.to_string()), text);
}

#[test]
fn empty_value_after_equals_is_the_empty_label_value() {
    let s = parsed("app=");
    assert!(s.matches(&labels(&[("app", "")])));
    assert!(!s.matches(&labels(&[("app", "x")])));
}

#[test]
fn prefixed_keys_are_accepted() {
    let s = parsed("app.kubernetes.io/name=shop");
    assert!(s.matches(&labels(&[("app.kubernetes.io/name", "shop")])));
}

#[test]
fn malformed_text_is_an_error_with_a_position() {
    for (text, position) in [
        ("app in web", 8),
        ("app in ()", 5),
        ("app=shop,", 10),
        ("tier in (a,b", 13),
        ("a b", 3),
        ("=x", 1),
        ("app>1", 4),
        ("-bad=x", 1),
        ("app=-x", 5),
        ("app in (a b)", 11),
    ] {
        match Selector::parse(text) {
            Ok(s) => panic!("{text:?} parsed as {s}"),
            Err(e) => assert_eq!(e.position, position, "{text:?}: {e}"),
        }
    }
}

#[test]
fn numeric_comparisons_are_refused_with_a_reason() {
    let e = Selector::parse("replicas>1").err().map(|e| e.message);
    assert!(e.is_some_and(|m| m.contains("compares numbers")));
}

#[test]
fn in_and_not_in_need_values() {
    let e = errors(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}));
    assert_eq!(
        e,
        vec!["matchExpressions[0].values: at least one value is required when the operator is In"]
    );
    let e = errors(json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}));
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn exists_and_does_not_exist_take_no_values() {
    let e = errors(json!({"matchExpressions": [
        {"key": "a", "operator": "Exists", "values": ["x"]},
        {"key": "b", "operator": "DoesNotExist", "values": ["y"]}
    ]}));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("matchExpressions[0].values: must be empty when the operator is Exists")
    );
    assert!(e[1].starts_with("matchExpressions[1].values: must be empty"));
}

#[test]
fn unknown_operators_are_refused_with_a_suggestion() {
    let e = errors(json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("matchExpressions[0].operator: \"in\" is not a selector operator"));
    assert!(e[0].contains("did you mean \"In\"?"));
    let e = errors(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}));
    assert!(e[0].contains("use In, NotIn, Exists or DoesNotExist"));
}

#[test]
fn keys_and_values_follow_label_syntax() {
    let e = errors(json!({
        "matchLabels": {"bad key": "ok", "good": "bad value!"},
        "matchExpressions": [
            {"key": "Example.com/x", "operator": "Exists"},
            {"key": "a/b/c", "operator": "Exists"},
            {"key": "", "operator": "Exists"},
            {"key": "ok", "operator": "In", "values": ["fine", "-no"]}
        ]
    }));
    assert_eq!(e.len(), 6, "{e:?}");
    assert!(e[0].starts_with("matchLabels[\"bad key\"]: \"bad key\" is not a valid label key"));
    assert!(e[1].starts_with("matchLabels[\"good\"]: \"bad value!\" is not a valid label value"));
    assert!(
        e[2].starts_with("matchExpressions[0].key:") && e[2].contains("lowercase DNS subdomain")
    );
    assert!(e[3].starts_with("matchExpressions[1].key:") && e[3].contains("more than one '/'"));
    assert!(e[4].starts_with("matchExpressions[2].key: required"));
    assert!(e[5].starts_with("matchExpressions[3].values[1]:"));
}

#[test]
fn length_limits_are_those_of_labels() {
    assert!(check_value(&"a".repeat(63)).is_ok());
    assert!(check_value(&"a".repeat(64)).is_err());
    assert!(check_key(&"a".repeat(63)).is_ok());
    assert!(check_key(&"a".repeat(64)).is_err());
    assert!(check_key(&format!("{}/a", "b".repeat(253))).is_ok());
    assert!(check_key(&format!("{}/a", "b".repeat(254))).is_err());
    assert!(check_key("/a").is_err());
    assert!(check_key("a/").is_err());
    assert!(check_value("").is_ok());
}

#[test]
fn describe_names_an_empty_selector_everything() {
    assert_eq!(describe(&LabelSelector::default()), "everything");
    assert_eq!(
        describe(&api(json!({"matchLabels": {"app": "shop"}}))),
        "app=shop"
    );
}

/// A reference matcher written straight from the Kubernetes rules, to compare against.
fn reference_match(req: &(String, u8, Vec<String>), labels: &BTreeMap<String, String>) -> bool {
    let (key, op, values) = req;
    match (op, labels.get(key)) {
        (0, Some(v)) => values.contains(v),
        (0, None) => false,
        (1, Some(v)) => !values.contains(v),
        (1, None) => true,
        (2, found) => found.is_some(),
        (_, found) => found.is_none(),
    }
}

fn arb_requirement() -> impl Strategy<Value = (String, u8, Vec<String>)> {
    ("[a-c]", 0u8..4, prop::collection::vec("[x-z]", 1..3))
}

proptest! {
    /// Matching agrees with the Kubernetes rules for every operator, whether the selector was
    /// written as matchExpressions or as text.
    #[test]
    fn matching_agrees_with_kubernetes_rules(
        requirements in prop::collection::vec(arb_requirement(), 0..4),
        object in prop::collection::btree_map("[a-c]", "[x-z]", 0..3),
    ) {
        let expressions: Vec<serde_json::Value> = requirements.iter().map(|(key, op, values)| {
            match op {
                0 => json!({"key": key, "operator": "In", "values": values}),
                1 => json!({"key": key, "operator": "NotIn", "values": values}),
                2 => json!({"key": key, "operator": "Exists"}),
                _ => json!({"key": key, "operator": "DoesNotExist"}),
            }
        }).collect();
        let selector = Selector::from_api(&api(json!({"matchExpressions": expressions})));
        prop_assert!(selector.is_ok());
        let selector = selector.unwrap_or_default();
        let expected = requirements.iter().all(|r| reference_match(r, &object));
        prop_assert_eq!(selector.matches(&object), expected);
        let reparsed = Selector::parse(&selector.to_string());
        prop_assert_eq!(reparsed.as_ref().ok(), Some(&selector), "{}", selector);
    }

    /// The parser never panics, whatever it is given.
    #[test]
    fn parsing_never_panics(text in "[a-z=!(), <>in]{0,24}") {
        let _ = Selector::parse(&text);
    }
}
