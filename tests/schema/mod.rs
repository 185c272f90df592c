//! A small model of what the Kubernetes API server does with a CRD's structural schema:
//! validation (type, required, enum, minimum, minItems, minLength, pattern), pruning of
//! unknown fields, and defaulting. Enough to check our generated CRD offline; the e2e suite
//! checks the real thing.

use serde_json::{Map, Value};

/// Validation errors as `path: message`.
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: must be an integer or a string"));
        }
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(map) = value.as_object() else {
                errors.push(format!("{path}: must be an object"));
                return;
            };
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = required.as_str()
                    && !map.contains_key(r)
                {
                    errors.push(format!("{path}.{r}: Required value"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                let child = format!("{path}.{k}");
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    check(s, v, &child, errors);
                } else if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object())
                {
                    check(s, v, &child, errors);
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                errors.push(format!("{path}: must be an array"));
                return;
            };
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errors.push(format!("{path}: must have at least {min} items"));
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(s, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Some("string") => match value.as_str() {
            None => errors.push(format!("{path}: must be a string")),
            Some(s) => {
                if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                    && (s.chars().count() as u64) < min
                {
                    errors.push(format!("{path}: must be at least {min} characters"));
                }
                if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                    match regex::Regex::new(p) {
                        Ok(re) if !re.is_match(s) => errors.push(format!("{path}: must match {p}")),
                        Ok(_) => {}
                        Err(e) => errors.push(format!("{path}: bad pattern {p}: {e}")),
                    }
                }
            }
        },
        Some("integer") => {
            if !(value.is_i64() || value.is_u64()) {
                errors.push(format!("{path}: must be an integer"));
            } else if let (Some(min), Some(v)) = (
                schema.get("minimum").and_then(Value::as_f64),
                value.as_f64(),
            ) && v < min
            {
                errors.push(format!("{path}: must be greater than or equal to {min}"));
            }
        }
        Some("number") if !value.is_number() => errors.push(format!("{path}: must be a number")),
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: must be a boolean")),
        _ => {}
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        // As the API server reports it: the errors of the first alternative, then the summary.
        let results: Vec<Vec<String>> = alternatives
            .iter()
            .map(|alternative| {
                // An alternative is a value validation of the same node ("required" only),
                // so it takes the node's type.
                let mut alternative = alternative.clone();
                if let (Some(map), Some(type_)) = (alternative.as_object_mut(), schema.get("type"))
                {
                    map.entry("type").or_insert_with(|| type_.clone());
                }
                let mut found = Vec::new();
                check(&alternative, value, path, &mut found);
                found
            })
            .collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            if valid == 0 {
                errors.extend(results.into_iter().next().unwrap_or_default());
            }
            errors.push(format!(
                "{path}: must validate one and only one schema (oneOf); {valid} matched"
            ));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: Unsupported value: {value}"));
    }
}

/// Drops fields the schema does not know (unless it preserves unknown fields) and fills in
/// defaults, as the API server does before storing an object.
pub fn prune_and_default(schema: &Value, value: &mut Value) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                match (props.and_then(|p| p.get(&k)), additional) {
                    (Some(s), _) | (None, Some(s)) => {
                        if let Some(v) = map.get_mut(&k) {
                            prune_and_default(s, v);
                        }
                    }
                    (None, None) => {
                        if props.is_some()
                            || schema.get("type").and_then(Value::as_str) == Some("object")
                        {
                            map.remove(&k);
                        }
                    }
                }
            }
            if let Some(props) = props {
                add_defaults(props, map);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune_and_default(s, item);
                }
            }
        }
        _ => {}
    }
}

fn add_defaults(props: &Map<String, Value>, map: &mut Map<String, Value>) {
    for (k, s) in props {
        if !map.contains_key(k)
            && let Some(d) = s.get("default")
        {
            let mut d = d.clone();
            prune_and_default(s, &mut d);
            map.insert(k.clone(), d);
        }
    }
}
