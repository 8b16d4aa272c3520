//! Untrusted FHIR input gets a precise error (and its OperationOutcome issue code); entries
//! not imported from FHIR, or amended since, export as resources built from their fields.

use std::collections::BTreeMap;

use cophr_protocol::fhir::{self, ExportMeta, FhirError};
use cophr_protocol::{schema, ActorId, Category, EntryId, Value};
use serde_json::{json, Value as Json};

fn err(r: Json) -> FhirError {
    fhir::import(&r, None).expect_err("must be refused")
}

fn obs() -> Json {
    json!({"resourceType": "Observation", "id": "hr", "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
           "subject": {"reference": "Patient/example"},
           "effectiveDateTime": "2026-11-22T10:15:00Z",
           "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

#[test]
fn a_valid_observation_maps_to_vital_signs() {
    let i = fhir::import(&obs(), Some("GP system")).expect("import");
    assert_eq!(i.category, Category::VitalSigns);
    assert_eq!(i.resource_type, "Observation");
    assert_eq!(i.id.as_deref(), Some("hr"));
    assert_eq!(
        i.body.get("heart-rate").map(Value::to_json),
        Some(json!({"value": 72, "unit": "/min"}))
    );
    assert_eq!(
        i.body.get("measured-at").and_then(Value::as_text),
        Some("2026-11-22T10:15:00Z")
    );
    assert_eq!(
        i.body.get("fhir-source").and_then(Value::as_text),
        Some("GP system")
    );
    assert_eq!(
        fhir::category_for("Observation", &obs()),
        Some(Category::VitalSigns)
    );
    assert_eq!(fhir::category_for("Patient", &obs()), None);
    let keys = fhir::search_keys(&i.category, &i.body);
    assert_eq!(
        keys.codes,
        vec![(Some("http://loinc.org".into()), "8867-4".into())]
    );
    assert_eq!(keys.category_codes, vec!["vital-signs".to_owned()]);
    assert_eq!(keys.date.as_deref(), Some("2026-11-22T10:15:00Z"));
}

#[test]
fn an_impossible_value_is_refused_naming_the_element() {
    let mut r = obs();
    r["valueQuantity"]["value"] = json!(4000);
    let e = fhir::import(&r, None).expect_err("impossible");
    assert!(matches!(e, FhirError::Impossible { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.valueQuantity.value"));
    assert_eq!(e.issue_code(), "value");
}

#[test]
fn each_kind_of_bad_input_is_named() {
    let e = fhir::parse(b"{not json").expect_err("not json");
    assert!(matches!(e, FhirError::NotJson { .. }), "{e}");
    assert_eq!(e.issue_code(), "structure");

    let e = err(json!([1, 2]));
    assert!(matches!(e, FhirError::WrongType { .. }), "{e}");
    let e = err(json!({"status": "final"}));
    assert!(matches!(e, FhirError::NoResourceType { .. }), "{e}");
    assert_eq!(e.issue_code(), "required");
    let e = err(json!({"resourceType": "Spaceship"}));
    assert_eq!(e.to_string(), "`Spaceship` is not a FHIR R4 resource type");
    assert_eq!(e.issue_code(), "value");
    let e = err(json!({"resourceType": "OperationOutcome", "issue": []}));
    assert!(e.is_unmapped(), "{e}");
    assert_eq!(e.issue_code(), "not-supported");

    let mut r = obs();
    r.as_object_mut().expect("obj").remove("status");
    let e = err(r);
    assert_eq!(e.to_string(), "Observation.status is required");
    assert_eq!(e.path(), Some("Observation.status"));

    let mut r = obs();
    r["code"] = json!("heart rate");
    let e = err(r);
    assert_eq!(
        e.to_string(),
        "Observation.code must be an object (got a string)"
    );

    let mut r = obs();
    r["code"]["coding"][0]["display"] = json!(5);
    let e = err(r);
    assert_eq!(
        e.to_string(),
        "Observation.code.coding[0].display must be a string (got a number)"
    );

    let mut r = obs();
    r["id"] = json!("no spaces allowed");
    assert!(matches!(err(r), FhirError::BadValue { .. }));

    let mut r = obs();
    r["effectiveDateTime"] = json!("2020-13-01");
    let e = err(r);
    assert!(
        matches!(&e, FhirError::BadValue { path, .. } if path == "Observation.effectiveDateTime"),
        "{e}"
    );

    let mut r = obs();
    r["note"] = json!([{"text": "x".repeat(fhir::MAX_RESOURCE)}]);
    let e = err(r);
    assert!(matches!(e, FhirError::TooLarge { .. }), "{e}");
    assert_eq!(e.issue_code(), "too-long");

    let e = err(json!({"resourceType": "AllergyIntolerance", "code": {"text": "Peanut"}}));
    assert_eq!(e.to_string(), "AllergyIntolerance.patient is required");
    let e = err(
        json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"text": "Flu"}, "patient": {"reference": "Patient/x"}}),
    );
    assert_eq!(e.to_string(), "Immunization.occurrence[x] is required");
}

#[test]
fn bundles_and_ndjson_are_checked() {
    let b = json!({"resourceType": "Bundle", "type": "history", "entry": []});
    let e = fhir::bundle_items(&b).expect_err("history");
    assert!(matches!(e, FhirError::UnsupportedBundle { .. }), "{e}");
    let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": obs(), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Observation/1"}}]});
    let e = fhir::bundle_items(&b).expect_err("delete");
    assert!(
        matches!(&e, FhirError::Unsupported { path, .. } if path == "Bundle.entry[1].request.method"),
        "{e}"
    );
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": obs()}, {"fullUrl": "urn:uuid:2"}]});
    let e = fhir::bundle_items(&b).expect_err("no resource");
    assert_eq!(e.to_string(), "Bundle.entry[1].resource is required");
    let b = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": obs(), "request": {"method": "PUT", "url": "Observation/hr"}}]});
    let items = fhir::bundle_items(&b).expect("batch");
    assert_eq!(items[0].method.as_deref(), Some("PUT"));
    assert_eq!(items[0].full_url.as_deref(), Some("urn:uuid:1"));

    let nd = format!("{}\n\n{}\n[1]\n", obs(), obs());
    let e = fhir::parse_ndjson(nd.as_bytes()).expect_err("line 4");
    assert!(matches!(e, FhirError::Line { line: 4, .. }), "{e}");
    let nd = format!("{}\n{{\"a\": \n", obs());
    let e = fhir::parse_ndjson(nd.as_bytes()).expect_err("line 2");
    assert!(e.to_string().starts_with("line 2: not valid JSON"), "{e}");
    assert_eq!(
        fhir::parse_ndjson(format!("{}\n{}", obs(), obs()).as_bytes())
            .expect("ok")
            .len(),
        2
    );
}

