//! The parts of the OpenAPI document (`openapi.json`) generated from the category tables
//! (`cophr_protocol::schema`): one request-body schema per built-in category, so that the
//! document says what each category's body needs — its fields, their types, codes, units,
//! ranges and sizes, which are required, which go together — as the node checks it.
//!
//! The document is committed with these parts in it; a test (`node/tests/openapi.rs`)
//! fails when they differ from what [`entry_schemas`] makes, and rewrites them when run
//! with `COPHR_WRITE_OPENAPI=1`.
//!
//! What a JSON Schema cannot say is answered 409 by the node and documented so (a rule
//! across fields or about a value's content: dates in order, diastolic below systolic, a
//! document's one file and its type, JSON inside a text; an extension's schema, which a
//! record defines as data).

use cophr_protocol::category::Category;
use cophr_protocol::schema::{
    self, CategorySchema, FieldSpec, FieldType, MAX_ANSWERS, MAX_LIST_ITEMS, MAX_LONG_TEXT,
    MAX_TEXT,
};
use serde_json::{json, Map, Value};

/// Single-line text: at least one character that is neither white space nor a control
/// character, and no control character but a tab. (Rust's `trim` and `char::is_control`,
/// spelled out: JSON Schema's `\s` is not the same set in every engine.)
const TEXT: &str = "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$";
/// Free text: as [`TEXT`], line breaks allowed.
const LONG_TEXT: &str = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$";
/// A year from 0001.
const YEAR: &str = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})";
/// A month and a day that every year has.
const MONTH_DAY: &str = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
/// The 29th of February of a leap year.
const LEAP_DAY: &str =
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29";

/// A full date, `YYYY-MM-DD`, that exists.
fn full_date() -> String {
    format!("(?:{YEAR}-{MONTH_DAY}|{LEAP_DAY})")
}

/// A date as the schema's `date` type takes it: `YYYY-MM-DD`, `YYYY-MM` or `YYYY`.
pub fn date_pattern() -> String {
    format!("^(?:{}|{YEAR}-(?:0[1-9]|1[0-2])|{YEAR})$", full_date())
}

/// A date and time as the schema's `date-time` type takes it (RFC 3339 with an offset).
pub fn date_time_pattern() -> String {
    format!(
        "^{}[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$",
        full_date()
    )
}

/// Canonical base64 (padded or not), as the node decodes a file's content.
const BASE64: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw](?:==)?|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=?)?$";

fn text(max: usize, pattern: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": pattern})
}

/// A number's bounds from the category's plausibility range for `field` in `unit`.
fn bounded(mut v: Value, s: &CategorySchema<'_>, field: &str, unit: Option<&str>) -> Value {
    if let Some(r) = s.range(field, unit) {
        v["minimum"] = json!(r.min);
        v["maximum"] = json!(r.max);
    }
    v
}

/// The JSON Schema of one field's value, as `body_from_json` and `validate` take it.
fn field_schema(s: &CategorySchema<'_>, f: &FieldSpec<'_>) -> Value {
    let mut v = match f.ty {
        FieldType::Text => text(MAX_TEXT, TEXT),
        FieldType::LongText => text(MAX_LONG_TEXT, LONG_TEXT),
        FieldType::Integer => bounded(json!({"type": "integer"}), s, f.name, None),
        FieldType::Decimal => bounded(json!({"type": "number"}), s, f.name, None),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Date => json!({"type": "string", "pattern": date_pattern()}),
        FieldType::DateTime => json!({"type": "string", "pattern": date_time_pattern()}),
        FieldType::Code(codes) => json!({"type": "string", "enum": codes}),
        FieldType::Quantity { units } => {
            let per_unit: Vec<Value> = units
                .iter()
                .map(|u| {
                    json!({"properties": {
                        "unit": {"const": u},
                        "value": bounded(json!({"type": "number"}), s, f.name, Some(u)),
                    }})
                })
                .collect();
            json!({"anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number"},
                        "unit": {"type": "string", "enum": units},
                    },
                    "required": ["value", "unit"],
                    "additionalProperties": false,
                    "oneOf": per_unit,
                },
                // A bare number is in the first (default) unit.
                bounded(json!({"type": "number"}), s, f.name, units.first().copied()),
            ]})
        }
        FieldType::TextList => json!({
            "type": "array",
            "items": text(MAX_TEXT, TEXT),
            "minItems": 1,
            "maxItems": MAX_LIST_ITEMS,
        }),
        FieldType::Binary { max_bytes, .. } => json!({
            "type": "string",
            "contentEncoding": "base64",
            "minLength": 2,
            "maxLength": max_bytes.div_ceil(3) * 4,
            "pattern": BASE64,
        }),
        FieldType::Document => json!({
            "type": "object",
            "properties": {
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "size": {"type": "integer", "minimum": 0},
                "key": {"type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$"},
            },
            "required": ["hash", "size"],
            "additionalProperties": false,
        }),
        FieldType::Answers => json!({
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ANSWERS,
            "items": {
                "type": "object",
                "properties": {
                    "question": text(MAX_TEXT, TEXT),
                    "answer": {"anyOf": [
                        text(MAX_TEXT, TEXT),
                        {"type": "integer"},
                        {"type": "number"},
                        {"type": "boolean"},
                    ]},
                },
                "required": ["question", "answer"],
                "additionalProperties": false,
            },
        }),
        FieldType::Json { max_bytes } => json!({"type": "string", "maxLength": max_bytes}),
    };
    v["description"] = json!(format!("{}: {}", f.title, f.ty.describe()));
    v
}

