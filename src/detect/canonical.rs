//! Canonical JSON: object keys sorted by their UTF-16 code units (as RFC 8785 does), no
//! whitespace, and one spelling per number, so equal content always hashes the same whatever
//! key order or formatting the API server (or a YAML file) used.
//!
//! The writer streams into any [`Sink`], so a fingerprint is computed without first building
//! the whole text.

use serde_json::{Number, Value};

/// Where canonical bytes go.
pub trait Sink {
    /// Appends bytes.
    fn push(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn push(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes `value` in canonical form.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only valid UTF-8 is ever written: JSON punctuation, numbers and escaped Rust strings.
    String::from_utf8(out).unwrap_or_default()
}

/// Streams `value` in canonical form into `out`.
pub fn write_canonical(value: &Value, out: &mut impl Sink) {
    match value {
        Value::Null => out.push(b"null"),
        Value::Bool(b) => out.push(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b",");
                }
                write_canonical(item, out);
            }
            out.push(b"]");
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b",");
                }
                write_string(key, out);
                out.push(b":");
                write_canonical(item, out);
            }
            out.push(b"}");
        }
    }
}

/// Key order of RFC 8785: by UTF-16 code units. For keys without characters beyond the Basic
/// Multilingual Plane (nearly all) this equals byte order, which is much cheaper to compare.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let astral = |s: &str| s.bytes().any(|b| b >= 0xF0);
    if astral(a) || astral(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

/// Integers print as integers; a float with no fractional part that fits in an i64 prints as
/// that integer (so `1.0` and `1` are the same), other floats use the shortest round-trip form.
fn write_number(n: &Number, out: &mut impl Sink) {
    let text = if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            // Exactly representable integer range; the cast cannot truncate.
            (f as i64).to_string()
        } else {
            n.to_string()
        }
    } else {
        n.to_string()
    };
    out.push(text.as_bytes());
}

/// A JSON string with the minimal escaping serde_json uses: `"`, `\` and control characters.
fn write_string(s: &str, out: &mut impl Sink) {
    out.push(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => {
                out.push(&bytes[start..i]);
                let hex = b"0123456789abcdef";
                out.push(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex[usize::from(b >> 4)],
                    hex[usize::from(b & 0xF)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.push(&bytes[start..i]);
        out.push(escaped);
        start = i + 1;
    }
    out.push(&bytes[start..]);
    out.push(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        assert_eq!(
            to_canonical_string(&json!("\u{1}\u{1f}é")),
            "\"\\u0001\\u001fé\""
        );
    }

    #[test]
    fn keys_beyond_the_bmp_sort_by_utf16_units() {
        // U+FF61 sorts after U+1F600 by code point but before it in UTF-16 (0xD83D...).
        let v = json!({"\u{FF61}": 1, "\u{1F600}": 2});
        assert_eq!(to_canonical_string(&v), "{\"\u{1F600}\":2,\"\u{FF61}\":1}");
    }

    proptest! {
        /// String escaping agrees with serde_json's.
        #[test]
        fn strings_match_serde_json(s in "\\PC*|[\\x00-\\x1f\"\\\\a-z]{0,20}") {
            prop_assert_eq!(to_canonical_string(&Value::String(s.clone())), serde_json::to_string(&s).unwrap_or_default());
        }
    }
}
