//! FHIR resource → cophr category and fields, one function per mapped resource type.
//!
//! Each function checks the JSON types of the elements it reads and the elements FHIR R4
//! requires of its type (cardinality 1..), and fills the category's fields with what a
//! person wants to see (`cophr show`): names, code texts, values with units, dates. The
//! caller then fits the fields to the schema ([`super::fit`]).

use std::collections::BTreeMap;

use super::error::FhirError;
use super::read::{
    check_reference, codings, concept_of, concept_text, first_concept, has_code, human_name,
    quantity, quantity_text, reference_text, El,
};
use crate::category::Category;
use crate::schema::{is_date_time, parse_date, MAX_ANSWERS, MAX_LONG_TEXT, MAX_TEXT};
use crate::value::Value;

/// The fields being built.
pub(crate) type Fields = BTreeMap<String, Value>;

/// Single-line text for a Text field: control characters become spaces, clipped to fit.
pub(crate) fn line(s: &str) -> Option<Value> {
    clean(s, MAX_TEXT, false)
}

/// Free text for a LongText field.
pub(crate) fn long(s: &str) -> Option<Value> {
    clean(s, MAX_LONG_TEXT, true)
}

fn clean(s: &str, max: usize, multiline: bool) -> Option<Value> {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_control() && !(c == '\t' || multiline && (c == '\n' || c == '\r')) {
                ' '
            } else {
                c
            }
        })
        .collect();
    let t = t.trim();
    if t.is_empty() {
        return None;
    }
    if t.len() <= max {
        return Some(Value::Text(t.to_owned()));
    }
    let mut end = max - '…'.len_utf8();
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    Some(Value::Text(format!("{}…", &t[..end])))
}

/// Puts a field if there is a value.
fn put(f: &mut Fields, name: &str, v: Option<Value>) {
    if let Some(v) = v {
        f.insert(name.to_owned(), v);
    }
}

fn put_line(f: &mut Fields, name: &str, s: Option<String>) {
    put(f, name, s.as_deref().and_then(line));
}

fn put_long(f: &mut Fields, name: &str, s: Option<String>) {
    put(f, name, s.as_deref().and_then(long));
}

/// A FHIR date or dateTime as a cophr Date (the date part).
fn date(s: Option<&str>) -> Option<Value> {
    let s = s?;
    let d = if parse_date(s).is_some() {
        s
    } else {
        s.get(..10).filter(|d| parse_date(d).is_some())?
    };
    Some(Value::Text(d.to_owned()))
}

/// A FHIR dateTime as a cophr DateTime (only when it has a time and zone).
fn date_time(s: Option<&str>) -> Option<Value> {
    s.filter(|s| is_date_time(s))
        .map(|s| Value::Text(s.to_owned()))
}

/// The start of a child Period, if present.
fn period_start<'a>(e: &El<'a>, name: &str) -> Result<Option<&'a str>, FhirError> {
    match e.get(name)? {
        Some(p) => p.object()?.date_of("start"),
        None => Ok(None),
    }
}

fn period_end<'a>(e: &El<'a>, name: &str) -> Result<Option<&'a str>, FhirError> {
    match e.get(name)? {
        Some(p) => p.object()?.date_of("end"),
        None => Ok(None),
    }
}

/// The first note's text.
fn note(e: &El<'_>) -> Result<Option<String>, FhirError> {
    for n in e.list("note")? {
        if let Some(t) = n.object()?.str_of("text")? {
            return Ok(Some(t.to_owned()));
        }
    }
    Ok(None)
}

/// A text for a required field: the value, else a placeholder saying what is missing.
fn or_unstated(s: Option<String>, what: &str) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
        .or_else(|| Some(format!("({what} not stated)")))
}

/// The value of cophr's extension for a field FHIR has no element for (see
/// `synth::extension`): its `valueString` or `valueDecimal`.
fn cophr_ext<'a>(r: &El<'a>, field: &str) -> Result<Option<El<'a>>, FhirError> {
    let url = format!("{}/{field}", super::codes::COPHR_FIELD);
    for x in r.list("extension")? {
        let x = x.object()?;
        if x.str_of("url")? == Some(url.as_str()) {
            for k in ["valueString", "valueDecimal"] {
                if let Some(v) = x.get(k)? {
                    return Ok(Some(v));
                }
            }
        }
    }
    Ok(None)
}

/// A coding's code in a given system, in a child CodeableConcept (or array of them).
fn code_in(e: &El<'_>, name: &str, system: &str) -> Result<Option<String>, FhirError> {
    let Some(c) = e.get(name)? else {
        return Ok(None);
    };
    let concepts = if c.v.is_array() { c.items()? } else { vec![c] };
    for cc in concepts {
        for (sys, code, _) in codings(&cc)? {
            if sys.as_deref() == Some(system) && code.is_some() {
                return Ok(code);
            }
        }
    }
    Ok(None)
}

