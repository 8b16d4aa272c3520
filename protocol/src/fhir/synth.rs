//! FHIR resources built from an entry's fields, for entries not imported from FHIR (or
//! amended since): one resource type per category, with standard codes where the field
//! has one (LOINC for measurements, lifestyle and common labs, SNOMED CT smoking status,
//! HL7 code systems for categories, relationships, interpretations and services), UCUM
//! quantities, and cophr's own codes and extensions for what FHIR has no element for, so
//! that the resource imports back into the same category and fields
//! (`tests/fhir_roundtrip.rs`).

use serde_json::{json, Map, Value as Json};

use super::codes::{self, Measure, COPHR_CATEGORY, COPHR_FIELD, LOINC, OBSERVATION_CATEGORY, UCUM};

use crate::category::Category;
use crate::ids::{EntryId, RecordId};
use crate::schema;
use crate::value::Value;

/// The Observation `category` code of an Observation-based category.
pub(crate) fn observation_category(c: &Category) -> Option<&'static str> {
    match c {
        Category::VitalSigns | Category::Wearables => Some("vital-signs"),
        Category::Examinations => Some("exam"),
        Category::Lifestyle => Some("social-history"),
        Category::LabResults => Some("laboratory"),
        Category::Investigations => Some("procedure"),
        _ => None,
    }
}

fn text(body: &Value, k: &str) -> Option<String> {
    body.get(k).and_then(Value::as_text).map(str::to_owned)
}

fn cc(t: &str) -> Json {
    json!({ "text": t })
}

fn quantity(q: &Value) -> Option<Json> {
    let v = q.get("value")?.to_json();
    let unit = q.get("unit")?.as_text()?;
    Some(json!({"value": v, "unit": unit, "system": UCUM, "code": unit}))
}

/// A LOINC CodeableConcept.
fn loinc(code: &str, display: &str) -> Json {
    json!({"coding": [{"system": LOINC, "code": code, "display": display}]})
}

/// A cophr extension carrying a field FHIR has no element for.
pub(crate) fn extension(field: &str, value: Json) -> Json {
    let key = match value {
        Json::Number(_) => "valueDecimal",
        _ => "valueString",
    };
    json!({"url": format!("{COPHR_FIELD}/{field}"), key: value})
}

/// The Observation `category` of an entry: the FHIR observation category and cophr's own.
fn observation_categories(c: &Category) -> Json {
    let mut out = Vec::new();
    if let Some(code) = observation_category(c) {
        out.push(json!({"coding": [{"system": OBSERVATION_CATEGORY, "code": code}]}));
    }
    out.push(json!({"coding": [{"system": COPHR_CATEGORY, "code": c.name()}]}));
    Json::Array(out)
}

/// A FHIR dateTime from a cophr date or date-time.
fn dt(body: &Value, k: &str) -> Option<Json> {
    text(body, k).map(Json::String)
}

struct R(Map<String, Json>);

impl R {
    fn new(ty: &str, entry: &EntryId) -> Self {
        let mut m = Map::new();
        m.insert("resourceType".into(), ty.into());
        m.insert("id".into(), entry.to_string().into());
        R(m)
    }
    fn set(&mut self, k: &str, v: Option<Json>) -> &mut Self {
        if let Some(v) = v {
            self.0.insert(k.into(), v);
        }
        self
    }
    fn patient(&mut self, k: &str, p: &RecordId) -> &mut Self {
        self.set(k, Some(json!({"reference": format!("Patient/{p}")})))
    }
    fn note(&mut self, body: &Value, k: &str) -> &mut Self {
        let n = text(body, k).map(|t| json!([{ "text": t }]));
        self.set("note", n)
    }
    fn done(&mut self) -> Json {
        Json::Object(std::mem::take(&mut self.0))
    }
}

/// How a family history's genomic markers are written in its condition's note.
pub(crate) const GENOMIC_MARKERS: &str = "Genomic markers: ";

