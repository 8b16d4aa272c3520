//! Round trip within cophr: an entry written in cophr (not imported from FHIR) exports as a
//! FHIR resource carrying standard codes (LOINC, SNOMED CT, HL7 code systems) and imports
//! back, on another node, into the same category with the same fields — for every category
//! with a FHIR mapping, and for each vital sign and examination on its own.

use cophr_protocol::fhir::{self, ExportMeta};
use cophr_protocol::{schema, ActorId, Category, EntryId, Value};
use serde_json::{json, Value as Json};

fn q(value: f64, unit: &str) -> Json {
    json!({"value": value, "unit": unit})
}

/// Entries as a person would write them, with every field the category's FHIR mapping
/// carries.
fn examples() -> Vec<(Category, Json)> {
    use Category as C;
    vec![
        (
            C::Demographics,
            json!({"surname": "Smith", "forename": "Jane", "preferred-name": "Janey",
                "date-of-birth": "1959-02-28", "gender": "female", "address": "1 High St\nLeeds",
                "telephone": "0113 496 0000", "email": "jane@example.org"}),
        ),
        (
            C::KeyContacts,
            json!({"name": "John Smith", "relationship": "next-of-kin",
                "telephone": "0113 496 0001", "email": "john@example.org",
                "address": "2 High St\nLeeds"}),
        ),
        (
            C::KeyContacts,
            json!({"name": "Ann Carer", "relationship": "formal-carer"}),
        ),
        (
            C::KeyContacts,
            json!({"name": "Bob Helper", "relationship": "main-carer"}),
        ),
        (
            C::Alerts,
            json!({"alert": "Metallic hip implant", "detail": "No MRI", "severity": "high"}),
        ),
        (
            C::Preferences,
            json!({"organ-donation": "yes", "language": "Welsh",
                "communication-needs": "Hearing loop", "reasonable-adjustments": "Quiet room",
                "religion-culture": "Vegetarian", "consent": "Share with my GP"}),
        ),
        (
            C::Allergies,
            json!({"agent": "Penicillin", "reaction": "rash", "severity": "severe",
                "onset": "2019", "criticality": "high", "comment": "Since childhood"}),
        ),
        (
            C::Problems,
            json!({"problem": "Type 2 diabetes", "description": "Diet controlled",
                "onset": "2019-05", "resolved": "2020-01-02", "status": "resolved"}),
        ),
        (
            C::Procedures,
            json!({"procedure": "Appendicectomy", "description": "Keyhole",
                "body-site": "Abdomen", "outcome": "good", "difficulty": "routine",
                "complication": "none", "procedure-type": "surgical", "date": "2001-07-14"}),
        ),
        (
            C::Medications,
            json!({"medication": "Metformin 500 mg tablets", "form": "tablet", "route": "oral",
                "dose": "one twice a day", "patient-information": "Take with food",
                "monitoring": "HbA1c every 6 months", "indication": "Type 2 diabetes",
                "start": "2019-06", "stop": "2024-01-01", "status": "stopped"}),
        ),
        (
            C::Medications,
            json!({"medication": "Ramipril 5 mg", "status": "not-taking"}),
        ),
        (
            C::Immunisations,
            json!({"immunisation": "Influenza", "status": "completed", "date": "2025-10-01"}),
        ),
        (
            C::VitalSigns,
            json!({"systolic": q(140.0, "mm[Hg]"), "diastolic": q(90.0, "mm[Hg]"),
                "measured-at": "2026-11-22T10:15:00Z", "position": "sitting",
                "comment": "After a walk"}),
        ),
        (
            C::VitalSigns,
            json!({"systolic": q(128.0, "mm[Hg]"), "diastolic": q(82.0, "mm[Hg]"),
                "heart-rate": q(72.0, "/min"), "temperature": q(37.2, "Cel"),
                "respiration-rate": q(14.0, "/min"), "spo2": q(97.0, "%"),
                "blood-glucose": q(5.4, "mmol/L"), "measured-at": "2026-11-22T10:15:00Z"}),
        ),
        (
            C::Wearables,
            json!({"heart-rate": q(64.0, "/min"), "steps": 8042, "device": "wristband",
                "measured-at": "2026-11-22T10:15:00.123+01:00"}),
        ),
        (
            C::Wearables,
            json!({"systolic": q(120.0, "mm[Hg]"), "diastolic": q(80.0, "mm[Hg]"),
                "spo2": q(98.0, "%"), "blood-glucose": q(99.0, "mg/dL")}),
        ),
        (C::Wearables, json!({"steps": 12000})),
        (
            C::LabResults,
            json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol",
                "interpretation": "high", "reference-range": "20 to 41 mmol/mol",
                "status": "final", "collected": "2026-11-20T09:00:00Z",
                "reported": "2026-11-21T09:00:00Z", "comment": "Repeat in 3 months"}),
        ),
        (
            C::LabResults,
            json!({"test": "Serum potassium", "result": "<2.5", "unit": "mmol/L",
                "interpretation": "critical", "status": "amended"}),
        ),
        (
            C::LabResults,
            json!({"test": "Urine culture", "result": "No growth", "status": "preliminary"}),
        ),
        (
            C::Investigations,
            json!({"investigation": "Chest X-ray", "kind": "imaging",
                "result": "No abnormality detected.", "date": "2026-01-05"}),
        ),
        (
            C::Investigations,
            json!({"investigation": "12-lead ECG", "kind": "ecg", "result": "Sinus rhythm"}),
        ),
        (
            C::Investigations,
            json!({"investigation": "Spirometry", "kind": "pulmonary-function",
                "result": "FEV1/FVC 0.65"}),
        ),
        (
            C::Investigations,
            json!({"investigation": "Snellen chart", "kind": "visual-acuity",
                "result": "6/6 both eyes"}),
        ),
        (
            C::Investigations,
            json!({"investigation": "Dipstick", "kind": "urinalysis", "result": "Protein +"}),
        ),
        (
            C::Investigations,
            json!({"investigation": "Sleep study", "kind": "other", "result": "Mild apnoea"}),
        ),
        (
            C::Examinations,
            json!({"height": q(170.0, "cm"), "weight": q(70.5, "kg"), "bmi": q(24.4, "kg/m2"),
                "waist": q(82.0, "cm"), "head-circumference": q(56.0, "cm"),
                "hip-circumference": q(98.0, "cm"), "body-surface-area": q(1.82, "m2"),
                "measured-at": "2026-11-22T10:15:00Z"}),
        ),
        (
            C::Lifestyle,
            json!({"smoking": "former", "alcohol": "10 units/week", "housing": "Owns home",
                "occupation": "Teacher", "education": "Degree"}),
        ),
        (C::Lifestyle, json!({"smoking": "never"})),
        (C::Lifestyle, json!({"smoking": "current"})),
        (C::Lifestyle, json!({"smoking": "unknown"})),
        (C::Lifestyle, json!({"alcohol": "None"})),
        (
            C::FamilyHistory,
            json!({"condition": "Breast cancer", "relative": "mother",
                "genomic-markers": ["BRCA1", "BRCA2"], "comment": "Diagnosed at 45"}),
        ),
        (
            C::Documents,
            json!({"title": "Discharge letter", "media-type": "application/pdf",
                "data": "JVBERi0xLjcKJXRlc3QK", "date": "2026-03-04",
                "description": "From Leeds General"}),
        ),
        (
            C::Documents,
            json!({"title": "Leaflet", "url": "https://example.org/leaflet.pdf"}),
        ),
        (
            C::Questionnaires,
            json!({"questionnaire": "EQ-5D-5L",
                "answers": [{"question": "Mobility", "answer": 1},
                            {"question": "Anxious?", "answer": false},
                            {"question": "Comment", "answer": "fine"},
                            {"question": "Health today", "answer": 0.5}],
                "score": 0.86, "completed": "2026-11-22T10:15:00Z"}),
        ),
        (
            C::Questionnaires,
            json!({"questionnaire": "Generalized Anxiety Disorder (GAD-7)",
                "definition": cophr_protocol::care::questionnaire::canonical(
                    cophr_protocol::care::questionnaire::built_in("gad-7").unwrap()).unwrap()}),
        ),
        (
            C::Questionnaires,
            json!({"questionnaire": "Patient Health Questionnaire (PHQ-9)",
                "questionnaire-entry": EntryId([3; 32]).to_string(),
                "answers": [{"question": "phq9-1", "answer": "LA6569-3"},
                            {"question": "phq9-2", "answer": "LA6570-1"}],
                "score": 3, "band": "minimal", "completed": "2026-11-22T10:15:00Z"}),
        ),
        (
            C::Appointments,
            json!({"status": "booked", "start": "2026-12-10T09:30:00Z",
                "end": "2026-12-10T10:00:00Z", "description": "Renal clinic review",
                "place": "St James's, outpatients 4",
                "with": ["Dr Patel", ActorId([3; 32]).to_string()],
                "reminders": ["1d", "2h"], "comment": "Bring your BP diary"}),
        ),
        (
            C::Appointments,
            json!({"status": "cancelled", "start": "2026-12-10T09:30:00Z"}),
        ),
        (
            C::Tasks,
            json!({"kind": "referral", "description": "Please review: eGFR falling",
                "requester": ActorId([1; 32]).to_string(),
                "owner": ActorId([2; 32]).to_string(), "status": "received",
                "due": "2026-12-31", "note": "Urgent"}),
        ),
        (
            C::Tasks,
            json!({"kind": "blood-test-request", "description": "U&E and HbA1c at home",
                "requester": ActorId([2; 32]).to_string(),
                "owner": ActorId([4; 32]).to_string(), "status": "in-progress"}),
        ),
        (
            C::Tasks,
            json!({"kind": "task", "description": "Send the discharge letter",
                "requester": ActorId([2; 32]).to_string(),
                "owner": ActorId([1; 32]).to_string(), "status": "sent"}),
        ),
    ]
}

