use super::*;
use crate::ids::ActorId;

fn body(c: &Category, j: Json) -> Value {
    schema::body_from_json(c, &j).expect("test body")
}

fn meta() -> Meta {
    Meta {
        uid: Some(version_uid(&EntryId([7; 32]), 2)),
        start_time: "2026-12-01T09:00:00.000Z".into(),
        composer: Composer {
            name: Some("Dr Ada".into()),
            actor: "a-test".into(),
        },
    }
}

fn vitals() -> Value {
    body(
        &Category::VitalSigns,
        json!({
            "systolic": {"value": 132, "unit": "mm[Hg]"},
            "diastolic": {"value": 85, "unit": "mm[Hg]"},
            "heart-rate": {"value": 72, "unit": "/min"},
            "temperature": {"value": 37.2, "unit": "Cel"},
            "respiration-rate": {"value": 16, "unit": "/min"},
            "spo2": {"value": 97, "unit": "%"},
            "blood-glucose": {"value": 5.4, "unit": "mmol/L"},
            "position": "sitting",
            "comment": "after a walk",
            "measured-at": "2026-12-01T08:55:00Z"
        }),
    )
}

/// A body with every field of each category mapped since the first six, for the round
/// trips here and through FLAT.
pub(crate) fn later_samples() -> Vec<(Category, Value)> {
    let q = |v: f64, u: &str| json!({"value": v, "unit": u});
    [
        (
            Category::LabResults,
            json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol", "interpretation": "high",
                   "reference-range": "20-41", "collected": "2026-11-30T08:10:00Z",
                   "reported": "2026-11-30T15:00:00Z", "status": "final", "comment": "repeat in 3 months"}),
        ),
        (
            Category::LabResults,
            json!({"test": "Urine culture", "result": "no growth", "collected": "2026-11-29T10:00:00Z"}),
        ),
        (
            Category::Alerts,
            json!({"alert": "Metallic hip implant", "detail": "left hip, 2019", "severity": "high"}),
        ),
        (
            Category::FamilyHistory,
            json!({"condition": "Breast cancer", "relative": "mother",
                   "genomic-markers": ["BRCA1", "BRCA2 c.5946delT"], "comment": "at 45"}),
        ),
        (
            Category::Lifestyle,
            json!({"smoking": "former", "alcohol": "10 units/week", "housing": "lives alone, flat",
                   "occupation": "retired teacher", "education": "degree"}),
        ),
        (Category::Lifestyle, json!({"alcohol": "none"})),
        (
            Category::Examinations,
            json!({"height": q(170.0, "cm"), "weight": q(70.5, "kg"), "bmi": q(24.4, "kg/m2"),
                   "waist": q(88.0, "cm"), "head-circumference": q(57.0, "cm"),
                   "hip-circumference": q(98.0, "cm"), "body-surface-area": q(1.82, "m2"),
                   "measured-at": "2026-11-28T11:00:00Z"}),
        ),
        (
            Category::Investigations,
            json!({"investigation": "Chest X-ray", "kind": "imaging", "result": "clear lung fields",
                   "date": "2026-10-01"}),
        ),
        (
            Category::AboutMe,
            json!({"thing-1": "I am deaf in my left ear", "thing-2": "I live with my dog",
                   "thing-3": "Call me George", "summary": "Retired, independent, likes walking"}),
        ),
        (
            Category::KeyContacts,
            json!({"name": "John Smith", "relationship": "next-of-kin", "telephone": "+44 20 7946 0000",
                   "email": "john@example.org", "address": "1 High Street"}),
        ),
        (
            Category::Preferences,
            json!({"organ-donation": "yes", "language": "Welsh", "communication-needs": "large print",
                   "reasonable-adjustments": "ground floor rooms", "religion-culture": "vegetarian",
                   "consent": "no CPR (ReSPECT form, 2026)"}),
        ),
    ]
    .into_iter()
    .map(|(c, j)| {
        let b = body(&c, j);
        (c, b)
    })
    .collect()
}

