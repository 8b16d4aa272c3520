//! The typed schema of every built-in category (blueprint 7.1 plus the patient-facing extras).
//!
//! The schema is data: one [`CategorySchema`] per built-in category lists its fields, their
//! types, which are required, plausibility ranges for measurements, the openEHR archetype and
//! FHIR R4 resource types it maps to. The same tables are used to
//! - validate entry bodies ([`validate`]), on every node, for every entry received;
//! - export the "data definitions" that go with a record (the tables serialise to JSON);
//! - build a body from command-line flags ([`body_from_pairs`]) or from app JSON
//!   ([`body_from_json`]);
//! - render the one-line summary shown in tables ([`summary`]).
//!
//! Extension categories (`ext:<namespace>/<name>`) have no schema here: any non-empty map is
//! accepted for them.

use std::collections::BTreeMap;

use data_encoding::{BASE64, BASE64_NOPAD};
use serde::Serialize;

use crate::category::Category;
use crate::value::{Value, ValueError};

/// Longest [`FieldType::Text`] value, in bytes of UTF-8.
pub const MAX_TEXT: usize = 1024;
/// Longest [`FieldType::LongText`] value, in bytes of UTF-8.
pub const MAX_LONG_TEXT: usize = 16 * 1024;
/// Most items in a [`FieldType::TextList`].
pub const MAX_LIST_ITEMS: usize = 100;
/// Most question/answer pairs in a [`FieldType::Answers`] field.
pub const MAX_ANSWERS: usize = 500;
/// Largest attached document, in bytes.
pub const MAX_DOCUMENT: usize = 6 * 1024 * 1024;
/// Longest one-line [`summary`], in characters.
pub const MAX_SUMMARY: usize = 120;
/// Longest original FHIR resource kept in an imported entry ([`FHIR_FIELDS`]), in bytes of
/// JSON text.
pub const MAX_FHIR_JSON: usize = 1024 * 1024;

/// The field holding the original FHIR resource (JSON text) of an imported entry.
pub const FHIR_RESOURCE: &str = "fhir-resource";
/// The field naming the system an imported entry came from (provenance).
pub const FHIR_SOURCE: &str = "fhir-source";
/// The field keeping an imported resource's `fullUrl` in its Bundle (what other resources'
/// references point at).
pub const FHIR_FULL_URL: &str = "fhir-full-url";

/// The type of one field of a category's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
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
    Code(&'static [&'static str]),
    /// A measurement, stored as the map `{"value": number, "unit": text}`.
    Quantity {
        /// Allowed UCUM unit codes; the first is the default.
        units: &'static [&'static str],
    },
    /// A list of single-line texts.
    TextList,
    /// An attached file, stored as bytes.
    Binary {
        /// Accepted media types; the content must look like one of them.
        media_types: &'static [&'static str],
        /// Largest accepted size in bytes.
        max_bytes: usize,
    },
    /// Questionnaire answers: a list of maps `{"question": text, "answer": text|number|bool}`.
    Answers,
    /// A JSON object written as text (e.g. an original FHIR resource), at most `max_bytes`.
    Json {
        /// Longest accepted text, in bytes.
        max_bytes: usize,
    },
}

impl FieldType {
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
            FieldType::Answers => "a list of question and answer pairs".into(),
            FieldType::Json { max_bytes } => {
                format!("a JSON object written as text (at most {max_bytes} bytes)")
            }
        }
    }
}

/// One field of a category's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FieldSpec {
    /// The field's key in the body (kebab-case).
    pub name: &'static str,
    /// A human title.
    pub title: &'static str,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether every body must have it.
    pub required: bool,
}

/// A plausibility range for a numeric field: values outside it are refused as typing errors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    /// The field it applies to.
    pub field: &'static str,
    /// The unit it applies to (quantities), or `None` for plain numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    /// Smallest plausible value.
    pub min: f64,
    /// Largest plausible value.
    pub max: f64,
}

/// The schema of one built-in category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategorySchema {
    /// The category.
    pub category: Category,
    /// A human title.
    pub title: &'static str,
    /// What the category holds.
    pub description: &'static str,
    /// The openEHR archetype id the category is modelled on.
    pub archetype: &'static str,
    /// The FHIR R4 resource types it maps to.
    pub fhir: &'static [&'static str],
    /// The fields, in display order.
    pub fields: &'static [FieldSpec],
    /// Fields an entry imported from FHIR carries besides [`CategorySchema::fields`]: the
    /// original resource and its source system ([`FHIR_FIELDS`]; empty for categories with
    /// no FHIR mapping). Not shown in forms: they are written by `cophr fhir import`.
    #[serde(rename = "fhir-fields")]
    pub fhir_fields: &'static [FieldSpec],
    /// The field shown as the entry's one-line summary.
    pub summary_field: &'static str,
    /// If not empty, a body must have at least one of these fields.
    pub at_least_one: &'static [&'static str],
    /// Pairs of fields that must be given together or not at all.
    pub together: &'static [(&'static str, &'static str)],
    /// Plausibility ranges for numeric fields.
    pub ranges: &'static [Range],
}

impl CategorySchema {
    /// The spec of the named field, if the category has it.
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
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
    pub fn range(&self, field: &str, unit: Option<&str>) -> Option<&'static Range> {
        self.ranges
            .iter()
            .find(|r| r.field == field && r.unit == unit)
    }
}

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

// ---------------------------------------------------------------------------------------------
// The tables.
// ---------------------------------------------------------------------------------------------

const fn opt(name: &'static str, title: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name,
        title,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, title: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name,
        title,
        ty,
        required: true,
    }
}

const fn range(field: &'static str, unit: &'static str, min: f64, max: f64) -> Range {
    Range {
        field,
        unit: Some(unit),
        min,
        max,
    }
}

/// The fields of an entry imported from FHIR, accepted in every built-in category that maps
/// to a FHIR resource type: the original resource as JSON text (so that an unchanged
/// resource exports as it came in) and the system it came from.
pub static FHIR_FIELDS: [FieldSpec; 3] = [
    opt(
        FHIR_RESOURCE,
        "Original FHIR resource (JSON)",
        FieldType::Json {
            max_bytes: MAX_FHIR_JSON,
        },
    ),
    opt(FHIR_SOURCE, "Source system", TEXT),
    opt(FHIR_FULL_URL, "Full URL in the source Bundle", TEXT),
];

const TEXT: FieldType = FieldType::Text;
const LONG: FieldType = FieldType::LongText;
const DATE: FieldType = FieldType::Date;
const DATETIME: FieldType = FieldType::DateTime;

const PER_MIN: FieldType = FieldType::Quantity { units: &["/min"] };
const PERCENT: FieldType = FieldType::Quantity { units: &["%"] };
const TEMPERATURE: FieldType = FieldType::Quantity {
    units: &["Cel", "[degF]"],
};
const PRESSURE: FieldType = FieldType::Quantity { units: &["mm[Hg]"] };
const GLUCOSE: FieldType = FieldType::Quantity {
    units: &["mmol/L", "mg/dL"],
};
const CM: FieldType = FieldType::Quantity { units: &["cm"] };
const KG: FieldType = FieldType::Quantity { units: &["kg"] };
const BMI: FieldType = FieldType::Quantity { units: &["kg/m2"] };
const M2: FieldType = FieldType::Quantity { units: &["m2"] };

/// Media types accepted for attached documents.
pub const DOCUMENT_MEDIA_TYPES: &[&str] = &["application/pdf", "image/jpeg", "image/png"];

const VITAL_RANGES: &[Range] = &[
    range("respiration-rate", "/min", 0.0, 100.0),
    range("spo2", "%", 0.0, 100.0),
    range("heart-rate", "/min", 0.0, 400.0),
    range("temperature", "Cel", 25.0, 45.0),
    range("temperature", "[degF]", 77.0, 113.0),
    range("systolic", "mm[Hg]", 0.0, 400.0),
    range("diastolic", "mm[Hg]", 0.0, 300.0),
    range("blood-glucose", "mmol/L", 0.0, 100.0),
    range("blood-glucose", "mg/dL", 0.0, 1800.0),
];

const WEARABLE_RANGES: &[Range] = &[
    range("spo2", "%", 0.0, 100.0),
    range("heart-rate", "/min", 0.0, 400.0),
    range("systolic", "mm[Hg]", 0.0, 400.0),
    range("diastolic", "mm[Hg]", 0.0, 300.0),
    range("blood-glucose", "mmol/L", 0.0, 100.0),
    range("blood-glucose", "mg/dL", 0.0, 1800.0),
    Range {
        field: "steps",
        unit: None,
        min: 0.0,
        max: 1_000_000.0,
    },
];

const EXAM_RANGES: &[Range] = &[
    range("height", "cm", 10.0, 300.0),
    range("weight", "kg", 0.2, 700.0),
    range("bmi", "kg/m2", 5.0, 200.0),
    range("waist", "cm", 10.0, 400.0),
    range("head-circumference", "cm", 10.0, 100.0),
    range("hip-circumference", "cm", 10.0, 400.0),
    range("body-surface-area", "m2", 0.05, 6.0),
];

const fn schema_of(
    category: Category,
    title: &'static str,
    description: &'static str,
    archetype: &'static str,
    fhir: &'static [&'static str],
    fields: &'static [FieldSpec],
    summary_field: &'static str,
) -> CategorySchema {
    CategorySchema {
        category,
        title,
        description,
        archetype,
        fhir,
        fields,
        fhir_fields: if fhir.is_empty() { &[] } else { &FHIR_FIELDS },
        summary_field,
        at_least_one: &[],
        together: &[],
        ranges: &[],
    }
}

