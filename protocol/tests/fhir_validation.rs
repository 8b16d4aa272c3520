//! Validation a clinician can trust: each kind of invalid resource is refused with an
//! error naming the element, and implausible values are flagged and kept with the entry.

use cophr_protocol::fhir::{self, FhirError};
use cophr_protocol::schema::FHIR_WARNINGS;
use cophr_protocol::Value;
use serde_json::{json, Value as Json};

fn vital(code: &str, value: f64, unit: &str) -> Json {
    json!({
        "resourceType": "Observation",
        "id": "v1",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-22T10:15:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

fn lab(code: &str, value: f64, unit: &str) -> Json {
    let mut r = vital(code, value, unit);
    r["category"][0]["coding"][0]["code"] = json!("laboratory");
    r
}

fn refused(r: &Json) -> FhirError {
    let e = fhir::import(r, None).expect_err("refused");
    // The same error from the check alone.
    assert_eq!(fhir::check(r).expect_err("check"), e);
    e
}

#[test]
fn a_status_outside_its_value_set_is_refused() {
    let mut r = vital("8867-4", 72.0, "/min");
    r["status"] = json!("finalised");
    let e = refused(&r);
    assert!(matches!(e, FhirError::NotInValueSet { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.status"));
    assert_eq!(e.issue_code(), "code-invalid");
    assert!(e.to_string().contains("`finalised`"), "{e}");

    let cond = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "cured"}]}});
    let e = refused(&cond);
    assert_eq!(e.path(), Some("Condition.clinicalStatus.coding[0].code"));

    let med = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "wish",
        "medicationCodeableConcept": {"text": "Metformin"}, "subject": {"reference": "Patient/p"}});
    assert_eq!(refused(&med).path(), Some("MedicationRequest.intent"));
}

