//! The one-line summary of a body shown in tables ([`summary`]).

use super::error::clip;
use super::tables::schema;
use super::*;
use crate::category::Category;
use crate::value::Value;

/// Renders a value briefly, if it has a brief form.
pub(super) fn show(v: &Value) -> Option<String> {
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
    let f = Fields { category, body };
    let text = match category {
        Category::VitalSigns | Category::Wearables => f.readings(),
        Category::LabResults => f.lab_result(),
        Category::Documents => f.document(),
        Category::Extension(_) => f.extension(),
        _ => f.by_category(),
    };
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        text = schema(category)
            .and_then(|s| f.get(s.summary_field))
            .unwrap_or_else(|| category.title().to_owned());
    }
    for named in referenced(body) {
        text.push_str(" · ");
        text.push_str(&named);
    }
    clip(&text, MAX_SUMMARY)
}

/// `Type: name` for each resource an imported entry's references were resolved to, other
/// than its medication (already its main text): the visit, the clinician, the place
/// (`FHIR_NAMES`, written by `fhir::import_with`: `reference<TAB>name<TAB>type` lines).
fn referenced(body: &Value) -> Vec<String> {
    let Some(text) = body.get(FHIR_NAMES).and_then(Value::as_text) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        let mut parts = l.split('\t').skip(1);
        if let (Some(name), Some(ty)) = (parts.next(), parts.next()) {
            let s = format!("{ty}: {name}");
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// A body's fields, read for its summary.
struct Fields<'a> {
    category: &'a Category,
    body: &'a Value,
}

impl Fields<'_> {
    /// A field's brief form.
    fn get(&self, k: &str) -> Option<String> {
        self.body.get(k).and_then(show)
    }

    /// A field's brief form after a prefix.
    fn prefixed(&self, p: &str, k: &str) -> Option<String> {
        self.get(k).map(|v| format!("{p}{v}"))
    }

    /// `label value` for each field present, comma separated.
    fn labelled(&self, fields: &[(&str, &str)]) -> String {
        fields
            .iter()
            .filter_map(|(label, k)| self.get(k).map(|v| format!("{label} {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `Title: value` for every field of the schema present, semicolon separated.
    fn titled(&self) -> String {
        schema(self.category)
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|f| self.get(f.name).map(|v| format!("{}: {v}", f.title)))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    /// The categories whose summary is a main text, a second one and extras.
    fn by_category(&self) -> String {
        let get = |k: &str| self.get(k);
        match self.category {
            Category::Demographics => {
                let name = [get("forename"), get("surname")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                line(
                    (!name.is_empty()).then_some(name),
                    None,
                    &[self.prefixed("born ", "date-of-birth"), get("gender")],
                )
            }
            Category::KeyContacts => line(get("name"), get("relationship"), &[get("telephone")]),
            Category::Alerts => line(get("alert"), None, &[get("severity")]),
            Category::Preferences | Category::Lifestyle => self.titled(),
            Category::Allergies => line(get("agent"), get("reaction"), &[get("severity")]),
            Category::Problems => line(
                get("problem"),
                None,
                &[
                    get("status"),
                    self.prefixed("since ", "onset"),
                    self.prefixed("resolved ", "resolved"),
                ],
            ),
            Category::Procedures => line(get("procedure"), get("outcome"), &[get("date")]),
            Category::Medications => line(get("medication"), get("dose"), &[get("status")]),
            Category::Immunisations => {
                line(get("immunisation"), None, &[get("date"), get("status")])
            }
            Category::Investigations => line(get("investigation"), get("result"), &[get("date")]),
            Category::Examinations => self.labelled(&[
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
            Category::Questionnaires => {
                let n = match self.body.get("answers") {
                    Some(Value::List(l)) => Some(format!("{} answers", l.len())),
                    _ => None,
                };
                line(
                    get("questionnaire"),
                    None,
                    &[self.prefixed("score ", "score"), n],
                )
            }
            Category::Messages => line(get("subject"), get("text"), &[]),
            Category::Appointments => line(
                get("description").or_else(|| Some("Appointment".to_owned())),
                get("place"),
                &[get("start"), get("status")],
            ),
            Category::Tasks => line(get("description"), None, &[get("kind"), get("status")]),
            Category::VitalSigns
            | Category::Wearables
            | Category::LabResults
            | Category::Documents
            | Category::Extension(_) => String::new(),
        }
    }

    /// Vital signs and wearable readings: `BP 140/90 mm[Hg], HR 72 /min`.
    fn readings(&self) -> String {
        let num = |k: &str| {
            self.body
                .get(k)
                .and_then(|q| q.get("value"))
                .and_then(show_number)
        };
        let unit = self
            .body
            .get("systolic")
            .and_then(|q| q.get("unit"))
            .and_then(Value::as_text)
            .unwrap_or("mm[Hg]");
        let mut parts = Vec::new();
        match (num("systolic"), num("diastolic")) {
            (Some(s), Some(d)) => parts.push(format!("BP {s}/{d} {unit}")),
            _ => parts.push(self.labelled(&[("Systolic", "systolic"), ("Diastolic", "diastolic")])),
        }
        parts.push(self.labelled(&[
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

    /// A lab result: `HbA1c: 48 mmol/mol (high)`.
    fn lab_result(&self) -> String {
        let result = [self.get("result"), self.get("unit")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let main = match self.get("test") {
            Some(t) if !result.is_empty() => Some(format!("{t}: {result}")),
            Some(t) => Some(t),
            None => (!result.is_empty()).then_some(result),
        };
        line(main, None, &[self.get("interpretation")])
    }

    /// A document: its title, media type, size and date.
    fn document(&self) -> String {
        let bytes = match (self.body.get("data"), self.body.get("file")) {
            (Some(Value::Bytes(b)), _) => Some(b.len() as u64),
            (_, Some(f)) => crate::blob::DocumentFile::from_value(f)
                .ok()
                .map(|f| f.size),
            _ => None,
        };
        let size = bytes.map(|n| match n {
            n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
            n if n >= 1024 => format!("{} KiB", n / 1024),
            n => format!("{n} bytes"),
        });
        line(
            self.get("title"),
            None,
            &[
                self.get("media-type"),
                self.get("dicom-modality"),
                size,
                self.get("date"),
            ],
        )
    }

    /// An extension category's body: its first four fields, `name: value`.
    fn extension(&self) -> String {
        self.body
            .as_map()
            .map(|m| {
                m.iter()
                    // The original FHIR resource, its source and fullUrl are not a summary
                    // (a resource kept whole shows its `display`).
                    .filter(|(k, _)| !k.starts_with("fhir-"))
                    .filter_map(|(k, v)| show(v).map(|v| format!("{k}: {v}")))
                    .take(4)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}