#[test]
fn a_published_questionnaire_exports_as_its_questionnaire_and_a_response_names_it() {
    use cophr_protocol::care::questionnaire::{built_in, Definition};
    let def = json!({"questionnaire": "Patient Health Questionnaire (PHQ-9)",
        "definition": cophr_protocol::care::questionnaire::canonical(built_in("phq-9").unwrap()).unwrap()});
    let out = round_trip(&Category::Questionnaires, &def);
    assert_eq!(out["resourceType"], "Questionnaire");
    assert_eq!(out["id"], EntryId([9; 32]).to_string());
    assert_eq!(
        Definition::from_json(&out).unwrap(),
        Definition::parse(built_in("phq-9").unwrap()).unwrap()
    );
    let resp = json!({"questionnaire": "PHQ-9", "questionnaire-entry": EntryId([9; 32]).to_string(),
        "answers": [{"question": "phq9-1", "answer": "LA6571-9"}], "score": 3, "band": "minimal"});
    let out = round_trip(&Category::Questionnaires, &resp);
    assert_eq!(
        out["questionnaire"],
        format!("Questionnaire/{}", EntryId([9; 32]))
    );
    assert_eq!(out["item"][0]["linkId"], "phq9-1");
    assert_eq!(
        out["item"][0]["answer"][0]["valueCoding"]["code"],
        "LA6571-9"
    );
    // A malformed Questionnaire is refused on import, naming what is wrong.
    let mut bad: Json = serde_json::from_str(built_in("gad-7").unwrap()).unwrap();
    bad["item"][1]["linkId"] = bad["item"][0]["linkId"].clone();
    let err = fhir::import(&bad, None).unwrap_err();
    assert!(err.to_string().contains("used by two items"), "{err}");
}