/// Maps one resource (already known to be an object of a mapped type).
pub(crate) fn map(ty: &str, r: &El<'_>) -> Result<(Category, Fields), FhirError> {
    let mut f = Fields::new();
    let cat = match ty {
        "Patient" => {
            patient(r, &mut f)?;
            Category::Demographics
        }
        "RelatedPerson" => from_related_person(r, &mut f)?,
        "Flag" => from_flag(r, &mut f)?,
        "Consent" => from_consent(r, &mut f)?,
        "AllergyIntolerance" => from_allergy_intolerance(r, &mut f)?,
        "Condition" => from_condition(r, &mut f)?,
        "Procedure" => from_procedure(r, &mut f)?,
        "MedicationStatement" | "MedicationRequest" => {
            medication(ty, r, &mut f)?;
            Category::Medications
        }
        "Immunization" => from_immunization(r, &mut f)?,
        "Observation" => return super::observation::map(r),
        "DiagnosticReport" => from_diagnostic_report(r, &mut f)?,
        "FamilyMemberHistory" => from_family_member_history(r, &mut f)?,
        "DocumentReference" => from_document_reference(r, &mut f)?,
        "Media" => from_media(r, &mut f)?,
        "QuestionnaireResponse" => from_questionnaire_response(r, &mut f)?,
        "Questionnaire" => from_questionnaire(r, &mut f)?,
        "Appointment" => from_appointment(r, &mut f)?,
        "Task" => from_task(r, &mut f)?,
        "ServiceRequest" => from_service_request(r, &mut f)?,
        other => {
            return Err(FhirError::Unmapped {
                resource_type: other.to_owned(),
                mapped: super::MAPPED_TYPES.join(", "),
            })
        }
    };
    Ok((cat, f))
}

/// Maps a RelatedPerson resource to its fields, giving its category.
fn from_related_person(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    check_reference(r, "patient", true)?;
    let mut name = None;
    for n in r.list("name")? {
        if let Some(t) = human_name(&n)? {
            name = Some(t);
            break;
        }
    }
    put_line(f, "name", or_unstated(name, "name"));
    let own = code_in(r, "relationship", super::codes::COPHR_CODE)?.filter(|c| {
        [
            "formal-carer",
            "informal-carer",
            "main-carer",
            "next-of-kin",
            "other",
        ]
        .contains(&c.as_str())
    });
    let nok = has_code(r, "relationship", &["NOK", "N", "NXTOFKIN"])?;
    let carer = has_code(r, "relationship", &["C", "CAREGIVER", "GUARD"])?;
    let any = !r.list("relationship")?.is_empty();
    let rel = if nok {
        Some("next-of-kin")
    } else if carer {
        Some("informal-carer")
    } else if any {
        Some("other")
    } else {
        None
    };
    let rel = own.or(rel.map(str::to_owned));
    put(f, "relationship", rel.map(Value::Text));
    telecom(r, f)?;
    put_long(f, "address", address(r)?);
    Ok(Category::KeyContacts)
}

/// Maps a Flag resource to its fields, giving its category.
fn from_flag(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    check_reference(r, "subject", true)?;
    let code = concept_text(&r.req("code")?)?;
    put_line(f, "alert", or_unstated(code, "alert"));
    put_long(f, "detail", first_concept(r, "category")?);
    for x in r.list("extension")? {
        let x = x.object()?;
        if x.str_of("url")? == Some(super::synth::FLAG_PRIORITY) {
            if let Some(cc) = x.get("valueCodeableConcept")? {
                let sev = match codings(&cc)?.into_iter().find_map(|(_, c, _)| c).as_deref() {
                    Some("PH") => Some("high"),
                    Some("PL" | "PM") => Some("low"),
                    _ => None,
                };
                put(f, "severity", sev.map(|s| Value::Text(s.into())));
            }
        }
    }
    Ok(Category::Alerts)
}

/// Maps a Consent resource to its fields, giving its category.
fn from_consent(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    let status = r.req_code("status")?;
    let scope = concept_text(&r.req("scope")?)?;
    // Preferences cophr wrote: one category per field (see `synth::preferences`).
    let schema = crate::schema::schema(&Category::Preferences);
    let mut own = false;
    for c in r.req_list("category")? {
        for (sys, code, _) in codings(&c)? {
            let Some(code) = code.filter(|_| sys.as_deref() == Some(super::codes::COPHR_FIELD))
            else {
                continue;
            };
            let Some(field) = schema.and_then(|s| s.field(&code)) else {
                continue;
            };
            own = true;
            let text = c.str_of("text")?.map(str::to_owned);
            match field.ty {
                crate::schema::FieldType::LongText => put_long(f, field.name, text),
                _ => put_line(f, field.name, text),
            }
        }
    }
    if own {
        return Ok(Category::Preferences);
    }
    let mut cats = Vec::new();
    for c in r.req_list("category")? {
        if let Some(t) = concept_text(&c)? {
            cats.push(t);
        }
    }
    let mut text = format!(
        "{}: {} ({status})",
        scope.unwrap_or_else(|| "Consent".into()),
        cats.join(", ")
    );
    if let Some(p) = r.get("provision")? {
        if let Some(t) = p.object()?.code_of("type")? {
            text.push_str(&format!("; provision: {t}"));
        }
    }
    put_long(f, "consent", Some(text));
    Ok(Category::Preferences)
}

