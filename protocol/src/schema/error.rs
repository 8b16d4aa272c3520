//! Why a body does not match its schema, and quoting bad values back in messages.

use crate::value::{Value, ValueError};

/// Why a body does not match its category's schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// The body is not a map of fields.
    #[error("{category}: the body must be a map of fields (got {got})")]
    NotAMap {
        /// The category.
        category: String,
        /// What was given instead.
        got: &'static str,
    },
    /// The body has no fields (extension categories).
    #[error("{category}: the body has no fields")]
    Empty {
        /// The category.
        category: String,
    },
    /// The body's values are malformed (too deep, non-finite numbers).
    #[error("{category}: the body is malformed: {reason}")]
    Malformed {
        /// The category.
        category: String,
        /// What is wrong.
        reason: ValueError,
    },
    /// A field the category does not have.
    #[error("{category}: unknown field `{field}` (known fields: {known})")]
    UnknownField {
        /// The category.
        category: String,
        /// The unknown field.
        field: String,
        /// The category's fields, comma separated.
        known: String,
    },
    /// A required field is missing.
    #[error("{category}: field `{field}` is required")]
    MissingField {
        /// The category.
        category: String,
        /// The missing field.
        field: String,
    },
    /// A field given more than once (from command-line flags).
    #[error("{category}: field `{field}` is given more than once")]
    Duplicate {
        /// The category.
        category: String,
        /// The repeated field.
        field: String,
    },
    /// A field's value has the wrong type.
    #[error("{category}: field `{field}` must be {expected} (got {got})")]
    WrongType {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// What it must be, in words.
        expected: String,
        /// What was given, in words.
        got: String,
    },
    /// Questionnaire answers written as text hold a part that is not `question=answer`.
    #[error(
        "{category}: field `{field}`: `{part}` is not an answer: write question=answer pairs \
         separated by commas or semicolons (an answer holding `,`, `;` or `=` needs --json)"
    )]
    MalformedAnswer {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// The part that is not `question=answer`.
        part: String,
    },
    /// A text, list or file field is empty.
    #[error("{category}: field `{field}` must not be empty")]
    EmptyField {
        /// The category.
        category: String,
        /// The field.
        field: String,
    },
    /// A text, list or file field is too long.
    #[error("{category}: field `{field}` is too long ({len} {what}; at most {max})")]
    TooLong {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
        /// What is counted: `bytes` or `items`.
        what: &'static str,
    },
    /// A text field contains control characters (line breaks are allowed only in long text).
    #[error("{category}: field `{field}` contains control characters")]
    ControlCharacters {
        /// The category.
        category: String,
        /// The field.
        field: String,
    },
    /// A code not in the field's set.
    #[error("{category}: field `{field}` must be one of {allowed} (got `{value}`)")]
    BadCode {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// The value given.
        value: String,
        /// The allowed codes, comma separated.
        allowed: String,
    },
    /// A quantity in a unit the field does not accept.
    #[error("{category}: field `{field}` must be in {allowed} (got unit `{unit}`)")]
    BadUnit {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// The unit given.
        unit: String,
        /// The allowed units.
        allowed: String,
    },
    /// A number outside the field's plausible range.
    #[error("{category}: field `{field}` is {value}{unit}, outside the plausible range {min} to {max}{unit}")]
    OutOfRange {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// The value given.
        value: f64,
        /// The smallest plausible value.
        min: f64,
        /// The largest plausible value.
        max: f64,
        /// The unit with a leading space, or empty.
        unit: String,
    },
    /// A date or date-time that is malformed or does not exist.
    #[error("{category}: field `{field}` must be {expected} (got `{value}`)")]
    BadDate {
        /// The category.
        category: String,
        /// The field.
        field: String,
        /// The value given.
        value: String,
        /// The accepted forms, in words.
        expected: &'static str,
    },
    /// None of a group of fields of which at least one is needed.
    #[error("{category}: give at least one of {fields}")]
    AtLeastOne {
        /// The category.
        category: String,
        /// The fields, comma separated.
        fields: String,
    },
    /// One of two fields that go together without the other.
    #[error("{category}: field `{present}` must be given together with `{missing}`")]
    Together {
        /// The category.
        category: String,
        /// The field given.
        present: String,
        /// The field missing.
        missing: String,
    },
    /// Another rule (message includes the category).
    #[error("{0}")]
    Rule(String),
}

/// The longest excerpt of a bad value quoted back in an error message, in characters.
pub(super) const MAX_QUOTE: usize = 64;

pub(super) fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "true/false",
        Value::Int(_) => "a whole number",
        Value::Float(_) => "a number",
        Value::Text(_) => "text",
        Value::Bytes(_) => "binary data",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
    }
}

pub(super) fn json_kind(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "nothing (null)",
        serde_json::Value::Bool(_) => "true/false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "text",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}