#[test]
fn a_referrals_service_request_imports_as_the_referral() {
    let body = json!({"kind": "referral", "description": "Please review: eGFR falling",
        "requester": ActorId([1; 32]).to_string(), "owner": ActorId([2; 32]).to_string(),
        "status": "sent"});
    let out = round_trip(&Category::Tasks, &body);
    assert_eq!(out["basedOn"][0]["reference"], "#referral");
    let sr = out["contained"][0].clone();
    assert_eq!(sr["resourceType"], "ServiceRequest");
    assert_eq!(sr["status"], "active");
    let imported = fhir::import(&sr, None).expect("the ServiceRequest imports");
    assert_eq!(imported.category, Category::Tasks);
    assert_eq!(fields(&imported.body), body);
}

/// Each vital sign and examination alone (one Observation with its own LOINC code).
fn single_measurements() -> Vec<(Category, Json)> {
    let mut out = Vec::new();
    for (field, v) in [
        ("heart-rate", q(72.0, "/min")),
        ("respiration-rate", q(16.0, "/min")),
        ("spo2", q(96.0, "%")),
        ("temperature", q(37.5, "Cel")),
        ("temperature", q(99.5, "[degF]")),
        ("blood-glucose", q(6.1, "mmol/L")),
    ] {
        out.push((Category::VitalSigns, json!({ field: v })));
    }
    for (field, v) in [
        ("height", q(170.0, "cm")),
        ("weight", q(70.5, "kg")),
        ("bmi", q(24.4, "kg/m2")),
        ("waist", q(82.0, "cm")),
        ("head-circumference", q(56.0, "cm")),
        ("hip-circumference", q(98.0, "cm")),
        ("body-surface-area", q(1.82, "m2")),
    ] {
        out.push((Category::Examinations, json!({ field: v })));
    }
    out
}

/// Numbers compared by value (`72` and `72.0` are one quantity).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn fields(body: &Value) -> Json {
    let mut j = body.to_json();
    if let Some(m) = j.as_object_mut() {
        m.retain(|k, _| !k.starts_with("fhir-"));
    }
    j
}