/// Maps an AllergyIntolerance resource to its fields, giving its category.
fn from_allergy_intolerance(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    check_reference(r, "patient", true)?;
    put_line(f, "agent", or_unstated(concept_of(r, "code")?, "agent"));
    if let Some(re) = r.first("reaction")? {
        let re = re.object()?;
        re.req_list("manifestation")?;
        put_line(f, "reaction", first_concept(&re, "manifestation")?);
        let sev = re.code_of("severity")?;
        put(f, "severity", sev.map(|s| Value::Text(s.into())));
    }
    put(f, "onset", date(r.date_of("onsetDateTime")?));
    let crit = r.code_of("criticality")?;
    put(f, "criticality", crit.map(|s| Value::Text(s.into())));
    put_long(f, "comment", note(r)?);
    Ok(Category::Allergies)
}

/// Maps a Condition resource to its fields, giving its category.
fn from_condition(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    check_reference(r, "subject", true)?;
    put_line(
        f,
        "problem",
        or_unstated(concept_of(r, "code")?, "condition"),
    );
    put(f, "onset", date(r.date_of("onsetDateTime")?));
    put(f, "resolved", date(r.date_of("abatementDateTime")?));
    let status = match r.get("clinicalStatus")? {
        Some(cs) => codings(&cs)?.into_iter().find_map(|(_, c, _)| c),
        None => None,
    };
    let status = match status.as_deref() {
        Some("active" | "recurrence" | "relapse") => Some("active"),
        Some("inactive" | "remission") => Some("inactive"),
        Some("resolved") => Some("resolved"),
        _ => None,
    };
    put(f, "status", status.map(|s| Value::Text(s.into())));
    put_long(f, "description", note(r)?);
    Ok(Category::Problems)
}

/// Maps a Procedure resource to its fields, giving its category.
fn from_procedure(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    check_reference(r, "subject", true)?;
    put_line(
        f,
        "procedure",
        or_unstated(concept_of(r, "code")?, "procedure"),
    );
    put_line(f, "body-site", first_concept(r, "bodySite")?);
    put_line(f, "outcome", concept_of(r, "outcome")?);
    put_line(f, "complication", first_concept(r, "complication")?);
    put_line(f, "procedure-type", concept_of(r, "category")?);
    if let Some(d) = cophr_ext(r, "difficulty")? {
        put_line(f, "difficulty", Some(d.str()?.to_owned()));
    }
    let when = match r.date_of("performedDateTime")? {
        Some(d) => Some(d),
        None => period_start(r, "performedPeriod")?,
    };
    put(f, "date", date(when));
    put_long(f, "description", note(r)?);
    Ok(Category::Procedures)
}

/// Maps an Immunization resource to its fields, giving its category.
fn from_immunization(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    let status = r.req_code("status")?;
    check_reference(r, "patient", true)?;
    let vaccine = concept_text(&r.req("vaccineCode")?)?;
    put_line(f, "immunisation", or_unstated(vaccine, "vaccine"));
    let when = match r.date_of("occurrenceDateTime")? {
        Some(d) => Some(d),
        None => {
            if r.get("occurrenceString")?.is_none() {
                return Err(FhirError::Missing {
                    path: format!("{}.occurrence[x]", r.path),
                });
            }
            r.str_of("occurrenceString")?;
            None
        }
    };
    put(f, "date", date(when));
    put(f, "status", Some(Value::Text(status.into())));
    Ok(Category::Immunisations)
}