fn samples() -> Vec<(Category, Value)> {
    let mut all = later_samples();
    all.extend(first_samples());
    all
}

fn first_samples() -> Vec<(Category, Value)> {
    vec![
        (Category::VitalSigns, vitals()),
        (
            Category::VitalSigns,
            body(
                &Category::VitalSigns,
                json!({"heart-rate": {"value": 64, "unit": "/min"}, "measured-at": "2026-12-01T07:00:00Z"}),
            ),
        ),
        (
            Category::Problems,
            body(
                &Category::Problems,
                json!({"problem": "Asthma", "description": "since childhood", "onset": "1990",
                       "resolved": "2020-05-01", "status": "resolved"}),
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
                json!({"medication": "Salbutamol 100mcg inhaler", "form": "inhaler", "route": "inhaled",
                       "dose": "2 puffs as needed", "patient-information": "shake first",
                       "monitoring": "peak flow", "indication": "asthma", "start": "2024-01-02",
                       "stop": "2025-01-02", "status": "active"}),
            ),
        ),
        (
            Category::Procedures,
            body(
                &Category::Procedures,
                json!({"procedure": "Appendicectomy", "description": "laparoscopic",
                       "body-site": "abdomen", "outcome": "uncomplicated recovery",
                       "complication": "none", "procedure-type": "surgical",
                       "difficulty": "routine", "date": "2011-07-14"}),
            ),
        ),
        (
            Category::Immunisations,
            body(
                &Category::Immunisations,
                json!({"immunisation": "Influenza vaccine", "status": "completed", "date": "2025-10-03"}),
            ),
        ),
    ]
}

#[test]
fn a_procedure_is_an_action_whose_time_is_its_date() {
    let b = body(
        &Category::Procedures,
        json!({"procedure": "Appendicectomy", "body-site": "abdomen", "date": "2011-07-14"}),
    );
    let comp = to_composition(&Category::Procedures, &b, &meta()).expect("maps");
    assert_eq!(
        comp["archetype_details"]["template_id"]["value"],
        "cophr.procedures.v1"
    );
    let action = &comp["content"][0];
    assert_eq!(action["_type"], "ACTION");
    assert_eq!(action["archetype_node_id"], PROCEDURE);
    assert_eq!(action["time"]["value"], "2011-07-14");
    assert_eq!(
        action["ism_transition"]["current_state"]["defining_code"]["code_string"],
        "532"
    );
    let name = walk(action, "/description[at0001]/items[at0002]").expect("name");
    assert_eq!(name["value"]["value"], "Appendicectomy");
    let site = walk(action, "/description[at0001]/items[at0063]").expect("body site");
    assert_eq!(site["value"]["value"], "abdomen");
    // A client's full date-time reads back as the procedure's date.
    let mut c = comp.clone();
    c["content"][0]["time"]["value"] = json!("2011-07-14T10:30:00Z");
    let (_, back) = from_composition(&c).expect("reads");
    assert_eq!(back.to_json()["date"], "2011-07-14");
    // Without a date the action's time is the item's creation time, which reads back as
    // the procedure's date (an ACTION always has a time).
    let undated = body(
        &Category::Procedures,
        json!({"procedure": "Appendicectomy"}),
    );
    let comp = to_composition(&Category::Procedures, &undated, &meta()).expect("maps");
    assert_eq!(
        comp["content"][0]["time"]["value"],
        "2026-12-01T09:00:00.000Z"
    );
    let (_, back) = from_composition(&comp).expect("reads");
    assert_eq!(back.to_json()["date"], "2026-12-01");
    // The procedure's name is mandatory; an ACTION without its time is refused.
    let mut c = comp.clone();
    c["content"][0]["description"]["items"] = json!([]);
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
    let mut c = comp;
    c["content"][0].as_object_mut().unwrap().remove("time");
    assert!(
        matches!(from_composition(&c), Err(OpenEhrError::MissingMandatory { path }) if path.ends_with("/time"))
    );
}