/// The LOINC code(s) of an exported Observation (its code and components).
fn loinc(r: &Json) -> Vec<String> {
    let mut out = Vec::new();
    let mut take = |cc: &Json| {
        for c in cc["coding"].as_array().into_iter().flatten() {
            if c["system"] == "http://loinc.org" {
                out.push(c["code"].as_str().unwrap_or_default().to_owned());
            }
        }
    };
    take(&r["code"]);
    for c in r["component"].as_array().into_iter().flatten() {
        take(&c["code"]);
    }
    out
}

fn round_trip(category: &Category, j: &Json) -> Json {
    let body = schema::body_from_json(category, j).unwrap_or_else(|e| panic!("{category}: {e}"));
    schema::validate(category, &body).unwrap_or_else(|e| panic!("{category}: {e}"));
    let (record, entry) = (ActorId([7; 32]), EntryId([9; 32]));
    let out = fhir::export(&record, &entry, category, &body, &ExportMeta::default())
        .unwrap_or_else(|e| panic!("{category}: export: {e}"));
    // Through JSON text, as it travels to another node.
    let text = serde_json::to_string(&out).expect("json");
    let back: Json = serde_json::from_str(&text).expect("json");
    let imported = fhir::import(&back, Some("another node"))
        .unwrap_or_else(|e| panic!("{category} {j}: import of {out:#}: {e}"));
    assert_eq!(
        &imported.category, category,
        "{j} exported as {out:#} imports as {}",
        imported.category
    );
    let got = fields(&imported.body);
    assert!(
        same(&got, &fields(&body)),
        "{category}: fields changed\n  wrote {j}\n  got   {got}\n  via   {out:#}"
    );
    assert_eq!(
        fhir::check(&back),
        Ok(vec![]),
        "{category}: cophr's own export flagged"
    );
    out
}

#[test]
fn every_mapped_category_round_trips_through_fhir() {
    let mut seen = std::collections::BTreeSet::new();
    for (c, j) in examples() {
        round_trip(&c, &j);
        seen.insert(c);
    }
    // Every built-in category whose FHIR type cophr imports is covered.
    for c in Category::BUILT_IN {
        let imports = schema::schema(&c)
            .expect("schema")
            .fhir
            .iter()
            .any(|t| fhir::MAPPED_TYPES.contains(t));
        assert_eq!(seen.contains(&c), imports, "{c}");
    }
}

#[test]
fn each_measurement_alone_round_trips_with_its_loinc_code() {
    for (c, j) in single_measurements() {
        let out = round_trip(&c, &j);
        assert!(out.get("valueQuantity").is_some(), "{j}: {out}");
        assert_eq!(loinc(&out).len(), 1, "{j}: {out}");
        let q = &out["valueQuantity"];
        assert_eq!(q["system"], "http://unitsofmeasure.org", "{out}");
    }
}

#[test]
fn exports_carry_standard_codes() {
    let by_field = |c: Category, j: Json| round_trip(&c, &j);
    let bp = by_field(
        Category::VitalSigns,
        json!({"systolic": q(140.0, "mm[Hg]"), "diastolic": q(90.0, "mm[Hg]")}),
    );
    assert_eq!(loinc(&bp), ["85354-9", "8480-6", "8462-4"], "{bp}");
    assert_eq!(
        bp["category"][0]["coding"][0]["code"], "vital-signs",
        "{bp}"
    );
    for (field, v, code) in [
        ("heart-rate", q(72.0, "/min"), "8867-4"),
        ("temperature", q(37.0, "Cel"), "8310-5"),
        ("respiration-rate", q(12.0, "/min"), "9279-1"),
        ("spo2", q(97.0, "%"), "59408-5"),
    ] {
        let o = by_field(Category::VitalSigns, json!({ field: v }));
        assert_eq!(loinc(&o), [code], "{o}");
    }
    for (field, v, code) in [
        ("weight", q(72.5, "kg"), "29463-7"),
        ("height", q(180.0, "cm"), "8302-2"),
        ("bmi", q(22.4, "kg/m2"), "39156-5"),
    ] {
        let o = by_field(Category::Examinations, json!({ field: v }));
        assert_eq!(loinc(&o), [code], "{o}");
    }
    let lab = by_field(
        Category::LabResults,
        json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol"}),
    );
    assert_eq!(loinc(&lab), ["59261-8"], "{lab}");
    assert_eq!(lab["valueQuantity"]["code"], "mmol/mol", "{lab}");
    assert_eq!(lab["category"][0]["coding"][0]["code"], "laboratory");
    let smoking = by_field(Category::Lifestyle, json!({"smoking": "former"}));
    assert_eq!(loinc(&smoking), ["72166-2"]);
    assert_eq!(
        smoking["valueCodeableConcept"]["coding"][0],
        json!({"system": "http://snomed.info/sct", "code": "8517006",
               "display": "Ex-smoker"})
    );
}