/// Maps a DiagnosticReport resource to its fields, giving its category.
fn from_diagnostic_report(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    let code = concept_text(&r.req("code")?)?;
    let lab = has_code(r, "category", &["LAB", "laboratory"])?;
    let conclusion = r.str_of("conclusion")?.map(str::to_owned);
    let n = r.list("result")?.len();
    let result = conclusion
        .or_else(|| first_concept(r, "conclusionCode").ok().flatten())
        .or_else(|| (n > 0).then(|| format!("{n} results")))
        .or_else(|| Some("(no conclusion stated)".to_owned()));
    let when = match r.date_of("effectiveDateTime")? {
        Some(d) => Some(d),
        None => period_start(r, "effectivePeriod")?,
    };
    if lab {
        put_line(f, "test", or_unstated(code, "test"));
        put_line(f, "result", result);
        put(f, "collected", date_time(when));
        put(f, "reported", date_time(r.date_of("issued")?));
        let st = r.code_of("status")?;
        put(f, "status", st.map(|s| Value::Text(s.into())));
        Ok(Category::LabResults)
    } else {
        put_line(f, "investigation", or_unstated(code, "investigation"));
        let imaging = has_code(
            r,
            "category",
            &["RAD", "IMG", "CT", "MR", "US", "NMR", "RX"],
        )?;
        let ecg = has_code(r, "category", &["EC", "CG"])?;
        let lung = has_code(r, "category", &["PF"])?;
        let urine = has_code(r, "category", &["URN", "UR"])?;
        // cophr's own kinds without a section code are the category's text.
        let named = match r.first("category")? {
            Some(c) => concept_text(&c)?.filter(|t| t == "visual-acuity"),
            None => None,
        };
        let kind = if imaging {
            "imaging"
        } else if ecg {
            "ecg"
        } else if lung {
            "pulmonary-function"
        } else if urine {
            "urinalysis"
        } else if named.is_some() {
            "visual-acuity"
        } else {
            "other"
        };
        put(f, "kind", Some(Value::Text(kind.into())));
        put_long(f, "result", result);
        put(f, "date", date(when));
        Ok(Category::Investigations)
    }
}

/// Maps a FamilyMemberHistory resource to its fields, giving its category.
fn from_family_member_history(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    check_reference(r, "patient", true)?;
    let rel = concept_text(&r.req("relationship")?)?;
    let mut conds = Vec::new();
    for c in r.list("condition")? {
        let c = c.object()?;
        if let Some(t) = concept_text(&c.req("code")?)? {
            conds.push(t);
        }
        for n in c.list("note")? {
            if let Some(list) = n
                .object()?
                .str_of("text")?
                .and_then(|t| t.strip_prefix(super::synth::GENOMIC_MARKERS))
            {
                let markers: Vec<Value> = list
                    .split(", ")
                    .filter_map(line)
                    .take(crate::schema::MAX_ANSWERS)
                    .collect();
                if !markers.is_empty() {
                    f.insert("genomic-markers".into(), Value::List(markers));
                }
            }
        }
    }
    let cond = (!conds.is_empty()).then(|| conds.join(", "));
    put_line(f, "condition", or_unstated(cond, "condition"));
    let rel = match (rel, r.str_of("name")?) {
        (Some(rel), Some(name)) => Some(format!("{rel} ({name})")),
        (rel, name) => rel.or(name.map(str::to_owned)),
    };
    put_line(f, "relative", or_unstated(rel, "relative"));
    put_long(f, "comment", note(r)?);
    Ok(Category::FamilyHistory)
}

/// Maps a DocumentReference resource to its fields, giving its category.
fn from_document_reference(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    let content = r.req_list("content")?;
    let att = content[0].clone().object()?.req("attachment")?.object()?;
    let title = r
        .str_of("description")?
        .map(str::to_owned)
        .or(att.str_of("title")?.map(str::to_owned))
        .or(concept_of(r, "type")?);
    put_line(f, "title", or_unstated(title, "title"));
    attachment(&att, f)?;
    let when = match r.date_of("date")? {
        Some(d) => Some(d),
        None => att.date_of("creation")?,
    };
    put(f, "date", date(when));
    put_long(f, "description", concept_of(r, "type")?);
    Ok(Category::Documents)
}

/// Maps a Media resource (a photo, a scan, a DICOM image) to its fields, giving its
/// category: documents, like a DocumentReference.
fn from_media(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    check_reference(r, "subject", false)?;
    let att = r.req("content")?.object()?;
    let title = match att.str_of("title")? {
        Some(t) => Some(t.to_owned()),
        None => match concept_of(r, "view")? {
            Some(v) => Some(v),
            None => match concept_of(r, "modality")? {
                Some(m) => Some(m),
                None => concept_of(r, "type")?,
            },
        },
    };
    put_line(f, "title", or_unstated(title, "title"));
    attachment(&att, f)?;
    if let Some(m) = r.get("modality")? {
        let dicom = codings(&m)?
            .into_iter()
            .find(|(sys, code, _)| sys.as_deref() == Some(super::DICOM_SYSTEM) && code.is_some())
            .and_then(|(_, code, _)| code);
        put_line(f, "dicom-modality", dicom);
    }
    let when = match r.date_of("createdDateTime")? {
        Some(d) => Some(d),
        None => match period_start(r, "createdPeriod")? {
            Some(d) => Some(d),
            None => r.date_of("issued")?,
        },
    };
    put(f, "date", date(when));
    put_long(f, "description", note(r)?);
    Ok(Category::Documents)
}

