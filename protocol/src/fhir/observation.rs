//! Observations go to a category by their `category` and LOINC `code`: vital signs, core
//! examinations (height, weight, BMI, circumferences), lifestyle (smoking, alcohol,
//! occupation, housing, education), laboratory results; everything else, and anything whose
//! values do not fit those schemas (units cophr cannot convert, implausible values), to
//! other investigations, which keep the value as text.

use super::codes;
use super::error::FhirError;
use super::map::{line, long, to_unit, Fields};
use super::read::{
    codings, concept_of, concept_text, has_code, quantity, quantity_text, reference_text, El,
};
use crate::category::Category;
use crate::schema::is_date_time;
use crate::value::Value;

fn loinc_codes(e: &El<'_>, name: &str) -> Result<Vec<String>, FhirError> {
    let Some(cc) = e.get(name)? else {
        return Ok(Vec::new());
    };
    Ok(codings(&cc)?
        .into_iter()
        .filter_map(|(_, c, _)| c)
        .collect())
}

/// The cophr category an Observation names with cophr's own category coding, if any.
fn own_category(o: &El<'_>) -> Result<Option<Category>, FhirError> {
    let Some(c) = o.get("category")? else {
        return Ok(None);
    };
    let concepts = if c.v.is_array() { c.items()? } else { vec![c] };
    for cc in concepts {
        for (sys, code, _) in codings(&cc)? {
            if sys.as_deref() == Some(codes::COPHR_CATEGORY) {
                if let Some(cat) =
                    code.and_then(|c| Category::BUILT_IN.iter().find(|b| b.name() == c))
                {
                    return Ok(Some(cat.clone()));
                }
            }
        }
    }
    Ok(None)
}

/// A measurement's value in one of the field's units (steps: an integer count).
fn measure_value(
    m: &codes::Measure,
    e: &El<'_>,
    units: &[&str],
) -> Result<Option<Value>, FhirError> {
    if m.field == "steps" {
        if let Some(n) = e.num_of("valueInteger")? {
            return Ok(n.as_i64().map(Value::Int));
        }
        return Ok(match e.get("valueQuantity")? {
            Some(q) => quantity(&q)?.and_then(|(v, _)| {
                (v.fract() == 0.0 && (0.0..1e15).contains(&v)).then_some(Value::Int(v as i64))
            }),
            None => None,
        });
    }
    match e.get("valueQuantity")? {
        Some(q) => to_unit(&q, units),
        None => Ok(None),
    }
}

/// Vital signs and examinations: an Observation whose code, or whose components' codes,
/// are measurements cophr records (see [`codes::VITALS`], [`codes::EXAMS`]).
fn measurements(
    o: &El<'_>,
    codes_of: &[String],
    when: Option<&str>,
) -> Result<Option<(Category, Fields)>, FhirError> {
    let mut parts: Vec<(&'static codes::Measure, El<'_>)> = Vec::new();
    if let Some(m) = codes_of.iter().find_map(|c| codes::measure(c)) {
        parts.push((m, o.clone()));
    }
    let mut position = None;
    for c in o.list("component")? {
        let c = c.object()?;
        let cc = loinc_codes(&c, "code")?;
        if let Some(m) = cc.iter().find_map(|x| codes::measure(x)) {
            parts.push((m, c));
        } else if cc.iter().any(|x| x == codes::POSITION.0) {
            position = concept_of(&c, "valueCodeableConcept")?;
        }
    }
    let Some((first, _)) = parts.first() else {
        return Ok(None);
    };
    let in_exams = |m: &codes::Measure| codes::EXAMS.iter().any(|e| e.field == m.field);
    let category = match own_category(o)? {
        Some(c @ (Category::VitalSigns | Category::Wearables | Category::Examinations)) => c,
        _ if in_exams(first) => Category::Examinations,
        _ if parts.iter().any(|(m, _)| m.field == "steps") => Category::Wearables,
        _ => Category::VitalSigns,
    };
    let Some(schema) = crate::schema::schema(&category) else {
        return Ok(None);
    };
    let mut f = Fields::new();
    for (m, e) in &parts {
        let Some(spec) = schema.field(m.field) else {
            continue;
        };
        let units: &[&str] = match spec.ty {
            crate::schema::FieldType::Quantity { units } => units,
            _ => &[],
        };
        if let Some(v) = measure_value(m, e, units)? {
            f.insert(m.field.into(), v);
        }
    }
    put_dt(&mut f, "measured-at", when);
    if schema.field("position").is_some() {
        if let Some(p) = position.as_deref().and_then(line) {
            f.insert("position".into(), p);
        }
    }
    if schema.field("device").is_some() {
        if let Some(d) = o.get("device")? {
            if let Some(t) = reference_text(&d)?.as_deref().and_then(line) {
                f.insert("device".into(), t);
            }
        }
    }
    if schema.field("comment").is_some() {
        if let Some(n) = o.first("note")? {
            if let Some(t) = n.object()?.str_of("text")?.and_then(long) {
                f.insert("comment".into(), t);
            }
        }
    }
    Ok(Some((category, f)))
}