/// The standard extension of a Flag's priority.
pub(crate) const FLAG_PRIORITY: &str = "http://hl7.org/fhir/StructureDefinition/flag-priority";

/// A resource for an entry from its fields.
pub(crate) fn resource(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    match c {
        Category::Demographics => demographics(e, body),
        Category::KeyContacts => key_contacts(p, e, body),
        Category::Alerts => alerts(p, e, body),
        Category::Preferences => preferences(p, e, c, body),
        Category::Allergies => allergies(p, e, body),
        Category::Problems => problems(p, e, body),
        Category::Procedures => procedures(p, e, body),
        Category::Medications => medications(p, e, body),
        Category::Immunisations => immunisations(p, e, body),
        Category::VitalSigns | Category::Wearables | Category::Examinations => {
            measurements(p, e, c, body)
        }
        Category::Lifestyle => lifestyle(p, e, c, body),
        Category::LabResults => lab_results(p, e, body),
        Category::Investigations => investigations(p, e, body),
        Category::FamilyHistory => family_history(p, e, body),
        Category::Documents => documents(p, e, body),
        Category::Questionnaires => questionnaires(p, e, body),
        Category::Messages => messages(p, e, body),
        Category::Appointments => appointments(p, e, body),
        Category::Tasks => tasks(p, e, body),
        Category::AboutMe | Category::Extension(_) => about_me(p, e, c, body),
    }
}

/// The FHIR Patient for an entry in demographics.
fn demographics(e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let mut name = Map::new();
    name.insert("use".into(), "official".into());
    if let Some(s) = t("surname") {
        name.insert("family".into(), s.into());
    }
    if let Some(f) = t("forename") {
        name.insert("given".into(), json!([f]));
    }
    let mut telecom = Vec::new();
    if let Some(v) = t("telephone") {
        telecom.push(json!({"system": "phone", "value": v}));
    }
    if let Some(v) = t("email") {
        telecom.push(json!({"system": "email", "value": v}));
    }
    let mut names = vec![Json::Object(name)];
    if let Some(pn) = t("preferred-name") {
        names.push(json!({"use": "usual", "text": pn}));
    }
    R::new("Patient", e)
        .set("name", Some(Json::Array(names)))
        .set("gender", t("gender").map(Json::String))
        .set("birthDate", dt(body, "date-of-birth"))
        .set("address", t("address").map(|a| json!([{ "text": a }])))
        .set(
            "telecom",
            (!telecom.is_empty()).then_some(Json::Array(telecom)),
        )
        .done()
}

/// The FHIR RelatedPerson for an entry in key contacts.
fn key_contacts(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let mut telecom = Vec::new();
    if let Some(v) = t("telephone") {
        telecom.push(json!({"system": "phone", "value": v}));
    }
    if let Some(v) = t("email") {
        telecom.push(json!({"system": "email", "value": v}));
    }
    R::new("RelatedPerson", e)
        .patient("patient", p)
        .set("name", t("name").map(|n| json!([{ "text": n }])))
        .set(
            "relationship",
            t("relationship").map(|r| {
                let mut coding = vec![json!({"system": codes::COPHR_CODE, "code": r})];
                if r == "next-of-kin" {
                    coding.push(json!({"system": codes::ROLE_CODE, "code": "NOK",
                                       "display": "next of kin"}));
                }
                json!([{ "coding": coding, "text": r }])
            }),
        )
        .set(
            "telecom",
            (!telecom.is_empty()).then_some(Json::Array(telecom)),
        )
        .set("address", t("address").map(|a| json!([{ "text": a }])))
        .done()
}

/// The FHIR Flag for an entry in alerts.
fn alerts(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let priority = t("severity").map(|s| {
        let code = if s == "high" { "PH" } else { "PL" };
        json!([{"url": FLAG_PRIORITY, "valueCodeableConcept": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/flag-priority-code",
            "code": code}], "text": s}}])
    });
    R::new("Flag", e)
        .set("extension", priority)
        .set("status", Some("active".into()))
        .set("category", t("detail").map(|d| json!([cc(&d)])))
        .set("code", ct("alert"))
        .patient("subject", p)
        .done()
}