/// An Attachment's file: inline `data` of an accepted media type, or its `url` when that
/// is not a Binary held here (a `Binary/<id>` or `urn:uuid:` reference names bytes the
/// node links to the entry's `file` field, see [`super::local_binary`]).
fn attachment(att: &El<'_>, f: &mut Fields) -> Result<(), FhirError> {
    let media = att.code_of("contentType")?;
    let data = att.str_of("data")?;
    // Only a file of an accepted type is kept (the original resource keeps any other).
    if let (Some(data), Some(mt)) = (data, media) {
        if crate::schema::DOCUMENT_MEDIA_TYPES.contains(&mt) {
            let bytes = super::attach::base64(data).ok_or_else(|| FhirError::BadValue {
                path: format!("{}.data", att.path),
                value: super::error::clip(data),
                reason: "not base64",
            })?;
            f.insert("data".into(), Value::Bytes(bytes));
            f.insert("media-type".into(), Value::Text(mt.into()));
        }
    }
    let url = att.str_of("url")?;
    put_line(
        f,
        "url",
        url.filter(|u| super::local_binary(u).is_none())
            .map(str::to_owned),
    );
    Ok(())
}

/// Maps a Questionnaire resource to a published questionnaire: its title and the resource
/// itself as the definition, validated ([`crate::care::questionnaire::Definition`]).
fn from_questionnaire(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    use crate::care::questionnaire::{Definition, DEFINITION};
    r.req_code("status")?;
    let def = Definition::from_json(r.v)?;
    let mut kept = r.v.clone();
    crate::care::questionnaire::canonical_json(&mut kept);
    let text = kept.to_string();
    if text.len() > crate::care::questionnaire::MAX_DEFINITION_BYTES {
        return Err(crate::care::QuestionnaireError::TooLarge {
            bytes: text.len(),
            max: crate::care::questionnaire::MAX_DEFINITION_BYTES,
        }
        .into());
    }
    put_line(f, "questionnaire", Some(def.title));
    f.insert(DEFINITION.into(), Value::Text(text));
    Ok(Category::Questionnaires)
}

/// Maps a QuestionnaireResponse resource to its fields, giving its category.
fn from_questionnaire_response(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("status")?;
    let q = r
        .str_of("questionnaire")?
        .map(|q| q.rsplit('/').next().unwrap_or(q).to_owned());
    // A response to a questionnaire published in cophr names its version's entry id: its
    // answers are by linkId, a choice's by code (checked against it when written).
    let linked = q
        .as_deref()
        .and_then(|q| q.parse::<crate::ids::EntryId>().ok());
    if let Some(id) = linked {
        f.insert(
            crate::care::questionnaire::DEFINITION_ENTRY.into(),
            Value::Text(id.to_string()),
        );
        let title = cophr_ext(r, "questionnaire-title")?
            .and_then(|t| t.v.as_str().map(str::to_owned))
            .unwrap_or_else(|| id.to_string());
        put_line(f, "questionnaire", Some(title));
        if let Some(b) = cophr_ext(r, "band")? {
            put_line(f, "band", b.v.as_str().map(str::to_owned));
        }
    } else {
        put_line(f, "questionnaire", or_unstated(q, "questionnaire"));
    }
    let mut answers = Vec::new();
    collect_answers(&r.list("item")?, &mut answers, 0, linked.is_some())?;
    answers.truncate(MAX_ANSWERS);
    if answers.is_empty() {
        answers.push(answer(
            "(no answers)",
            Value::Text(r.req_code("status")?.into()),
        ));
    }
    f.insert("answers".into(), Value::List(answers));
    if let Some(s) = cophr_ext(r, "score")? {
        // A whole score (as `cophr add` writes 3) stays whole, so it reads back the same.
        if let Some(i) = s.v.as_i64() {
            f.insert("score".into(), Value::Int(i));
        } else if let Some(x) = s.v.as_f64() {
            f.insert("score".into(), Value::Float(x));
        }
    }
    put(f, "completed", date_time(r.date_of("authored")?));
    Ok(Category::Questionnaires)
}

/// The cophr actor a Reference names: an identifier in [`super::codes::COPHR_ACTOR`], or a
/// `reference` whose last segment is an actor id.
fn actor_of(r: &El<'_>) -> Result<Option<String>, FhirError> {
    let r = r.clone().object()?;
    if let Some(id) = r.get("identifier")? {
        let id = id.object()?;
        if id.str_of("system")? == Some(super::codes::COPHR_ACTOR) {
            if let Some(v) = id.str_of("value")? {
                if v.parse::<crate::ids::ActorId>().is_ok() {
                    return Ok(Some(v.to_owned()));
                }
            }
        }
    }
    Ok(r.str_of("reference")?
        .and_then(|x| x.rsplit('/').next())
        .filter(|x| x.parse::<crate::ids::ActorId>().is_ok())
        .map(str::to_owned))
}

