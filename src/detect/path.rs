//! kubectl-style field paths (`spec.template.spec.containers[*].image`,
//! `metadata.annotations['example.com/x']`) parsed into segments and evaluated with an
//! RFC 9535 JSONPath engine.
//!
//! Users write the paths kubectl's `-o jsonpath` taught them, without the leading `$`. We parse
//! them ourselves so that errors point at the offending character, then render an RFC 9535
//! query for `jsonpath-rust` (which also evaluates filter expressions such as
//! `containers[?(@.name=="app")].image`).

use std::fmt;

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

/// A parsed field path.
#[derive(Clone, Debug)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
    query: JpQuery,
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// An object member: `.name` or `['name']`.
    Key(String),
    /// An array element: `[3]`, or `[-1]` for the last one.
    Index(i64),
    /// Every member or element: `.*` or `[*]`.
    Wildcard,
    /// An array slice `[start:end]` (either bound optional).
    Slice(Option<i64>, Option<i64>),
    /// A filter expression, kept as written between `[?` and `]`.
    Filter(String),
    /// Every descendant with this key: `..name`.
    Descendant(String),
}

/// Why a field path could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
// The path is shown as written (not debug-escaped), so backslash escapes read as typed.
#[error("invalid field path \"{path}\": {reason} (at character {position})")]
pub struct PathError {
    /// The path as written.
    pub path: String,
    /// 1-based character position of the problem.
    pub position: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl FieldPath {
    /// Parses a kubectl-style path. A leading `$`, `.` or surrounding `{...}` are accepted and
    /// dropped, so `{.data}`, `$.data`, `.data` and `data` are the same path.
    pub fn parse(input: &str) -> Result<FieldPath, PathError> {
        let segments = Parser::new(input).parse()?;
        let rendered = render_rfc9535(&segments);
        let query = parse_json_path(&rendered).map_err(|err| PathError {
            path: input.to_string(),
            position: 1,
            reason: format!("the expression is not valid JSONPath ({err})"),
        })?;
        Ok(FieldPath {
            text: input.trim().to_string(),
            segments,
            query,
        })
    }

    /// The path as the user wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the path names at most one location (no wildcard, slice, filter or descent).
    pub fn is_definite(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Key(_) | Segment::Index(_)))
    }

    /// The equivalent RFC 9535 JSONPath query.
    pub fn to_rfc9535(&self) -> String {
        render_rfc9535(&self.segments)
    }

    /// Every value the path selects in `object`, in document order.
    pub fn select<'a>(&self, object: &'a Value) -> Vec<&'a Value> {
        match js_path_process(&self.query, object) {
            Ok(found) => found.into_iter().map(|r| r.val()).collect(),
            // Evaluation errors (e.g. a filter comparing incompatible values) select nothing.
            Err(_) => Vec::new(),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        self.segments == other.segments
    }
}

fn render_rfc9535(segments: &[Segment]) -> String {
    let mut out = String::from("$");
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                out.push('[');
                out.push_str(&quote(key));
                out.push(']');
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Wildcard => out.push_str("[*]"),
            Segment::Slice(start, end) => {
                out.push('[');
                if let Some(s) = start {
                    out.push_str(&s.to_string());
                }
                out.push(':');
                if let Some(e) = end {
                    out.push_str(&e.to_string());
                }
                out.push(']');
            }
            Segment::Filter(expr) => {
                out.push_str("[?");
                out.push_str(expr);
                out.push(']');
            }
            Segment::Descendant(key) => {
                out.push_str("..[");
                out.push_str(&quote(key));
                out.push(']');
            }
        }
    }
    out
}