#[test]
fn amended_or_native_entries_export_from_their_fields() {
    let p = ActorId([1; 32]);
    let e = EntryId([2; 32]);
    let mut i = fhir::import(&obs(), None).expect("import");
    let Value::Map(m) = &mut i.body else {
        panic!("map")
    };
    m.insert(
        "heart-rate".into(),
        Value::from_json(&json!({"value": 80, "unit": "/min"})),
    );
    assert!(fhir::original(&i.category, &i.body).is_none());
    let out = fhir::export(&p, &e, &i.category, &i.body, &ExportMeta::default()).expect("export");
    assert_eq!(out["resourceType"], "Observation");
    assert_eq!(out["id"], e.to_string());
    // One measurement: an Observation of its LOINC code.
    assert_eq!(out["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(out["valueQuantity"]["value"], 80);
    assert_eq!(out["subject"]["reference"], format!("Patient/{p}"));

    // Every built-in category exports a resource of one of its types.
    let samples: BTreeMap<&str, Json> = BTreeMap::from([
        ("about-me", json!({"thing-1": "Deaf in my left ear"})),
        ("alerts", json!({"alert": "Pacemaker"})),
        (
            "demographics",
            json!({"surname": "Jones", "forename": "George", "date-of-birth": "1950-03-01"}),
        ),
        (
            "key-contacts",
            json!({"name": "Mary Jones", "relationship": "main-carer"}),
        ),
        ("preferences", json!({"language": "Welsh"})),
        (
            "allergies",
            json!({"agent": "Penicillin", "reaction": "rash", "severity": "severe"}),
        ),
        (
            "problems",
            json!({"problem": "Type 2 diabetes", "onset": "2019"}),
        ),
        ("procedures", json!({"procedure": "Appendicectomy"})),
        (
            "medications",
            json!({"medication": "Metformin", "start": "2019-06", "stop": "2020"}),
        ),
        (
            "immunisations",
            json!({"immunisation": "Flu", "date": "2025-10-01"}),
        ),
        (
            "vital-signs",
            json!({"systolic": {"value": 140, "unit": "mm[Hg]"}, "diastolic": {"value": 90, "unit": "mm[Hg]"}}),
        ),
        ("wearables", json!({"steps": 9000})),
        (
            "lab-results",
            json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol"}),
        ),
        (
            "investigations",
            json!({"investigation": "Chest X-ray", "result": "Clear"}),
        ),
        (
            "examinations",
            json!({"weight": {"value": 80, "unit": "kg"}}),
        ),
        ("lifestyle", json!({"smoking": "former"})),
        (
            "family-history",
            json!({"condition": "Breast cancer", "relative": "mother", "genomic-markers": ["BRCA1"]}),
        ),
        (
            "documents",
            json!({"title": "Letter", "url": "https://example.org/letter.pdf"}),
        ),
        (
            "questionnaires",
            json!({"questionnaire": "EQ-5D", "answers": [{"question": "Mobility", "answer": 1}]}),
        ),
        ("messages", json!({"text": "See you Tuesday"})),
        (
            "appointments",
            json!({"status": "booked", "start": "2026-12-10T09:30:00Z"}),
        ),
        (
            "tasks",
            json!({"kind": "task", "description": "Call George", "status": "sent",
                "requester": ActorId([1; 32]).to_string(), "owner": ActorId([2; 32]).to_string()}),
        ),
    ]);
    for c in Category::BUILT_IN.iter() {
        let body = schema::body_from_json(c, &samples[c.name()]).expect("sample body");
        let out = fhir::export(&p, &e, c, &body, &ExportMeta::default()).expect("export");
        let ty = out["resourceType"].as_str().expect("type");
        assert!(fhir::types_for(c).contains(&ty), "{c}: {ty}");
        assert_eq!(out["id"], e.to_string());
    }
}

#[test]
fn linking_the_patient_changes_only_the_reference() {
    let i = fhir::import(&obs(), None).expect("import");
    let p = ActorId([1; 32]);
    let out = fhir::export(
        &p,
        &EntryId([2; 32]),
        &i.category,
        &i.body,
        &ExportMeta {
            ids: fhir::IdPolicy::Entry,
            link_patient: true,
        },
    )
    .expect("export");
    assert_eq!(out["subject"], json!({"reference": format!("Patient/{p}")}));
    let mut back = out.clone();
    back["subject"] = obs()["subject"].clone();
    back["id"] = json!("hr");
    assert_eq!(back, obs());
}

#[test]
fn social_history_and_lab_values_map_to_their_fields() {
    let smoking = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2", "display": "Tobacco smoking status"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA18978-9", "display": "Never smoker"}]}});
    let i = fhir::import(&smoking, None).expect("import");
    assert_eq!(i.category, Category::Lifestyle);
    assert_eq!(
        i.body.get("smoking").and_then(Value::as_text),
        Some("never")
    );

    let lab = json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"text": "HbA1c"},
        "valueQuantity": {"value": 48, "comparator": ">", "unit": "mmol/mol"},
        "interpretation": [{"coding": [{"code": "H"}]}],
        "referenceRange": [{"low": {"value": 20, "unit": "mmol/mol"}, "high": {"value": 42, "unit": "mmol/mol"}}]});
    let i = fhir::import(&lab, None).expect("import");
    assert_eq!(i.category, Category::LabResults);
    assert_eq!(i.body.get("result").and_then(Value::as_text), Some(">48"));
    assert_eq!(
        i.body.get("unit").and_then(Value::as_text),
        Some("mmol/mol")
    );
    assert_eq!(
        i.body.get("interpretation").and_then(Value::as_text),
        Some("high")
    );
    assert_eq!(
        i.body.get("reference-range").and_then(Value::as_text),
        Some("20 mmol/mol to 42 mmol/mol")
    );
}