/// A task's party: the cophr actor a Reference names, else its display or reference text.
fn party(r: Option<El<'_>>) -> Result<Option<String>, FhirError> {
    let Some(r) = r else {
        return Ok(None);
    };
    match actor_of(&r)? {
        Some(a) => Ok(Some(a)),
        None => reference_text(&r),
    }
}

/// Maps an Appointment resource to its fields: participants other than the patient go to
/// `with` (actor ids, else names), a Location participant to `place`, cophr's reminder
/// extensions to `reminders`.
fn from_appointment(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    let status = match r.req_code("status")? {
        "pending" | "waitlist" => "proposed",
        "checked-in" => "arrived",
        "entered-in-error" => "cancelled",
        s => s,
    };
    put_line(f, "status", Some(status.to_owned()));
    put(f, "start", date_time(r.date_of("start")?));
    put(f, "end", date_time(r.date_of("end")?));
    put_line(
        f,
        "description",
        r.str_of("description")?.map(str::to_owned),
    );
    put_long(f, "comment", r.str_of("comment")?.map(str::to_owned));
    let mut with = Vec::new();
    for p in r.req_list("participant")? {
        let p = p.object()?;
        let Some(actor) = p.get("actor")? else {
            continue;
        };
        let a = actor.clone().object()?;
        let reference = a.str_of("reference")?;
        if reference.is_some_and(|x| x.starts_with("Patient/")) {
            continue;
        }
        if a.str_of("type")? == Some("Location")
            || reference.is_some_and(|x| x.starts_with("Location/"))
        {
            if !f.contains_key("place") {
                put_line(f, "place", reference_text(&actor)?);
            }
            continue;
        }
        let who = match actor_of(&actor)? {
            Some(id) => Some(id),
            None => reference_text(&actor)?,
        };
        if let Some(w) = who.as_deref().and_then(line) {
            if with.len() < crate::care::MAX_PARTICIPANTS {
                with.push(w);
            }
        }
    }
    if !with.is_empty() {
        f.insert("with".into(), Value::List(with));
    }
    let url = format!("{}/reminder", super::codes::COPHR_FIELD);
    let mut reminders = Vec::new();
    for x in r.list("extension")? {
        let x = x.object()?;
        if x.str_of("url")? == Some(url.as_str()) {
            if let Some(v) = x.str_of("valueString")?.and_then(line) {
                if reminders.len() < crate::care::MAX_REMINDERS {
                    reminders.push(v);
                }
            }
        }
    }
    if !reminders.is_empty() {
        f.insert("reminders".into(), Value::List(reminders));
    }
    Ok(Category::Appointments)
}

/// A cophr task status for a FHIR Task status.
fn task_status(s: &str) -> &'static str {
    match s {
        "received" => "received",
        "accepted" => "accepted",
        "in-progress" | "on-hold" => "in-progress",
        "completed" => "completed",
        "rejected" | "failed" => "rejected",
        "cancelled" | "entered-in-error" => "cancelled",
        _ => "sent",
    }
}

/// Maps a Task resource to its fields: kind from cophr's code (else `referral` when based on
/// a ServiceRequest, else `task`), requester and owner as actor ids (a task whose parties
/// are not cophr actors has neither, and the schema refuses it), due from the restriction.
fn from_task(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("intent")?;
    put_line(
        f,
        "status",
        Some(task_status(r.req_code("status")?).to_owned()),
    );
    let based_on_request = r.list("basedOn")?.iter().any(|b| {
        b.clone()
            .object()
            .ok()
            .and_then(|b| b.str_of("reference").ok().flatten())
            .is_some_and(|x| x.starts_with("ServiceRequest/") || x.starts_with('#'))
    });
    let kind = match code_in(r, "code", super::codes::COPHR_TASK_KIND)? {
        Some(k) if crate::care::TASK_KINDS.contains(&k.as_str()) => k,
        _ if based_on_request => "referral".into(),
        _ => "task".into(),
    };
    put_line(f, "kind", Some(kind));
    let description = match r.str_of("description")? {
        Some(d) => Some(d.to_owned()),
        None => concept_of(r, "code")?,
    };
    put_long(f, "description", or_unstated(description, "description"));
    for field in ["requester", "owner"] {
        put_line(f, field, or_unstated(party(r.get(field)?)?, field));
    }
    if let Some(rs) = r.get("restriction")? {
        put(f, "due", date(period_end(&rs.object()?, "period")?));
    }
    put_long(f, "note", note(r)?);
    Ok(Category::Tasks)
}