/// The FHIR Consent for an entry in preferences.
fn preferences(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    // Each preference is a category: cophr's field as the code, the value as the text.
    let mut categories = vec![json!({"coding": [{"system": LOINC, "code": "59284-0",
                                                 "display": "Patient Consent"}]})];
    if let Some(s) = schema::schema(c) {
        for f in s.fields {
            if let Some(v) = t(f.name) {
                categories.push(json!({"coding": [{"system": COPHR_FIELD, "code": f.name,
                                                   "display": f.title}], "text": v}));
            }
        }
    }
    R::new("Consent", e)
        .set("status", Some("active".into()))
        .set("scope", Some(json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}], "text": "Preferences"})))
        .set("category", Some(Json::Array(categories)))
        .patient("patient", p)
        .done()
}

/// The FHIR AllergyIntolerance for an entry in allergies.
fn allergies(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let reaction = t("reaction").map(|r| {
        let mut m = json!({"manifestation": [cc(&r)]});
        if let Some(s) = t("severity") {
            m["severity"] = s.into();
        }
        json!([m])
    });
    R::new("AllergyIntolerance", e)
        .set(
            "clinicalStatus",
            Some(json!({"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active"}]})),
        )
        .patient("patient", p)
        .set("code", ct("agent"))
        .set("criticality", t("criticality").map(Json::String))
        .set("onsetDateTime", dt(body, "onset"))
        .set("reaction", reaction)
        .note(body, "comment")
        .done()
}

/// The FHIR Condition for an entry in problems.
fn problems(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let status = t("status").map(|s| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": s}]}));
    R::new("Condition", e)
        .set(
            "category",
            Some(json!([{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "problem-list-item"}]}])),
        )
        .patient("subject", p)
        .set("code", ct("problem"))
        .set("clinicalStatus", status)
        .set("onsetDateTime", dt(body, "onset"))
        .set("abatementDateTime", dt(body, "resolved"))
        .note(body, "description")
        .done()
}

/// The FHIR Procedure for an entry in procedures.
fn procedures(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    R::new("Procedure", e)
        .set(
            "extension",
            t("difficulty").map(|d| json!([extension("difficulty", d.into())])),
        )
        .set("status", Some("completed".into()))
        .patient("subject", p)
        .set("code", ct("procedure"))
        .set("category", ct("procedure-type"))
        .set("bodySite", t("body-site").map(|b| json!([cc(&b)])))
        .set("outcome", ct("outcome"))
        .set("complication", t("complication").map(|b| json!([cc(&b)])))
        .set("performedDateTime", dt(body, "date"))
        .note(body, "description")
        .done()
}

/// The FHIR MedicationStatement for an entry in medications.
fn medications(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let status = match t("status").as_deref() {
        Some("stopped") => "stopped",
        Some("not-taking") => "not-taken",
        Some("completed") => "completed",
        Some("active") => "active",
        _ => "unknown",
    };
    let mut dosage = Map::new();
    if let Some(d) = t("dose") {
        dosage.insert("text".into(), d.into());
    }
    if let Some(r) = t("route") {
        dosage.insert("route".into(), cc(&r));
    }
    if let Some(pi) = t("patient-information") {
        dosage.insert("patientInstruction".into(), pi.into());
    }
    let mut period = Map::new();
    if let Some(s) = t("start") {
        period.insert("start".into(), s.into());
    }
    if let Some(s) = t("stop") {
        period.insert("end".into(), s.into());
    }
    R::new("MedicationStatement", e)
        .set(
            "extension",
            t("form").map(|f| json!([extension("form", f.into())])),
        )
        .set("status", Some(status.into()))
        .set("medicationCodeableConcept", ct("medication"))
        .patient("subject", p)
        .set(
            "effectivePeriod",
            (!period.is_empty()).then_some(Json::Object(period)),
        )
        .set("reasonCode", t("indication").map(|i| json!([cc(&i)])))
        .set(
            "dosage",
            (!dosage.is_empty()).then(|| json!([Json::Object(dosage)])),
        )
        .note(body, "monitoring")
        .done()
}

