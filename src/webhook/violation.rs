//! A problem found in a ChangeTriggeredJob, tied to the field it is about, and how a list of
//! them is written into one admission message.

use std::fmt;

/// What kind of problem a violation is; maps onto Kubernetes' `StatusCause.reason` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A required value is missing.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// The same value appears twice where it must be unique.
    Duplicate,
    /// A value is set where it must not be.
    Forbidden,
    /// A value is not one of the supported ones.
    NotSupported,
    /// A value is longer than allowed.
    TooLong,
    /// The requesting user lacks a permission the spec needs.
    Unauthorized,
    /// The check could not be carried out (API unreachable, timeout); retrying may succeed.
    Unverified,
}

impl Reason {
    /// The `StatusCause.reason` string (Kubernetes' CauseType where one fits).
    pub fn cause_type(self) -> &'static str {
        match self {
            Reason::Required => "FieldValueRequired",
            Reason::Invalid => "FieldValueInvalid",
            Reason::Duplicate => "FieldValueDuplicate",
            Reason::Forbidden => "FieldValueForbidden",
            Reason::NotSupported => "FieldValueNotSupported",
            Reason::TooLong => "FieldValueTooLong",
            Reason::Unauthorized => "Forbidden",
            Reason::Unverified => "VerificationFailed",
        }
    }
}

/// One problem, with the path of the field it concerns (`spec.resources[1].namespace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path in the ChangeTriggeredJob, empty for the object as a whole.
    pub field: String,
    /// What kind of problem.
    pub reason: Reason,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Violation {
    /// A violation of `reason` at `field`.
    pub fn new(field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }

    /// Whether retrying the same request may succeed (the check itself failed).
    pub fn is_retryable(&self) -> bool {
        self.reason == Reason::Unverified
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// All violations as one message, one per line, in the order found. (Messages may contain
/// `;` themselves, so lines keep them apart; clients that want structure read the causes.)
pub fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_starts_with_the_field_path() {
        let v = Violation::new("spec.history", Reason::Invalid, "must be at least 1");
        assert_eq!(v.to_string(), "spec.history: must be at least 1");
        let whole = Violation::new("", Reason::Invalid, "not an object");
        assert_eq!(whole.to_string(), "not an object");
    }

    #[test]
    fn violations_are_joined_in_order() {
        let all = [
            Violation::new("a", Reason::Required, "x"),
            Violation::new("b", Reason::Invalid, "y"),
        ];
        assert_eq!(join(&all), "a: x\nb: y");
    }

    #[test]
    fn only_unverified_checks_are_retryable() {
        assert!(Violation::new("f", Reason::Unverified, "m").is_retryable());
        assert!(!Violation::new("f", Reason::Invalid, "m").is_retryable());
    }
}