/// Maps a ServiceRequest resource to a referral task: `code` (or its note) as the
/// description, the first performer as owner.
fn from_service_request(r: &El<'_>, f: &mut Fields) -> Result<Category, FhirError> {
    r.req_code("intent")?;
    check_reference(r, "subject", true)?;
    let status = match r.req_code("status")? {
        "completed" => "completed",
        "revoked" | "entered-in-error" => "cancelled",
        _ => "sent",
    };
    put_line(f, "status", Some(status.to_owned()));
    put_line(f, "kind", Some("referral".into()));
    let description = match concept_of(r, "code")? {
        Some(d) => Some(d),
        None => note(r)?,
    };
    put_long(f, "description", or_unstated(description, "description"));
    put_line(
        f,
        "requester",
        or_unstated(party(r.get("requester")?)?, "requester"),
    );
    put_line(
        f,
        "owner",
        or_unstated(party(r.first("performer")?)?, "owner"),
    );
    Ok(Category::Tasks)
}

fn patient(r: &El<'_>, f: &mut Fields) -> Result<(), FhirError> {
    let names = r.list("name")?;
    let mut official = None;
    for n in &names {
        let n = n.clone().object()?;
        let usage = n.code_of("use")?;
        if official.is_none() || usage == Some("official") {
            official = Some(n);
        }
    }
    let (mut surname, mut forename) = (None, None);
    if let Some(n) = &official {
        surname = n.str_of("family")?.map(str::to_owned);
        for g in n.list("given")? {
            forename.get_or_insert(g.str()?.to_owned());
        }
        if surname.is_none() {
            surname = human_name(n)?;
        }
    }
    for n in &names {
        let n = n.clone().object()?;
        if n.code_of("use")? == Some("usual") {
            put_line(f, "preferred-name", human_name(&n)?);
        }
    }
    put_line(f, "surname", or_unstated(surname, "name"));
    put_line(f, "forename", forename);
    put(f, "date-of-birth", date(r.date_of("birthDate")?));
    let gender = r.code_of("gender")?;
    put(f, "gender", gender.map(|g| Value::Text(g.into())));
    put_long(f, "address", address(r)?);
    telecom(r, f)
}

fn telecom(r: &El<'_>, f: &mut Fields) -> Result<(), FhirError> {
    for t in r.list("telecom")? {
        let t = t.object()?;
        let value = t.str_of("value")?.map(str::to_owned);
        match t.code_of("system")? {
            Some("phone") if !f.contains_key("telephone") => put_line(f, "telephone", value),
            Some("email") if !f.contains_key("email") => put_line(f, "email", value),
            _ => {}
        }
    }
    Ok(())
}

fn address(r: &El<'_>) -> Result<Option<String>, FhirError> {
    let Some(a) = r.first("address")? else {
        return Ok(None);
    };
    let a = a.object()?;
    if let Some(t) = a.str_of("text")? {
        return Ok(Some(t.to_owned()));
    }
    let mut parts = Vec::new();
    for l in a.list("line")? {
        parts.push(l.str()?.to_owned());
    }
    for k in ["city", "district", "state", "postalCode", "country"] {
        if let Some(s) = a.str_of(k)? {
            parts.push(s.to_owned());
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("\n")))
}

fn medication(ty: &str, r: &El<'_>, f: &mut Fields) -> Result<(), FhirError> {
    let status = r.req_code("status")?;
    if ty == "MedicationRequest" {
        r.req_code("intent")?;
    }
    check_reference(r, "subject", true)?;
    let med = match (
        r.get("medicationCodeableConcept")?,
        r.get("medicationReference")?,
    ) {
        (Some(cc), _) => concept_text(&cc)?,
        (None, Some(rf)) => reference_text(&rf)?,
        (None, None) => {
            return Err(FhirError::Missing {
                path: format!("{}.medication[x]", r.path),
            })
        }
    };
    put_line(f, "medication", or_unstated(med, "medication"));
    if let Some(form) = cophr_ext(r, "form")? {
        put_line(f, "form", Some(form.str()?.to_owned()));
    }
    put_long(f, "monitoring", note(r)?);
    let dosage = if ty == "MedicationRequest" {
        "dosageInstruction"
    } else {
        "dosage"
    };
    if let Some(d) = r.first(dosage)? {
        let d = d.object()?;
        put_line(f, "dose", d.str_of("text")?.map(str::to_owned));
        put_line(f, "route", concept_of(&d, "route")?);
        put_long(
            f,
            "patient-information",
            d.str_of("patientInstruction")?.map(str::to_owned),
        );
    }
    put_line(f, "indication", first_concept(r, "reasonCode")?);
    let (start, stop) = if ty == "MedicationRequest" {
        (r.date_of("authoredOn")?, None)
    } else {
        match r.date_of("effectiveDateTime")? {
            Some(d) => (Some(d), None),
            None => (
                period_start(r, "effectivePeriod")?,
                period_end(r, "effectivePeriod")?,
            ),
        }
    };
    put(f, "start", date(start));
    put(f, "stop", date(stop));
    let status = match status {
        "active" | "intended" => Some("active"),
        "completed" => Some("completed"),
        "stopped" | "cancelled" => Some("stopped"),
        "not-taken" => Some("not-taking"),
        _ => None,
    };
    put(f, "status", status.map(|s| Value::Text(s.into())));
    Ok(())
}