/// The FHIR Immunization for an entry in immunisations.
fn immunisations(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    R::new("Immunization", e)
        .set(
            "status",
            Some(t("status").unwrap_or_else(|| "completed".into()).into()),
        )
        .set("vaccineCode", ct("immunisation"))
        .patient("patient", p)
        .set("occurrenceDateTime", dt(body, "date"))
        .set(
            "occurrenceString",
            t("date").is_none().then(|| "unknown".into()),
        )
        .done()
}

/// The value of a measurement field as a FHIR Quantity (steps, an integer, as a count a day).
fn measure_quantity(m: &Measure, v: &Value) -> Option<Json> {
    match v {
        Value::Map(_) => quantity(v),
        Value::Int(n) => Some(json!({"value": n, "unit": m.units[0].0, "system": UCUM,
                                     "code": m.units[0].0})),
        _ => None,
    }
}

/// The FHIR Observation for an entry in vital signs, wearables or examinations: one
/// measurement is an Observation of its LOINC code with a `valueQuantity`; a blood
/// pressure alone is the LOINC blood pressure panel with systolic and diastolic
/// components; several measurements are the LOINC vital signs panel with one component
/// each.
fn measurements(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let table = if *c == Category::Examinations {
        codes::EXAMS
    } else {
        codes::VITALS
    };
    let present: Vec<(&Measure, Json)> = table
        .iter()
        .filter_map(|m| {
            let q = measure_quantity(m, body.get(m.field)?)?;
            Some((m, q))
        })
        .collect();
    let component =
        |m: &Measure, q: &Json| json!({"code": loinc(m.codes[0], m.display), "valueQuantity": q});
    let fields: Vec<&str> = present.iter().map(|(m, _)| m.field).collect();
    let mut r = R::new("Observation", e);
    r.set("status", Some("final".into()))
        .set("category", Some(observation_categories(c)));
    let mut components = Vec::new();
    if fields == ["systolic", "diastolic"] {
        let (code, display) = (
            codes::BP_PANEL[0],
            "Blood pressure panel with all children optional",
        );
        r.set("code", Some(loinc(code, display)));
        components.extend(present.iter().map(|(m, q)| component(m, q)));
    } else if let [(m, q)] = present.as_slice() {
        r.set("code", Some(loinc(m.codes[0], m.display)))
            .set("valueQuantity", Some(q.clone()));
    } else {
        let (code, display) = codes::VITALS_PANEL;
        r.set("code", Some(loinc(code, display)));
        components.extend(present.iter().map(|(m, q)| component(m, q)));
    }
    if let Some(pos) = t("position") {
        let (code, display) = codes::POSITION;
        components.push(json!({"code": loinc(code, display), "valueCodeableConcept": cc(&pos)}));
    }
    r.patient("subject", p)
        .set("effectiveDateTime", t("measured-at").map(Json::String))
        .set(
            "component",
            (!components.is_empty()).then_some(Json::Array(components)),
        )
        .set("device", t("device").map(|d| json!({ "display": d })))
        .note(body, "comment")
        .done()
}

/// LOINC code and display of lifestyle fields.
const LIFESTYLE: &[(&str, &str, &str)] = &[
    ("smoking", "72166-2", "Tobacco smoking status"),
    ("alcohol", "74013-4", "Alcoholic drinks per day"),
    ("occupation", "11341-5", "History of Occupation"),
    ("housing", "71802-3", "Housing status"),
    ("education", "82589-3", "Highest level of education"),
];

/// A lifestyle field's value: smoking status as SNOMED CT, the others as text.
fn lifestyle_value(field: &str, v: &str) -> (&'static str, Json) {
    if field == "smoking" {
        if let Some((_, code, display)) = codes::SMOKING.iter().find(|(s, _, _)| *s == v) {
            let coding = json!({"system": codes::SNOMED, "code": code, "display": display});
            return ("valueCodeableConcept", json!({ "coding": [coding] }));
        }
    }
    ("valueString", Json::String(v.to_owned()))
}