#[test]
fn every_template_round_trips_the_body() {
    for (c, b) in samples() {
        let comp = to_composition(&c, &b, &meta()).expect("maps");
        let (c2, b2) = from_composition(&comp).expect("reads back");
        assert_eq!(c2, c);
        assert_eq!(b2, b, "{c}: {comp:#}");
        // Written again (through its bytes, as a client sends it), it reads the same.
        let bytes = serde_json::to_vec(&comp).expect("json");
        let again = to_composition(&c2, &b2, &meta()).expect("maps again");
        assert_eq!(again, comp);
        assert_eq!(
            from_composition(&parse(&bytes).expect("parses"))
                .expect("reads")
                .1,
            b
        );
    }
}

#[test]
fn vital_signs_sit_at_their_archetype_paths() {
    let comp = to_composition(&Category::VitalSigns, &vitals(), &meta()).expect("maps");
    assert_eq!(comp["_type"], "COMPOSITION");
    assert_eq!(
        comp["archetype_details"]["template_id"]["value"],
        "cophr.vital_signs.v1"
    );
    assert_eq!(comp["uid"]["value"], meta().uid.expect("uid").as_str());
    assert_eq!(comp["composer"]["name"], "Dr Ada");
    assert_eq!(
        comp["context"]["start_time"]["value"],
        "2026-12-01T09:00:00.000Z"
    );
    let content = comp["content"].as_array().expect("content");
    assert_eq!(content.len(), 6);
    let bp = &content[0];
    assert_eq!(bp["archetype_node_id"], BLOOD_PRESSURE);
    let sys = walk(
        bp,
        "/data[at0001]/events[at0006]/data[at0003]/items[at0004]",
    )
    .expect("systolic");
    assert_eq!(sys["value"]["_type"], "DV_QUANTITY");
    assert_eq!(sys["value"]["magnitude"], 132);
    assert_eq!(sys["value"]["units"], "mm[Hg]");
    assert_eq!(
        walk(bp, "/data[at0001]/events[at0006]").expect("event")["time"]["value"],
        "2026-12-01T08:55:00Z"
    );
    let spo2 = walk(
        &content[4],
        "/data[at0001]/events[at0002]/data[at0003]/items[at0006]",
    )
    .expect("spo2");
    assert_eq!(spo2["value"]["_type"], "DV_PROPORTION");
    assert_eq!(spo2["value"]["numerator"], 97);
    // Only the measurements present: a pulse alone is one observation.
    let one = body(
        &Category::VitalSigns,
        json!({"heart-rate": {"value": 60, "unit": "/min"}}),
    );
    let comp = to_composition(&Category::VitalSigns, &one, &meta()).expect("maps");
    assert_eq!(comp["content"].as_array().map(Vec::len), Some(1));
    assert_eq!(comp["content"][0]["archetype_node_id"], PULSE);
    // With no measured-at the event time is the item's creation, read back as measured-at.
    let (_, back) = from_composition(&comp).expect("reads");
    assert_eq!(
        back.get("measured-at").and_then(Value::as_text),
        Some("2026-12-01T09:00:00.000Z")
    );
}

#[test]
fn unmapped_category_is_refused() {
    let b = body(&Category::Demographics, json!({"surname": "Smith"}));
    assert_eq!(
        to_composition(&Category::Demographics, &b, &meta()),
        Err(OpenEhrError::Unmapped("demographics".into()))
    );
}

fn problem() -> Json {
    let b = body(
        &Category::Problems,
        json!({"problem": "Asthma", "status": "active"}),
    );
    to_composition(&Category::Problems, &b, &meta()).expect("maps")
}

