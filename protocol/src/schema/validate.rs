//! Checking a body against its category's schema ([`validate`]): field types, sizes,
//! codes, units, plausibility ranges, dates, attachments, and the cross-field rules.

use std::collections::BTreeMap;

use super::error::{clip, kind_of, SchemaError, MAX_QUOTE};
use super::tables::schema;
use super::types::{CategorySchema, FieldSpec, FieldType};
use super::*;
use crate::category::Category;
use crate::value::Value;

/// Context for checking one field.
pub(super) struct Ctx<'a> {
    pub(super) schema: &'a CategorySchema<'a>,
    pub(super) field: &'a FieldSpec<'a>,
}

impl Ctx<'_> {
    pub(super) fn cat(&self) -> String {
        self.schema.category.name().to_owned()
    }
    pub(super) fn name(&self) -> String {
        self.field.name.to_owned()
    }
    pub(super) fn wrong(&self, expected: impl Into<String>, got: &Value) -> SchemaError {
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
            FieldType::Date | FieldType::DateTime => self.date(v),
            FieldType::Code(codes) => self.code(v, codes),
            FieldType::Quantity { units } => self.quantity(v, units),
            FieldType::TextList => self.text_list(v),
            FieldType::Binary {
                media_types,
                max_bytes,
            } => self.binary(v, media_types, *max_bytes),
            FieldType::Document => crate::blob::DocumentFile::from_value(v)
                .map(|_| ())
                .map_err(|e| self.rule(&e.to_string())),
            FieldType::Answers => self.answers(v),
            FieldType::Json { max_bytes } => self.json_text(v, *max_bytes),
        }
    }

    /// A [`FieldType::Date`] or [`FieldType::DateTime`].
    fn date(&self, v: &Value) -> Result<(), SchemaError> {
        let ty = &self.field.ty;
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

    /// A [`FieldType::Code`]: one of `codes`.
    fn code(&self, v: &Value, codes: &[&str]) -> Result<(), SchemaError> {
        let Value::Text(s) = v else {
            return Err(self.wrong(self.field.ty.describe(), v));
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

    /// A [`FieldType::Quantity`]: `{"value": number, "unit": one of units}`, in range.
    fn quantity(&self, v: &Value, units: &[&str]) -> Result<(), SchemaError> {
        let expected = || {
            format!(
                "{} ({{\"value\": number, \"unit\": text}})",
                self.field.ty.describe()
            )
        };
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

    /// A [`FieldType::TextList`]: 1 to [`MAX_LIST_ITEMS`] one-line texts.
    fn text_list(&self, v: &Value) -> Result<(), SchemaError> {
        let Value::List(items) = v else {
            return Err(self.wrong(self.field.ty.describe(), v));
        };
        if items.is_empty() {
            return Err(self.empty());
        }
        if items.len() > MAX_LIST_ITEMS {
            return Err(self.too_long(items.len(), MAX_LIST_ITEMS, "items"));
        }
        items.iter().try_for_each(|i| self.text(i, MAX_TEXT, false))
    }

    /// A [`FieldType::Binary`]: non-empty bytes, at most `max_bytes`, that look like one of
    /// `media_types`.
    fn binary(&self, v: &Value, media_types: &[&str], max_bytes: usize) -> Result<(), SchemaError> {
        let Value::Bytes(b) = v else {
            return Err(self.wrong(self.field.ty.describe(), v));
        };
        if b.is_empty() {
            return Err(self.empty());
        }
        if b.len() > max_bytes {
            return Err(self.too_long(b.len(), max_bytes, "bytes"));
        }
        match sniff(b) {
            Some(t) if media_types.contains(&t) => Ok(()),
            _ => Err(self.rule(&format!(
                "is not a file of an accepted type ({})",
                media_types.join(", ")
            ))),
        }
    }

    /// [`FieldType::Answers`]: 1 to [`MAX_ANSWERS`] `{"question", "answer"}` maps.
    fn answers(&self, v: &Value) -> Result<(), SchemaError> {
        let Value::List(items) = v else {
            return Err(self.wrong(self.field.ty.describe(), v));
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

    /// A [`FieldType::Json`]: a JSON object as text, at most `max_bytes`.
    fn json_text(&self, v: &Value, max_bytes: usize) -> Result<(), SchemaError> {
        let Value::Text(t) = v else {
            return Err(self.wrong(self.field.ty.describe(), v));
        };
        if t.len() > max_bytes {
            return Err(self.too_long(t.len(), max_bytes, "bytes"));
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

/// The media type a file's first bytes show, among those cophr accepts
/// ([`DOCUMENT_MEDIA_TYPES`](super::DOCUMENT_MEDIA_TYPES)): PDF, JPEG and PNG by their
/// signatures; DICOM by `DICM` after its 128-byte preamble (PS3.10 7.1); OpenDocument by
/// the uncompressed `mimetype` member a package starts with (ODF 1.2 part 3, 3.3); plain
/// text if the bytes seen are UTF-8 (a character cut at the end of `b` allowed) with no
/// control characters but tabs and line breaks. `b` may be the file's first bytes only
/// ([`SNIFF_BYTES`] are enough).
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    const ODF: &[&str] = &[
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.graphics",
    ];
    if b.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if b.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if b.len() >= 132 && &b[128..132] == b"DICM" {
        Some("application/dicom")
    } else if b.starts_with(b"PK\x03\x04") && b.get(30..38) == Some(b"mimetype") {
        let rest = &b[38.min(b.len())..];
        // The member's content is the type, the next member's header follows at once
        // (".text" also begins ".text-template", which is not accepted).
        ODF.iter()
            .find(|t| rest.starts_with(t.as_bytes()) && rest.get(t.len()) != Some(&b'-'))
            .copied()
    } else if !b.is_empty() && looks_like_text(b) {
        Some("text/plain")
    } else {
        None
    }
}

/// How many of a file's first bytes [`sniff`] needs.
pub const SNIFF_BYTES: usize = 4096;

fn looks_like_text(b: &[u8]) -> bool {
    let b = &b[..b.len().min(SNIFF_BYTES)];
    let valid = match std::str::from_utf8(b) {
        Ok(s) => s,
        // A character cut by the end of the sample is fine; anything else is not text.
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&b[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
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

/// Milliseconds since the Unix epoch of an RFC 3339 date-time ([`is_date_time`]), or
/// `None` if it is not one. Leap seconds (`:60`) count as the next second; fractions beyond
/// milliseconds are dropped.
pub(crate) fn date_time_ms(s: &str) -> Option<i64> {
    if !is_date_time(s) {
        return None;
    }
    let b = s.as_bytes();
    let (y, m, d) = parse_date(&s[..10])?;
    let num = |i: usize| digits(&b[i..i + 2]).map(i64::from);
    let (hh, mm, ss) = (num(11)?, num(14)?, num(17)?);
    let mut rest = &b[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        for (i, c) in frac[..n].iter().take(3).enumerate() {
            ms += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[n..];
    }
    let offset_min = match rest {
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let v = i64::from(digits(&[*h1, *h2])?) * 60 + i64::from(digits(&[*m1, *m2])?);
            if rest[0] == b'-' {
                -v
            } else {
                v
            }
        }
        _ => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, d) = (i64::from(y), i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_min * 60;
    Some(secs * 1000 + ms)
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
    if let Some(s) = schema(category) {
        return validate_with(s, body);
    }
    let map = body_map(category, body)?;
    if map.is_empty() {
        return Err(SchemaError::Empty {
            category: category.name().to_owned(),
        });
    }
    Ok(())
}

/// The body as a well-formed map, or why not.
fn body_map<'v>(
    category: &Category,
    body: &'v Value,
) -> Result<&'v BTreeMap<String, Value>, SchemaError> {
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
    Ok(map)
}

/// Checks a body against a schema: a built-in category's, or an extension's defined as
/// data ([`super::ExtensionSchema::with_view`]). The one code path for both: every field
/// known, well typed and within limits, required fields present, the cross-field rules.
///
/// # Errors
/// The first problem found, as a [`SchemaError`] naming the category and field.
pub fn validate_with(s: &CategorySchema<'_>, body: &Value) -> Result<(), SchemaError> {
    let category = &s.category;
    let cat = || category.name().to_owned();
    let map = body_map(category, body)?;
    if map.is_empty() && category.is_extension() {
        return Err(SchemaError::Empty { category: cat() });
    }
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

fn cross_field_rules(
    s: &CategorySchema<'_>,
    map: &BTreeMap<String, Value>,
) -> Result<(), SchemaError> {
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
            let together = |present: &str, missing: &str| SchemaError::Together {
                category: cat.to_owned(),
                present: present.to_owned(),
                missing: missing.to_owned(),
            };
            match (
                map.contains_key("data"),
                map.contains_key("file"),
                map.contains_key("media-type"),
            ) {
                (true, true, _) => {
                    return Err(SchemaError::Rule(format!(
                        "{cat}: a document is one file: `data` (inline) or `file` (stored \
                         apart), not both"
                    )))
                }
                (true, false, false) => return Err(together("data", "media-type")),
                (false, true, false) => return Err(together("file", "media-type")),
                (false, false, true) => return Err(together("media-type", "data or file")),
                _ => {}
            }
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
        Category::Appointments => crate::care::check_appointment_fields(map)?,
        Category::Questionnaires => crate::care::questionnaire::check_fields(map)?,
        _ => {}
    }
    Ok(())
}