/// The FHIR Observation for an entry in lifestyle: one field is an Observation of its
/// LOINC code; several are one component each.
fn lifestyle(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    let present: Vec<(&str, &str, &str, String)> = LIFESTYLE
        .iter()
        .filter_map(|(f, code, display)| Some((*f, *code, *display, text(body, f)?)))
        .collect();
    let mut r = R::new("Observation", e);
    r.set("status", Some("final".into()))
        .set("category", Some(observation_categories(c)));
    if let [(f, code, display, v)] = present.as_slice() {
        let (k, value) = lifestyle_value(f, v);
        r.set("code", Some(loinc(code, display)))
            .set(k, Some(value));
    } else {
        let comps: Vec<Json> = present
            .iter()
            .map(|(f, code, display, v)| {
                let (k, value) = lifestyle_value(f, v);
                let mut comp = json!({ "code": loinc(code, display) });
                comp[k] = value;
                comp
            })
            .collect();
        r.set("code", Some(cc(c.title())))
            .set("component", Some(Json::Array(comps)));
    }
    r.patient("subject", p).done()
}

/// A lab result as a number with an optional comparator, if it is one that reads back
/// the same (`48`, `<2.5`; not `5.10`, whose trailing zero a JSON number loses).
fn lab_number(result: &str) -> Option<(Option<&str>, serde_json::Number)> {
    let (cmp, n) = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|c| result.strip_prefix(c).map(|n| (Some(*c), n)))
        .unwrap_or((None, result));
    let num: serde_json::Number = n.parse().ok()?;
    (num.to_string() == n).then_some((cmp, num))
}

/// The FHIR Observation for an entry in lab results: the LOINC code of a common test
/// (by its name and unit) beside the test as written, a numeric result as a UCUM
/// `valueQuantity`, the interpretation coded.
fn lab_results(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    // A result whose status was not written down has status `unknown`.
    let status = match t("status").as_deref() {
        Some("preliminary") => "preliminary",
        Some("amended") => "amended",
        Some("final") => "final",
        _ => "unknown",
    };
    let unit = t("unit");
    let code = t("test").map(|test| {
        let mut code = cc(&test);
        if let Some(lab) = codes::lab_named(&test, unit.as_deref()) {
            code["coding"] = json!([{"system": LOINC, "code": lab.code, "display": lab.display}]);
        }
        code
    });
    let result = t("result");
    let (value_key, value) = match (result.as_deref().and_then(lab_number), &unit) {
        (Some((cmp, n)), Some(u)) => {
            let mut q = json!({"value": n, "unit": u, "system": UCUM, "code": u});
            if let Some(c) = cmp {
                q["comparator"] = c.into();
            }
            ("valueQuantity", Some(q))
        }
        _ => (
            "valueString",
            result.map(|r| match &unit {
                Some(u) => format!("{r} {u}").into(),
                None => r.into(),
            }),
        ),
    };
    let interpretation = t("interpretation").map(|i| {
        let code = match i.as_str() {
            "normal" => "N",
            "high" => "H",
            "low" => "L",
            "critical" => "AA",
            _ => "A",
        };
        json!([{"coding": [{"system": codes::INTERPRETATION, "code": code}], "text": i}])
    });
    R::new("Observation", e)
        .set("status", Some(status.into()))
        .set(
            "category",
            Some(observation_categories(&Category::LabResults)),
        )
        .set("code", code)
        .patient("subject", p)
        .set("effectiveDateTime", dt(body, "collected"))
        .set("issued", dt(body, "reported"))
        .set(value_key, value)
        .set("interpretation", interpretation)
        .set(
            "referenceRange",
            t("reference-range").map(|r| json!([{ "text": r }])),
        )
        .note(body, "comment")
        .done()
}

