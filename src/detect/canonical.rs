//! Canonical JSON: object keys sorted by their UTF-16 code units (as RFC 8785 does), no
//! whitespace, and one spelling per number, so equal content always hashes the same whatever
//! key order or formatting the API server (or a YAML file) used.

use serde_json::{Number, Value};

/// Writes `value` in canonical form.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// Integers print as integers; a float with no fractional part that fits in an i64 prints as
/// that integer (so `1.0` and `1` are the same), other floats use the shortest round-trip form.
fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            // Exactly representable integer range; the cast cannot truncate.
            out.push_str(&(f as i64).to_string());
        } else {
            out.push_str(&n.to_string());
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping is already minimal and deterministic.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v: Value = serde_json::from_str(r#"{ "b": 1, "a": {"d": [1, 2], "c": null} }"#)
            .unwrap_or_default();
        assert_eq!(
            to_canonical_string(&v),
            r#"{"a":{"c":null,"d":[1,2]},"b":1}"#
        );
    }

    #[test]
    fn integral_floats_print_as_integers() {
        assert_eq!(to_canonical_string(&json!(1.0)), "1");
        assert_eq!(to_canonical_string(&json!(-3.0)), "-3");
        assert_eq!(to_canonical_string(&json!(1.5)), "1.5");
        assert_eq!(to_canonical_string(&json!(u64::MAX)), u64::MAX.to_string());
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_canonical_string(&json!("a\"b\n")), r#""a\"b\n""#);
    }
}
