//! FHIR resources built from an entry's fields, for entries not imported from FHIR (or
//! amended since): one resource type per category, codes as text, quantities with UCUM.

use serde_json::{json, Map, Value as Json};

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

/// LOINC code and display of measurement fields.
const LOINC: &[(&str, &str, &str)] = &[
    ("respiration-rate", "9279-1", "Respiratory rate"),
    (
        "spo2",
        "59408-5",
        "Oxygen saturation in Arterial blood by Pulse oximetry",
    ),
    ("heart-rate", "8867-4", "Heart rate"),
    ("temperature", "8310-5", "Body temperature"),
    ("systolic", "8480-6", "Systolic blood pressure"),
    ("diastolic", "8462-4", "Diastolic blood pressure"),
    (
        "blood-glucose",
        "15074-8",
        "Glucose [Moles/volume] in Blood",
    ),
    ("steps", "41950-7", "Number of steps in 24 hour Measured"),
    ("height", "8302-2", "Body height"),
    ("weight", "29463-7", "Body weight"),
    ("bmi", "39156-5", "Body mass index (BMI) [Ratio]"),
    (
        "waist",
        "8280-0",
        "Waist Circumference at umbilicus by Tape measure",
    ),
    (
        "head-circumference",
        "9843-4",
        "Head Occipital-frontal circumference",
    ),
    ("hip-circumference", "62409-8", "Hip circumference"),
    ("body-surface-area", "8277-6", "Body surface area"),
    ("smoking", "72166-2", "Tobacco smoking status"),
    ("alcohol", "74013-4", "Alcoholic drinks per day"),
    ("occupation", "11341-5", "History of Occupation"),
    ("housing", "71802-3", "Housing status"),
    ("education", "82589-3", "Highest level of education"),
];

fn text(body: &Value, k: &str) -> Option<String> {
    body.get(k).and_then(Value::as_text).map(str::to_owned)
}

fn cc(t: &str) -> Json {
    json!({ "text": t })
}

fn quantity(q: &Value) -> Option<Json> {
    let v = q.get("value")?.to_json();
    let unit = q.get("unit")?.as_text()?;
    Some(json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}))
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
        Category::VitalSigns
        | Category::Wearables
        | Category::Examinations
        | Category::Lifestyle => observations(p, e, c, body),
        Category::LabResults => lab_results(p, e, body),
        Category::Investigations => investigations(p, e, body),
        Category::FamilyHistory => family_history(p, e, body),
        Category::Documents => documents(p, e, body),
        Category::Questionnaires => questionnaires(p, e, body),
        Category::Messages => messages(p, e, body),
        Category::AboutMe | Category::Extension(_) => about_me(p, e, c, body),
    }
}

/// The FHIR Patient for an entry in demographics.
fn demographics(e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let mut name = Map::new();
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
            t("relationship").map(|r| json!([{ "text": r }])),
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
    R::new("Flag", e)
        .set("status", Some("active".into()))
        .set("code", ct("alert"))
        .patient("subject", p)
        .done()
}

/// The FHIR Consent for an entry in preferences.
fn preferences(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let parts: Vec<String> = schema::schema(c)
        .map(|s| {
            s.fields
                .iter()
                .filter_map(|f| t(f.name).map(|v| format!("{}: {v}", f.title)))
                .collect()
        })
        .unwrap_or_default();
    R::new("Consent", e)
        .set("status", Some("active".into()))
        .set("scope", Some(json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}], "text": "Preferences"})))
        .set("category", Some(json!([{ "text": parts.join("; ") }])))
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