fn answer(q: &str, a: Value) -> Value {
    Value::Map(BTreeMap::from([
        (
            "question".to_owned(),
            line(q).unwrap_or_else(|| Value::Text("?".into())),
        ),
        ("answer".to_owned(), a),
    ]))
}

/// Flattens QuestionnaireResponse items (and their nested items) into question/answer pairs.
fn collect_answers(
    items: &[El<'_>],
    out: &mut Vec<Value>,
    depth: usize,
    by_link: bool,
) -> Result<(), FhirError> {
    if depth > 32 {
        return Err(FhirError::TooMany {
            what: "QuestionnaireResponse.item nesting".into(),
            count: depth,
            max: 32,
        });
    }
    for item in items {
        if out.len() >= MAX_ANSWERS {
            return Ok(());
        }
        let item = item.clone().object()?;
        let link = item.req_str("linkId")?;
        let q = if by_link {
            link
        } else {
            item.str_of("text")?.unwrap_or(link)
        };
        for a in item.list("answer")? {
            let a = a.object()?;
            let v = if let Some(s) = a.str_of("valueString")? {
                line(s)
            } else if let Some(b) = a.bool_of("valueBoolean")? {
                Some(Value::Bool(b))
            } else if let Some(n) = a.num_of("valueInteger")? {
                n.as_i64().map(Value::Int)
            } else if let Some(n) = a.num_of("valueDecimal")? {
                n.as_f64().map(Value::Float)
            } else if let Some(c) = a.get("valueCoding")? {
                let c = c.object()?;
                let t = if by_link {
                    c.str_of("code")?
                } else {
                    c.str_of("display")?.or(c.str_of("code")?)
                };
                t.and_then(line)
            } else if let Some(q) = a.get("valueQuantity")? {
                quantity_text(&q)?.as_deref().and_then(line)
            } else if let Some(rf) = a.get("valueReference")? {
                reference_text(&rf)?.as_deref().and_then(line)
            } else {
                ["valueDate", "valueDateTime", "valueTime", "valueUri"]
                    .iter()
                    .find_map(|k| a.str_of(k).ok().flatten())
                    .and_then(line)
            };
            if let Some(v) = v {
                if out.len() < MAX_ANSWERS {
                    out.push(answer(q, v));
                }
            }
            collect_answers(&a.list("item")?, out, depth + 1, by_link)?;
        }
        collect_answers(&item.list("item")?, out, depth + 1, by_link)?;
    }
    Ok(())
}

/// The unit, value pair of a quantity converted to one of `units` if cophr knows how.
pub(crate) fn to_unit(q: &El<'_>, units: &[&str]) -> Result<Option<Value>, FhirError> {
    let Some((v, unit)) = quantity(q)? else {
        return Ok(None);
    };
    let unit = unit.unwrap_or_default();
    let alias = match unit.as_str() {
        "mmHg" | "mm Hg" => "mm[Hg]",
        "bpm" | "beats/minute" | "beats/min" | "/min" | "{beats}/min" | "{breaths}/min"
        | "breaths/minute" => "/min",
        "C" | "°C" | "degC" | "Cel" => "Cel",
        "F" | "°F" | "degF" | "[degF]" => "[degF]",
        "kg/m^2" | "kg/m2" => "kg/m2",
        "%" | "%{HemoglobinSaturation}" | "%{Oxygen}" => "%",
        other => other,
    };
    let (v, alias) = match alias {
        "[lb_av]" | "lb" | "lbs" if units.contains(&"kg") => (v * 0.453_592_37, "kg"),
        "g" if units.contains(&"kg") => (v / 1000.0, "kg"),
        "[in_i]" | "in" if units.contains(&"cm") => (v * 2.54, "cm"),
        "m" if units.contains(&"cm") => (v * 100.0, "cm"),
        "mm" if units.contains(&"cm") => (v / 10.0, "cm"),
        a => (v, a),
    };
    let Some(u) = units.iter().find(|u| **u == alias) else {
        return Ok(None);
    };
    let v = (v * 1e6).round() / 1e6;
    let value = if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::Int(v as i64)
    } else {
        Value::Float(v)
    };
    Ok(Some(Value::Map(BTreeMap::from([
        ("unit".to_owned(), Value::Text((*u).to_owned())),
        ("value".to_owned(), value),
    ]))))
}
