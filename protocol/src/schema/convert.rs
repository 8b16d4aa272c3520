//! Building a body from command-line `--field value` pairs ([`body_from_pairs`]) or from
//! app JSON ([`body_from_json`]), converting each value by its field's type.

use std::collections::BTreeMap;

use data_encoding::{BASE64, BASE64_NOPAD};

use super::error::{clip, json_kind, SchemaError, MAX_QUOTE};
use super::tables::schema;
use super::types::{CategorySchema, FieldSpec, FieldType};
use super::validate::{validate, Ctx};
use crate::category::Category;
use crate::value::Value;

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

fn resolve_unit(unit: &str, units: &[&str]) -> String {
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
fn convert_text(
    s: &CategorySchema<'_>,
    field: &FieldSpec<'_>,
    text: &str,
) -> Result<Value, SchemaError> {
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
        FieldType::Binary { .. } | FieldType::Document => {
            return Err(SchemaError::Rule(format!(
                "{}: field `{}` is a file: use --json or --file for attachments",
                s.category.name(),
                field.name
            )))
        }
        FieldType::Answers => answers_from_text(&ctx, t)?,
    })
}

/// Questionnaire answers from text: `question=answer` pairs separated by commas or
/// semicolons; an answer reads as true/false, a number, or text. A part that is not
/// exactly one non-empty question, `=`, and a non-empty answer is refused.
fn answers_from_text(ctx: &Ctx<'_>, t: &str) -> Result<Value, SchemaError> {
    let mut out = Vec::new();
    for part in t.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
        let (q, a) = match part.split_once('=') {
            Some((q, a)) if !q.trim().is_empty() && !a.trim().is_empty() && !a.contains('=') => {
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
    Ok(Value::List(out))
}

/// Builds a body from command-line `--field value` pairs, converting each text by its field's
/// type, then validates it.
///
/// Quantities are written `140` (default unit) or `37.2 Cel` / `98.6 [degF]`; text lists
/// comma separated (a repeated flag adds to the list); booleans `true`, `false`, `yes`, `no`;
/// answers `question=answer` pairs separated by commas or semicolons. Codes match
/// case-insensitively. Attachments cannot be given as text: see [`body_from_pairs_with`]. For
/// an extension category every value is kept as text.
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
    body_from_pairs_in(category, schema(category), prefilled, pairs)
}

/// [`body_from_pairs_with`] against a given schema (`None`: an extension with none defined,
/// values kept as text): an extension's defined as data
/// ([`super::ExtensionSchema::with_view`]) converts and checks as a built-in category's.
///
/// # Errors
/// As [`body_from_pairs`].
pub fn body_from_pairs_in(
    category: &Category,
    s: Option<&CategorySchema<'_>>,
    prefilled: BTreeMap<String, Value>,
    pairs: &[(String, String)],
) -> Result<Value, SchemaError> {
    let mut map = prefilled;
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
    match s {
        Some(s) => super::validate_with(s, &body)?,
        None => validate(category, &body)?,
    }
    Ok(body)
}

/// A document field from JSON: the hash as hex (as shown) or base64 (as bodies are
/// written out), the size, the key as base64; bytes as [`crate::blob::DocumentFile`] keeps
/// them (its checks follow in [`validate`]).
fn document_from_json(
    o: &serde_json::Map<String, serde_json::Value>,
) -> Result<Value, &'static str> {
    let bytes = |t: &str| {
        BASE64
            .decode(t.as_bytes())
            .or_else(|_| BASE64_NOPAD.decode(t.as_bytes()))
            .map_err(|_| "text that is not valid base64")
    };
    let mut m = BTreeMap::new();
    for (k, v) in o {
        let value = match (k.as_str(), v) {
            ("hash", serde_json::Value::String(t)) => match t.parse::<crate::blob::BlobHash>() {
                Ok(h) => Value::Bytes(h.0.to_vec()),
                Err(_) => Value::Bytes(bytes(t)?),
            },
            ("key", serde_json::Value::String(t)) => Value::Bytes(bytes(t)?),
            ("size", serde_json::Value::Number(_)) => Value::from_json(v),
            _ => return Err("a field other than hash, size and key, or of the wrong type"),
        };
        m.insert(k.clone(), value);
    }
    Ok(Value::Map(m))
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
    body_from_json_in(category, schema(category), json)
}

/// [`body_from_json`] against a given schema (`None`: an extension with none defined).
///
/// # Errors
/// As [`body_from_json`].
pub fn body_from_json_in(
    category: &Category,
    s: Option<&CategorySchema<'_>>,
    json: &serde_json::Value,
) -> Result<Value, SchemaError> {
    let cat = || category.name().to_owned();
    let Some(obj) = json.as_object() else {
        return Err(SchemaError::NotAMap {
            category: cat(),
            got: json_kind(json),
        });
    };
    let Some(s) = s else {
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
            (Some(FieldType::Document), serde_json::Value::Object(o)) => document_from_json(o)
                .map_err(|why| SchemaError::WrongType {
                    category: cat(),
                    field: k.clone(),
                    expected: "a document: {\"hash\": hex or base64, \"size\": bytes, \
                               \"key\": base64 (optional)}"
                        .to_owned(),
                    got: why.to_owned(),
                })?,
            (Some(FieldType::Quantity { units }), serde_json::Value::Number(_)) => {
                quantity(Value::from_json(j), units[0].to_owned())
            }
            _ => Value::from_json(j),
        };
        map.insert(k.clone(), value);
    }
    let body = Value::Map(map);
    super::validate_with(s, &body)?;
    Ok(body)
}
