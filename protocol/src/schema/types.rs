//! The types of a schema: a field's type, a field, a plausibility range, a category's
//! schema.

use serde::Serialize;

use super::{MAX_LONG_TEXT, MAX_TEXT};
use crate::category::Category;

/// The type of one field of a category's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType<'a> {
    /// Single-line text, at most [`MAX_TEXT`] bytes, no control characters.
    Text,
    /// Free text, at most [`MAX_LONG_TEXT`] bytes; line breaks and tabs allowed.
    LongText,
    /// A whole number.
    Integer,
    /// A number (whole or not).
    Decimal,
    /// `true` or `false`.
    Bool,
    /// A calendar date, `YYYY-MM-DD`, or partial: `YYYY-MM` or `YYYY` ("onset 2019").
    Date,
    /// An RFC 3339 date and time with offset, e.g. `2026-11-22T10:15:00Z`.
    DateTime,
    /// One of a closed set of codes.
    Code(&'a [&'a str]),
    /// A measurement, stored as the map `{"value": number, "unit": text}`.
    Quantity {
        /// Allowed UCUM unit codes; the first is the default.
        units: &'a [&'a str],
    },
    /// A list of single-line texts.
    TextList,
    /// An attached file, stored as bytes.
    Binary {
        /// Accepted media types; the content must look like one of them.
        media_types: &'a [&'a str],
        /// Largest accepted size in bytes.
        max_bytes: usize,
    },
    /// A document stored apart from the entry (a large file: a scan, a DICOM study): the
    /// map `{"hash", "size", "key"?}` of [`crate::blob::DocumentFile`]; the bytes are in
    /// the blob stores, checked against the hash, sealed under the key when given.
    Document,
    /// Questionnaire answers: a list of maps `{"question": text, "answer": text|number|bool}`.
    Answers,
    /// A JSON object written as text (e.g. an original FHIR resource), at most `max_bytes`.
    Json {
        /// Longest accepted text, in bytes.
        max_bytes: usize,
    },
}

impl FieldType<'_> {
    /// A short name of the type, as used in the exported data definitions.
    pub fn kind(&self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::LongText => "long-text",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Bool => "bool",
            FieldType::Date => "date",
            FieldType::DateTime => "date-time",
            FieldType::Code(_) => "code",
            FieldType::Quantity { .. } => "quantity",
            FieldType::TextList => "text-list",
            FieldType::Binary { .. } => "binary",
            FieldType::Document => "document",
            FieldType::Answers => "answers",
            FieldType::Json { .. } => "json",
        }
    }

    /// What a value of this type looks like, in words (used in error messages and help).
    pub fn describe(&self) -> String {
        match self {
            FieldType::Text => format!("text (at most {MAX_TEXT} bytes, one line)"),
            FieldType::LongText => format!("text (at most {MAX_LONG_TEXT} bytes)"),
            FieldType::Integer => "a whole number".into(),
            FieldType::Decimal => "a number".into(),
            FieldType::Bool => "true or false".into(),
            FieldType::Date => "a date (YYYY-MM-DD, YYYY-MM or YYYY)".into(),
            FieldType::DateTime => "a date and time (RFC 3339, e.g. 2026-11-22T10:15:00Z)".into(),
            FieldType::Code(codes) => format!("one of {}", codes.join(", ")),
            FieldType::Quantity { units } => {
                format!("a measurement: a number with unit {}", units.join(" or "))
            }
            FieldType::TextList => "a list of texts".into(),
            FieldType::Binary {
                media_types,
                max_bytes,
            } => format!(
                "a file ({}, at most {} bytes)",
                media_types.join(", "),
                max_bytes
            ),
            FieldType::Document => format!(
                "a document stored apart (its hash, size and key; at most {} bytes)",
                crate::blob::MAX_DOCUMENT_BYTES
            ),
            FieldType::Answers => "a list of question and answer pairs".into(),
            FieldType::Json { max_bytes } => {
                format!("a JSON object written as text (at most {max_bytes} bytes)")
            }
        }
    }
}

/// One field of a category's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FieldSpec<'a> {
    /// The field's key in the body (kebab-case).
    pub name: &'a str,
    /// A human title.
    pub title: &'a str,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType<'a>,
    /// Whether every body must have it.
    pub required: bool,
}

/// A plausibility range for a numeric field: values outside it are refused as typing errors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range<'a> {
    /// The field it applies to.
    pub field: &'a str,
    /// The unit it applies to (quantities), or `None` for plain numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'a str>,
    /// Smallest plausible value.
    pub min: f64,
    /// Largest plausible value.
    pub max: f64,
}

/// The schema of one built-in category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategorySchema<'a> {
    /// The category.
    pub category: Category,
    /// A human title.
    pub title: &'a str,
    /// What the category holds.
    pub description: &'a str,
    /// The openEHR archetype id the category is modelled on.
    pub archetype: &'a str,
    /// The FHIR R4 resource types it maps to.
    pub fhir: &'a [&'a str],
    /// The fields, in display order.
    pub fields: &'a [FieldSpec<'a>],
    /// Fields an entry imported from FHIR carries besides [`CategorySchema::fields`]: the
    /// original resource and its source system ([`FHIR_FIELDS`](super::FHIR_FIELDS); empty
    /// for categories with no FHIR mapping). Not shown in forms: they are written by
    /// `cophr fhir import`.
    #[serde(rename = "fhir-fields")]
    pub fhir_fields: &'a [FieldSpec<'a>],
    /// The field shown as the entry's one-line summary.
    pub summary_field: &'a str,
    /// If not empty, a body must have at least one of these fields.
    pub at_least_one: &'a [&'a str],
    /// Pairs of fields that must be given together or not at all.
    pub together: &'a [(&'a str, &'a str)],
    /// Plausibility ranges for numeric fields.
    pub ranges: &'a [Range<'a>],
}

impl<'a> CategorySchema<'a> {
    /// The spec of the named field, if the category has it.
    pub fn field(&self, name: &str) -> Option<&'a FieldSpec<'a>> {
        self.fields
            .iter()
            .chain(self.fhir_fields)
            .find(|f| f.name == name)
    }

    /// The names of all fields, comma separated (for messages).
    pub fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The plausibility range for a field in a unit (`None` for plain numbers), if any.
    pub fn range(&self, field: &str, unit: Option<&str>) -> Option<&'a Range<'a>> {
        self.ranges
            .iter()
            .find(|r| r.field == field && r.unit == unit)
    }
}