/// The FHIR DiagnosticReport for an entry in investigations, its kind as the HL7 v2-0074
/// diagnostic service section.
fn investigations(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let category = t("kind").map(|k| {
        let section = codes::INVESTIGATION_KINDS
            .iter()
            .find(|(kind, _)| *kind == k)
            .map_or("OTH", |(_, s)| *s);
        json!([{"coding": [{"system": codes::V2_0074, "code": section}], "text": k}])
    });
    R::new("DiagnosticReport", e)
        .set("status", Some("final".into()))
        .set("category", category)
        .set("code", ct("investigation"))
        .patient("subject", p)
        .set("effectiveDateTime", dt(body, "date"))
        .set("conclusion", t("result").map(Json::String))
        .done()
}

/// The FHIR FamilyMemberHistory for an entry in family history.
fn family_history(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let mut cond = json!({"code": cc(&t("condition").unwrap_or_default())});
    if let Some(Value::List(m)) = body.get("genomic-markers") {
        let markers: Vec<String> = m
            .iter()
            .filter_map(Value::as_text)
            .map(str::to_owned)
            .collect();
        cond["note"] = json!([{ "text": format!("{GENOMIC_MARKERS}{}", markers.join(", ")) }]);
    }
    R::new("FamilyMemberHistory", e)
        .set("status", Some("completed".into()))
        .patient("patient", p)
        .set(
            "relationship",
            t("relative").map(|r| {
                let mut concept = cc(&r);
                let word = r.trim().to_lowercase();
                if let Some((_, code)) = codes::FAMILY.iter().find(|(w, _)| *w == word) {
                    concept["coding"] = json!([{"system": codes::ROLE_CODE, "code": code}]);
                }
                concept
            }),
        )
        .set("condition", Some(json!([cond])))
        .note(body, "comment")
        .done()
}

/// The FHIR DocumentReference for an entry in documents, or a Media for an image
/// ([`super::IMAGE_TYPES`]). A file stored apart is linked by [`super::link_file`].
fn documents(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let mut att = Map::new();
    if let Some(mt) = t("media-type") {
        att.insert("contentType".into(), mt.into());
    }
    if let Some(Value::Bytes(b)) = body.get("data") {
        att.insert("data".into(), data_encoding::BASE64.encode(b).into());
        att.insert("size".into(), b.len().into());
    }
    if let Some(u) = t("url") {
        att.insert("url".into(), u.into());
    }
    if let Some(ti) = t("title") {
        att.insert("title".into(), ti.into());
    }
    if let Some(d) = t("date") {
        att.insert("creation".into(), d.into());
    }
    if super::attach::is_image(body) {
        let modality = t("dicom-modality")
            .map(|m| json!({"coding": [{"system": super::DICOM_SYSTEM, "code": m}]}));
        return R::new("Media", e)
            .set("status", Some("completed".into()))
            .set(
                "type",
                Some(json!({"coding": [{"system": super::MEDIA_TYPE_SYSTEM,
                                        "code": "image", "display": "Image"}]})),
            )
            .set("modality", modality)
            .patient("subject", p)
            .set("createdDateTime", t("date").map(Json::String))
            .set("content", Some(Json::Object(att)))
            .note(body, "description")
            .done();
    }
    R::new("DocumentReference", e)
        .set("status", Some("current".into()))
        .set("type", t("description").map(|d| cc(&d)))
        .patient("subject", p)
        .set("description", t("title").map(Json::String))
        .set(
            "content",
            Some(json!([{ "attachment": Json::Object(att) }])),
        )
        .done()
}

