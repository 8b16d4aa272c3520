use super::*;
use crate::openehr::template_for;
use crate::openehr::{Composer, Meta};

fn meta() -> Meta {
    Meta {
        uid: None,
        start_time: "2026-12-01T09:00:00Z".into(),
        composer: Composer {
            name: Some("Dr Ada".into()),
            actor: "a-test".into(),
        },
    }
}

fn body(c: &Category, j: Json) -> Value {
    schema::body_from_json(c, &j).expect("test body")
}

fn samples() -> Vec<(Category, Value)> {
    vec![
        (
            Category::VitalSigns,
            body(
                &Category::VitalSigns,
                json!({"systolic": {"value": 132, "unit": "mm[Hg]"}, "diastolic": {"value": 85, "unit": "mm[Hg]"},
                       "heart-rate": {"value": 72, "unit": "/min"}, "temperature": {"value": 37.2, "unit": "Cel"},
                       "respiration-rate": {"value": 16, "unit": "/min"}, "spo2": {"value": 97, "unit": "%"},
                       "blood-glucose": {"value": 5.4, "unit": "mmol/L"}, "position": "sitting",
                       "comment": "after a walk", "measured-at": "2026-12-01T08:55:00Z"}),
            ),
        ),
        (
            Category::Problems,
            body(
                &Category::Problems,
                json!({"problem": "Asthma", "description": "since childhood", "onset": "1990-04",
                       "status": "active"}),
            ),
        ),
        (
            Category::Allergies,
            body(
                &Category::Allergies,
                json!({"agent": "Penicillin", "reaction": "rash", "severity": "moderate",
                       "onset": "2001-03", "criticality": "high", "comment": "hives"}),
            ),
        ),
        (
            Category::Medications,
            body(
                &Category::Medications,
                json!({"medication": "Salbutamol", "dose": "2 puffs", "start": "2024-01-02", "status": "active"}),
            ),
        ),
        (
            Category::Procedures,
            body(
                &Category::Procedures,
                json!({"procedure": "Appendicectomy", "body-site": "abdomen", "date": "2011-07-14"}),
            ),
        ),
        (
            Category::Immunisations,
            body(
                &Category::Immunisations,
                json!({"immunisation": "MMR", "status": "not-done", "date": "2025-10-03"}),
            ),
        ),
    ]
}

#[test]
fn every_core_template_round_trips_through_flat() {
    let mut all = samples();
    all.extend(crate::openehr::tests::later_samples());
    for (c, b) in all {
        let flat = to_flat(&c, &b, &meta()).expect("to flat");
        let t = template_for(&c).expect("template");
        let (c2, b2) = from_flat(t.id, &flat).expect("from flat");
        assert_eq!(c2, c);
        assert_eq!(b2, b, "{c}: {flat:#}");
        // Every key written (but ctx and context) is in the web template.
        let wt = web_template(t.id).expect("web template");
        let wt_text = wt.to_string();
        for k in flat.as_object().expect("object").keys() {
            if k.starts_with("ctx/") || k.contains("/context/") || k.ends_with("/_uid") {
                continue;
            }
            let last = k.split('|').next().unwrap().rsplit('/').next().unwrap();
            assert!(
                wt_text.contains(&format!("\"id\":\"{last}\"")),
                "{k} not in the web template"
            );
        }
    }
}

#[test]
fn flat_keys_are_the_web_template_ids() {
    let (c, b) = samples().remove(0);
    let flat = to_flat(&c, &b, &meta()).expect("flat");
    assert_eq!(
        flat["vital_signs/blood_pressure/any_event/systolic_blood_pressure|magnitude"],
        132
    );
    assert_eq!(
        flat["vital_signs/blood_pressure/any_event/systolic_blood_pressure|unit"],
        "mm[Hg]"
    );
    assert_eq!(
        flat["vital_signs/blood_pressure/any_event/time"],
        "2026-12-01T08:55:00Z"
    );
    assert_eq!(
        flat["vital_signs/pulse_oximetry/any_event/oxygen_saturation_spo2|numerator"],
        97
    );
    assert_eq!(flat["ctx/composer_name"], "Dr Ada");
    let wt = web_template("cophr.vital_signs.v1").expect("wt");
    assert_eq!(wt["templateId"], "cophr.vital_signs.v1");
    assert_eq!(wt["tree"]["id"], "vital_signs");
    let bp = wt["tree"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "blood_pressure")
        .expect("bp");
    assert_eq!(bp["nodeId"], "openEHR-EHR-OBSERVATION.blood_pressure.v2");
    let ev = &bp["children"][0];
    assert_eq!(ev["id"], "any_event");
    assert_eq!(ev["rmType"], "POINT_EVENT");
    let sys = &ev["children"][0];
    assert_eq!(sys["id"], "systolic_blood_pressure");
    assert_eq!(sys["rmType"], "DV_QUANTITY");
    assert_eq!(
        sys["aqlPath"],
        "/content[openEHR-EHR-OBSERVATION.blood_pressure.v2]/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value"
    );
    assert_eq!(sys["inputs"][1]["list"][0]["value"], "mm[Hg]");
    assert!(web_template("cophr.nothing.v1").is_none());
    // A client's `:0` indexes are accepted.
    let (_, got) = from_flat(
        "cophr.problems.v1",
        &json!({"problem_list/problem_diagnosis:0/problem_or_diagnosis": "Gout", "ctx/language": "en"}),
    )
    .expect("indexed");
    assert_eq!(got.to_json()["problem"], "Gout");
}

#[test]
fn bad_flat_is_refused() {
    let t = "cophr.problems.v1";
    // An unknown template, an unknown key, an index other than 0, a wrong suffix.
    assert!(matches!(
        from_flat("cophr.x.v1", &json!({})),
        Err(OpenEhrError::UnknownTemplate { .. })
    ));
    for bad in [
        json!({"problem_list/problem_diagnosis/problem_or_diagnosis": "Gout", "problem_list/problem_diagnosis/nonsense": "x"}),
        json!({"problem_list/problem_diagnosis:1/problem_or_diagnosis": "Gout"}),
        json!({"problem_list/problem_diagnosis/problem_or_diagnosis|magnitude": 3}),
        json!({"other_root/problem_diagnosis/problem_or_diagnosis": "Gout"}),
    ] {
        assert!(
            matches!(from_flat(t, &bad), Err(OpenEhrError::UnknownPath { .. })),
            "{bad}"
        );
    }
    // A missing mandatory element, a wrong data type, a code outside the value set.
    assert!(matches!(
        from_flat(
            t,
            &json!({"problem_list/problem_diagnosis/description": "x"})
        ),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
    assert!(matches!(
        from_flat(
            t,
            &json!({"problem_list/problem_diagnosis/problem_or_diagnosis": 42})
        ),
        Err(OpenEhrError::WrongType { .. })
    ));
    assert!(matches!(
        from_flat(
            t,
            &json!({"problem_list/problem_diagnosis/problem_or_diagnosis": "Gout",
                    "problem_list/problem_diagnosis/problem_diagnosis_qualifier/status|code": "maybe"})
        ),
        Err(OpenEhrError::Schema(_))
    ));
    // Not an object; too many keys.
    assert!(matches!(
        from_flat(t, &json!([1])),
        Err(OpenEhrError::WrongType { .. })
    ));
    let many: Map<String, Json> = (0..=MAX_FLAT_KEYS)
        .map(|i| (format!("ctx/k{i}"), json!(1)))
        .collect();
    assert!(matches!(
        from_flat(t, &Json::Object(many)),
        Err(OpenEhrError::TooComplex { .. })
    ));
}
