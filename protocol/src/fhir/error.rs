//! Why a FHIR resource, Bundle or NDJSON file is refused.

use crate::schema::SchemaError;

/// Why FHIR input is refused. Each variant maps to an OperationOutcome `issue.code`
/// ([`FhirError::issue_code`]), so an HTTP API can answer with the right outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirError {
    /// The input is not JSON (or not UTF-8).
    #[error("not valid JSON: {reason}")]
    NotJson {
        /// The parser's message (line and column).
        reason: String,
    },
    /// The input (or one NDJSON line, or one resource) is larger than accepted.
    #[error("{what} is too large ({len} bytes; at most {max})")]
    TooLarge {
        /// What was measured.
        what: String,
        /// Its size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More items than accepted (Bundle entries, NDJSON lines, answers).
    #[error("{what} has too many items ({count}; at most {max})")]
    TooMany {
        /// What was counted.
        what: String,
        /// How many there were.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A resource without a string `resourceType`.
    #[error("{path}: not a FHIR resource (no string `resourceType`)")]
    NoResourceType {
        /// Where (e.g. `Bundle.entry[3].resource`, or `resource`).
        path: String,
    },
    /// A `resourceType` that is not a FHIR R4 resource type.
    #[error("`{resource_type}` is not a FHIR R4 resource type")]
    UnknownResourceType {
        /// The type given (clipped).
        resource_type: String,
    },
    /// A FHIR R4 resource type cophr does not map to a category.
    #[error("{resource_type} resources are not mapped to a cophr category (mapped: {mapped})")]
    Unmapped {
        /// The type.
        resource_type: String,
        /// The mapped types, comma separated.
        mapped: String,
    },
    /// An element of the wrong JSON type.
    #[error("{path} must be {expected} (got {got})")]
    WrongType {
        /// The element's path, e.g. `Observation.code.coding[0].display`.
        path: String,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        got: &'static str,
    },
    /// A required element is missing (or an empty array where one item is required).
    #[error("{path} is required")]
    Missing {
        /// The element's path.
        path: String,
    },
    /// An element of the right type with a bad value (id, date, code).
    #[error("{path}: {reason} (got `{value}`)")]
    BadValue {
        /// The element's path.
        path: String,
        /// The value (clipped).
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A Questionnaire cophr cannot publish ([`crate::care::questionnaire`]).
    #[error("Questionnaire: {0}")]
    Questionnaire(#[from] crate::care::QuestionnaireError),
    /// An element that is not in the FHIR R4 definition of the resource's type.
    #[error(
        "{path} is not an element of FHIR R4 (unknown elements are refused; use an extension)"
    )]
    UnknownElement {
        /// The element's path.
        path: String,
    },
    /// An element given more times (or in another shape) than its cardinality allows.
    #[error("{path}: {reason}")]
    Cardinality {
        /// The element's path.
        path: String,
        /// What the definition allows.
        reason: &'static str,
    },
    /// More than one type of a choice element (e.g. `valueQuantity` and `valueString`).
    #[error("{path}: only one type of a choice element may be given (got {given})")]
    ChoiceConflict {
        /// The choice element, e.g. `Observation.value[x]`.
        path: String,
        /// The elements given, comma separated.
        given: String,
    },
    /// A code outside the required value set of its element (e.g. a status).
    #[error("{path}: `{value}` is not in the required value set ({allowed})")]
    NotInValueSet {
        /// The element's path.
        path: String,
        /// The code given (clipped).
        value: String,
        /// The codes allowed, comma separated.
        allowed: String,
    },
    /// A quantity's unit that is not a unit of what its LOINC code measures.
    #[error("{path}: unit `{unit}` is not a unit of LOINC {code} (expected one of {expected})")]
    WrongUnit {
        /// The unit's path (`….valueQuantity.code` or `.unit`).
        path: String,
        /// The unit given (clipped).
        unit: String,
        /// The LOINC code.
        code: String,
        /// The UCUM units accepted, comma separated.
        expected: String,
    },
    /// A value that cannot be (a heart rate of 999 /min, a negative weight).
    #[error("{path}: {value} is {reason}")]
    Impossible {
        /// The value's path.
        path: String,
        /// The value with its unit.
        value: String,
        /// Why it cannot be.
        reason: String,
    },
    /// A Bundle of a type that cannot be imported (e.g. `history`, `message`).
    #[error("Bundle.type `{bundle_type}` cannot be imported (accepted: {accepted})")]
    UnsupportedBundle {
        /// The type given (clipped).
        bundle_type: String,
        /// The accepted types.
        accepted: &'static str,
    },
    /// A Bundle entry request cophr does not carry out (e.g. a DELETE in a transaction).
    #[error("{path}: {reason}")]
    Unsupported {
        /// Where.
        path: String,
        /// What is not supported.
        reason: String,
    },
    /// The mapped body does not fit the category's schema (a bug in the mapping, or a
    /// stored entry that was not imported from FHIR and cannot be exported).
    #[error("{0}")]
    Schema(#[from] SchemaError),
    /// One line of an NDJSON file.
    #[error("line {line}: {error}")]
    Line {
        /// The line number (1-based).
        line: usize,
        /// What is wrong with it.
        error: Box<FhirError>,
    },
}

impl FhirError {
    /// The OperationOutcome `issue.code` for this error: `structure`, `required`, `value`,
    /// `code-invalid`, `not-supported`, `too-long`, `invalid` or `processing`.
    pub fn issue_code(&self) -> &'static str {
        match self {
            FhirError::NotJson { .. }
            | FhirError::WrongType { .. }
            | FhirError::UnknownElement { .. }
            | FhirError::Cardinality { .. }
            | FhirError::ChoiceConflict { .. } => "structure",
            FhirError::NotInValueSet { .. } => "code-invalid",
            FhirError::WrongUnit { .. } | FhirError::Impossible { .. } => "value",
            FhirError::NoResourceType { .. } | FhirError::Missing { .. } => "required",
            FhirError::TooLarge { .. } | FhirError::TooMany { .. } => "too-long",
            FhirError::UnknownResourceType { .. } | FhirError::BadValue { .. } => "value",
            FhirError::Unmapped { .. }
            | FhirError::UnsupportedBundle { .. }
            | FhirError::Unsupported { .. } => "not-supported",
            FhirError::Schema(_) | FhirError::Questionnaire(_) => "invalid",
            FhirError::Line { error, .. } => error.issue_code(),
        }
    }

    /// The element path the error is about, if any (an OperationOutcome `issue.expression`).
    pub fn path(&self) -> Option<&str> {
        match self {
            FhirError::NoResourceType { path }
            | FhirError::WrongType { path, .. }
            | FhirError::Missing { path }
            | FhirError::BadValue { path, .. }
            | FhirError::Unsupported { path, .. }
            | FhirError::UnknownElement { path }
            | FhirError::Cardinality { path, .. }
            | FhirError::ChoiceConflict { path, .. }
            | FhirError::NotInValueSet { path, .. }
            | FhirError::WrongUnit { path, .. }
            | FhirError::Impossible { path, .. } => Some(path),
            FhirError::Line { error, .. } => error.path(),
            _ => None,
        }
    }

    /// Whether the input was refused as unmapped (a resource to skip, not an error).
    pub fn is_unmapped(&self) -> bool {
        matches!(self, FhirError::Unmapped { .. })
    }
}

/// The JSON type of a value, in words.
pub(crate) fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// At most 64 characters of `s`, control characters replaced (for messages).
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}