#[test]
fn wrong_archetype_is_refused() {
    let mut c = problem();
    let pulse = to_composition(
        &Category::VitalSigns,
        &body(
            &Category::VitalSigns,
            json!({"heart-rate": {"value": 60, "unit": "/min"}}),
        ),
        &meta(),
    )
    .expect("maps");
    c["content"] = json!([pulse["content"][0].clone()]);
    match from_composition(&c) {
        Err(OpenEhrError::WrongArchetype {
            index: 0,
            found,
            template,
            ..
        }) => {
            assert_eq!(found, PULSE);
            assert_eq!(template, "cophr.problems.v1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_mandatory_is_refused() {
    let mut c = problem();
    c["content"][0]["data"]["items"]
        .as_array_mut()
        .expect("items")
        .retain(|i| i["archetype_node_id"] != "at0002");
    assert_eq!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory {
            path: format!("{PROBLEM_DIAGNOSIS}/data[at0001]/items[at0002]")
        })
    );
    let mut c = problem();
    c["content"] = json!([]);
    assert_eq!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory {
            path: format!("/content[{PROBLEM_DIAGNOSIS}]")
        })
    );
    let mut c = problem();
    c["archetype_details"]
        .as_object_mut()
        .expect("details")
        .remove("template_id");
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory { path }) if path == "/archetype_details/template_id"
    ));
}

#[test]
fn wrong_data_type_is_refused() {
    let mut c = to_composition(&Category::VitalSigns, &vitals(), &meta()).expect("maps");
    c["content"][0]["data"]["events"][0]["data"]["items"][0]["value"] =
        json!({"_type": "DV_TEXT", "value": "132"});
    match from_composition(&c) {
        Err(OpenEhrError::WrongType {
            path,
            expected,
            found,
        }) => {
            assert!(path.ends_with("/items[at0004]/value"), "{path}");
            assert_eq!(expected, "DV_QUANTITY");
            assert_eq!(found, "DV_TEXT");
        }
        other => panic!("{other:?}"),
    }
    let mut c = to_composition(&Category::VitalSigns, &vitals(), &meta()).expect("maps");
    c["content"][0]["data"]["events"][0]["data"]["items"][0]["value"]["magnitude"] = json!("132");
    assert!(
        matches!(from_composition(&c), Err(OpenEhrError::WrongType { path, .. }) if path.ends_with("/magnitude"))
    );
    let mut c = problem();
    c["content"][0]["_type"] = json!("OBSERVATION");
    assert!(
        matches!(from_composition(&c), Err(OpenEhrError::WrongType { expected, .. }) if expected == "EVALUATION")
    );
}

#[test]
fn unknown_paths_templates_and_duplicates_are_refused() {
    let mut c = problem();
    c["content"][0]["data"]["items"]
        .as_array_mut()
        .expect("items")
        .push(json!({"_type": "ELEMENT", "archetype_node_id": "at9999",
                     "name": {"_type": "DV_TEXT", "value": "x"},
                     "value": {"_type": "DV_TEXT", "value": "lost?"}}));
    assert_eq!(
        from_composition(&c),
        Err(OpenEhrError::UnknownPath {
            archetype: PROBLEM_DIAGNOSIS.into(),
            path: "/data[at0001]/items[at9999]".into(),
            template: "cophr.problems.v1".into()
        })
    );
    let mut c = problem();
    c["archetype_details"]["template_id"]["value"] = json!("someone.else.v1");
    assert_eq!(
        from_composition(&c),
        Err(OpenEhrError::UnknownTemplate {
            found: "someone.else.v1".into()
        })
    );
    let mut c = problem();
    let e = c["content"][0].clone();
    c["content"] = json!([e.clone(), e]);
    assert_eq!(
        from_composition(&c),
        Err(OpenEhrError::DuplicateArchetype {
            index: 1,
            archetype: PROBLEM_DIAGNOSIS.into()
        })
    );
    let mut c = problem();
    c["_type"] = json!("EHR_STATUS");
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::WrongType { .. })
    ));
}