/// The FHIR Observation for an entry in vital signs, wearables, examinations or lifestyle.
fn observations(p: &RecordId, e: &EntryId, c: &Category, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let cat = observation_category(c).unwrap_or("vital-signs");
    let mut components = Vec::new();
    for (field, code, display) in LOINC {
        let Some(v) = body.get(field) else { continue };
        let code =
            json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}]});
        let value = match v {
            Value::Map(_) => quantity(v).map(|q| ("valueQuantity", q)),
            Value::Int(i) => Some(("valueQuantity", json!({"value": i}))),
            Value::Text(s) => Some(("valueCodeableConcept", cc(s))),
            _ => None,
        };
        if let Some((k, v)) = value {
            let mut comp = json!({ "code": code });
            comp[k] = v;
            components.push(comp);
        }
    }
    let when = t("measured-at");
    R::new("Observation", e)
        .set("status", Some("final".into()))
        .set("category", Some(json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": cat}]}])))
        .set("code", Some(cc(c.title())))
        .patient("subject", p)
        .set("effectiveDateTime", when.map(Json::String))
        .set("component", Some(Json::Array(components)))
        .set("device", t("device").map(|d| json!({ "display": d })))
        .set("bodySite", ct("position"))
        .note(body, "comment")
        .done()
}

/// The FHIR Observation for an entry in lab results.
fn lab_results(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let status = match t("status").as_deref() {
        Some("preliminary") => "preliminary",
        Some("amended") => "amended",
        _ => "final",
    };
    R::new("Observation", e)
        .set("status", Some(status.into()))
        .set("category", Some(json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}])))
        .set("code", ct("test"))
        .patient("subject", p)
        .set("effectiveDateTime", dt(body, "collected"))
        .set("issued", dt(body, "reported"))
        .set(
            "valueString",
            t("result").map(|r| match t("unit") {
                Some(u) => format!("{r} {u}").into(),
                None => r.into(),
            }),
        )
        .set("interpretation", t("interpretation").map(|i| json!([cc(&i)])))
        .set("referenceRange", t("reference-range").map(|r| json!([{ "text": r }])))
        .note(body, "comment")
        .done()
}

/// The FHIR DiagnosticReport for an entry in investigations.
fn investigations(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    R::new("DiagnosticReport", e)
        .set("status", Some("final".into()))
        .set("category", ct("kind").map(|k| json!([k])))
        .set("code", ct("investigation"))
        .patient("subject", p)
        .set("effectiveDateTime", dt(body, "date"))
        .set("conclusion", t("result").map(Json::String))
        .done()
}

/// The FHIR FamilyMemberHistory for an entry in family history.
fn family_history(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    let mut cond = json!({"code": cc(&t("condition").unwrap_or_default())});
    if let Some(Value::List(m)) = body.get("genomic-markers") {
        let markers: Vec<String> = m
            .iter()
            .filter_map(Value::as_text)
            .map(str::to_owned)
            .collect();
        cond["note"] = json!([{ "text": format!("Genomic markers: {}", markers.join(", ")) }]);
    }
    R::new("FamilyMemberHistory", e)
        .set("status", Some("completed".into()))
        .patient("patient", p)
        .set("relationship", ct("relative"))
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
        .patient("subject", p)
        .set("date", t("date").map(Json::String))
        .set("description", t("title").map(Json::String))
        .set(
            "content",
            Some(json!([{ "attachment": Json::Object(att) }])),
        )
        .done()
}

/// The FHIR QuestionnaireResponse for an entry in questionnaires.
fn questionnaires(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let mut items = Vec::new();
    if let Some(Value::List(answers)) = body.get("answers") {
        for (i, a) in answers.iter().enumerate() {
            let q = a.get("question").and_then(Value::as_text).unwrap_or("?");
            let v = match a.get("answer") {
                Some(Value::Bool(b)) => json!({ "valueBoolean": b }),
                Some(Value::Int(n)) => json!({ "valueInteger": n }),
                Some(Value::Float(x)) => json!({ "valueDecimal": x }),
                Some(Value::Text(s)) => json!({ "valueString": s }),
                _ => continue,
            };
            items.push(json!({"linkId": (i + 1).to_string(), "text": q, "answer": [v]}));
        }
    }
    R::new("QuestionnaireResponse", e)
        .set("status", Some("completed".into()))
        .set("questionnaire", t("questionnaire").map(Json::String))
        .patient("subject", p)
        .set("authored", dt(body, "completed"))
        .set("item", Some(Json::Array(items)))
        .done()
}

/// The FHIR Communication for an entry in messages.
fn messages(p: &RecordId, e: &EntryId, body: &Value) -> Json {
    let t = |k: &str| text(body, k);
    let ct = |k: &str| t(k).map(|v| cc(&v));
    R::new("Communication", e)
        .set("status", Some("completed".into()))
        .patient("subject", p)
        .set("topic", ct("subject"))
        .set(
            "payload",
            t("text").map(|x| json!([{ "contentString": x }])),
        )
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
    R::new("Basic", e)
        .set("code", Some(json!({"coding": [{"system": "https://cophr.invalid/category", "code": c.name()}], "text": fields.join("; ")})))
        .patient("subject", p)
        .done()
}