/// A lifestyle field's value from an Observation or one of its components.
fn lifestyle_value(e: &El<'_>, field: &str) -> Result<Option<Value>, FhirError> {
    let value = value_text(e)?;
    Ok(if field == "smoking" {
        smoking(e)?.map(|s| Value::Text(s.into()))
    } else if e.get("valueQuantity")?.is_some() {
        // "1 d" alone says little: name what was counted.
        let what = concept_text(&e.req("code")?)?;
        match (value, what) {
            (Some(v), Some(w)) => line(&format!("{v} ({w})")),
            (v, _) => v.as_deref().and_then(line),
        }
    } else {
        value.as_deref().and_then(line)
    })
}

/// The observation's value as text (quantity with unit, coded text, string, range, ratio,
/// components), or why it has none.
pub(crate) fn value_text(o: &El<'_>) -> Result<Option<String>, FhirError> {
    if let Some(q) = o.get("valueQuantity")? {
        return quantity_text(&q);
    }
    if let Some(cc) = o.get("valueCodeableConcept")? {
        return concept_text(&cc);
    }
    if let Some(s) = o.str_of("valueString")? {
        return Ok(Some(s.to_owned()));
    }
    if let Some(b) = o.bool_of("valueBoolean")? {
        return Ok(Some(if b { "yes" } else { "no" }.to_owned()));
    }
    if let Some(n) = o.num_of("valueInteger")? {
        return Ok(Some(n.to_string()));
    }
    if let Some(r) = o.get("valueRange")? {
        let r = r.object()?;
        let lo = match r.get("low")? {
            Some(q) => quantity_text(&q)?,
            None => None,
        };
        let hi = match r.get("high")? {
            Some(q) => quantity_text(&q)?,
            None => None,
        };
        return Ok(Some(format!(
            "{} to {}",
            lo.unwrap_or_else(|| "…".into()),
            hi.unwrap_or_else(|| "…".into())
        )));
    }
    if let Some(r) = o.get("valueRatio")? {
        let r = r.object()?;
        let n = match r.get("numerator")? {
            Some(q) => quantity_text(&q)?,
            None => None,
        };
        let d = match r.get("denominator")? {
            Some(q) => quantity_text(&q)?,
            None => None,
        };
        return Ok(Some(format!(
            "{}/{}",
            n.unwrap_or_default(),
            d.unwrap_or_default()
        )));
    }
    if o.get("valueSampledData")?.is_some() {
        return Ok(Some("(sampled data)".into()));
    }
    for k in ["valueTime", "valueDateTime"] {
        if let Some(s) = o.str_of(k)? {
            return Ok(Some(s.to_owned()));
        }
    }
    if let Some(p) = o.get("valuePeriod")? {
        let p = p.object()?;
        return Ok(Some(format!(
            "{} to {}",
            p.str_of("start")?.unwrap_or("…"),
            p.str_of("end")?.unwrap_or("…")
        )));
    }
    let mut parts = Vec::new();
    for c in o.list("component")? {
        let c = c.object()?;
        let name = concept_text(&c.req("code")?)?.unwrap_or_else(|| "?".into());
        if let Some(v) = value_text(&c)? {
            parts.push(format!("{name}: {v}"));
        }
    }
    if !parts.is_empty() {
        return Ok(Some(parts.join("; ")));
    }
    if let Some(why) = concept_of(o, "dataAbsentReason")? {
        return Ok(Some(format!("(no value: {why})")));
    }
    Ok(None)
}

