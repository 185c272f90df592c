//! Label selectors with the API server's rules: validation of `matchLabels` and
//! `matchExpressions`, kubectl's text form (`app=shop,tier in (api,web),!legacy`), and matching
//! against an object's labels.
//!
//! Matching follows `k8s.io/apimachinery/pkg/labels`: every requirement must hold; `NotIn`,
//! `!=` and `DoesNotExist` also hold for an object without the label; an empty selector matches
//! every object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::{LabelSelector, LabelSelectorRequirement};

/// Longest label value, and longest name part of a label key.
const MAX_LABEL_VALUE: usize = 63;
/// Longest prefix (a DNS subdomain) of a label key.
const MAX_KEY_PREFIX: usize = 253;

/// How a requirement compares a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// The label has one of the values (`matchLabels`, `key=value`, `key in (a,b)`).
    In,
    /// The label is missing or has none of the values (`key!=value`, `key notin (a,b)`).
    NotIn,
    /// The label is present (`key`).
    Exists,
    /// The label is missing (`!key`).
    DoesNotExist,
}

/// One requirement on one label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The comparison.
    pub operator: Operator,
    /// The values of `In` and `NotIn` (empty for the others).
    pub values: BTreeSet<String>,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::In if self.values.len() == 1 => write!(f, "{}={}", self.key, list()),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn if self.values.len() == 1 => write!(f, "{}!={}", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => f.write_str(&self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A validated label selector: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// A problem in a selector, with the path below the selector it is about
/// (`matchExpressions[0].values`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectorError {
    /// Path below the selector (empty for the selector as a whole).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Whether the value is simply missing (rather than malformed or unsupported).
    pub required: bool,
}

impl SelectorError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SelectorError {
            field: field.into(),
            message: message.into(),
            required: false,
        }
    }

    fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        SelectorError {
            required: true,
            ..SelectorError::invalid(field, message)
        }
    }
}

impl Selector {
    /// The selector a `spec.resources[].selector` stands for, or every problem in it.
    pub fn from_api(selector: &LabelSelector) -> Result<Selector, Vec<SelectorError>> {
        let mut errors = Vec::new();
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let at = format!("matchLabels[{key:?}]");
            let mut ok = true;
            if let Err(problem) = check_key(key) {
                errors.push(SelectorError::invalid(
                    at.clone(),
                    format!("{key:?} is not a valid label key: {problem}"),
                ));
                ok = false;
            }
            if let Err(problem) = check_value(value) {
                errors.push(SelectorError::invalid(
                    at,
                    format!("{value:?} is not a valid label value: {problem}"),
                ));
                ok = false;
            }
            if ok {
                requirements.push(Requirement {
                    key: key.clone(),
                    operator: Operator::In,
                    values: BTreeSet::from([value.clone()]),
                });
            }
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            match requirement(expression, &format!("matchExpressions[{index}]")) {
                Ok(r) => requirements.push(r),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Selector::new(requirements))
        } else {
            Err(errors)
        }
    }

    /// Parses kubectl's selector syntax: comma-separated `key=value`, `key==value`,
    /// `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` and `!key`.
    pub fn parse(text: &str) -> Result<Selector, ParseError> {
        Parser::new(text).selector()
    }

    fn new(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort();
        requirements.dedup();
        Selector { requirements }
    }

    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

/// The canonical text form: requirements sorted, values sorted; the same selector written in
/// any order has the same text. Empty for a selector that matches everything.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// The text form of a spec selector, for messages and status; a selector that is not valid
/// is shown as written.
pub fn describe(selector: &LabelSelector) -> String {
    match Selector::from_api(selector) {
        Ok(s) if s.is_everything() => "everything".to_string(),
        Ok(s) => s.to_string(),
        Err(_) => serde_json::to_string(selector).unwrap_or_default(),
    }
}