/// The FHIR resource for an entry in questionnaires: a published questionnaire is its
/// Questionnaire (as published, with the entry's id); a response, a QuestionnaireResponse.
/// A response to a questionnaire published in cophr names it `Questionnaire/<entry>`, its
/// items by linkId, a text answer as the option's code (`valueCoding`), and carries its
/// band and the questionnaire's title in cophr extensions.
fn questionnaires(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    use crate::care::questionnaire::{DEFINITION, DEFINITION_ENTRY};
    if let Some(Ok(Json::Object(mut q))) =
        text(body, DEFINITION).map(|d| serde_json::from_str::<Json>(&d))
    {
        q.insert("id".into(), e.to_string().into());
        return Json::Object(q);
    }
    let t = |k: &str| text(body, k);
    let linked = t(DEFINITION_ENTRY);
    let mut items = Vec::new();
    if let Some(Value::List(answers)) = body.get("answers") {
        for (i, a) in answers.iter().enumerate() {
            let q = a.get("question").and_then(Value::as_text).unwrap_or("?");
            let v = match a.get("answer") {
                Some(Value::Bool(b)) => json!({ "valueBoolean": b }),
                Some(Value::Int(n)) => json!({ "valueInteger": n }),
                Some(Value::Float(x)) => json!({ "valueDecimal": x }),
                Some(Value::Text(s)) if linked.is_some() => json!({ "valueCoding": {"code": s} }),
                Some(Value::Text(s)) => json!({ "valueString": s }),
                _ => continue,
            };
            if linked.is_some() {
                items.push(json!({"linkId": q, "answer": [v]}));
            } else {
                items.push(json!({"linkId": (i + 1).to_string(), "text": q, "answer": [v]}));
            }
        }
    }
    let mut ext = Vec::new();
    if let Some(s) = body.get("score") {
        ext.push(extension("score", s.to_json()));
    }
    if linked.is_some() {
        if let Some(b) = t("band") {
            ext.push(extension("band", b.into()));
        }
        if let Some(q) = t("questionnaire") {
            ext.push(extension("questionnaire-title", q.into()));
        }
    }
    let questionnaire = match &linked {
        Some(id) => Some(format!("Questionnaire/{id}")),
        None => t("questionnaire"),
    };
    R::new("QuestionnaireResponse", e)
        .set("extension", (!ext.is_empty()).then_some(Json::Array(ext)))
        .set("status", Some("completed".into()))
        .set("questionnaire", questionnaire.map(Json::String))
        .patient("subject", p)
        .set("authored", dt(body, "completed"))
        .set("item", Some(Json::Array(items)))
        .done()
}

/// The FHIR Communication for an entry in messages.
fn messages(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let communication = |k: &str| {
        t(k).filter(|x| x.parse::<EntryId>().is_ok())
            .map(|x| json!([{ "reference": format!("Communication/{x}") }]))
    };
    // A conversation (`care::thread`): a thread's start names its recipients; a message
    // in it is part of the start's Communication and answers the one it replies to.
    let recipients: Vec<Json> = body
        .texts(crate::care::thread::PARTICIPANTS)
        .iter()
        .map(|a| actor_ref(a))
        .collect();
    R::new("Communication", e)
        .set("status", Some("completed".into()))
        .set("partOf", communication(crate::care::thread::THREAD))
        .set(
            "inResponseTo",
            communication(crate::care::thread::IN_REPLY_TO),
        )
        .patient("subject", p)
        .set("topic", ct("subject"))
        .set(
            "recipient",
            (!recipients.is_empty()).then_some(Json::Array(recipients)),
        )
        .set(
            "payload",
            t("text").map(|x| json!([{ "contentString": x }])),
        )
        .done()
}

/// A reference to a cophr actor, by its id as an identifier.
fn actor_ref(id: &str) -> Json {
    json!({"identifier": {"system": codes::COPHR_ACTOR, "value": id}})
}