fn effective<'a>(o: &El<'a>) -> Result<Option<&'a str>, FhirError> {
    if let Some(d) = o.date_of("effectiveDateTime")? {
        return Ok(Some(d));
    }
    if let Some(d) = o.date_of("effectiveInstant")? {
        return Ok(Some(d));
    }
    match o.get("effectivePeriod")? {
        Some(p) => p.object()?.date_of("start"),
        None => Ok(None),
    }
}

fn put_dt(f: &mut Fields, name: &str, s: Option<&str>) {
    if let Some(s) = s.filter(|s| is_date_time(s)) {
        f.insert(name.into(), Value::Text(s.into()));
    }
}

/// Maps an Observation to its category (see the module docs).
pub(crate) fn map(o: &El<'_>) -> Result<(Category, Fields), FhirError> {
    o.req_code("status")?;
    o.req("code")?.object()?;
    let codes = loinc_codes(o, "code")?;
    let cat = |c: &str| has_code(o, "category", &[c]);
    let when = effective(o)?;
    let mut f = Fields::new();
    let lab = cat("laboratory")?;

    if !lab {
        if let Some(found) = measurements(o, &codes, when)? {
            return Ok(found);
        }
    }
    let own_lifestyle = own_category(o)? == Some(Category::Lifestyle);
    if own_lifestyle
        || cat("social-history")?
        || codes.iter().any(|c| LIFESTYLE.contains(&c.as_str()))
    {
        let mut f = Fields::new();
        if let Some(field) = lifestyle_field(&codes) {
            if let Some(v) = lifestyle_value(o, field)? {
                f.insert(field.into(), v);
            }
        }
        for c in o.list("component")? {
            let c = c.object()?;
            if let Some(field) = lifestyle_field(&loinc_codes(&c, "code")?) {
                if let Some(v) = lifestyle_value(&c, field)? {
                    f.insert(field.into(), v);
                }
            }
        }
        if !f.is_empty() || lifestyle_field(&codes).is_some() {
            return Ok((Category::Lifestyle, f));
        }
    }
    if lab {
        let test = concept_text(&o.req("code")?)?;
        f.insert(
            "test".into(),
            test.as_deref()
                .and_then(line)
                .unwrap_or_else(|| Value::Text("(test not stated)".into())),
        );
        let mut result = value_text(o)?;
        if let Some(q) = o.get("valueQuantity")? {
            // The number (with its comparator) as the result, the unit apart.
            let q = q.object()?;
            if let Some(n) = q.num_of("value")? {
                result = Some(format!("{}{n}", q.str_of("comparator")?.unwrap_or("")));
                if let Some(u) = q.str_of("unit")?.or(q.str_of("code")?) {
                    if let Some(u) = line(u) {
                        f.insert("unit".into(), u);
                    }
                }
            }
        }
        let result = result.unwrap_or_else(|| "(no result stated)".into());
        f.insert(
            "result".into(),
            line(&result).unwrap_or_else(|| Value::Text("(no result stated)".into())),
        );
        if let Some(i) = interpretation(o)? {
            f.insert("interpretation".into(), Value::Text(i.into()));
        }
        if let Some(rr) = o.first("referenceRange")? {
            let rr = rr.object()?;
            let text = match rr.str_of("text")? {
                Some(t) => Some(t.to_owned()),
                None => {
                    let lo = match rr.get("low")? {
                        Some(q) => quantity_text(&q)?,
                        None => None,
                    };
                    let hi = match rr.get("high")? {
                        Some(q) => quantity_text(&q)?,
                        None => None,
                    };
                    match (lo, hi) {
                        (None, None) => None,
                        (lo, hi) => Some(format!(
                            "{} to {}",
                            lo.unwrap_or_else(|| "…".into()),
                            hi.unwrap_or_else(|| "…".into())
                        )),
                    }
                }
            };
            if let Some(t) = text.as_deref().and_then(line) {
                f.insert("reference-range".into(), t);
            }
        }
        put_dt(&mut f, "collected", when);
        put_dt(&mut f, "reported", o.date_of("issued")?);
        let status = match o.code_of("status")? {
            Some("preliminary") => Some("preliminary"),
            Some("final") => Some("final"),
            Some("amended" | "corrected") => Some("amended"),
            _ => None,
        };
        if let Some(s) = status {
            f.insert("status".into(), Value::Text(s.into()));
        }
        if let Some(n) = o.first("note")? {
            if let Some(t) = n.object()?.str_of("text")?.and_then(long) {
                f.insert("comment".into(), t);
            }
        }
        return Ok((Category::LabResults, f));
    }
    fallback(o)
}