impl CategorySchema {
    const fn with_at_least_one(mut self, fields: &'static [&'static str]) -> Self {
        self.at_least_one = fields;
        self
    }
    const fn with_together(mut self, pairs: &'static [(&'static str, &'static str)]) -> Self {
        self.together = pairs;
        self
    }
    const fn with_ranges(mut self, ranges: &'static [Range]) -> Self {
        self.ranges = ranges;
        self
    }
}

static ALL: [CategorySchema; 20] = [
    schema_of(
        Category::AboutMe,
        "About me",
        "The top three things to know about me, in my own words, and a short summary.",
        "openEHR-EHR-EVALUATION.about_me.v0",
        &["Basic"],
        &[
            req("thing-1", "First thing to know about me", TEXT),
            opt("thing-2", "Second thing to know about me", TEXT),
            opt("thing-3", "Third thing to know about me", TEXT),
            opt("summary", "About me", LONG),
        ],
        "thing-1",
    ),
    schema_of(
        Category::Alerts,
        "Alerts",
        "Significant information that merits a highly visible warning (e.g. metallic implant, \
         emergency keyholder, potentially dangerous pet).",
        "openEHR-EHR-EVALUATION.alert.v0",
        &["Flag"],
        &[
            req("alert", "Alert", TEXT),
            opt("detail", "Detail", LONG),
            opt("severity", "Severity", FieldType::Code(&["low", "high"])),
        ],
        "alert",
    ),
    schema_of(
        Category::Demographics,
        "Demographics",
        "Name, date of birth, gender, address and contact details.",
        "openEHR-DEMOGRAPHIC-PERSON.person.v1",
        &["Patient"],
        &[
            req("surname", "Surname", TEXT),
            opt("forename", "Forename", TEXT),
            opt("preferred-name", "Preferred name", TEXT),
            opt("date-of-birth", "Date of birth", DATE),
            opt(
                "gender",
                "Gender",
                FieldType::Code(&["male", "female", "other", "unknown"]),
            ),
            opt("address", "Address", LONG),
            opt("telephone", "Telephone", TEXT),
            opt("email", "Email", TEXT),
        ],
        "surname",
    ),
    schema_of(
        Category::KeyContacts,
        "Key contacts",
        "Formal, informal and main carers and next of kin, with their contact details.",
        "openEHR-EHR-ADMIN_ENTRY.relevant_contact_rcp.v1",
        &["RelatedPerson"],
        &[
            req("name", "Name", TEXT),
            opt(
                "relationship",
                "Relationship",
                FieldType::Code(&[
                    "formal-carer",
                    "informal-carer",
                    "main-carer",
                    "next-of-kin",
                    "other",
                ]),
            ),
            opt("telephone", "Telephone", TEXT),
            opt("email", "Email", TEXT),
            opt("address", "Address", LONG),
        ],
        "name",
    ),
    schema_of(
        Category::Preferences,
        "Preferences",
        "Organ donation, language and communication needs, reasonable adjustments, \
         religious and cultural preferences.",
        "openEHR-EHR-EVALUATION.communication_capability.v1",
        &["Consent", "Basic"],
        &[
            opt(
                "organ-donation",
                "Organ donation",
                FieldType::Code(&["yes", "no", "undecided"]),
            ),
            opt("language", "Language", TEXT),
            opt("communication-needs", "Communication needs", LONG),
            opt("reasonable-adjustments", "Reasonable adjustments", LONG),
            opt(
                "religion-culture",
                "Religious or cultural preferences",
                LONG,
            ),
            opt("consent", "Consent and advance decisions", LONG),
        ],
        "language",
    )
    .with_at_least_one(&[
        "organ-donation",
        "language",
        "communication-needs",
        "reasonable-adjustments",
        "religion-culture",
        "consent",
    ]),
    schema_of(
        Category::Allergies,
        "Allergies",
        "Allergies and adverse reactions: the causative agent and the reaction.",
        "openEHR-EHR-EVALUATION.adverse_reaction_risk.v1",
        &["AllergyIntolerance"],
        &[
            req("agent", "Causative agent", TEXT),
            opt("reaction", "Reaction (manifestation)", TEXT),
            opt(
                "severity",
                "Severity",
                FieldType::Code(&["mild", "moderate", "severe"]),
            ),
            opt("onset", "Onset", DATE),
            opt(
                "criticality",
                "Criticality",
                FieldType::Code(&["low", "high", "unable-to-assess"]),
            ),
            opt("comment", "Comment", LONG),
        ],
        "agent",
    ),
    schema_of(
        Category::Problems,
        "Problems",
        "Problems and diagnoses, with onset and resolution dates.",
        "openEHR-EHR-EVALUATION.problem_diagnosis.v1",
        &["Condition"],
        &[
            req("problem", "Problem or diagnosis", TEXT),
            opt("description", "Description", LONG),
            opt("onset", "Onset", DATE),
            opt("resolved", "Resolved", DATE),
            opt(
                "status",
                "Status",
                FieldType::Code(&["active", "inactive", "resolved"]),
            ),
        ],
        "problem",
    ),
    schema_of(
        Category::Procedures,
        "Procedures",
        "Procedures: name, description, body site, outcome, difficulty, complication, type.",
        "openEHR-EHR-ACTION.procedure.v1",
        &["Procedure"],
        &[
            req("procedure", "Procedure", TEXT),
            opt("description", "Description", LONG),
            opt("body-site", "Body site", TEXT),
            opt("outcome", "Outcome", TEXT),
            opt("difficulty", "Difficulty", TEXT),
            opt("complication", "Complication", TEXT),
            opt("procedure-type", "Procedure type", TEXT),
            opt("date", "Date", DATE),
        ],
        "procedure",
    ),
    schema_of(
        Category::Medications,
        "Medications",
        "Medication statements: name, form, route, dosage, patient information, monitoring, \
         indication, start and stop dates.",
        "openEHR-EHR-INSTRUCTION.medication_order.v2",
        &["MedicationStatement", "MedicationRequest"],
        &[
            req("medication", "Medication", TEXT),
            opt("form", "Form", TEXT),
            opt("route", "Route", TEXT),
            opt("dose", "Dose and directions", TEXT),
            opt("patient-information", "Patient information", LONG),
            opt("monitoring", "Monitoring instructions", LONG),
            opt("indication", "Clinical indication", TEXT),
            opt("start", "Start date", DATE),
            opt("stop", "Stop date", DATE),
            opt(
                "status",
                "Status",
                FieldType::Code(&["active", "stopped", "not-taking", "completed"]),
            ),
        ],
        "medication",
    ),
    schema_of(
        Category::Immunisations,
        "Immunisations",
        "Immunisations: name, status and date.",
        "openEHR-EHR-EVALUATION.immunisation_summary.v0",
        &["Immunization"],
        &[
            req("immunisation", "Immunisation", TEXT),
            opt(
                "status",
                "Status",
                FieldType::Code(&["completed", "not-done", "entered-in-error"]),
            ),
            opt("date", "Date", DATE),
        ],
        "immunisation",
    ),
    schema_of(
        Category::VitalSigns,
        "Vital signs",
        "Respiration rate, oxygen saturation, heart rate, temperature, blood pressure, \
         blood glucose.",
        "openEHR-EHR-SECTION.vital_signs.v1",
        &["Observation"],
        &[
            opt("respiration-rate", "Respiration rate", PER_MIN),
            opt("spo2", "Oxygen saturation (SpO2)", PERCENT),
            opt("heart-rate", "Heart rate", PER_MIN),
            opt("temperature", "Body temperature", TEMPERATURE),
            opt("systolic", "Systolic blood pressure", PRESSURE),
            opt("diastolic", "Diastolic blood pressure", PRESSURE),
            opt("blood-glucose", "Blood glucose", GLUCOSE),
            opt("measured-at", "Measured at", DATETIME),
            opt("position", "Position", TEXT),
            opt("comment", "Comment", LONG),
        ],
        "heart-rate",
    )
    .with_at_least_one(&[
        "respiration-rate",
        "spo2",
        "heart-rate",
        "temperature",
        "systolic",
        "diastolic",
        "blood-glucose",
    ])
    .with_together(&[("systolic", "diastolic")])
    .with_ranges(VITAL_RANGES),
    schema_of(
        Category::Wearables,
        "Wearable results",
        "Readings from wearable and home devices: pulse, oxygen saturation, blood \
         pressure, steps, blood glucose.",
        "openEHR-EHR-OBSERVATION.pulse.v2",
        &["Observation"],
        &[
            opt("heart-rate", "Heart rate", PER_MIN),
            opt("spo2", "Oxygen saturation (SpO2)", PERCENT),
            opt("systolic", "Systolic blood pressure", PRESSURE),
            opt("diastolic", "Diastolic blood pressure", PRESSURE),
            opt("steps", "Steps", FieldType::Integer),
            opt("blood-glucose", "Blood glucose", GLUCOSE),
            opt("device", "Device", TEXT),
            opt("measured-at", "Measured at", DATETIME),
        ],
        "heart-rate",
    )
    .with_at_least_one(&[
        "heart-rate",
        "spo2",
        "systolic",
        "diastolic",
        "steps",
        "blood-glucose",
    ])
    .with_together(&[("systolic", "diastolic")])
    .with_ranges(WEARABLE_RANGES),
    schema_of(
        Category::LabResults,
        "Lab results",
        "Laboratory test results with interpretation and reference ranges.",
        "openEHR-EHR-OBSERVATION.laboratory_test_result.v1",
        &["Observation", "DiagnosticReport"],
        &[
            req("test", "Test", TEXT),
            req("result", "Result", TEXT),
            opt("unit", "Unit", TEXT),
            opt(
                "interpretation",
                "Interpretation",
                FieldType::Code(&["normal", "abnormal", "high", "low", "critical"]),
            ),
            opt("reference-range", "Reference range", TEXT),
            opt("collected", "Collected", DATETIME),
            opt("reported", "Reported", DATETIME),
            opt(
                "status",
                "Status",
                FieldType::Code(&["preliminary", "final", "amended"]),
            ),
            opt("comment", "Comment", LONG),
        ],
        "test",
    ),
    schema_of(
        Category::Investigations,
        "Other investigations",
        "Imaging, ECG, pulmonary function, visual acuity, urinalysis and other results.",
        "openEHR-EHR-OBSERVATION.imaging_exam_result.v0",
        &["DiagnosticReport", "Observation"],
        &[
            req("investigation", "Investigation", TEXT),
            opt(
                "kind",
                "Kind",
                FieldType::Code(&[
                    "imaging",
                    "ecg",
                    "pulmonary-function",
                    "visual-acuity",
                    "urinalysis",
                    "other",
                ]),
            ),
            req("result", "Result", LONG),
            opt("date", "Date", DATE),
        ],
        "investigation",
    ),
    schema_of(
        Category::Examinations,
        "Core examinations",
        "Height, weight, BMI, waist, head and hip circumference, body surface area.",
        "openEHR-EHR-OBSERVATION.body_weight.v2",
        &["Observation"],
        &[
            opt("height", "Height", CM),
            opt("weight", "Weight", KG),
            opt("bmi", "Body mass index", BMI),
            opt("waist", "Waist circumference", CM),
            opt("head-circumference", "Head circumference", CM),
            opt("hip-circumference", "Hip circumference", CM),
            opt("body-surface-area", "Body surface area", M2),
            opt("measured-at", "Measured at", DATETIME),
        ],
        "weight",
    )
    .with_at_least_one(&[
        "height",
        "weight",
        "bmi",
        "waist",
        "head-circumference",
        "hip-circumference",
        "body-surface-area",
    ])
    .with_ranges(EXAM_RANGES),
    schema_of(
        Category::Lifestyle,
        "Lifestyle and social",
        "Smoking status, alcohol consumption, housing, occupation, education and training.",
        "openEHR-EHR-EVALUATION.tobacco_smoking_summary.v1",
        &["Observation"],
        &[
            opt(
                "smoking",
                "Smoking",
                FieldType::Code(&["never", "former", "current", "unknown"]),
            ),
            opt("alcohol", "Alcohol", TEXT),
            opt("housing", "Housing", TEXT),
            opt("occupation", "Occupation", TEXT),
            opt("education", "Education and training", TEXT),
        ],
        "smoking",
    )
    .with_at_least_one(&["smoking", "alcohol", "housing", "occupation", "education"]),
    schema_of(
        Category::FamilyHistory,
        "Family history",
        "Conditions in the family: index condition, affected relative, genomic markers.",
        "openEHR-EHR-EVALUATION.family_history.v2",
        &["FamilyMemberHistory"],
        &[
            req("condition", "Condition", TEXT),
            req("relative", "Affected relative", TEXT),
            opt("genomic-markers", "Genomic markers", FieldType::TextList),
            opt("comment", "Comment", LONG),
        ],
        "condition",
    ),
    schema_of(
        Category::Documents,
        "Documents",
        "Attached documents: letters, reports and images (PDF, JPEG, PNG).",
        "openEHR-EHR-CLUSTER.media_file.v1",
        &["DocumentReference"],
        &[
            req("title", "Title", TEXT),
            opt(
                "media-type",
                "Media type",
                FieldType::Code(DOCUMENT_MEDIA_TYPES),
            ),
            opt(
                "data",
                "File",
                FieldType::Binary {
                    media_types: DOCUMENT_MEDIA_TYPES,
                    max_bytes: MAX_DOCUMENT,
                },
            ),
            opt("url", "Where the document is (URL)", TEXT),
            opt("date", "Date", DATE),
            opt("description", "Description", LONG),
        ],
        "title",
    )
    // A document is its file, a link to it, or (imported from FHIR) the original
    // DocumentReference, whose attachment may be neither.
    .with_at_least_one(&["data", "url", FHIR_RESOURCE])
    .with_together(&[("data", "media-type")]),
    schema_of(
        Category::Questionnaires,
        "Questionnaires",
        "Questionnaire responses, e.g. patient-reported outcome measures (PROMs).",
        "openEHR-EHR-OBSERVATION.questionnaire_entry.v0",
        &["QuestionnaireResponse"],
        &[
            req("questionnaire", "Questionnaire", TEXT),
            req("answers", "Answers", FieldType::Answers),
            opt("score", "Score", FieldType::Decimal),
            opt("completed", "Completed", DATETIME),
        ],
        "questionnaire",
    ),
    schema_of(
        Category::Messages,
        "Messages",
        "Messages between the patient and the care team.",
        "openEHR-EHR-EVALUATION.clinical_synopsis.v1",
        &["Communication"],
        &[
            req("text", "Message", LONG),
            opt("subject", "Subject", TEXT),
            opt("in-reply-to", "In reply to (entry id)", TEXT),
            opt("to", "To", TEXT),
        ],
        "text",
    ),
];