/// The FHIR Appointment for an entry in appointments: the patient, the people named
/// (actor ids as identifiers, names as displays) and the place (a Location participant by
/// display) as participants; reminders as cophr extensions, one each.
fn appointments(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let list = |k: &str| body.texts(k);
    let mut participants =
        vec![json!({"actor": {"reference": format!("Patient/{p}")}, "status": "accepted"})];
    for w in list("with") {
        let actor = if w.parse::<crate::ids::ActorId>().is_ok() {
            actor_ref(&w)
        } else {
            json!({ "display": w })
        };
        participants.push(json!({"actor": actor, "status": "accepted"}));
    }
    if let Some(place) = t("place") {
        participants
            .push(json!({"actor": {"type": "Location", "display": place}, "status": "accepted"}));
    }
    let reminders: Vec<Json> = list("reminders")
        .into_iter()
        .map(|r| extension("reminder", r.into()))
        .collect();
    R::new("Appointment", e)
        .set(
            "extension",
            (!reminders.is_empty()).then_some(Json::Array(reminders)),
        )
        .set("status", t("status").map(Json::from))
        .set("description", t("description").map(Json::from))
        .set("start", t("start").map(Json::from))
        .set("end", t("end").map(Json::from))
        .set("comment", t("comment").map(Json::from))
        .set("participant", Some(Json::Array(participants)))
        .done()
}

/// The FHIR Task status of a cophr task status.
fn task_status(s: &str) -> &'static str {
    match s {
        "received" => "received",
        "accepted" => "accepted",
        "in-progress" => "in-progress",
        "completed" => "completed",
        "rejected" => "rejected",
        "cancelled" => "cancelled",
        _ => "requested",
    }
}

/// The FHIR Task for an entry in tasks: kind as its `code`, requester and owner as actor
/// identifiers, due as the restriction's period end. A referral's Task carries its
/// ServiceRequest `contained` (`#referral`) and names it by `basedOn`.
fn tasks(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let kind = t("kind").unwrap_or_else(|| "task".into());
    let status = t("status").unwrap_or_default();
    let contained = (kind == "referral").then(|| {
        let sr_status = match status.as_str() {
            "completed" => "completed",
            "rejected" | "cancelled" => "revoked",
            _ => "active",
        };
        let mut sr = Map::new();
        sr.insert("resourceType".into(), "ServiceRequest".into());
        sr.insert("id".into(), "referral".into());
        sr.insert("status".into(), sr_status.into());
        sr.insert("intent".into(), "order".into());
        if let Some(d) = t("description") {
            sr.insert("code".into(), cc(&d));
        }
        sr.insert(
            "subject".into(),
            json!({ "reference": format!("Patient/{p}") }),
        );
        if let Some(r) = t("requester") {
            sr.insert("requester".into(), actor_ref(&r));
        }
        if let Some(o) = t("owner") {
            sr.insert("performer".into(), json!([actor_ref(&o)]));
        }
        json!([Json::Object(sr)])
    });
    R::new("Task", e)
        .set("contained", contained.clone())
        .set(
            "basedOn",
            contained.map(|_| json!([{ "reference": "#referral" }])),
        )
        .set("status", Some(task_status(&status).into()))
        .set("intent", Some("order".into()))
        .set(
            "code",
            Some(
                json!({"coding": [{"system": codes::COPHR_TASK_KIND, "code": kind}], "text": kind}),
            ),
        )
        .set("description", t("description").map(Json::from))
        .patient("for", p)
        .set("requester", t("requester").map(|r| actor_ref(&r)))
        .set("owner", t("owner").map(|o| actor_ref(&o)))
        .set(
            "restriction",
            t("due").map(|d| json!({ "period": { "end": d } })),
        )
        .note(body, "note")
        .done()
}

/// The FHIR Basic for an entry in about-me or an extension category.
fn about_me(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    let fields: Vec<String> = body
        .as_map()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_text().map(|t| format!("{k}: {t}")))
                .collect()
        })
        .unwrap_or_default();
    // Each text or number field also as cophr's extension, so it imports back whole.
    let extensions: Vec<Json> = body
        .as_map()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| match v {
                    Value::Text(t) => Some(extension(k, Json::String(t.clone()))),
                    Value::Int(_) | Value::Float(_) => Some(extension(k, v.to_json())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    R::new("Basic", e)
        .set("code", Some(json!({"coding": [{"system": COPHR_CATEGORY, "code": c.name()}], "text": fields.join("; ")})))
        .patient("subject", p)
        .set("extension", (!extensions.is_empty()).then_some(Json::Array(extensions)))
        .done()
}