/// An Observation as an "other investigation": name, kind, the value as text, date.
pub(crate) fn fallback(o: &El<'_>) -> Result<(Category, Fields), FhirError> {
    let mut f = Fields::new();
    let name = concept_text(&o.req("code")?)?;
    f.insert(
        "investigation".into(),
        name.as_deref()
            .and_then(line)
            .unwrap_or_else(|| Value::Text("(investigation not stated)".into())),
    );
    let kind = if has_code(o, "category", &["imaging"])? {
        "imaging"
    } else {
        "other"
    };
    f.insert("kind".into(), Value::Text(kind.into()));
    let mut result = value_text(o)?;
    if result.is_none() {
        let n = o.list("hasMember")?.len();
        if n > 0 {
            result = Some(format!("{n} related observations"));
        }
    }
    f.insert(
        "result".into(),
        result
            .as_deref()
            .and_then(long)
            .unwrap_or_else(|| Value::Text("(no result stated)".into())),
    );
    if let Some(d) = effective(o)? {
        if let Some(d) = d
            .get(..10)
            .filter(|d| crate::schema::parse_date(d).is_some())
        {
            f.insert("date".into(), Value::Text(d.into()));
        } else if crate::schema::parse_date(d).is_some() {
            f.insert("date".into(), Value::Text(d.into()));
        }
    }
    Ok((Category::Investigations, f))
}

const LIFESTYLE: &[&str] = &[
    "72166-2", "11367-0", "74013-4", "11331-6", "68518-0", "11341-5", "85658-3", "71802-3",
    "82589-3",
];

fn lifestyle_field(codes: &[String]) -> Option<&'static str> {
    let has = |set: &[&str]| codes.iter().any(|c| set.contains(&c.as_str()));
    if has(&["72166-2", "11367-0"]) {
        Some("smoking")
    } else if has(&["74013-4", "11331-6", "68518-0"]) {
        Some("alcohol")
    } else if has(&["11341-5", "85658-3"]) {
        Some("occupation")
    } else if has(&["71802-3"]) {
        Some("housing")
    } else if has(&["82589-3"]) {
        Some("education")
    } else {
        None
    }
}

/// Smoking status from SNOMED CT codes (the US Core / IPS value set).
fn smoking(o: &El<'_>) -> Result<Option<&'static str>, FhirError> {
    let Some(cc) = o.get("valueCodeableConcept")? else {
        return Ok(None);
    };
    for (_, code, _) in codings(&cc)? {
        let s = match code.as_deref() {
            Some("266919005") => "never",
            Some("8517006") => "former",
            Some(
                "77176002" | "449868002" | "428041000124106" | "428071000124103"
                | "428061000124105" | "65568007" | "230063004",
            ) => "current",
            Some("266927001" | "405746006") => "unknown",
            // LOINC answer codes (LL2201-3).
            Some("LA18978-9") => "never",
            Some("LA15920-4") => "former",
            Some("LA18976-3" | "LA18977-1" | "LA18981-3" | "LA18982-1") => "current",
            Some("LA18979-7" | "LA18980-5") => "unknown",
            _ => continue,
        };
        return Ok(Some(s));
    }
    // Uncoded (or an unknown code system): what the text says.
    let text = concept_text(&cc)?.unwrap_or_default().to_lowercase();
    Ok(Some(if text.contains("never") {
        "never"
    } else if text.contains("former") || text.contains("ex-") || text.contains("quit") {
        "former"
    } else if text.contains("current") || text.contains("smoker") || text.contains("smokes") {
        "current"
    } else {
        "unknown"
    }))
}

fn interpretation(o: &El<'_>) -> Result<Option<&'static str>, FhirError> {
    for cc in o.list("interpretation")? {
        for (_, code, _) in codings(&cc)? {
            let i = match code.as_deref() {
                Some("N") => "normal",
                Some("H" | "HU" | ">") => "high",
                Some("L" | "LU" | "<") => "low",
                Some("HH" | "LL" | "AA") => "critical",
                Some("A" | "POS" | "DET" | "R") => "abnormal",
                _ => continue,
            };
            return Ok(Some(i));
        }
    }
    Ok(None)
}
