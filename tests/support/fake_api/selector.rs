//! `labelSelector` and `fieldSelector` query parameters: parsing with the API server's
//! grammar and matching against stored objects.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

/// A parsed label selector such as `app=web,tier in (a,b),!legacy`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<(String, LabelOp)>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term).ok_or_else(|| {
                format!("unable to parse requirement: invalid label selector term {term:?}")
            })?);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.0.iter().all(|(key, op)| {
            let value = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            match op {
                LabelOp::Equals(v) => value == Some(v.as_str()),
                LabelOp::NotEquals(v) => value != Some(v.as_str()),
                LabelOp::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelOp::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
                LabelOp::GreaterThan(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                LabelOp::LessThan(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }
}

/// Splits on commas that are not inside a `( ... )` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(term: &str) -> Option<(String, LabelOp)> {
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return valid_key(key).then(|| (key.to_string(), LabelOp::DoesNotExist));
    }
    let key_end = term
        .find(|c: char| c.is_whitespace() || "=!<>".contains(c))
        .unwrap_or(term.len());
    let key = &term[..key_end];
    if !valid_key(key) {
        return None;
    }
    let rest = term[key_end..].trim_start();
    let op = if rest.is_empty() {
        LabelOp::Exists
    } else if let Some(v) = rest.strip_prefix("==") {
        LabelOp::Equals(value(v)?)
    } else if let Some(v) = rest.strip_prefix("!=") {
        LabelOp::NotEquals(value(v)?)
    } else if let Some(v) = rest.strip_prefix('=') {
        LabelOp::Equals(value(v)?)
    } else if let Some(v) = rest.strip_prefix('>') {
        LabelOp::GreaterThan(v.trim().parse().ok()?)
    } else if let Some(v) = rest.strip_prefix('<') {
        LabelOp::LessThan(v.trim().parse().ok()?)
    } else if let Some(v) = rest.strip_prefix("notin") {
        LabelOp::NotIn(value_set(v)?)
    } else if let Some(v) = rest.strip_prefix("in") {
        LabelOp::In(value_set(v)?)
    } else {
        return None;
    };
    Some((key.to_string(), op))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn value(text: &str) -> Option<String> {
    let v = text.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| v.to_string())
}

fn value_set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(value).collect()
}

/// A parsed field selector such as `metadata.name=x,metadata.namespace!=y`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses, accepting only the fields `supported` allows (as the API server does per kind).
    pub fn parse(text: &str, supported: &[&str]) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, expected)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *expected) == *equal
        })
    }
}

/// Field selectors the API server supports for a resource, beyond `metadata.name` and
/// `metadata.namespace` which every resource supports.
pub(crate) fn supported_fields(group: &str, plural: &str) -> Vec<&'static str> {
    let mut fields = vec!["metadata.name", "metadata.namespace"];
    let extra: &[&str] = match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("batch", "jobs") => &["status.successful"],
        _ => &[],
    };
    fields.extend_from_slice(extra);
    fields
}