#[test]
fn the_category_rules_still_apply() {
    let mut c = to_composition(&Category::VitalSigns, &vitals(), &meta()).expect("maps");
    // Systolic without diastolic: the schema's rule, not the archetype's.
    c["content"][0]["data"]["events"][0]["data"]["items"]
        .as_array_mut()
        .expect("items")
        .retain(|i| i["archetype_node_id"] != "at0005");
    assert!(matches!(from_composition(&c), Err(OpenEhrError::Schema(_))));
    let mut c = problem();
    c["content"][0]["data"]["items"][1]["items"][0]["value"]["value"] = json!("dormant");
    assert!(matches!(from_composition(&c), Err(OpenEhrError::Schema(_))));
}

#[test]
fn limits_are_enforced() {
    let big = vec![b' '; MAX_COMPOSITION_BYTES + 1];
    assert_eq!(
        parse(&big),
        Err(OpenEhrError::TooLarge {
            got: MAX_COMPOSITION_BYTES + 1
        })
    );
    assert!(matches!(parse(b"{not json"), Err(OpenEhrError::Json(_))));
    let mut deep = json!(1);
    for _ in 0..MAX_DEPTH {
        deep = json!([deep]);
    }
    let mut c = problem();
    c["feeder_audit"] = deep;
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::TooComplex { .. })
    ));
    let mut c = problem();
    c["links"] = Json::Array(vec![json!(0); MAX_NODES]);
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::TooComplex { .. })
    ));
    let mut c = problem();
    let e = c["content"][0].clone();
    c["content"] = Json::Array(vec![e; MAX_CONTENT + 1]);
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::TooComplex { .. })
    ));
}

#[test]
fn ids_are_stable_and_derived() {
    let r = ActorId([1; 32]);
    let id = ehr_id(&r);
    assert_eq!(id, ehr_id(&ActorId([1; 32])));
    assert_ne!(id, ehr_id(&ActorId([2; 32])));
    assert!(is_uuid(&id));
    assert_eq!(&id[14..15], "8", "version 8 (custom)");
    assert!(
        matches!(&id[19..20], "8" | "9" | "a" | "b"),
        "RFC 9562 variant"
    );
    let e = EntryId([3; 32]);
    let v = version_uid(&e, 3);
    assert_eq!(v, format!("{}::cophr::3", item_uuid(&e)));
    assert_eq!(
        parse_uid(&v),
        Some(Uid {
            object: item_uuid(&e),
            version: Some(3)
        })
    );
    assert_eq!(
        parse_uid(&item_uuid(&e)),
        Some(Uid {
            object: item_uuid(&e),
            version: None
        })
    );
    assert_eq!(
        parse_uid(&format!("{}::cophr", item_uuid(&e))),
        Some(Uid {
            object: item_uuid(&e),
            version: None
        })
    );
    assert_eq!(parse_uid(&format!("{}::other", item_uuid(&e))), None);
    assert_eq!(parse_uid(&format!("{}::other::3", item_uuid(&e))), None);
    assert_eq!(parse_uid(&format!("{}::cophr::0", item_uuid(&e))), None);
    assert_eq!(parse_uid("not-a-uuid"), None);
    assert_ne!(item_uuid(&e), ehr_id(&ActorId([3; 32])), "domain separated");
    let status = ehr_status_json(&r);
    assert_eq!(
        status["subject"]["external_ref"]["id"]["value"],
        r.to_string()
    );
    assert_eq!(ehr_json(&r, "t")["ehr_id"]["value"], id);
}

