use serde_json::json;

use super::*;
use crate::openehr::flat::to_flat;
use crate::openehr::{template_for, Composer};
use crate::schema;

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

fn samples() -> Vec<(Category, Value)> {
    let body = |c: &Category, j: Json| schema::body_from_json(c, &j).expect("test body");
    let mut all = vec![
        (
            Category::VitalSigns,
            body(
                &Category::VitalSigns,
                json!({"systolic": {"value": 132, "unit": "mm[Hg]"}, "diastolic": {"value": 85, "unit": "mm[Hg]"},
                       "spo2": {"value": 97, "unit": "%"}, "position": "sitting",
                       "measured-at": "2026-12-01T08:55:00Z"}),
            ),
        ),
        (
            Category::Problems,
            body(
                &Category::Problems,
                json!({"problem": "Asthma", "onset": "1990-04", "status": "active"}),
            ),
        ),
        (
            Category::Immunisations,
            body(
                &Category::Immunisations,
                json!({"immunisation": "MMR", "status": "not-done", "date": "2025-10-03"}),
            ),
        ),
    ];
    all.extend(crate::openehr::tests::later_samples());
    all
}

#[test]
fn every_core_template_round_trips_through_structured() {
    for (c, b) in samples() {
        let s = to_structured_in(&[], &c, &b, &meta()).expect("to structured");
        let t = template_for(&c).expect("template");
        let (c2, b2) = from_structured_in(&[], t.id, &s).expect("from structured");
        assert_eq!(c2, c);
        assert_eq!(b2, b, "{c}: {s:#}");
        // The same keys as FLAT, and back.
        let flat = to_flat(&c, &b, &meta()).expect("flat");
        assert_eq!(structured_to_flat(&s).expect("flat again"), flat, "{c}");
    }
}

#[test]
fn structured_is_flat_s_keys_as_a_tree() {
    let (c, b) = samples().remove(0);
    let s = to_structured_in(&[], &c, &b, &meta()).expect("structured");
    let bp = &s["vital_signs"]["blood_pressure"][0]["any_event"][0];
    assert_eq!(bp["systolic_blood_pressure"][0]["|magnitude"], 132);
    assert_eq!(bp["systolic_blood_pressure"][0]["|unit"], "mm[Hg]");
    assert_eq!(bp["time"][0], "2026-12-01T08:55:00Z");
    assert_eq!(s["ctx"]["language"], "en");
    // A client's occurrence index: `:0` is the one occurrence; a second is FLAT's `:1`.
    let two = json!({"x": {"a": [{"b": ["1"]}, {"b": ["2"]}]}});
    let flat = structured_to_flat(&two).expect("flat");
    assert_eq!(flat, json!({"x/a/b": "1", "x/a:1/b": "2"}));
    assert_eq!(flat_to_structured(&flat), two);
}

#[test]
fn bad_structured_input_is_refused() {
    let t = "cophr.problems.v1";
    for bad in [
        json!([]),
        json!({"problem_list": "x"}),
        json!({"problem_list": {"problem_diagnosis": {"not": "a list"}}}),
        json!({"problem_list": {"problem_diagnosis": [[1]]}}),
    ] {
        assert!(
            matches!(
                from_structured_in(&[], t, &bad),
                Err(OpenEhrError::WrongType { .. })
            ),
            "{bad}"
        );
    }
    // A name that cannot be a FLAT id, and a node the template has not.
    for bad in [
        json!({"problem_list": {"a/b": [1]}}),
        json!({"problem_list": {"problem_diagnosis": [{"nonsense": ["x"]}]}}),
    ] {
        assert!(
            matches!(
                from_structured_in(&[], t, &bad),
                Err(OpenEhrError::UnknownPath { .. })
            ),
            "{bad}"
        );
    }
    // Too deep, too many values.
    let mut deep = json!(["x"]);
    for _ in 0..=MAX_DEPTH {
        deep = json!([{ "n": deep }]);
    }
    assert!(matches!(
        structured_to_flat(&json!({"r": {"n": deep}})),
        Err(OpenEhrError::TooComplex { .. })
    ));
    let many: Vec<Json> = (0..=MAX_FLAT_KEYS).map(|i| json!(i)).collect();
    assert!(matches!(
        structured_to_flat(&json!({"r": {"n": many}})),
        Err(OpenEhrError::TooComplex { .. })
    ));
}
