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
//! Extension categories (`ext:<namespace>/<name>`) have no schema here: their schemas are
//! defined as data in each record ([`ExtensionSchema`], carried by
//! [`crate::entry::Payload::DefineSchema`] entries; `docs/extensions.md`). Until one is
//! defined, any non-empty map is accepted for an extension; once defined, its bodies are
//! checked by the same code as a built-in category's ([`validate_with`]).
//!
//! The module is split by job: [`FieldType`], [`FieldSpec`] and [`CategorySchema`] in
//! `types`, [`SchemaError`] in `error`, the per-category tables in `tables`, checking a body
//! in `validate`, building one from flags or JSON in `convert`, and one-line summaries in
//! `summary`.

mod convert;
mod error;
mod extension;
mod summary;
mod tables;
pub mod template;
mod types;
mod validate;

pub use convert::{
    body_from_json, body_from_json_in, body_from_pairs, body_from_pairs_in, body_from_pairs_with,
};
pub use error::SchemaError;
pub use extension::{
    DefinitionError, ExtensionField, ExtensionSchema, ExtensionType, MAX_CODE, MAX_CODES,
    MAX_DEFINITION_BYTES, MAX_DEFINITION_DEPTH, MAX_FIELD_NAME, MAX_LABEL, MAX_NODE,
    MAX_SCHEMA_DESCRIPTION, MAX_SCHEMA_FIELDS, MAX_UNIT, MAX_UNITS,
};
pub use summary::summary;
pub use tables::{all, schema, DOCUMENT_MEDIA_TYPES, FHIR_FIELDS};
pub use types::{CategorySchema, FieldSpec, FieldType, Range};
pub(crate) use validate::{date_time_ms, is_date_time, parse_date};

/// A value quoted back in a message, clipped to a short length.
pub(crate) fn clip_quote(s: &str) -> String {
    error::clip(s, error::MAX_QUOTE)
}
pub use validate::{sniff, validate, validate_with, SNIFF_BYTES};

/// The example template-based extension shipped with cophr: a wound assessment as an
/// openEHR operational template (OPT 1.4, `protocol/src/schema/examples/wound-assessment.opt`).
pub const WOUND_OPT: &str = include_str!("examples/wound-assessment.opt");

/// The example extension schemas shipped with cophr (`protocol/src/schema/examples/`), as
/// JSON definitions: ReSPECT (end of life), wound care (tissue viability), a blood test
/// request and a maternity record.
pub const EXAMPLES: [(&str, &str); 4] = [
    ("respect", include_str!("examples/respect.json")),
    ("wound-care", include_str!("examples/wound-care.json")),
    (
        "blood-test-request",
        include_str!("examples/blood-test-request.json"),
    ),
    ("maternity", include_str!("examples/maternity.json")),
];

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
/// The field of an imported entry holding the warnings its validation raised (implausible
/// values), one a line, so whoever reads the entry sees them.
pub const FHIR_WARNINGS: &str = "fhir-warnings";
/// The field of an imported entry naming what its references pointed at when it was
/// imported, one a line: `reference<TAB>name` for a Medication (e.g. a
/// MedicationRequest's `Medication/med1` and "Metformin 500 MG", so its fields can show
/// the name), `reference<TAB>name<TAB>type` for a Practitioner, Encounter … (shown in
/// its summary). See `fhir::reference_names`.
pub const FHIR_NAMES: &str = "fhir-names";

/// One field as JSON: name, title, type, whether required, a description of its type, and
/// what it allows — codes, units (with the default unit), media types and size for a file.
/// What `GET /api/v1/categories`, `cophr schema --json` and the browser's forms read.
pub fn field_json(f: &FieldSpec<'_>) -> serde_json::Value {
    use serde_json::json;
    let mut o = json!({
        "name": f.name,
        "title": f.title,
        "type": f.ty.kind(),
        "required": f.required,
        "description": f.ty.describe(),
    });
    match f.ty {
        FieldType::Quantity { units } => {
            o["unit"] = json!(units.first());
            o["units"] = json!(units);
        }
        FieldType::Code(codes) => o["codes"] = json!(codes),
        FieldType::Binary {
            media_types,
            max_bytes,
        } => {
            o["media_types"] = json!(media_types);
            o["max_bytes"] = json!(max_bytes);
        }
        _ => {}
    }
    o
}

/// Every category's schema as JSON (name, title, description, fields with their types,
/// units and codes, FHIR resource types): what `GET /api/v1/categories` serves and the
/// browser's page builds its forms from.
pub fn catalogue() -> serde_json::Value {
    use serde_json::{json, Value};
    let list: Vec<Value> = all()
        .iter()
        .map(|s| {
            let fields: Vec<Value> = s.fields.iter().map(field_json).collect();
            json!({
                "name": s.category.name(),
                "title": s.title,
                "description": s.description,
                "fields": fields,
                "fhir": s.fhir,
            })
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests;