#[test]
fn two_types_of_one_choice_are_refused() {
    let mut r = vital("8867-4", 72.0, "/min");
    r["valueString"] = json!("72");
    let e = refused(&r);
    assert!(matches!(e, FhirError::ChoiceConflict { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.value[x]"));
    assert!(e.to_string().contains("valueQuantity, valueString"), "{e}");

    let mut r = vital("8867-4", 72.0, "/min");
    r["effectivePeriod"] = json!({"start": "2026-11-22"});
    assert_eq!(refused(&r).path(), Some("Observation.effective[x]"));
}

#[test]
fn unknown_elements_are_refused_extensions_are_not() {
    let mut r = vital("8867-4", 72.0, "/min");
    r["valueQuanttiy"] = json!({"value": 1});
    let e = refused(&r);
    assert!(matches!(e, FhirError::UnknownElement { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.valueQuanttiy"));
    assert_eq!(e.issue_code(), "structure");

    // A choice type the element does not have.
    let mut r = vital("8867-4", 72.0, "/min");
    r.as_object_mut()
        .expect("object")
        .remove("effectiveDateTime");
    r["effectiveDate"] = json!("2026-11-22");
    assert_eq!(refused(&r).path(), Some("Observation.effectiveDate"));

    // Inside a component.
    let mut r = vital("8867-4", 72.0, "/min");
    r["component"] = json!([{"code": {"text": "x"}, "valueString": "y", "colour": "red"}]);
    assert_eq!(refused(&r).path(), Some("Observation.component[0].colour"));

    // Extensions, modifier extensions and primitive extensions are elements.
    let mut r = vital("8867-4", 72.0, "/min");
    r["extension"] = json!([{"url": "https://example.org/x", "valueString": "y"}]);
    r["modifierExtension"] = json!([]);
    r["_status"] = json!({"extension": [{"url": "https://example.org/s", "valueString": "z"}]});
    r["component"] = json!([{"code": {"text": "x"}, "valueString": "y",
                             "extension": [{"url": "https://example.org/c", "valueString": "c"}]}]);
    fhir::import(&r, None).expect("extensions are allowed");
}

#[test]
fn cardinalities_and_required_elements_are_checked() {
    let mut r = vital("8867-4", 72.0, "/min");
    r["code"] = json!([r["code"].clone()]);
    let e = refused(&r);
    assert!(matches!(e, FhirError::Cardinality { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.code"));

    let mut r = vital("8867-4", 72.0, "/min");
    r["category"] = r["category"][0].clone();
    let e = refused(&r);
    assert!(matches!(e, FhirError::WrongType { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.category"));

    let mut r = vital("8867-4", 72.0, "/min");
    r.as_object_mut().expect("object").remove("status");
    let e = refused(&r);
    assert!(matches!(e, FhirError::Missing { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.status"));

    let imm = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"text": "Flu"}, "patient": {"reference": "Patient/p"}});
    assert_eq!(refused(&imm).path(), Some("Immunization.occurrence[x]"));

    let doc = json!({"resourceType": "DocumentReference", "status": "current", "content": []});
    assert_eq!(refused(&doc).path(), Some("DocumentReference.content[0]"));
}

#[test]
fn units_are_checked_against_the_loinc_code() {
    let e = refused(&vital("29463-7", 72.5, "mmol/L"));
    assert!(matches!(e, FhirError::WrongUnit { .. }), "{e}");
    assert_eq!(e.path(), Some("Observation.valueQuantity.code"));
    assert!(e.to_string().contains("LOINC 29463-7"), "{e}");
    // Units of the same property are converted, not refused.
    for (code, v, unit) in [
        ("29463-7", 160.0, "[lb_av]"),
        ("8302-2", 1.75, "m"),
        ("8310-5", 98.6, "[degF]"),
        ("8867-4", 72.0, "bpm"),
        ("15074-8", 95.0, "mg/dL"),
    ] {
        fhir::import(&vital(code, v, unit), None).unwrap_or_else(|e| panic!("{unit}: {e}"));
    }
    // Common labs: HbA1c in mmol/L is not a unit of either HbA1c code.
    let e = refused(&lab("4548-4", 6.5, "mmol/L"));
    assert_eq!(e.path(), Some("Observation.valueQuantity.code"));
    fhir::import(&lab("4548-4", 6.5, "%"), None).expect("HbA1c in %");
    fhir::import(&lab("59261-8", 48.0, "mmol/mol"), None).expect("HbA1c in mmol/mol");
    // Blood pressure components.
    let bp = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 120, "unit": "kPa", "system": "http://unitsofmeasure.org", "code": "kPa"}}]});
    assert_eq!(
        refused(&bp).path(),
        Some("Observation.component[0].valueQuantity.code")
    );
}

#[test]
fn impossible_values_are_refused() {
    for (code, v, unit) in [
        ("8867-4", 999.0, "/min"),
        ("29463-7", -72.5, "kg"),
        ("59408-5", 104.0, "%"),
        ("8310-5", 20.0, "Cel"),
    ] {
        let e = refused(&vital(code, v, unit));
        assert!(matches!(e, FhirError::Impossible { .. }), "{e}");
        assert_eq!(e.path(), Some("Observation.valueQuantity.value"));
        assert!(e.to_string().contains("physiologically impossible"), "{e}");
    }
    let e = refused(&lab("2823-3", -1.0, "mmol/L"));
    assert!(matches!(e, FhirError::Impossible { .. }), "{e}");
}

#[test]
fn implausible_values_are_flagged_and_kept() {
    let r = vital("8867-4", 280.0, "/min");
    let w = fhir::check(&r).expect("possible");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "Observation.valueQuantity.value");
    assert!(w[0].message.contains("implausible"), "{w:?}");
    let i = fhir::import(&r, None).expect("stored");
    let kept = i.body.get(FHIR_WARNINGS).and_then(Value::as_text);
    assert_eq!(kept, Some(w[0].to_string().as_str()));
    // A usual value raises nothing.
    let i = fhir::import(&vital("8867-4", 72.0, "/min"), None).expect("stored");
    assert_eq!(i.body.get(FHIR_WARNINGS), None);
}

#[test]
fn every_mapped_type_has_an_element_table() {
    for ty in fhir::MAPPED_TYPES {
        let table = fhir::elements(ty).unwrap_or_else(|| panic!("{ty}"));
        let mut names: Vec<&str> = table
            .iter()
            .map(|s| s.split([':', '[', '!', '*', '+']).next().unwrap_or(s))
            .collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "{ty}: an element twice");
        for b in fhir::BASE {
            assert!(!names.contains(b), "{ty}: {b} is a base element");
        }
    }
    for (ty, _, _) in fhir::VALUE_SETS {
        assert!(fhir::MAPPED_TYPES.contains(ty), "{ty}");
    }
}