/// The schema of a built-in category; `None` for extensions.
pub fn schema(c: &Category) -> Option<&'static CategorySchema> {
    if c.is_extension() {
        return None;
    }
    ALL.iter().find(|s| &s.category == c)
}

/// The schemas of all 20 built-in categories, in [`Category::BUILT_IN`] order.
pub fn all() -> &'static [CategorySchema] {
    &ALL
}

// ---------------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------------

/// The longest excerpt of a bad value quoted back in an error message, in characters.
const MAX_QUOTE: usize = 64;

fn clip(s: &str, max: usize) -> String {
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

fn kind_of(v: &Value) -> &'static str {
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

fn json_kind(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "nothing (null)",
        serde_json::Value::Bool(_) => "true/false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "text",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// Context for checking one field.
struct Ctx<'a> {
    schema: &'a CategorySchema,
    field: &'a FieldSpec,
}

impl Ctx<'_> {
    fn cat(&self) -> String {
        self.schema.category.name().to_owned()
    }
    fn name(&self) -> String {
        self.field.name.to_owned()
    }
    fn wrong(&self, expected: impl Into<String>, got: &Value) -> SchemaError {
        let got = match got {
            Value::Text(t) => format!("`{}`", clip(t, MAX_QUOTE)),
            other => kind_of(other).to_owned(),
        };
        SchemaError::WrongType {
            category: self.cat(),
            field: self.name(),
            expected: expected.into(),
            got,
        }
    }
    fn empty(&self) -> SchemaError {
        SchemaError::EmptyField {
            category: self.cat(),
            field: self.name(),
        }
    }
    fn too_long(&self, len: usize, max: usize, what: &'static str) -> SchemaError {
        SchemaError::TooLong {
            category: self.cat(),
            field: self.name(),
            len,
            max,
            what,
        }
    }
    fn rule(&self, msg: &str) -> SchemaError {
        SchemaError::Rule(format!("{}: field `{}` {msg}", self.cat(), self.name()))
    }

    fn text(&self, v: &Value, max: usize, multiline: bool) -> Result<(), SchemaError> {
        let Value::Text(s) = v else {
            return Err(self.wrong(self.field.ty.describe(), v));
        };
        self.text_str(s, max, multiline)
    }

    fn text_str(&self, s: &str, max: usize, multiline: bool) -> Result<(), SchemaError> {
        if s.trim().is_empty() {
            return Err(self.empty());
        }
        if s.len() > max {
            return Err(self.too_long(s.len(), max, "bytes"));
        }
        let bad = |c: char| c.is_control() && !(c == '\t' || multiline && (c == '\n' || c == '\r'));
        if s.chars().any(bad) {
            return Err(SchemaError::ControlCharacters {
                category: self.cat(),
                field: self.name(),
            });
        }
        Ok(())
    }

    fn in_range(&self, x: f64, unit: Option<&str>) -> Result<(), SchemaError> {
        if !x.is_finite() {
            return Err(self.rule("must be a finite number"));
        }
        if let Some(r) = self.schema.range(self.field.name, unit) {
            if x < r.min || x > r.max {
                return Err(SchemaError::OutOfRange {
                    category: self.cat(),
                    field: self.name(),
                    value: x,
                    min: r.min,
                    max: r.max,
                    unit: unit.map(|u| format!(" {u}")).unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    fn check(&self, v: &Value) -> Result<(), SchemaError> {
        let ty = &self.field.ty;
        match ty {
            FieldType::Text => self.text(v, MAX_TEXT, false),
            FieldType::LongText => self.text(v, MAX_LONG_TEXT, true),
            FieldType::Integer => match v {
                Value::Int(i) => self.in_range(*i as f64, None),
                _ => Err(self.wrong(ty.describe(), v)),
            },
            FieldType::Decimal => match v.as_f64() {
                Some(x) => self.in_range(x, None),
                None => Err(self.wrong(ty.describe(), v)),
            },
            FieldType::Bool => match v {
                Value::Bool(_) => Ok(()),
                _ => Err(self.wrong(ty.describe(), v)),
            },
            FieldType::Date | FieldType::DateTime => {
                let Value::Text(s) = v else {
                    return Err(self.wrong(ty.describe(), v));
                };
                let (ok, expected) = if *ty == FieldType::Date {
                    (
                        parse_date(s).is_some(),
                        "a date written YYYY-MM-DD, YYYY-MM or YYYY",
                    )
                } else {
                    (
                        is_date_time(s),
                        "a date and time in RFC 3339 form, e.g. 2026-11-22T10:15:00Z",
                    )
                };
                if ok {
                    Ok(())
                } else {
                    Err(SchemaError::BadDate {
                        category: self.cat(),
                        field: self.name(),
                        value: clip(s, MAX_QUOTE),
                        expected,
                    })
                }
            }
            FieldType::Code(codes) => {
                let Value::Text(s) = v else {
                    return Err(self.wrong(ty.describe(), v));
                };
                if codes.contains(&s.as_str()) {
                    Ok(())
                } else {
                    Err(SchemaError::BadCode {
                        category: self.cat(),
                        field: self.name(),
                        value: clip(s, MAX_QUOTE),
                        allowed: codes.join(", "),
                    })
                }
            }
            FieldType::Quantity { units } => {
                let expected =
                    || format!("{} ({{\"value\": number, \"unit\": text}})", ty.describe());
                let Value::Map(m) = v else {
                    return Err(self.wrong(expected(), v));
                };
                if m.keys().any(|k| k != "value" && k != "unit") {
                    return Err(self.wrong(expected(), v));
                }
                let Some(x) = m.get("value").and_then(Value::as_f64) else {
                    return Err(self.wrong(expected(), v));
                };
                let Some(unit) = m.get("unit").and_then(Value::as_text) else {
                    return Err(self.wrong(expected(), v));
                };
                if !units.contains(&unit) {
                    return Err(SchemaError::BadUnit {
                        category: self.cat(),
                        field: self.name(),
                        unit: clip(unit, MAX_QUOTE),
                        allowed: units.join(" or "),
                    });
                }
                self.in_range(x, Some(unit))
            }
            FieldType::TextList => {
                let Value::List(items) = v else {
                    return Err(self.wrong(ty.describe(), v));
                };
                if items.is_empty() {
                    return Err(self.empty());
                }
                if items.len() > MAX_LIST_ITEMS {
                    return Err(self.too_long(items.len(), MAX_LIST_ITEMS, "items"));
                }
                items.iter().try_for_each(|i| self.text(i, MAX_TEXT, false))
            }
            FieldType::Binary {
                media_types,
                max_bytes,
            } => {
                let Value::Bytes(b) = v else {
                    return Err(self.wrong(ty.describe(), v));
                };
                if b.is_empty() {
                    return Err(self.empty());
                }
                if b.len() > *max_bytes {
                    return Err(self.too_long(b.len(), *max_bytes, "bytes"));
                }
                match sniff(b) {
                    Some(t) if media_types.contains(&t) => Ok(()),
                    _ => Err(self.rule(&format!(
                        "is not a file of an accepted type ({})",
                        media_types.join(", ")
                    ))),
                }
            }
            FieldType::Answers => {
                let Value::List(items) = v else {
                    return Err(self.wrong(ty.describe(), v));
                };
                if items.is_empty() {
                    return Err(self.empty());
                }
                if items.len() > MAX_ANSWERS {
                    return Err(self.too_long(items.len(), MAX_ANSWERS, "items"));
                }
                let expected = "a list of {\"question\": text, \"answer\": text, number or \
                                true/false} maps";
                for item in items {
                    let Value::Map(m) = item else {
                        return Err(self.wrong(expected, item));
                    };
                    if m.len() != 2 {
                        return Err(self.wrong(expected, item));
                    }
                    let (Some(q), Some(a)) = (m.get("question"), m.get("answer")) else {
                        return Err(self.wrong(expected, item));
                    };
                    self.text(q, MAX_TEXT, false)?;
                    match a {
                        Value::Text(_) => self.text(a, MAX_TEXT, false)?,
                        Value::Int(_) | Value::Bool(_) => {}
                        Value::Float(x) => self.in_range(*x, None)?,
                        other => return Err(self.wrong(expected, other)),
                    }
                }
                Ok(())
            }
            FieldType::Json { max_bytes } => {
                let Value::Text(t) = v else {
                    return Err(self.wrong(ty.describe(), v));
                };
                if t.len() > *max_bytes {
                    return Err(self.too_long(t.len(), *max_bytes, "bytes"));
                }
                // Checked on every apply: parse without building the tree.
                if !t.trim_start().starts_with('{') {
                    return Err(self.rule("must be a JSON object"));
                }
                match serde_json::from_str::<serde::de::IgnoredAny>(t) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.rule(&format!("is not valid JSON: {e}"))),
                }
            }
        }
    }
}

/// The media type a file's first bytes show, among those cophr accepts.
fn sniff(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if b.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else {
        None
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Parses `YYYY`, `YYYY-MM` or `YYYY-MM-DD` into (year, month, day); absent parts are 0.
pub(crate) fn parse_date(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    let year = digits(b.get(..4)?).filter(|y| *y >= 1)?;
    match b.len() {
        4 => Some((year, 0, 0)),
        7 | 10 if b[4] == b'-' => {
            let month = digits(&b[5..7]).filter(|m| (1..=12).contains(m))?;
            if b.len() == 7 {
                return Some((year, month, 0));
            }
            if b[7] != b'-' {
                return None;
            }
            let day = digits(&b[8..10]).filter(|d| (1..=days_in_month(year, month)).contains(d))?;
            Some((year, month, day))
        }
        _ => None,
    }
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub(crate) fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return false;
    }
    let (Some(date), sep) = (parse_date(&s[..10]), b[10]) else {
        return false;
    };
    if date.2 == 0 || !matches!(sep, b'T' | b't' | b' ') {
        return false;
    }
    let two = |i: usize, max: u32| digits(&b[i..i + 2]).is_some_and(|n| n <= max);
    if !(two(11, 23) && b[13] == b':' && two(14, 59) && b[16] == b':' && two(17, 60)) {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            digits(&[*h1, *h2]).is_some_and(|h| h <= 23)
                && digits(&[*m1, *m2]).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// Whether partial date `a` is certainly earlier than partial date `b` (compared at the
/// precision both have).
fn date_before(a: &str, b: &str) -> bool {
    match (parse_date(a), parse_date(b)) {
        (Some(a), Some(b)) => {
            let (a, b) = if a.1 == 0 || b.1 == 0 {
                ((a.0, 0, 0), (b.0, 0, 0))
            } else if a.2 == 0 || b.2 == 0 {
                ((a.0, a.1, 0), (b.0, b.1, 0))
            } else {
                (a, b)
            };
            a < b
        }
        _ => false,
    }
}

/// Checks a body against its category's schema.
///
/// The body must be a map. For a built-in category every field must be known, well typed and
/// within limits, required fields present, and the category's cross-field rules hold. For an
/// extension category any non-empty, well-formed map is accepted.
///
/// # Errors
/// The first problem found, as a [`SchemaError`] naming the category and field.
pub fn validate(category: &Category, body: &Value) -> Result<(), SchemaError> {
    let cat = || category.name().to_owned();
    let Value::Map(map) = body else {
        return Err(SchemaError::NotAMap {
            category: cat(),
            got: kind_of(body),
        });
    };
    body.check().map_err(|reason| SchemaError::Malformed {
        category: cat(),
        reason,
    })?;
    let Some(s) = schema(category) else {
        if map.is_empty() {
            return Err(SchemaError::Empty { category: cat() });
        }
        return Ok(());
    };
    if let Some(unknown) = map.keys().find(|k| s.field(k).is_none()) {
        return Err(SchemaError::UnknownField {
            category: cat(),
            field: clip(unknown, MAX_QUOTE),
            known: s.field_names(),
        });
    }
    for field in s.fields.iter().chain(s.fhir_fields) {
        match map.get(field.name) {
            None if field.required => {
                return Err(SchemaError::MissingField {
                    category: cat(),
                    field: field.name.to_owned(),
                })
            }
            None => {}
            Some(v) => Ctx { schema: s, field }.check(v)?,
        }
    }
    if !s.at_least_one.is_empty() && !s.at_least_one.iter().any(|f| map.contains_key(*f)) {
        return Err(SchemaError::AtLeastOne {
            category: cat(),
            fields: s.at_least_one.join(", "),
        });
    }
    for (a, b) in s.together {
        match (map.contains_key(*a), map.contains_key(*b)) {
            (true, false) | (false, true) => {
                let (present, missing) = if map.contains_key(*a) { (a, b) } else { (b, a) };
                return Err(SchemaError::Together {
                    category: cat(),
                    present: (*present).to_owned(),
                    missing: (*missing).to_owned(),
                });
            }
            _ => {}
        }
    }
    cross_field_rules(s, map)
}

fn cross_field_rules(s: &CategorySchema, map: &BTreeMap<String, Value>) -> Result<(), SchemaError> {
    let cat = s.category.name();
    let text = |k: &str| map.get(k).and_then(Value::as_text);
    let not_before = |first: &str, then: &str| -> Result<(), SchemaError> {
        if let (Some(a), Some(b)) = (text(first), text(then)) {
            if date_before(b, a) {
                return Err(SchemaError::Rule(format!(
                    "{cat}: `{then}` ({b}) is earlier than `{first}` ({a})"
                )));
            }
        }
        Ok(())
    };
    match s.category {
        Category::Problems => not_before("onset", "resolved")?,
        Category::Medications => not_before("start", "stop")?,
        Category::VitalSigns | Category::Wearables => {
            let num = |k: &str| {
                map.get(k)
                    .and_then(|q| q.get("value"))
                    .and_then(Value::as_f64)
            };
            if let (Some(sys), Some(dia)) = (num("systolic"), num("diastolic")) {
                if dia >= sys {
                    return Err(SchemaError::Rule(format!(
                        "{cat}: diastolic pressure ({dia}) must be lower than systolic ({sys})"
                    )));
                }
            }
        }
        Category::Documents => {
            let declared = text("media-type");
            let actual = match map.get("data") {
                Some(Value::Bytes(b)) => sniff(b),
                _ => None,
            };
            if let (Some(d), Some(a)) = (declared, actual) {
                if d != a {
                    return Err(SchemaError::Rule(format!(
                        "{cat}: `media-type` says {d} but the file is {a}"
                    )));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Building bodies from flags and JSON.
// ---------------------------------------------------------------------------------------------

/// Other spellings of units accepted from the command line, and the UCUM code they mean.
const UNIT_ALIASES: &[(&str, &str)] = &[
    ("mmHg", "mm[Hg]"),
    ("bpm", "/min"),
    ("C", "Cel"),
    ("°C", "Cel"),
    ("F", "[degF]"),
    ("°F", "[degF]"),
    ("degF", "[degF]"),
];

fn number_value(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(Value::Float)
}

fn resolve_unit(unit: &str, units: &[&'static str]) -> String {
    if let Some(u) = units.iter().find(|u| **u == unit) {
        return (*u).to_owned();
    }
    if let Some(u) = units.iter().find(|u| u.eq_ignore_ascii_case(unit)) {
        return (*u).to_owned();
    }
    if let Some((_, u)) = UNIT_ALIASES
        .iter()
        .find(|(alias, u)| alias.eq_ignore_ascii_case(unit) && units.contains(u))
    {
        return (*u).to_owned();
    }
    unit.to_owned()
}

fn quantity(value: Value, unit: String) -> Value {
    Value::Map(BTreeMap::from([
        ("unit".to_owned(), Value::Text(unit)),
        ("value".to_owned(), value),
    ]))
}

/// Converts one flag's text by the field's type; errors carry the category and field.
fn convert_text(s: &CategorySchema, field: &FieldSpec, text: &str) -> Result<Value, SchemaError> {
    let ctx = Ctx { schema: s, field };
    let t = text.trim();
    let bad = |expected: &str| ctx.wrong(expected.to_owned(), &Value::Text(text.to_owned()));
    Ok(match field.ty {
        FieldType::Text | FieldType::LongText | FieldType::Date | FieldType::DateTime => {
            Value::Text(t.to_owned())
        }
        FieldType::Json { .. } => Value::Text(text.to_owned()),
        FieldType::Code(codes) => Value::Text(
            codes
                .iter()
                .find(|c| c.eq_ignore_ascii_case(t))
                .map_or_else(|| t.to_owned(), |c| (*c).to_owned()),
        ),
        FieldType::Integer => Value::Int(t.parse().map_err(|_| bad("a whole number"))?),
        FieldType::Decimal => number_value(t).ok_or_else(|| bad("a number"))?,
        FieldType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" => Value::Bool(true),
            "false" | "no" | "n" => Value::Bool(false),
            _ => return Err(bad("true, false, yes or no")),
        },
        FieldType::Quantity { units } => {
            let (num, unit) = match t.split_once(char::is_whitespace) {
                Some((n, u)) => (n, u.trim()),
                None => {
                    let i = t
                        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
                        .unwrap_or(t.len());
                    (&t[..i], t[i..].trim())
                }
            };
            let expected = format!(
                "a number, optionally followed by a unit ({}), e.g. `{}` or `{} {}`",
                units.join(" or "),
                "72",
                "72",
                units[0]
            );
            let value = number_value(num).ok_or_else(|| bad(&expected))?;
            let unit = if unit.is_empty() {
                units[0].to_owned()
            } else {
                resolve_unit(unit, units)
            };
            quantity(value, unit)
        }
        FieldType::TextList => Value::List(
            t.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| Value::Text(i.to_owned()))
                .collect(),
        ),
        FieldType::Binary { .. } => {
            return Err(SchemaError::Rule(format!(
                "{}: field `{}` is a file: use --json or --file for attachments",
                s.category.name(),
                field.name
            )))
        }
        FieldType::Answers => {
            let mut out = Vec::new();
            for part in t.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
                let (q, a) = match part.split_once('=') {
                    Some((q, a))
                        if !q.trim().is_empty() && !a.trim().is_empty() && !a.contains('=') =>
                    {
                        (q, a.trim())
                    }
                    _ => {
                        return Err(SchemaError::MalformedAnswer {
                            category: ctx.cat(),
                            field: ctx.name(),
                            part: clip(part, MAX_QUOTE),
                        })
                    }
                };
                let answer = match a.to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => number_value(a).unwrap_or_else(|| Value::Text(a.to_owned())),
                };
                out.push(Value::Map(BTreeMap::from([
                    ("question".to_owned(), Value::Text(q.trim().to_owned())),
                    ("answer".to_owned(), answer),
                ])));
            }
            Value::List(out)
        }
    })
}

/// Builds a body from command-line `--field value` pairs, converting each text by its field's
/// type, then validates it.
///
/// Quantities are written `140` (default unit) or `37.2 Cel` / `98.6 [degF]`; text lists
/// comma separated (a repeated flag adds to the list); booleans `true`, `false`, `yes`, `no`;
/// answers `question=answer` pairs separated by commas or semicolons. Codes match case-insensitively. Attachments
/// cannot be given as text: see [`body_from_pairs_with`]. For an extension category every
/// value is kept as text.
///
/// # Errors
/// An unknown or repeated field, a value that cannot be read as its field's type, a file
/// field, or any [`validate`] error.
pub fn body_from_pairs(
    category: &Category,
    pairs: &[(String, String)],
) -> Result<Value, SchemaError> {
    body_from_pairs_with(category, BTreeMap::new(), pairs)
}

/// Like [`body_from_pairs`], starting from fields the caller has already filled in (e.g. the
/// CLI reads `--file` into the `data` field as [`Value::Bytes`]). A pair naming a field that
/// is already filled is an error, except that text lists are extended.
///
/// # Errors
/// As [`body_from_pairs`].
pub fn body_from_pairs_with(
    category: &Category,
    prefilled: BTreeMap<String, Value>,
    pairs: &[(String, String)],
) -> Result<Value, SchemaError> {
    let mut map = prefilled;
    let s = schema(category);
    for (name, text) in pairs {
        let value = match s {
            None => Value::Text(text.clone()),
            Some(s) => {
                let Some(field) = s.field(name) else {
                    return Err(SchemaError::UnknownField {
                        category: category.name().to_owned(),
                        field: clip(name, MAX_QUOTE),
                        known: s.field_names(),
                    });
                };
                convert_text(s, field, text)?
            }
        };
        match (map.get_mut(name.as_str()), value) {
            (None, value) => {
                map.insert(name.clone(), value);
            }
            (Some(Value::List(old)), Value::List(new))
                if s.and_then(|s| s.field(name)).map(|f| f.ty) == Some(FieldType::TextList) =>
            {
                old.extend(new);
            }
            (Some(_), _) => {
                return Err(SchemaError::Duplicate {
                    category: category.name().to_owned(),
                    field: clip(name, MAX_QUOTE),
                })
            }
        }
    }
    let body = Value::Map(map);
    validate(category, &body)?;
    Ok(body)
}

/// Builds a body from app JSON (an object), using the schema to convert, then validates it.
///
/// File fields take base64 text (line breaks allowed) and become [`Value::Bytes`]; quantities
/// may be a bare number (default unit) or `{"value": .., "unit": ..}`; `null` fields are
/// dropped as absent; everything else converts as [`Value::from_json`] does.
///
/// # Errors
/// Not a JSON object, a file field that is not base64, or any [`validate`] error.
pub fn body_from_json(category: &Category, json: &serde_json::Value) -> Result<Value, SchemaError> {
    let cat = || category.name().to_owned();
    let Some(obj) = json.as_object() else {
        return Err(SchemaError::NotAMap {
            category: cat(),
            got: json_kind(json),
        });
    };
    let Some(s) = schema(category) else {
        let body = Value::from_json(json);
        validate(category, &body)?;
        return Ok(body);
    };
    let mut map = BTreeMap::new();
    for (k, j) in obj {
        if j.is_null() {
            continue;
        }
        let field = s.field(k);
        let value = match (field.map(|f| f.ty), j) {
            (Some(FieldType::Binary { max_bytes, .. }), serde_json::Value::String(b64)) => {
                let name = k.as_str();
                let clean: Vec<u8> = b64.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
                let approx = clean.len() / 4 * 3;
                if approx > max_bytes + 3 {
                    return Err(SchemaError::TooLong {
                        category: cat(),
                        field: name.to_owned(),
                        len: approx,
                        max: max_bytes,
                        what: "bytes",
                    });
                }
                let bytes = BASE64
                    .decode(&clean)
                    .or_else(|_| BASE64_NOPAD.decode(&clean))
                    .map_err(|_| SchemaError::WrongType {
                        category: cat(),
                        field: name.to_owned(),
                        expected: "base64 text (the file's content)".to_owned(),
                        got: "text that is not valid base64".to_owned(),
                    })?;
                Value::Bytes(bytes)
            }
            (Some(FieldType::Quantity { units }), serde_json::Value::Number(_)) => {
                quantity(Value::from_json(j), units[0].to_owned())
            }
            _ => Value::from_json(j),
        };
        map.insert(k.clone(), value);
    }
    let body = Value::Map(map);
    validate(category, &body)?;
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Summaries.
// ---------------------------------------------------------------------------------------------

/// Renders a value briefly, if it has a brief form.
fn show(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::Bool(b) => (if *b { "yes" } else { "no" }).to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(t) => t.clone(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::List(items) => {
            let parts: Vec<String> = items
                .iter()
                .take(10)
                .filter(|i| !matches!(i, Value::Map(_) | Value::List(_)))
                .filter_map(show)
                .collect();
            if parts.is_empty() {
                format!("{} items", items.len())
            } else {
                parts.join(", ")
            }
        }
        Value::Map(m) => match (m.get("value").and_then(show_number), m.get("unit")) {
            (Some(n), Some(Value::Text(u))) => format!("{n} {u}"),
            (Some(n), _) => n,
            _ => return None,
        },
    };
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    (!s.is_empty()).then_some(s)
}

fn show_number(v: &Value) -> Option<String> {
    match v {
        Value::Int(_) | Value::Float(_) => show(v),
        _ => None,
    }
}

/// `main — second (extra, extra)`, skipping absent parts.
fn line(main: Option<String>, second: Option<String>, extras: &[Option<String>]) -> String {
    let mut out = main.unwrap_or_default();
    if let Some(s) = second {
        if !out.is_empty() {
            out.push_str(" — ");
        }
        out.push_str(&s);
    }
    let extras: Vec<&str> = extras.iter().flatten().map(String::as_str).collect();
    if !extras.is_empty() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('(');
        out.push_str(&extras.join(", "));
        out.push(')');
    }
    out
}

/// A short human one-liner for an entry body, for tables: e.g. "Penicillin — rash (severe)" or
/// `BP 140/90 mm[Hg], HR 72 /min`. Never panics, whatever the body; never empty.
pub fn summary(category: &Category, body: &Value) -> String {
    let get = |k: &str| body.get(k).and_then(show);
    let prefixed = |p: &str, k: &str| get(k).map(|v| format!("{p}{v}"));
    let labelled = |fields: &[(&str, &str)]| -> String {
        fields
            .iter()
            .filter_map(|(label, k)| get(k).map(|v| format!("{label} {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let titled = || -> String {
        schema(category)
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|f| get(f.name).map(|v| format!("{}: {v}", f.title)))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    let text = match category {
        Category::Demographics => {
            let name = [get("forename"), get("surname")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            line(
                (!name.is_empty()).then_some(name),
                None,
                &[prefixed("born ", "date-of-birth"), get("gender")],
            )
        }
        Category::KeyContacts => line(get("name"), get("relationship"), &[get("telephone")]),
        Category::Alerts => line(get("alert"), None, &[get("severity")]),
        Category::Preferences | Category::Lifestyle => titled(),
        Category::Allergies => line(get("agent"), get("reaction"), &[get("severity")]),
        Category::Problems => line(
            get("problem"),
            None,
            &[
                get("status"),
                prefixed("since ", "onset"),
                prefixed("resolved ", "resolved"),
            ],
        ),
        Category::Procedures => line(get("procedure"), get("outcome"), &[get("date")]),
        Category::Medications => line(get("medication"), get("dose"), &[get("status")]),
        Category::Immunisations => line(get("immunisation"), None, &[get("date"), get("status")]),
        Category::VitalSigns | Category::Wearables => {
            let num = |k: &str| {
                body.get(k)
                    .and_then(|q| q.get("value"))
                    .and_then(show_number)
            };
            let unit = body
                .get("systolic")
                .and_then(|q| q.get("unit"))
                .and_then(Value::as_text)
                .unwrap_or("mm[Hg]");
            let mut parts = Vec::new();
            match (num("systolic"), num("diastolic")) {
                (Some(s), Some(d)) => parts.push(format!("BP {s}/{d} {unit}")),
                _ => parts.push(labelled(&[
                    ("Systolic", "systolic"),
                    ("Diastolic", "diastolic"),
                ])),
            }
            parts.push(labelled(&[
                ("HR", "heart-rate"),
                ("RR", "respiration-rate"),
                ("SpO2", "spo2"),
                ("Temp", "temperature"),
                ("Glucose", "blood-glucose"),
                ("Steps", "steps"),
            ]));
            parts.retain(|p| !p.is_empty());
            parts.join(", ")
        }
        Category::LabResults => {
            let result = [get("result"), get("unit")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let main = match get("test") {
                Some(t) if !result.is_empty() => Some(format!("{t}: {result}")),
                Some(t) => Some(t),
                None => (!result.is_empty()).then_some(result),
            };
            line(main, None, &[get("interpretation")])
        }
        Category::Investigations => line(get("investigation"), get("result"), &[get("date")]),
        Category::Examinations => labelled(&[
            ("Height", "height"),
            ("Weight", "weight"),
            ("BMI", "bmi"),
            ("Waist", "waist"),
            ("Head", "head-circumference"),
            ("Hip", "hip-circumference"),
            ("BSA", "body-surface-area"),
        ]),
        Category::FamilyHistory => line(get("condition"), get("relative"), &[]),
        Category::AboutMe => ["thing-1", "thing-2", "thing-3"]
            .iter()
            .filter_map(|k| get(k))
            .collect::<Vec<_>>()
            .join("; "),
        Category::Documents => {
            let size = match body.get("data") {
                Some(Value::Bytes(b)) if b.len() >= 1024 => Some(format!("{} KiB", b.len() / 1024)),
                Some(Value::Bytes(b)) => Some(format!("{} bytes", b.len())),
                _ => None,
            };
            line(get("title"), None, &[get("media-type"), size, get("date")])
        }
        Category::Questionnaires => {
            let n = match body.get("answers") {
                Some(Value::List(l)) => Some(format!("{} answers", l.len())),
                _ => None,
            };
            line(
                get("questionnaire"),
                None,
                &[prefixed("score ", "score"), n],
            )
        }
        Category::Messages => line(get("subject"), get("text"), &[]),
        Category::Extension(_) => body
            .as_map()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| show(v).map(|v| format!("{k}: {v}")))
                    .take(4)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
    };
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        text = schema(category)
            .and_then(|s| get(s.summary_field))
            .unwrap_or_else(|| category.title().to_owned());
    }
    clip(&text, MAX_SUMMARY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    const PDF: &[u8] = b"%PDF-1.7\n%test\n";

    fn q(value: f64, unit: &str) -> serde_json::Value {
        json!({"value": value, "unit": unit})
    }

    /// A valid example body for every built-in category.
    fn example(c: &Category) -> Value {
        let j = match c {
            Category::AboutMe => json!({"thing-1": "I am deaf in my left ear",
                "thing-2": "I look after my husband", "summary": "Retired teacher.\nKeen gardener."}),
            Category::Alerts => json!({"alert": "Metallic hip implant", "severity": "high"}),
            Category::Demographics => json!({"surname": "Smith", "forename": "Jane",
                "date-of-birth": "1959-02-28", "gender": "female", "address": "1 High St\nLeeds"}),
            Category::KeyContacts => json!({"name": "John Smith", "relationship": "next-of-kin",
                "telephone": "0113 496 0000"}),
            Category::Preferences => json!({"organ-donation": "yes", "language": "Welsh"}),
            Category::Allergies => json!({"agent": "Penicillin", "reaction": "rash",
                "severity": "severe", "onset": "2019", "criticality": "high"}),
            Category::Problems => json!({"problem": "Type 2 diabetes", "onset": "2019-05",
                "resolved": "2020-01-02", "status": "resolved"}),
            Category::Procedures => json!({"procedure": "Appendicectomy", "outcome": "good",
                "date": "2001-07-14"}),
            Category::Medications => json!({"medication": "Metformin 500 mg tablets",
                "dose": "one twice a day", "start": "2019-06", "status": "active"}),
            Category::Immunisations => json!({"immunisation": "Influenza", "status": "completed",
                "date": "2025-10-01"}),
            Category::VitalSigns => json!({"systolic": q(140.0, "mm[Hg]"),
                "diastolic": q(90.0, "mm[Hg]"), "heart-rate": q(72.0, "/min"),
                "temperature": q(37.2, "Cel"), "measured-at": "2026-11-22T10:15:00Z"}),
            Category::Wearables => json!({"heart-rate": q(64.0, "/min"), "steps": 8042,
                "device": "wristband", "measured-at": "2026-11-22T10:15:00.123+01:00"}),
            Category::LabResults => json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol",
                "interpretation": "high", "status": "final", "collected": "2026-11-20T09:00:00Z"}),
            Category::Investigations => json!({"investigation": "Chest X-ray", "kind": "imaging",
                "result": "No abnormality detected."}),
            Category::Examinations => json!({"height": q(170.0, "cm"), "weight": q(70.5, "kg"),
                "bmi": q(24.4, "kg/m2")}),
            Category::Lifestyle => json!({"smoking": "former", "alcohol": "10 units/week"}),
            Category::FamilyHistory => json!({"condition": "Breast cancer", "relative": "mother",
                "genomic-markers": ["BRCA1", "BRCA2"]}),
            Category::Documents => json!({"title": "Discharge letter",
                "media-type": "application/pdf", "data": BASE64.encode(PDF)}),
            Category::Questionnaires => json!({"questionnaire": "EQ-5D-5L",
                "answers": [{"question": "Mobility", "answer": 1},
                            {"question": "Anxious?", "answer": false},
                            {"question": "Comment", "answer": "fine"}],
                "score": 0.86, "completed": "2026-11-22T10:15:00Z"}),
            Category::Messages => json!({"text": "Can I take ibuprofen?", "subject": "Pain"}),
            Category::Extension(_) => json!({"anything": 1}),
        };
        body_from_json(c, &j).unwrap_or_else(|e| panic!("{c}: {e}"))
    }

    fn map(j: serde_json::Value) -> Value {
        Value::from_json(&j)
    }

    #[test]
    fn every_built_in_category_has_a_schema_in_order() {
        assert_eq!(all().len(), Category::BUILT_IN.len());
        for (s, c) in all().iter().zip(Category::BUILT_IN.iter()) {
            assert_eq!(&s.category, c);
            assert_eq!(schema(c), Some(s));
            assert_eq!(s.title, c.title());
            assert!(s.archetype.starts_with("openEHR-"), "{c}");
            assert!(!s.fhir.is_empty(), "{c}");
            assert!(s.field(s.summary_field).is_some(), "{c}: summary field");
            assert!(
                s.fields.iter().any(|f| f.required) || !s.at_least_one.is_empty(),
                "{c}: an empty body must be refused"
            );
            for f in s
                .at_least_one
                .iter()
                .chain(s.together.iter().flat_map(|(a, b)| [a, b]))
            {
                assert!(s.field(f).is_some(), "{c}: rule names unknown field {f}");
            }
            let mut names: Vec<_> = s.fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), s.fields.len(), "{c}: duplicate field");
            for f in s.fields {
                assert!(f
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                if let FieldType::Quantity { units } = f.ty {
                    for u in units {
                        assert!(
                            s.range(f.name, Some(u)).is_some(),
                            "{c}: no range for {} {u}",
                            f.name
                        );
                    }
                }
            }
        }
        assert_eq!(
            schema(&Category::Extension("ext:uk.respect/respect".into())),
            None
        );
        // The definitions export as JSON.
        let j = serde_json::to_value(all()).unwrap();
        assert_eq!(j[0]["category"], "about-me");
        assert_eq!(j[5]["fields"][2]["type"]["code"][0], "mild");
    }

    #[test]
    fn examples_validate_and_summarise() {
        for c in Category::BUILT_IN.iter() {
            let body = example(c);
            validate(c, &body).unwrap();
            let s = summary(c, &body);
            assert!(!s.is_empty(), "{c}");
            assert!(s.chars().count() <= MAX_SUMMARY + 1);
        }
        assert_eq!(
            summary(&Category::Allergies, &example(&Category::Allergies)),
            "Penicillin — rash (severe)"
        );
        assert_eq!(
            summary(&Category::VitalSigns, &example(&Category::VitalSigns)),
            "BP 140/90 mm[Hg], HR 72 /min, Temp 37.2 Cel"
        );
    }

    #[test]
    fn summary_never_panics_or_is_empty() {
        let long = "é".repeat(1000);
        let odd = [
            Value::Null,
            Value::Int(3),
            Value::map(),
            Value::Text(long.clone()),
            map(json!({"systolic": 3, "diastolic": {"value": "x"}, "heart-rate": [1, [2]]})),
            map(json!({"agent": long, "reaction": "\n\t", "severity": {"a": 1}})),
            Value::Map(BTreeMap::from([(
                "data".to_owned(),
                Value::Bytes(vec![0; 5000]),
            )])),
            Value::Map(BTreeMap::from([(
                "answers".to_owned(),
                Value::Float(f64::NAN),
            )])),
        ];
        let mut cats = Category::BUILT_IN.to_vec();
        cats.push(Category::Extension("ext:x/y".into()));
        for c in &cats {
            for v in &odd {
                let s = summary(c, v);
                assert!(!s.is_empty());
                assert!(!s.chars().any(char::is_control));
            }
        }
    }

    fn err(c: Category, j: serde_json::Value) -> SchemaError {
        validate(&c, &map(j)).unwrap_err()
    }

    #[test]
    fn each_error_is_produced() {
        let e = err(Category::Allergies, json!({"agent": "x", "colour": "red"}));
        assert!(matches!(&e, SchemaError::UnknownField { field, known, .. }
            if field == "colour" && known.contains("severity")));
        assert!(e
            .to_string()
            .starts_with("allergies: unknown field `colour`"));

        let e = err(Category::Allergies, json!({"reaction": "rash"}));
        assert_eq!(e.to_string(), "allergies: field `agent` is required");

        let e = err(
            Category::Allergies,
            json!({"agent": "x", "severity": "bad"}),
        );
        assert_eq!(
            e.to_string(),
            "allergies: field `severity` must be one of mild, moderate, severe (got `bad`)"
        );

        let e = err(Category::VitalSigns, json!({"heart-rate": q(72.0, "bpm")}));
        assert!(
            matches!(e, SchemaError::BadUnit { ref unit, .. } if unit == "bpm"),
            "{e}"
        );

        let e = err(Category::VitalSigns, json!({"spo2": q(101.0, "%")}));
        assert!(
            matches!(e, SchemaError::OutOfRange { max, .. } if max == 100.0),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "vital-signs: field `spo2` is 101 %, outside the plausible range 0 to 100 %"
        );
        let e = err(Category::VitalSigns, json!({"temperature": q(98.6, "Cel")}));
        assert!(matches!(e, SchemaError::OutOfRange { .. }), "{e}");
        validate(
            &Category::VitalSigns,
            &map(json!({"temperature": q(98.6, "[degF]")})),
        )
        .unwrap();
        let e = err(Category::Wearables, json!({"steps": -1}));
        assert!(matches!(e, SchemaError::OutOfRange { .. }), "{e}");

        for bad in [
            "2019-02-29",
            "2019-13",
            "19",
            "2019-1-01",
            "0000",
            "２０１９",
        ] {
            let e = err(Category::Problems, json!({"problem": "x", "onset": bad}));
            assert!(matches!(e, SchemaError::BadDate { .. }), "{bad}: {e}");
        }
        for good in ["2020-02-29", "2019-12", "2019"] {
            validate(
                &Category::Problems,
                &map(json!({"problem": "x", "onset": good})),
            )
            .unwrap();
        }
        for bad in [
            "2026-11-22",
            "2026-11-22T25:00:00Z",
            "2026-11-22T10:15:00",
            "2026-11-22T10:15:00+1:00",
        ] {
            let e = err(
                Category::LabResults,
                json!({"test": "x", "result": "1", "collected": bad}),
            );
            assert!(matches!(e, SchemaError::BadDate { .. }), "{bad}: {e}");
        }

        let e = err(Category::Wearables, json!({"steps": "many"}));
        assert!(
            matches!(&e, SchemaError::WrongType { field, .. } if field == "steps"),
            "{e}"
        );
        let e = err(Category::VitalSigns, json!({"heart-rate": 72}));
        assert!(matches!(e, SchemaError::WrongType { .. }), "{e}");
        let e = err(Category::Allergies, json!({"agent": 5}));
        assert_eq!(e.to_string(), "allergies: field `agent` must be text (at most 1024 bytes, one line) (got a whole number)");

        let e = err(
            Category::Allergies,
            json!({"agent": "a".repeat(MAX_TEXT + 1)}),
        );
        assert!(
            matches!(e, SchemaError::TooLong { len, max: MAX_TEXT, .. } if len == MAX_TEXT + 1)
        );
        let e = err(
            Category::Messages,
            json!({"text": "a".repeat(MAX_LONG_TEXT + 1)}),
        );
        assert!(matches!(e, SchemaError::TooLong { .. }));
        validate(
            &Category::Messages,
            &map(json!({"text": "a".repeat(MAX_LONG_TEXT)})),
        )
        .unwrap();

        let e = err(Category::Allergies, json!({"agent": "  "}));
        assert!(matches!(e, SchemaError::EmptyField { .. }));
        let e = err(Category::Allergies, json!({"agent": "pea\u{1b}[31m"}));
        assert!(matches!(e, SchemaError::ControlCharacters { .. }));

        let e = validate(&Category::Allergies, &Value::Text("penicillin".into())).unwrap_err();
        assert!(matches!(e, SchemaError::NotAMap { got: "text", .. }));
        let ext = Category::Extension("ext:uk.respect/respect".into());
        assert!(matches!(
            validate(&ext, &Value::map()),
            Err(SchemaError::Empty { .. })
        ));
        assert!(matches!(
            validate(&ext, &Value::Int(1)),
            Err(SchemaError::NotAMap { .. })
        ));
        validate(
            &ext,
            &map(json!({"cpr": "not for resuscitation", "n": [1, {"a": null}]})),
        )
        .unwrap();
        let e = validate(
            &ext,
            &Value::Map(BTreeMap::from([("x".into(), Value::Float(f64::INFINITY))])),
        );
        assert!(matches!(e, Err(SchemaError::Malformed { .. })));

        let e = err(Category::Preferences, json!({}));
        assert!(matches!(e, SchemaError::AtLeastOne { .. }));
        let e = err(
            Category::VitalSigns,
            json!({"measured-at": "2026-11-22T10:15:00Z"}),
        );
        assert!(matches!(e, SchemaError::AtLeastOne { .. }), "{e}");
        let e = err(
            Category::VitalSigns,
            json!({"systolic": q(120.0, "mm[Hg]")}),
        );
        assert!(
            matches!(&e, SchemaError::Together { missing, .. } if missing == "diastolic"),
            "{e}"
        );
        let e = err(
            Category::VitalSigns,
            json!({"systolic": q(80.0, "mm[Hg]"), "diastolic": q(120.0, "mm[Hg]")}),
        );
        assert!(matches!(e, SchemaError::Rule(_)), "{e}");
        let e = err(
            Category::Problems,
            json!({"problem": "x", "onset": "2020", "resolved": "2019-12"}),
        );
        assert!(matches!(e, SchemaError::Rule(_)), "{e}");
        validate(
            &Category::Problems,
            &map(json!({"problem": "x", "onset": "2020-05", "resolved": "2020"})),
        )
        .unwrap();

        let e = err(
            Category::Questionnaires,
            json!({"questionnaire": "x", "answers": [{"question": "q"}]}),
        );
        assert!(matches!(e, SchemaError::WrongType { .. }), "{e}");
        let e = err(
            Category::FamilyHistory,
            json!({"condition": "x", "relative": "y", "genomic-markers": []}),
        );
        assert!(matches!(e, SchemaError::EmptyField { .. }), "{e}");
    }

    #[test]
    fn documents_are_checked_against_their_content() {
        let c = Category::Documents;
        let body = |mt: &str, data: &[u8]| {
            Value::Map(BTreeMap::from([
                ("title".to_owned(), Value::Text("t".into())),
                ("media-type".to_owned(), Value::Text(mt.into())),
                ("data".to_owned(), Value::Bytes(data.to_vec())),
            ]))
        };
        validate(&c, &body("image/png", PNG)).unwrap();
        assert!(matches!(
            validate(&c, &body("application/pdf", PNG)),
            Err(SchemaError::Rule(_))
        ));
        assert!(matches!(
            validate(&c, &body("image/png", b"MZ\x90\0")),
            Err(SchemaError::Rule(_))
        ));
        assert!(matches!(
            validate(&c, &body("image/gif", PNG)),
            Err(SchemaError::BadCode { .. })
        ));
        let mut big = PDF.to_vec();
        big.resize(MAX_DOCUMENT + 1, 0);
        assert!(matches!(
            validate(&c, &body("application/pdf", &big)),
            Err(SchemaError::TooLong { .. })
        ));
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn vital_signs_from_flags() {
        let c = Category::VitalSigns;
        let body = body_from_pairs(
            &c,
            &pairs(&[
                ("systolic", "140"),
                ("diastolic", "90 mmHg"),
                ("heart-rate", "72bpm"),
                ("temperature", "98.6 [degF]"),
                ("spo2", "97"),
                ("blood-glucose", "5.4 mmol/L"),
            ]),
        )
        .unwrap();
        assert_eq!(
            body.get("systolic"),
            Some(&map(json!({"value": 140, "unit": "mm[Hg]"})))
        );
        assert_eq!(
            body.get("diastolic"),
            Some(&map(json!({"value": 90, "unit": "mm[Hg]"})))
        );
        assert_eq!(
            body.get("heart-rate"),
            Some(&map(json!({"value": 72, "unit": "/min"})))
        );
        assert_eq!(
            body.get("temperature"),
            Some(&map(json!({"value": 98.6, "unit": "[degF]"})))
        );
        assert_eq!(
            body.get("spo2"),
            Some(&map(json!({"value": 97, "unit": "%"})))
        );
        let t = body_from_pairs(&c, &pairs(&[("temperature", "37.2 Cel")])).unwrap();
        assert_eq!(
            t.get("temperature"),
            Some(&map(json!({"value": 37.2, "unit": "Cel"})))
        );
        let t = body_from_pairs(&c, &pairs(&[("temperature", "37.2")])).unwrap();
        assert_eq!(
            t.get("temperature"),
            Some(&map(json!({"value": 37.2, "unit": "Cel"})))
        );

        let e = body_from_pairs(&c, &pairs(&[("heart-rate", "fast")])).unwrap_err();
        assert!(matches!(e, SchemaError::WrongType { .. }), "{e}");
        let e = body_from_pairs(&c, &pairs(&[("heart-rate", "72 furlongs")])).unwrap_err();
        assert!(matches!(e, SchemaError::BadUnit { .. }), "{e}");
        let e =
            body_from_pairs(&c, &pairs(&[("heart-rate", "72"), ("heart-rate", "73")])).unwrap_err();
        assert!(matches!(e, SchemaError::Duplicate { .. }), "{e}");
        let e = body_from_pairs(&c, &pairs(&[("pulse", "72")])).unwrap_err();
        assert!(matches!(e, SchemaError::UnknownField { .. }), "{e}");
    }

    #[test]
    fn other_fields_from_flags() {
        let fh = body_from_pairs(
            &Category::FamilyHistory,
            &pairs(&[
                ("condition", "Breast cancer"),
                ("relative", "mother"),
                ("genomic-markers", "BRCA1, BRCA2"),
                ("genomic-markers", "TP53"),
            ]),
        )
        .unwrap();
        assert_eq!(
            fh.get("genomic-markers"),
            Some(&map(json!(["BRCA1", "BRCA2", "TP53"])))
        );

        let a = body_from_pairs(
            &Category::Allergies,
            &pairs(&[("agent", "Penicillin"), ("severity", "Severe")]),
        )
        .unwrap();
        assert_eq!(a.get("severity"), Some(&Value::Text("severe".into())));

        let qn = body_from_pairs(
            &Category::Questionnaires,
            &pairs(&[
                ("questionnaire", "EQ-5D-5L"),
                ("answers", "Mobility=1; Pain=true;Note=ok"),
                ("score", "0.8"),
            ]),
        )
        .unwrap();
        assert_eq!(
            qn.get("answers"),
            Some(&map(json!([{"question": "Mobility", "answer": 1},
                             {"question": "Pain", "answer": true},
                             {"question": "Note", "answer": "ok"}])))
        );

        let e = body_from_pairs(
            &Category::Documents,
            &pairs(&[("title", "x"), ("data", "/tmp/a.pdf")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("use --json or --file"), "{e}");
        let pre = BTreeMap::from([("data".to_owned(), Value::Bytes(PDF.to_vec()))]);
        let d = body_from_pairs_with(
            &Category::Documents,
            pre,
            &pairs(&[("title", "Letter"), ("media-type", "application/pdf")]),
        )
        .unwrap();
        assert_eq!(d.get("data"), Some(&Value::Bytes(PDF.to_vec())));

        let ext = Category::Extension("ext:uk.respect/respect".into());
        let b = body_from_pairs(&ext, &pairs(&[("cpr", "not for resuscitation")])).unwrap();
        assert_eq!(
            b.get("cpr"),
            Some(&Value::Text("not for resuscitation".into()))
        );
        assert!(matches!(
            body_from_pairs(&ext, &[]),
            Err(SchemaError::Empty { .. })
        ));
    }

    #[test]
    fn document_from_json_with_base64() {
        let c = Category::Documents;
        let j = json!({"title": "Scan", "media-type": "image/png", "data": BASE64.encode(PNG),
                       "date": "2026-11", "description": null});
        let body = body_from_json(&c, &j).unwrap();
        assert_eq!(body.get("data"), Some(&Value::Bytes(PNG.to_vec())));
        assert_eq!(body.get("description"), None);
        // Round trip through Value::to_json.
        assert_eq!(body_from_json(&c, &body.to_json()).unwrap(), body);
        assert_eq!(summary(&c, &body), "Scan (image/png, 12 bytes, 2026-11)");

        let bad = json!({"title": "Scan", "media-type": "image/png", "data": "not base64!"});
        assert!(matches!(
            body_from_json(&c, &bad),
            Err(SchemaError::WrongType { .. })
        ));
        let missing = json!({"title": "Scan", "media-type": "image/png"});
        assert!(matches!(
            body_from_json(&c, &missing),
            Err(SchemaError::AtLeastOne { .. })
        ));
        let half = json!({"title": "Scan", "media-type": "image/png", "url": "https://x.org/a"});
        assert!(matches!(
            body_from_json(&c, &half),
            Err(SchemaError::Together { .. })
        ));
        let nothing = json!({"title": "Scan"});
        assert!(matches!(
            body_from_json(&c, &nothing),
            Err(SchemaError::AtLeastOne { .. })
        ));
        body_from_json(
            &c,
            &json!({"title": "Scan", "url": "https://example.org/scan"}),
        )
        .unwrap();
        assert!(matches!(
            body_from_json(&c, &json!([1])),
            Err(SchemaError::NotAMap { got: "a list", .. })
        ));

        let v = body_from_json(
            &Category::VitalSigns,
            &json!({"heart-rate": 72, "spo2": {"value": 98, "unit": "%"}}),
        )
        .unwrap();
        assert_eq!(
            v.get("heart-rate"),
            Some(&map(json!({"value": 72, "unit": "/min"})))
        );
    }
}