fn requirement(
    expression: &LabelSelectorRequirement,
    at: &str,
) -> Result<Requirement, Vec<SelectorError>> {
    let mut errors = Vec::new();
    if expression.key.is_empty() {
        errors.push(SelectorError::required(
            format!("{at}.key"),
            "required; name the label to compare",
        ));
    } else if let Err(problem) = check_key(&expression.key) {
        errors.push(SelectorError::invalid(
            format!("{at}.key"),
            format!("{:?} is not a valid label key: {problem}", expression.key),
        ));
    }
    let values = expression.values.clone().unwrap_or_default();
    let operator = match expression.operator.as_str() {
        "In" => Some(Operator::In),
        "NotIn" => Some(Operator::NotIn),
        "Exists" => Some(Operator::Exists),
        "DoesNotExist" => Some(Operator::DoesNotExist),
        "" => {
            errors.push(SelectorError::required(
                format!("{at}.operator"),
                "required; use In, NotIn, Exists or DoesNotExist",
            ));
            None
        }
        other => {
            let hint = ["In", "NotIn", "Exists", "DoesNotExist"]
                .into_iter()
                .find(|known| known.eq_ignore_ascii_case(other))
                .map(|known| format!(" (case matters; did you mean {known:?}?)"))
                .unwrap_or_default();
            errors.push(SelectorError::invalid(
                format!("{at}.operator"),
                format!(
                    "{other:?} is not a selector operator{hint}; use In, NotIn, Exists or DoesNotExist"
                ),
            ));
            None
        }
    };
    match operator {
        Some(Operator::In | Operator::NotIn) if values.is_empty() => {
            errors.push(SelectorError::required(
                format!("{at}.values"),
                format!(
                    "at least one value is required when the operator is {}",
                    expression.operator
                ),
            ));
        }
        Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
            errors.push(SelectorError::invalid(
                format!("{at}.values"),
                format!(
                    "must be empty when the operator is {}; remove the values or use In or NotIn",
                    expression.operator
                ),
            ));
        }
        _ => {}
    }
    for (j, value) in values.iter().enumerate() {
        if let Err(problem) = check_value(value) {
            errors.push(SelectorError::invalid(
                format!("{at}.values[{j}]"),
                format!("{value:?} is not a valid label value: {problem}"),
            ));
        }
    }
    match operator {
        Some(operator) if errors.is_empty() => Ok(Requirement {
            key: expression.key.clone(),
            operator,
            values: match operator {
                Operator::In | Operator::NotIn => values.into_iter().collect(),
                _ => BTreeSet::new(),
            },
        }),
        _ => Err(errors),
    }
}

/// Whether `text` is a name part or label value: alphanumerics, `-`, `_`, `.`, starting and
/// ending with an alphanumeric.
fn is_label_word(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Whether `text` is a lowercase RFC 1123 subdomain (a key prefix such as `example.com`).
fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_KEY_PREFIX
        && text.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    (first.is_ascii_lowercase() || first.is_ascii_digit())
                        && (last.is_ascii_lowercase() || last.is_ascii_digit())
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                }
                _ => false,
            }
        })
}

/// Checks a label key as the API server does (a qualified name: `[prefix/]name`).
pub fn check_key(key: &str) -> Result<(), String> {
    const WORD: &str = "alphanumeric characters, '-', '_' or '.', starting and ending with an \
                        alphanumeric character (such as app, my.name or 123-abc)";
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(format!(
            "a key is a name of {WORD}, with an optional DNS subdomain prefix and '/' (such as \
             example.com/name); it has more than one '/'"
        ));
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("the prefix before '/' must not be empty".into());
        }
        if prefix.len() > MAX_KEY_PREFIX {
            return Err(format!(
                "the prefix before '/' must be at most {MAX_KEY_PREFIX} characters"
            ));
        }
        if !is_dns_subdomain(prefix) {
            return Err(
                "the prefix before '/' must be a lowercase DNS subdomain: lowercase letters, \
                 digits, '-' and '.', starting and ending with a letter or digit (such as \
                 example.com)"
                    .into(),
            );
        }
    }
    if name.is_empty() {
        return Err("the name part must not be empty".into());
    }
    if name.len() > MAX_LABEL_VALUE {
        return Err(format!(
            "the name part must be at most {MAX_LABEL_VALUE} characters"
        ));
    }
    if !is_label_word(name) {
        return Err(format!("the name part must consist of {WORD}"));
    }
    Ok(())
}

/// Checks a label value as the API server does (empty, or at most 63 label characters).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_LABEL_VALUE {
        return Err(format!("must be at most {MAX_LABEL_VALUE} characters"));
    }
    if !value.is_empty() && !is_label_word(value) {
        return Err(
            "must be empty or consist of alphanumeric characters, '-', '_' or '.', \
                    starting and ending with an alphanumeric character (such as MyValue, \
                    my_value or 12345)"
                .into(),
        );
    }
    Ok(())
}