#[test]
fn an_immunisation_is_a_medication_action_whose_state_is_its_status() {
    for (status, code) in [
        ("completed", "532"),
        ("not-done", "528"),
        ("entered-in-error", "531"),
    ] {
        let b = body(
            &Category::Immunisations,
            json!({"immunisation": "MMR", "status": status, "date": "2025-10-03"}),
        );
        let comp = to_composition(&Category::Immunisations, &b, &meta()).expect("maps");
        let action = &comp["content"][0];
        assert_eq!(action["archetype_node_id"], MEDICATION_ACTION);
        assert_eq!(
            action["ism_transition"]["current_state"]["defining_code"]["code_string"],
            code
        );
        let item = walk(action, "/description[at0017]/items[at0020]").expect("medication item");
        assert_eq!(item["value"]["value"], "MMR");
        assert_eq!(from_composition(&comp).expect("reads").1, b);
    }
    // An unknown state, or none, is refused.
    let b = body(
        &Category::Immunisations,
        json!({"immunisation": "MMR", "date": "2025-10-03"}),
    );
    let comp = to_composition(&Category::Immunisations, &b, &meta()).expect("maps");
    // Written without a status it is completed.
    assert_eq!(
        from_composition(&comp).expect("reads").1.to_json()["status"],
        "completed"
    );
    let mut c = comp.clone();
    c["content"][0]["ism_transition"]["current_state"]["defining_code"]["code_string"] =
        json!("245");
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::WrongType { .. })
    ));
    let mut c = comp;
    c["content"][0]
        .as_object_mut()
        .unwrap()
        .remove("ism_transition");
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
}

#[test]
fn every_category_of_the_summary_has_a_template_and_its_label_is_in_it() {
    for c in [
        Category::VitalSigns,
        Category::Problems,
        Category::Allergies,
        Category::Medications,
        Category::Procedures,
        Category::Immunisations,
        Category::LabResults,
        Category::Alerts,
        Category::FamilyHistory,
        Category::Lifestyle,
        Category::Examinations,
        Category::Investigations,
        Category::AboutMe,
        Category::KeyContacts,
        Category::Preferences,
    ] {
        let t = template_for(&c).unwrap_or_else(|| panic!("{c} has no template"));
        assert_eq!(template(t.id).map(|x| &x.category), Some(&c));
        // The schema's archetype label names an archetype the template holds (vital
        // signs are labelled with their section, which is not an entry).
        if c != Category::VitalSigns {
            let label = schema::schema(&c).expect("schema").archetype;
            assert!(
                t.entries.iter().any(|e| e.archetype == label),
                "{c}: the schema says {label}, the template holds {:?}",
                t.entries.iter().map(|e| e.archetype).collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(templates().len(), 15);
}

#[test]
fn a_lab_result_keeps_its_result_as_text_with_its_unit_beside_it() {
    let b = body(
        &Category::LabResults,
        json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol", "status": "final",
               "collected": "2026-11-30T08:10:00Z"}),
    );
    let comp = to_composition(&Category::LabResults, &b, &meta()).expect("maps");
    let obs = &comp["content"][0];
    assert_eq!(obs["archetype_node_id"], LAB_RESULT);
    let an = "/data[at0001]/events[at0002]/data[at0003]/items[openEHR-EHR-CLUSTER.laboratory_test_analyte.v1]";
    let result = walk(obs, &format!("{an}/items[at0001]")).expect("analyte result");
    assert_eq!(result["value"]["_type"], "DV_TEXT");
    assert_eq!(result["value"]["value"], "48");
    let unit = walk(obs, &format!("{an}/items[at9000]")).expect("unit");
    assert_eq!(unit["value"]["value"], "mmol/mol");
    let test = walk(
        obs,
        "/data[at0001]/events[at0002]/data[at0003]/items[at0005]",
    )
    .expect("test");
    assert_eq!(test["value"]["value"], "HbA1c");
    assert_eq!(
        walk(obs, "/data[at0001]/events[at0002]").expect("event")["time"]["value"],
        "2026-11-30T08:10:00Z"
    );
    // A quantity for the result is refused, not turned into text: cophr's result is what
    // the lab wrote.
    let mut c = comp.clone();
    let r = walk_mut(&mut c["content"][0], &format!("{an}/items[at0001]")).expect("result");
    r["value"] = json!({"_type": "DV_QUANTITY", "magnitude": 48, "units": "mmol/mol"});
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::WrongType { .. })
    ));
    // The test name is mandatory.
    let mut c = comp.clone();
    c["content"][0]["data"]["events"][0]["data"]["items"]
        .as_array_mut()
        .expect("items")
        .retain(|i| i["archetype_node_id"] != "at0005");
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
}