/// `field` given, and not `null` (the node skips a `null` as if the field were absent).
fn present(field: &str) -> Value {
    json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}})
}

fn absent(field: &str) -> Value {
    json!({"not": present(field)})
}

/// One category's body.
fn body_schema(s: &CategorySchema<'_>) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in s.fields.iter().chain(s.fhir_fields) {
        let v = field_schema(s, f);
        if f.required {
            required.push(f.name);
            props.insert(f.name.to_owned(), v);
        } else {
            // An optional field may be given as `null` (taken as absent).
            props.insert(f.name.to_owned(), json!({"anyOf": [v, {"type": "null"}]}));
        }
    }
    let mut all = Vec::new();
    if !s.at_least_one.is_empty() {
        all.push(json!({"anyOf": s.at_least_one.iter().map(|f| present(f)).collect::<Vec<_>>()}));
    }
    for (a, b) in s.together {
        all.push(json!({"anyOf": [
            {"allOf": [present(a), present(b)]},
            {"allOf": [absent(a), absent(b)]},
        ]}));
    }
    if s.category == Category::Documents {
        // A file (inline or stored apart) and its media type go together.
        all.push(json!({"anyOf": [
            {"allOf": [absent("data"), absent("file"), absent("media-type")]},
            {"allOf": [present("media-type"), {"anyOf": [present("data"), present("file")]}]},
        ]}));
    }
    let mut v = json!({
        "type": "object",
        "description": format!("{}: {}", s.title, s.description),
        "properties": props,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        v["required"] = json!(required);
    }
    if !all.is_empty() {
        v["allOf"] = json!(all);
    }
    v
}

/// The name of a category's body schema in `components.schemas`.
pub fn body_name(c: &Category) -> String {
    format!("Body.{}", c.name())
}

/// What this module generates: `components.schemas` entries by name — `NewEntry` (one of a
/// built-in category with its body, or an extension with any non-empty body), one
/// `NewEntry.<category>` and one `Body.<category>` per built-in category, and
/// `NewEntry.extension`.
pub fn entry_schemas() -> Map<String, Value> {
    let mut out = Map::new();
    let mut variants = Vec::new();
    for s in schema::all() {
        let name = s.category.name();
        out.insert(body_name(&s.category), body_schema(s));
        let entry = format!("NewEntry.{name}");
        out.insert(
            entry.clone(),
            json!({
                "type": "object",
                "properties": {
                    "category": {"const": name},
                    "body": {"$ref": format!("#/components/schemas/{}", body_name(&s.category))},
                },
                "required": ["category", "body"],
                "additionalProperties": false,
            }),
        );
        variants.push(json!({"$ref": format!("#/components/schemas/{entry}")}));
    }
    out.insert(
        "NewEntry.extension".to_owned(),
        json!({
            "type": "object",
            "description": "An extension category (`ext:<namespace>/<name>`). Until the record defines its schema any non-empty object is taken; once defined, a body that fails it is answered 409 (the record's definitions are data, not part of this document).",
            "properties": {
                "category": {
                    "type": "string",
                    "pattern": "^ext:[a-z0-9.-]+/[a-z0-9_-]+$",
                    "maxLength": cophr_protocol::category::MAX_EXTENSION_NAME,
                },
                "body": {"type": "object", "minProperties": 1},
            },
            "required": ["category", "body"],
            "additionalProperties": false,
        }),
    );
    variants.push(json!({"$ref": "#/components/schemas/NewEntry.extension"}));
    out.insert(
        "NewEntry".to_owned(),
        json!({
            "description": "A new entry: its category and a body that category's schema takes (generated from the category tables, `GET /api/v1/categories`). A body that breaks a rule the schema cannot state — across fields (dates in order, diastolic below systolic, a document's one file), about a value's content (a file's type, JSON in a text), or with the record (an appointment's reminders, a task's steps, a thread's participants) — is answered 409.",
            "oneOf": variants,
        }),
    );
    out
}

/// The document with the generated parts put in (what `COPHR_WRITE_OPENAPI=1` writes).
pub fn with_generated(mut doc: Value) -> Value {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the document has components.schemas");
    schemas.retain(|k, _| !(k.starts_with("Body.") || k.starts_with("NewEntry")));
    schemas.extend(entry_schemas());
    doc
}