/// An RFC 9535 single-quoted string literal.
fn quote(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push('\'');
    for c in key.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            chars: input.chars().collect(),
            pos: 0,
        }
    }

    fn error(&self, position: usize, reason: impl Into<String>) -> PathError {
        PathError {
            path: self.input.to_string(),
            position: position + 1,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn parse(mut self) -> Result<Vec<Segment>, PathError> {
        self.strip_wrapping()?;
        if self.pos >= self.chars.len() {
            return Err(self.error(0, "the path is empty; use \"*\" for the whole object"));
        }
        let mut segments = Vec::new();
        // The first segment may be a bare key (kubectl paths start without a dot).
        match self.peek() {
            Some('[') => {}
            Some('.') => {}
            Some(_) => segments.push(self.bare_key()?),
            None => {}
        }
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        self.pos += 1;
                        let Segment::Key(key) = self.bare_key()? else {
                            return Err(self.error(self.pos, "expected a field name after \"..\""));
                        };
                        segments.push(Segment::Descendant(key));
                    } else {
                        segments.push(self.bare_key()?);
                    }
                }
                '[' => segments.push(self.bracket()?),
                other => {
                    return Err(self.error(
                        self.pos,
                        format!("unexpected {other:?}; expected \".\" or \"[\""),
                    ));
                }
            }
        }
        if segments.is_empty() {
            return Err(self.error(
                0,
                "the path selects nothing; use \"*\" for the whole object",
            ));
        }
        Ok(segments)
    }

    /// Drops `{...}` around the path and a leading `$`, then the end markers around them.
    fn strip_wrapping(&mut self) -> Result<(), PathError> {
        let mut end = self.chars.len();
        while self.pos < end && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
        while end > self.pos && self.chars[end - 1].is_whitespace() {
            end -= 1;
        }
        if self.chars.get(self.pos) == Some(&'{') {
            if end == 0 || self.chars[end - 1] != '}' {
                return Err(self.error(self.pos, "\"{\" is not closed by \"}\""));
            }
            self.pos += 1;
            end -= 1;
        }
        if self.chars.get(self.pos) == Some(&'$') {
            self.pos += 1;
        }
        // A leading single dot (`.data`) is the kubectl form; treat it as no dot.
        if self.chars.get(self.pos) == Some(&'.') && self.chars.get(self.pos + 1) != Some(&'.') {
            self.pos += 1;
        }
        self.chars.truncate(end);
        Ok(())
    }

    /// A name up to the next `.` or `[`. As in kubectl, a backslash escapes a dot (or a
    /// bracket, or itself) inside the name: `metadata.labels.app\.kubernetes\.io/name`.
    fn bare_key(&mut self) -> Result<Segment, PathError> {
        let start = self.pos;
        let mut name = String::new();
        let mut bare_star = false;
        while let Some(c) = self.peek() {
            if c == '.' || c == '[' {
                break;
            }
            if c == '\\' {
                match self.chars.get(self.pos + 1).copied() {
                    Some(next @ ('.' | '[' | ']' | '\\' | '*')) => {
                        name.push(next);
                        self.pos += 2;
                        continue;
                    }
                    Some(next) => {
                        return Err(self.error(
                            self.pos,
                            format!(
                                "unknown escape \"\\{next}\"; a backslash may only escape \".\", \"[\", \"]\", \"*\" or \"\\\" in a field name"
                            ),
                        ));
                    }
                    None => {
                        return Err(self.error(self.pos, "the path ends with a lone backslash"));
                    }
                }
            }
            if c == ']' || c == '\'' || c == '"' || c.is_whitespace() || c == '{' || c == '}' {
                return Err(self.error(
                    self.pos,
                    format!(
                        "{c:?} is not allowed in a field name; quote names with special \
                         characters like ['example.com/key']"
                    ),
                ));
            }
            bare_star |= c == '*';
            name.push(c);
            self.pos += 1;
        }
        if name.is_empty() {
            return Err(self.error(start, "expected a field name"));
        }
        if bare_star && name == "*" {
            return Ok(Segment::Wildcard);
        }
        if bare_star {
            return Err(self.error(
                start,
                "\"*\" must be a whole segment (\".*\" or \"[*]\"), not part of a name",
            ));
        }
        Ok(Segment::Key(name))
    }

    fn bracket(&mut self) -> Result<Segment, PathError> {
        let open = self.pos;
        self.pos += 1; // '['
        let segment = match self.peek() {
            Some('\'') | Some('"') => Segment::Key(self.quoted()?),
            Some('*') => {
                self.pos += 1;
                Segment::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                return self.filter(open);
            }
            Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => self.index_or_slice()?,
            Some(c) => {
                return Err(self.error(
                    self.pos,
                    format!(
                        "unexpected {c:?} after \"[\"; expected an index, *, a quoted name or ?(filter)"
                    ),
                ));
            }
            None => return Err(self.error(open, "\"[\" is not closed")),
        };
        if self.peek() != Some(']') {
            return Err(self.error(self.pos.min(self.chars.len()), "expected \"]\""));
        }
        self.pos += 1;
        Ok(segment)
    }

    fn quoted(&mut self) -> Result<String, PathError> {
        let start = self.pos;
        let Some(quote) = self.peek() else {
            return Err(self.error(start, "expected a quoted name"));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error(start, "quoted name is not closed")),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) if c == quote || c == '\\' => out.push(c),
                        Some(c) => {
                            return Err(self.error(
                                self.pos,
                                format!("unknown escape \"\\{c}\" in a quoted name"),
                            ));
                        }
                        None => return Err(self.error(start, "quoted name is not closed")),
                    }
                    self.pos += 1;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn integer(&mut self) -> Result<Option<i64>, PathError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if text.is_empty() {
            return Ok(None);
        }
        // RFC 9535 limits indices to the I-JSON safe range.
        const LIMIT: i64 = (1 << 53) - 1;
        match text.parse::<i64>() {
            Ok(n) if (-LIMIT..=LIMIT).contains(&n) && text != "-0" => Ok(Some(n)),
            _ => Err(self.error(start, format!("{text:?} is not a valid array index"))),
        }
    }

    fn index_or_slice(&mut self) -> Result<Segment, PathError> {
        let first = self.integer()?;
        if self.peek() == Some(':') {
            self.pos += 1;
            let second = self.integer()?;
            return Ok(Segment::Slice(first, second));
        }
        match first {
            Some(i) => Ok(Segment::Index(i)),
            None => Err(self.error(self.pos, "expected an array index")),
        }
    }

    /// `[?(...)]` or `[?...]`: everything up to the matching `]`, respecting quotes and nesting.
    fn filter(&mut self, open: usize) -> Result<Segment, PathError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            match (quote, c) {
                (Some(q), '\\') => {
                    let _ = q;
                    self.pos += 1;
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '(') => depth += 1,
                (None, ')') => depth = depth.saturating_sub(1),
                (None, ']') if depth == 0 => {
                    let expr: String = self.chars[start..self.pos].iter().collect();
                    self.pos += 1;
                    if expr.trim().is_empty() {
                        return Err(self.error(start, "the filter expression is empty"));
                    }
                    return Ok(Segment::Filter(expr.trim().to_string()));
                }
                (None, ']') => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        Err(self.error(open, "filter \"[?\" is not closed by \"]\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(path: &str) -> Vec<Segment> {
        FieldPath::parse(path)
            .map(|p| p.segments().to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn top_level_field_is_one_key() {
        assert_eq!(keys("data"), vec![Segment::Key("data".into())]);
    }

    #[test]
    fn nested_field_splits_on_dots() {
        assert_eq!(
            keys("spec.replicas"),
            vec![Segment::Key("spec".into()), Segment::Key("replicas".into())]
        );
    }

    #[test]
    fn container_images_use_a_wildcard() {
        assert_eq!(
            keys("spec.template.spec.containers[*].image"),
            vec![
                Segment::Key("spec".into()),
                Segment::Key("template".into()),
                Segment::Key("spec".into()),
                Segment::Key("containers".into()),
                Segment::Wildcard,
                Segment::Key("image".into()),
            ]
        );
    }

    #[test]
    fn bracket_quoted_keys_may_contain_dots_and_slashes() {
        assert_eq!(
            keys("metadata.annotations['example.com/x']"),
            vec![
                Segment::Key("metadata".into()),
                Segment::Key("annotations".into()),
                Segment::Key("example.com/x".into()),
            ]
        );
        assert_eq!(keys(r#"data["a.b"]"#), keys("data['a.b']"));
    }

    #[test]
    fn backslash_escaped_dots_stay_in_the_name_as_in_kubectl() {
        assert_eq!(
            keys(r"metadata.labels.app\.kubernetes\.io/name"),
            keys("metadata.labels['app.kubernetes.io/name']")
        );
        assert_eq!(
            keys(r"{.metadata.annotations.example\.com/x}"),
            keys("metadata.annotations['example.com/x']")
        );
        // A brace, a backslash and a star can be escaped too; the escaped star is a name.
        assert_eq!(
            keys(r"data.a\[0\]\\b"),
            vec![Segment::Key("data".into()), Segment::Key(r"a[0]\b".into())]
        );
        assert_eq!(
            keys(r"data.\*"),
            vec![Segment::Key("data".into()), Segment::Key("*".into())]
        );
        assert_eq!(
            keys(r"data.*"),
            vec![Segment::Key("data".into()), Segment::Wildcard]
        );
        let object = serde_json::json!({
            "metadata": { "labels": { "app.kubernetes.io/name": "web", "app": { "kubernetes": {} } } }
        });
        let path = FieldPath::parse(r"metadata.labels.app\.kubernetes\.io/name")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path.select(&object), vec![&serde_json::json!("web")]);
    }

    #[test]
    fn unknown_escapes_and_a_trailing_backslash_are_errors() {
        let err = FieldPath::parse(r"data.a\nb")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err.position, 7);
        assert!(err.reason.contains("unknown escape"), "{}", err.reason);
        assert!(
            err.to_string()
                .starts_with(r#"invalid field path "data.a\nb": "#),
            "{err}"
        );
        let err = FieldPath::parse(r"data.a\")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(err.reason.contains("lone backslash"), "{}", err.reason);
        let err = FieldPath::parse(r"data.a\*b*")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(err.reason.contains("whole segment"), "{}", err.reason);
    }

    #[test]
    fn dashed_keys_are_plain_names() {
        assert_eq!(
            keys("data.important-key"),
            vec![
                Segment::Key("data".into()),
                Segment::Key("important-key".into())
            ]
        );
    }

    #[test]
    fn kubectl_prefixes_are_accepted() {
        for p in ["{.data}", "$.data", ".data", " data ", "{$.data}"] {
            assert_eq!(keys(p), vec![Segment::Key("data".into())], "{p}");
        }
    }

    #[test]
    fn indices_slices_and_filters_parse() {
        assert_eq!(
            keys("a[0]"),
            vec![Segment::Key("a".into()), Segment::Index(0)]
        );
        assert_eq!(
            keys("a[-1]"),
            vec![Segment::Key("a".into()), Segment::Index(-1)]
        );
        assert_eq!(
            keys("a[1:3]"),
            vec![Segment::Key("a".into()), Segment::Slice(Some(1), Some(3))]
        );
        assert_eq!(
            keys("a[:2]"),
            vec![Segment::Key("a".into()), Segment::Slice(None, Some(2))]
        );
        assert_eq!(
            keys("a[?(@.name=='x')].b"),
            vec![
                Segment::Key("a".into()),
                Segment::Filter("(@.name=='x')".into()),
                Segment::Key("b".into())
            ]
        );
        assert_eq!(
            keys("a..image"),
            vec![
                Segment::Key("a".into()),
                Segment::Descendant("image".into())
            ]
        );
    }

    #[test]
    fn malformed_paths_are_rejected_with_a_position() {
        for bad in [
            "",
            "   ",
            "spec..",
            "spec.",
            "spec[",
            "spec[0",
            "spec['x",
            "spec[abc]",
            "spec[?(@.a]",
            "a b",
            "spec.]",
            "{.data",
            "data[*",
            "da*ta",
            "a[1.5]",
            "a[?]",
            "[",
            "$",
            "{}",
            "a['x\\q']",
            "a[99999999999999999999]",
        ] {
            let err = FieldPath::parse(bad);
            assert!(err.is_err(), "{bad:?} should be rejected");
        }
        let err = FieldPath::parse("spec.tem plate").err();
        assert_eq!(err.map(|e| e.position), Some(9));
    }

    #[test]
    fn select_finds_values_in_document_order() {
        let obj = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx:1"}, {"name": "b", "image": "redis:7"}
        ]}}}});
        let p = FieldPath::parse("spec.template.spec.containers[*].image").ok();
        let got: Vec<Value> = p
            .map(|p| p.select(&obj).into_iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(got, vec![json!("nginx:1"), json!("redis:7")]);

        let p = FieldPath::parse("spec.template.spec.containers[?(@.name=='b')].image").ok();
        let got: Vec<Value> = p
            .map(|p| p.select(&obj).into_iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(got, vec![json!("redis:7")]);
    }

    #[test]
    fn select_on_missing_field_is_empty() {
        let obj = json!({"data": {"a": "1"}});
        let p = FieldPath::parse("data.b");
        assert_eq!(p.map(|p| p.select(&obj).len()).ok(), Some(0));
    }

    #[test]
    fn quoted_keys_round_trip_through_rfc9535() {
        let p = FieldPath::parse(r#"metadata.annotations["it's \"odd\""]"#);
        let obj = json!({"metadata": {"annotations": {"it's \"odd\"": "yes"}}});
        let got: Vec<Value> = p
            .map(|p| p.select(&obj).into_iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(got, vec![json!("yes")]);
    }

    #[test]
    fn definite_paths_have_no_wildcards() {
        assert_eq!(
            FieldPath::parse("spec.replicas").map(|p| p.is_definite()),
            Ok(true)
        );
        assert_eq!(
            FieldPath::parse("a[0].b").map(|p| p.is_definite()),
            Ok(true)
        );
        assert_eq!(
            FieldPath::parse("a[*].b").map(|p| p.is_definite()),
            Ok(false)
        );
    }
}