/// A selector text that does not parse, with the character position of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {text:?} at character {position}: {message}")]
pub struct ParseError {
    /// The selector as given.
    pub text: String,
    /// 1-based character position.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Not,
    NotEquals,
    Equals,
    Open,
    Close,
    Comma,
    Compare(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Not => "'!'".into(),
            Token::NotEquals => "'!='".into(),
            Token::Equals => "'='".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::Compare(c) => format!("'{c}'"),
            Token::End => "the end".into(),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            chars: text.chars().collect(),
            at: 0,
        }
    }

    fn error(&self, position: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            text: self.text.to_string(),
            position: position + 1,
            message: message.into(),
        }
    }

    /// The next token and where it starts.
    fn next(&mut self) -> (usize, Token) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
        let start = self.at;
        let Some(&c) = self.chars.get(self.at) else {
            return (start, Token::End);
        };
        self.at += 1;
        let token = match c {
            '!' if self.chars.get(self.at) == Some(&'=') => {
                self.at += 1;
                Token::NotEquals
            }
            '!' => Token::Not,
            '=' => {
                if self.chars.get(self.at) == Some(&'=') {
                    self.at += 1;
                }
                Token::Equals
            }
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '<' | '>' => Token::Compare(c),
            _ => {
                let mut word = String::from(c);
                while let Some(&c) = self.chars.get(self.at) {
                    if c.is_whitespace() || "!=(),<>".contains(c) {
                        break;
                    }
                    word.push(c);
                    self.at += 1;
                }
                Token::Word(word)
            }
        };
        (start, token)
    }

    fn peek(&mut self) -> Token {
        let saved = self.at;
        let (_, token) = self.next();
        self.at = saved;
        token
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let mut requirements = Vec::new();
        if self.peek() == Token::End {
            return Ok(Selector::default());
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                (_, Token::End) => break,
                (_, Token::Comma) => {}
                (at, other) => {
                    return Err(self.error(
                        at,
                        format!("expected ',' or the end, found {}", other.describe()),
                    ));
                }
            }
        }
        Ok(Selector::new(requirements))
    }

    fn key(&mut self) -> Result<String, ParseError> {
        match self.next() {
            (at, Token::Word(key)) => {
                check_key(&key).map_err(|problem| {
                    self.error(at, format!("{key:?} is not a valid label key: {problem}"))
                })?;
                Ok(key)
            }
            (at, other) => Err(self.error(
                at,
                format!("expected a label key, found {}", other.describe()),
            )),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, ParseError> {
        if self.peek() == Token::Not {
            self.next();
            let key = self.key()?;
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: BTreeSet::new(),
            });
        }
        let key = self.key()?;
        let (operator, values) = match self.peek() {
            Token::End | Token::Comma => (Operator::Exists, BTreeSet::new()),
            Token::Equals | Token::NotEquals => {
                let (_, token) = self.next();
                let value = self.exact_value()?;
                let operator = if token == Token::Equals {
                    Operator::In
                } else {
                    Operator::NotIn
                };
                (operator, BTreeSet::from([value]))
            }
            Token::Word(word) if word == "in" || word == "notin" => {
                let (at, _) = self.next();
                let values = self.value_set()?;
                if values.is_empty() {
                    return Err(self.error(
                        at,
                        format!("{word:?} needs at least one value, as in {key} {word} (a,b)"),
                    ));
                }
                let operator = if word == "in" {
                    Operator::In
                } else {
                    Operator::NotIn
                };
                (operator, values)
            }
            Token::Compare(c) => {
                let (at, _) = self.next();
                return Err(self.error(
                    at,
                    format!(
                        "'{c}' compares numbers, which a selector in a ChangeTriggeredJob (like \
                         matchExpressions) cannot express; use =, !=, in, notin, exists (key) \
                         or !key"
                    ),
                ));
            }
            other => {
                let (at, _) = self.next();
                return Err(self.error(
                    at,
                    format!(
                        "expected =, ==, !=, in, notin, ',' or the end after {key:?}, found {}",
                        other.describe()
                    ),
                ));
            }
        };
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `==` or `!=`; may be empty (`key=`).
    fn exact_value(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Token::End | Token::Comma => Ok(String::new()),
            Token::Word(_) => {
                let (at, token) = self.next();
                let Token::Word(value) = token else {
                    return Err(self.error(at, "expected a value"));
                };
                self.valid_value(at, value)
            }
            other => {
                let (at, _) = self.next();
                Err(self.error(at, format!("expected a value, found {}", other.describe())))
            }
        }
    }

    fn valid_value(&self, at: usize, value: String) -> Result<String, ParseError> {
        check_value(&value).map_err(|problem| {
            self.error(
                at,
                format!("{value:?} is not a valid label value: {problem}"),
            )
        })?;
        Ok(value)
    }

    /// `(a,b,c)`; empty entries are empty values, as in the API server's parser.
    fn value_set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        match self.next() {
            (_, Token::Open) => {}
            (at, other) => {
                return Err(self.error(
                    at,
                    format!("expected '(' after in/notin, found {}", other.describe()),
                ));
            }
        }
        let mut values = BTreeSet::new();
        if self.peek() == Token::Close {
            self.next();
            return Ok(values);
        }
        loop {
            match self.next() {
                (at, Token::Word(value)) => {
                    values.insert(self.valid_value(at, value)?);
                    match self.next() {
                        (_, Token::Comma) => {}
                        (_, Token::Close) => return Ok(values),
                        (at, other) => {
                            return Err(self.error(
                                at,
                                format!("expected ',' or ')', found {}", other.describe()),
                            ));
                        }
                    }
                }
                (_, Token::Comma) => {
                    values.insert(String::new());
                }
                (_, Token::Close) => {
                    values.insert(String::new());
                    return Ok(values);
                }
                (at, other) => {
                    return Err(self.error(
                        at,
                        format!("expected a value, ',' or ')', found {}", other.describe()),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