#[test]
fn genomic_markers_are_one_text_a_line_each_and_medication_status_is_its_summary() {
    let b = body(
        &Category::FamilyHistory,
        json!({"condition": "Breast cancer", "relative": "mother", "genomic-markers": ["BRCA1", "BRCA2"]}),
    );
    let comp = to_composition(&Category::FamilyHistory, &b, &meta()).expect("maps");
    let m = walk(&comp["content"][0], "/data[at0001]/items[at9002]").expect("markers");
    assert_eq!(m["value"]["value"], "BRCA1\nBRCA2");
    let med = body(
        &Category::Medications,
        json!({"medication": "Metformin", "status": "stopped"}),
    );
    let comp = to_composition(&Category::Medications, &med, &meta()).expect("maps");
    assert_eq!(comp["content"][1]["archetype_node_id"], MEDICATION_SUMMARY);
    assert_eq!(
        walk(&comp["content"][1], "/data[at0001]/items[at9000]").expect("status")["value"]
            ["defining_code"]["code_string"],
        "stopped"
    );
    // The summary alone has no medication: refused.
    let mut c = comp.clone();
    c["content"].as_array_mut().expect("content").remove(0);
    assert!(matches!(
        from_composition(&c),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
}

fn shipped() -> Vec<schema::ExtensionSchema> {
    schema::EXAMPLES
        .iter()
        .map(|(_, j)| schema::ExtensionSchema::from_json(j).expect("example"))
        .collect()
}

fn wound() -> (Category, Value) {
    let c: Category = "ext:uk.nhs.tissue-viability/wound-care"
        .parse()
        .expect("cat");
    let defs = shipped();
    let def = defs.iter().find(|d| d.category == c).expect("wound care");
    let b = def
        .with_view(|s| {
            schema::body_from_json_in(
                &c,
                Some(s),
                &json!({"wound-type": "pressure-ulcer", "location": "left heel",
                        "length": {"value": 3.5, "unit": "cm"}, "signs-of-infection": false,
                        "pain-score": 4, "next-review": "2026-12-08",
                        "assessed": "2026-12-01T10:00:00Z", "notes": "granulating"}),
            )
        })
        .expect("body");
    (c, b)
}

#[test]
fn an_extension_entry_is_a_composition_of_its_definition_s_template() {
    let exts = shipped();
    let (c, b) = wound();
    // Without the definition there is no template.
    assert_eq!(
        to_composition(&c, &b, &meta()),
        Err(OpenEhrError::Unmapped(c.name().into()))
    );
    let comp = to_composition_in(&exts, &c, &b, &meta()).expect("maps");
    assert_eq!(
        comp["archetype_details"]["template_id"]["value"],
        "cophr.ext.uk.nhs.tissue-viability.wound-care.v1"
    );
    let e = &comp["content"][0];
    assert_eq!(e["_type"], "EVALUATION");
    assert_eq!(
        e["archetype_node_id"],
        "openEHR-EHR-EVALUATION.cophr_ext_uk_nhs_tissue_viability__wound_care.v1"
    );
    // Each field at its node id, with its data type.
    let at = |i: usize| {
        walk(
            e,
            &format!("/data[at0001]/items[{}]", ext::node_id(&exts[1], i)),
        )
        .expect("el")
    };
    assert_eq!(at(0)["value"]["_type"], "DV_CODED_TEXT");
    assert_eq!(at(3)["value"]["magnitude"], 3.5);
    assert_eq!(
        at(10)["value"],
        json!({"_type": "DV_BOOLEAN", "value": false})
    );
    assert_eq!(
        at(12)["value"],
        json!({"_type": "DV_COUNT", "magnitude": 4})
    );
    let (c2, b2) = from_composition_in(&exts, &comp).expect("reads");
    assert_eq!((c2, b2), (c.clone(), b.clone()));
    // Through FLAT, keyed by the field names.
    let f = flat::to_flat_in(&exts, &c, &b, &meta()).expect("flat");
    let root = "wound_assessment_tissue_viability/wound_assessment_tissue_viability";
    assert_eq!(f[format!("{root}/pain_score")], 4, "{f:#}");
    assert_eq!(f[format!("{root}/wound_type|code")], "pressure-ulcer");
    let tid = "cophr.ext.uk.nhs.tissue-viability.wound-care.v1";
    assert_eq!(
        flat::from_flat_in(&exts, tid, &f).expect("from flat"),
        (c.clone(), b.clone())
    );
    let wt = flat::web_template_in(&exts, tid).expect("web template");
    assert_eq!(wt["templateId"], tid);
    assert!(flat::web_template(tid).is_none());
    // Every shipped example has a template, listed after the core ones.
    let listed: Vec<(schema::ExtensionSchema, String)> = exts
        .iter()
        .map(|d| (d.clone(), "2026-12-01T00:00:00Z".into()))
        .collect();
    let list = template_list_in(&listed, "2026-01-01T00:00:00Z");
    assert_eq!(list.as_array().map(Vec::len), Some(templates().len() + 4));
    for d in &exts {
        assert!(is_mapped(&exts, &d.category));
        assert!(flat::web_template_in(&exts, &ext::template_id(d)).is_some());
    }
}

#[test]
fn an_invalid_extension_composition_is_refused() {
    let exts = shipped();
    let (c, b) = wound();
    let comp = to_composition_in(&exts, &c, &b, &meta()).expect("maps");
    let items = |c: &mut Json| -> Vec<Json> {
        c["content"][0]["data"]["items"]
            .as_array()
            .expect("items")
            .clone()
    };
    // A field the definition does not have.
    let mut x = comp.clone();
    let mut it = items(&mut x);
    it.push(
        json!({"_type": "ELEMENT", "archetype_node_id": "at1999", "name": {"value": "x"},
                   "value": {"_type": "DV_TEXT", "value": "y"}}),
    );
    x["content"][0]["data"]["items"] = json!(it);
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::UnknownPath { .. })
    ));
    // A wrong data type: text for the pain score, a count given as a decimal.
    let mut x = comp.clone();
    let mut it = items(&mut x);
    let i = it
        .iter()
        .position(|e| e["archetype_node_id"] == ext::node_id(&exts[1], 12))
        .expect("pain");
    it[i]["value"] = json!({"_type": "DV_TEXT", "value": "4"});
    x["content"][0]["data"]["items"] = json!(it.clone());
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::WrongType { .. })
    ));
    it[i]["value"] = json!({"_type": "DV_COUNT", "magnitude": 4.5});
    x["content"][0]["data"]["items"] = json!(it);
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::WrongType { .. })
    ));
    // A mandatory field missing (location).
    let mut x = comp.clone();
    let mut it = items(&mut x);
    it.retain(|e| e["archetype_node_id"] != ext::node_id(&exts[1], 1));
    x["content"][0]["data"]["items"] = json!(it);
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
    // A code outside the value set: the schema refuses it.
    let mut x = comp.clone();
    x["content"][0]["data"]["items"][0]["value"]["value"] = json!("burn-ish");
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::Schema(_))
    ));
    // An earlier version's template id maps with the version in effect; a later one or a
    // malformed one is unknown.
    let mut x = comp.clone();
    x["archetype_details"]["template_id"]["value"] =
        json!("cophr.ext.uk.nhs.tissue-viability.wound-care.v2");
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::UnknownTemplate { .. })
    ));
    x["archetype_details"]["template_id"]["value"] =
        json!("cophr.ext.uk.nhs.tissue-viability.wound-care.v01");
    assert!(matches!(
        from_composition_in(&exts, &x),
        Err(OpenEhrError::UnknownTemplate { .. })
    ));
}