#[test]
fn the_original_resource_field_must_hold_a_json_object() {
    let body = |text: &str| {
        schema::body_from_json(
            &Category::Allergies,
            &json!({"agent": "Peanut", "fhir-resource": text}),
        )
    };
    body(r#"{"resourceType": "AllergyIntolerance"}"#).expect("an object");
    for bad in ["[1, 2]", "{\"a\": ", "  42", ""] {
        assert!(body(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn named_references_are_kept_and_read_back_with_the_original() {
    let names: fhir::Names = [
        json!({"resourceType": "Practitioner", "id": "p1",
               "name": [{"given": ["Anna"], "family": "Smith"}]}),
        json!({"resourceType": "Encounter", "id": "v1", "status": "finished",
               "class": {"code": "AMB"}, "type": [{"text": "Review\tvisit"}],
               "period": {"start": "2026-03-02T09:30:00Z"}}),
        json!({"resourceType": "Medication", "id": "m1", "code": {"text": "Metformin"}}),
        // Not a named type: no name.
        json!({"resourceType": "Patient", "id": "x", "name": [{"family": "Jones"}]}),
    ]
    .iter()
    .flat_map(|r| fhir::reference_names(r, None))
    .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names["Encounter/v1"].name, "Review visit (2026-03-02)");
    let req = json!({"resourceType": "MedicationRequest", "status": "active",
        "intent": "order", "medicationReference": {"reference": "Medication/m1"},
        "requester": {"reference": "Practitioner/p1"},
        "encounter": {"reference": "Encounter/v1"},
        "note": [{"text": "x"}],
        "subject": {"reference": "Patient/x"}});
    let meta = fhir::ImportMeta {
        names: Some(&names),
        ..fhir::ImportMeta::default()
    };
    let i = fhir::import_with(&req, &meta).expect("import");
    assert_eq!(
        i.body.get("medication").and_then(Value::as_text),
        Some("Metformin")
    );
    let kept = i
        .body
        .get(schema::FHIR_NAMES)
        .and_then(Value::as_text)
        .expect("names kept");
    assert_eq!(fhir::kept_names(kept).len(), 3, "{kept}");
    let summary = schema::summary(&i.category, &i.body);
    assert!(
        summary.starts_with("Metformin")
            && summary.contains("Practitioner: Anna Smith")
            && summary.contains("Encounter: Review visit (2026-03-02)")
            && !summary.contains("Medication:"),
        "{summary}"
    );
    // The entry still reads back as the resource it came from.
    assert_eq!(fhir::original(&i.category, &i.body), Some(req));
}
