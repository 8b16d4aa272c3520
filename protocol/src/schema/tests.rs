//! The schema's unit tests: every category's example validates and summarises, every
//! error is produced, flags and JSON convert.

use std::collections::BTreeMap;

use data_encoding::BASE64;
use serde_json::json;

use super::*;
use crate::category::Category;
use crate::value::Value;

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
const PDF: &[u8] = b"%PDF-1.7\n%test\n";

fn q(value: f64, unit: &str) -> serde_json::Value {
    json!({"value": value, "unit": unit})
}

/// A valid example body for every built-in category.
fn example(c: &Category) -> Value {
    let j = match c {
        Category::AboutMe => json!({"thing-1": "I am deaf in my left ear",
            "thing-2": "I look after my husband", "summary": "Retired teacher.\nKeen gardener."}),
        Category::Alerts => json!({"alert": "Metallic hip implant", "severity": "high"}),
        Category::Demographics => json!({"surname": "Smith", "forename": "Jane",
            "date-of-birth": "1959-02-28", "gender": "female", "address": "1 High St\nLeeds"}),
        Category::KeyContacts => json!({"name": "John Smith", "relationship": "next-of-kin",
            "telephone": "0113 496 0000"}),
        Category::Preferences => json!({"organ-donation": "yes", "language": "Welsh"}),
        Category::Allergies => json!({"agent": "Penicillin", "reaction": "rash",
            "severity": "severe", "onset": "2019", "criticality": "high"}),
        Category::Problems => json!({"problem": "Type 2 diabetes", "onset": "2019-05",
            "resolved": "2020-01-02", "status": "resolved"}),
        Category::Procedures => json!({"procedure": "Appendicectomy", "outcome": "good",
            "date": "2001-07-14"}),
        Category::Medications => json!({"medication": "Metformin 500 mg tablets",
            "dose": "one twice a day", "start": "2019-06", "status": "active"}),
        Category::Immunisations => json!({"immunisation": "Influenza", "status": "completed",
            "date": "2025-10-01"}),
        Category::VitalSigns => json!({"systolic": q(140.0, "mm[Hg]"),
            "diastolic": q(90.0, "mm[Hg]"), "heart-rate": q(72.0, "/min"),
            "temperature": q(37.2, "Cel"), "measured-at": "2026-11-22T10:15:00Z"}),
        Category::Wearables => json!({"heart-rate": q(64.0, "/min"), "steps": 8042,
            "device": "wristband", "measured-at": "2026-11-22T10:15:00.123+01:00"}),
        Category::LabResults => json!({"test": "HbA1c", "result": "48", "unit": "mmol/mol",
            "interpretation": "high", "status": "final", "collected": "2026-11-20T09:00:00Z"}),
        Category::Investigations => json!({"investigation": "Chest X-ray", "kind": "imaging",
            "result": "No abnormality detected."}),
        Category::Examinations => json!({"height": q(170.0, "cm"), "weight": q(70.5, "kg"),
            "bmi": q(24.4, "kg/m2")}),
        Category::Lifestyle => json!({"smoking": "former", "alcohol": "10 units/week"}),
        Category::FamilyHistory => json!({"condition": "Breast cancer", "relative": "mother",
            "genomic-markers": ["BRCA1", "BRCA2"]}),
        Category::Documents => json!({"title": "Discharge letter",
            "media-type": "application/pdf", "data": BASE64.encode(PDF)}),
        Category::Questionnaires => json!({"questionnaire": "EQ-5D-5L",
            "answers": [{"question": "Mobility", "answer": 1},
                        {"question": "Anxious?", "answer": false},
                        {"question": "Comment", "answer": "fine"}],
            "score": 0.86, "completed": "2026-11-22T10:15:00Z"}),
        Category::Messages => json!({"text": "Can I take ibuprofen?", "subject": "Pain"}),
        Category::Appointments => json!({"status": "booked", "start": "2026-12-10T09:30:00Z",
            "end": "2026-12-10T10:00:00Z", "description": "Renal clinic review",
            "place": "St James's, outpatients 4", "with": ["Dr Patel"],
            "reminders": ["1d", "2h"]}),
        Category::Tasks => json!({"kind": "referral", "description": "Please see George",
            "requester": crate::testkit::key(1, "gp").actor().to_string(),
            "owner": crate::testkit::key(2, "renal").actor().to_string(),
            "status": "sent", "due": "2026-12-31"}),
        Category::Extension(_) => json!({"anything": 1}),
    };
    body_from_json(c, &j).unwrap_or_else(|e| panic!("{c}: {e}"))
}

fn map(j: serde_json::Value) -> Value {
    Value::from_json(&j)
}

#[test]
fn every_built_in_category_has_a_schema_in_order() {
    assert_eq!(all().len(), Category::BUILT_IN.len());
    for (s, c) in all().iter().zip(Category::BUILT_IN.iter()) {
        assert_eq!(&s.category, c);
        assert_eq!(schema(c), Some(s));
        assert_eq!(s.title, c.title());
        assert!(s.archetype.starts_with("openEHR-"), "{c}");
        assert!(!s.fhir.is_empty(), "{c}");
        assert!(s.field(s.summary_field).is_some(), "{c}: summary field");
        assert!(
            s.fields.iter().any(|f| f.required) || !s.at_least_one.is_empty(),
            "{c}: an empty body must be refused"
        );
        for f in s
            .at_least_one
            .iter()
            .chain(s.together.iter().flat_map(|(a, b)| [a, b]))
        {
            assert!(s.field(f).is_some(), "{c}: rule names unknown field {f}");
        }
        let mut names: Vec<_> = s.fields.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), s.fields.len(), "{c}: duplicate field");
        for f in s.fields {
            assert!(f
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            if let FieldType::Quantity { units } = f.ty {
                for u in units {
                    assert!(
                        s.range(f.name, Some(u)).is_some(),
                        "{c}: no range for {} {u}",
                        f.name
                    );
                }
            }
        }
    }
    assert_eq!(
        schema(&Category::Extension("ext:uk.respect/respect".into())),
        None
    );
    // The definitions export as JSON.
    let j = serde_json::to_value(all()).unwrap();
    assert_eq!(j[0]["category"], "about-me");
    assert_eq!(j[5]["fields"][2]["type"]["code"][0], "mild");
}

#[test]
fn examples_validate_and_summarise() {
    for c in Category::BUILT_IN.iter() {
        let body = example(c);
        validate(c, &body).unwrap();
        let s = summary(c, &body);
        assert!(!s.is_empty(), "{c}");
        assert!(s.chars().count() <= MAX_SUMMARY + 1);
    }
    assert_eq!(
        summary(&Category::Allergies, &example(&Category::Allergies)),
        "Penicillin — rash (severe)"
    );
    assert_eq!(
        summary(&Category::VitalSigns, &example(&Category::VitalSigns)),
        "BP 140/90 mm[Hg], HR 72 /min, Temp 37.2 Cel"
    );
}

#[test]
fn summary_never_panics_or_is_empty() {
    let long = "é".repeat(1000);
    let odd = [
        Value::Null,
        Value::Int(3),
        Value::map(),
        Value::Text(long.clone()),
        map(json!({"systolic": 3, "diastolic": {"value": "x"}, "heart-rate": [1, [2]]})),
        map(json!({"agent": long, "reaction": "\n\t", "severity": {"a": 1}})),
        Value::Map(BTreeMap::from([(
            "data".to_owned(),
            Value::Bytes(vec![0; 5000]),
        )])),
        Value::Map(BTreeMap::from([(
            "answers".to_owned(),
            Value::Float(f64::NAN),
        )])),
    ];
    let mut cats = Category::BUILT_IN.to_vec();
    cats.push(Category::Extension("ext:x/y".into()));
    for c in &cats {
        for v in &odd {
            let s = summary(c, v);
            assert!(!s.is_empty());
            assert!(!s.chars().any(char::is_control));
        }
    }
}

fn err(c: Category, j: serde_json::Value) -> SchemaError {
    validate(&c, &map(j)).unwrap_err()
}

#[test]
fn each_error_is_produced() {
    let e = err(Category::Allergies, json!({"agent": "x", "colour": "red"}));
    assert!(matches!(&e, SchemaError::UnknownField { field, known, .. }
        if field == "colour" && known.contains("severity")));
    assert!(e
        .to_string()
        .starts_with("allergies: unknown field `colour`"));

    let e = err(Category::Allergies, json!({"reaction": "rash"}));
    assert_eq!(e.to_string(), "allergies: field `agent` is required");

    let e = err(
        Category::Allergies,
        json!({"agent": "x", "severity": "bad"}),
    );
    assert_eq!(
        e.to_string(),
        "allergies: field `severity` must be one of mild, moderate, severe (got `bad`)"
    );

    let e = err(Category::VitalSigns, json!({"heart-rate": q(72.0, "bpm")}));
    assert!(
        matches!(e, SchemaError::BadUnit { ref unit, .. } if unit == "bpm"),
        "{e}"
    );

    let e = err(Category::VitalSigns, json!({"spo2": q(101.0, "%")}));
    assert!(
        matches!(e, SchemaError::OutOfRange { max, .. } if max == 100.0),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "vital-signs: field `spo2` is 101 %, outside the plausible range 0 to 100 %"
    );
    let e = err(Category::VitalSigns, json!({"temperature": q(98.6, "Cel")}));
    assert!(matches!(e, SchemaError::OutOfRange { .. }), "{e}");
    validate(
        &Category::VitalSigns,
        &map(json!({"temperature": q(98.6, "[degF]")})),
    )
    .unwrap();
    let e = err(Category::Wearables, json!({"steps": -1}));
    assert!(matches!(e, SchemaError::OutOfRange { .. }), "{e}");

    for bad in [
        "2019-02-29",
        "2019-13",
        "19",
        "2019-1-01",
        "0000",
        "２０１９",
    ] {
        let e = err(Category::Problems, json!({"problem": "x", "onset": bad}));
        assert!(matches!(e, SchemaError::BadDate { .. }), "{bad}: {e}");
    }
    for good in ["2020-02-29", "2019-12", "2019"] {
        validate(
            &Category::Problems,
            &map(json!({"problem": "x", "onset": good})),
        )
        .unwrap();
    }
    for bad in [
        "2026-11-22",
        "2026-11-22T25:00:00Z",
        "2026-11-22T10:15:00",
        "2026-11-22T10:15:00+1:00",
    ] {
        let e = err(
            Category::LabResults,
            json!({"test": "x", "result": "1", "collected": bad}),
        );
        assert!(matches!(e, SchemaError::BadDate { .. }), "{bad}: {e}");
    }

    let e = err(Category::Wearables, json!({"steps": "many"}));
    assert!(
        matches!(&e, SchemaError::WrongType { field, .. } if field == "steps"),
        "{e}"
    );
    let e = err(Category::VitalSigns, json!({"heart-rate": 72}));
    assert!(matches!(e, SchemaError::WrongType { .. }), "{e}");
    let e = err(Category::Allergies, json!({"agent": 5}));
    assert_eq!(
        e.to_string(),
        "allergies: field `agent` must be text (at most 1024 bytes, one line) (got a whole number)"
    );

    let e = err(
        Category::Allergies,
        json!({"agent": "a".repeat(MAX_TEXT + 1)}),
    );
    assert!(matches!(e, SchemaError::TooLong { len, max: MAX_TEXT, .. } if len == MAX_TEXT + 1));
    let e = err(
        Category::Messages,
        json!({"text": "a".repeat(MAX_LONG_TEXT + 1)}),
    );
    assert!(matches!(e, SchemaError::TooLong { .. }));
    validate(
        &Category::Messages,
        &map(json!({"text": "a".repeat(MAX_LONG_TEXT)})),
    )
    .unwrap();

    let e = err(Category::Allergies, json!({"agent": "  "}));
    assert!(matches!(e, SchemaError::EmptyField { .. }));
    let e = err(Category::Allergies, json!({"agent": "pea\u{1b}[31m"}));
    assert!(matches!(e, SchemaError::ControlCharacters { .. }));

    let e = validate(&Category::Allergies, &Value::Text("penicillin".into())).unwrap_err();
    assert!(matches!(e, SchemaError::NotAMap { got: "text", .. }));
    let ext = Category::Extension("ext:uk.respect/respect".into());
    assert!(matches!(
        validate(&ext, &Value::map()),
        Err(SchemaError::Empty { .. })
    ));
    assert!(matches!(
        validate(&ext, &Value::Int(1)),
        Err(SchemaError::NotAMap { .. })
    ));
    validate(
        &ext,
        &map(json!({"cpr": "not for resuscitation", "n": [1, {"a": null}]})),
    )
    .unwrap();
    let e = validate(
        &ext,
        &Value::Map(BTreeMap::from([("x".into(), Value::Float(f64::INFINITY))])),
    );
    assert!(matches!(e, Err(SchemaError::Malformed { .. })));

    let e = err(Category::Preferences, json!({}));
    assert!(matches!(e, SchemaError::AtLeastOne { .. }));
    let e = err(
        Category::VitalSigns,
        json!({"measured-at": "2026-11-22T10:15:00Z"}),
    );
    assert!(matches!(e, SchemaError::AtLeastOne { .. }), "{e}");
    let e = err(
        Category::VitalSigns,
        json!({"systolic": q(120.0, "mm[Hg]")}),
    );
    assert!(
        matches!(&e, SchemaError::Together { missing, .. } if missing == "diastolic"),
        "{e}"
    );
    let e = err(
        Category::VitalSigns,
        json!({"systolic": q(80.0, "mm[Hg]"), "diastolic": q(120.0, "mm[Hg]")}),
    );
    assert!(matches!(e, SchemaError::Rule(_)), "{e}");
    let e = err(
        Category::Problems,
        json!({"problem": "x", "onset": "2020", "resolved": "2019-12"}),
    );
    assert!(matches!(e, SchemaError::Rule(_)), "{e}");
    validate(
        &Category::Problems,
        &map(json!({"problem": "x", "onset": "2020-05", "resolved": "2020"})),
    )
    .unwrap();

    let e = err(
        Category::Questionnaires,
        json!({"questionnaire": "x", "answers": [{"question": "q"}]}),
    );
    assert!(matches!(e, SchemaError::WrongType { .. }), "{e}");
    let e = err(
        Category::FamilyHistory,
        json!({"condition": "x", "relative": "y", "genomic-markers": []}),
    );
    assert!(matches!(e, SchemaError::EmptyField { .. }), "{e}");
}

#[test]
fn documents_are_checked_against_their_content() {
    let c = Category::Documents;
    let body = |mt: &str, data: &[u8]| {
        Value::Map(BTreeMap::from([
            ("title".to_owned(), Value::Text("t".into())),
            ("media-type".to_owned(), Value::Text(mt.into())),
            ("data".to_owned(), Value::Bytes(data.to_vec())),
        ]))
    };
    validate(&c, &body("image/png", PNG)).unwrap();
    assert!(matches!(
        validate(&c, &body("application/pdf", PNG)),
        Err(SchemaError::Rule(_))
    ));
    assert!(matches!(
        validate(&c, &body("image/png", b"MZ\x90\0")),
        Err(SchemaError::Rule(_))
    ));
    assert!(matches!(
        validate(&c, &body("image/gif", PNG)),
        Err(SchemaError::BadCode { .. })
    ));
    let mut big = PDF.to_vec();
    big.resize(MAX_DOCUMENT + 1, 0);
    assert!(matches!(
        validate(&c, &body("application/pdf", &big)),
        Err(SchemaError::TooLong { .. })
    ));
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn vital_signs_from_flags() {
    let c = Category::VitalSigns;
    let body = body_from_pairs(
        &c,
        &pairs(&[
            ("systolic", "140"),
            ("diastolic", "90 mmHg"),
            ("heart-rate", "72bpm"),
            ("temperature", "98.6 [degF]"),
            ("spo2", "97"),
            ("blood-glucose", "5.4 mmol/L"),
        ]),
    )
    .unwrap();
    assert_eq!(
        body.get("systolic"),
        Some(&map(json!({"value": 140, "unit": "mm[Hg]"})))
    );
    assert_eq!(
        body.get("diastolic"),
        Some(&map(json!({"value": 90, "unit": "mm[Hg]"})))
    );
    assert_eq!(
        body.get("heart-rate"),
        Some(&map(json!({"value": 72, "unit": "/min"})))
    );
    assert_eq!(
        body.get("temperature"),
        Some(&map(json!({"value": 98.6, "unit": "[degF]"})))
    );
    assert_eq!(
        body.get("spo2"),
        Some(&map(json!({"value": 97, "unit": "%"})))
    );
    let t = body_from_pairs(&c, &pairs(&[("temperature", "37.2 Cel")])).unwrap();
    assert_eq!(
        t.get("temperature"),
        Some(&map(json!({"value": 37.2, "unit": "Cel"})))
    );
    let t = body_from_pairs(&c, &pairs(&[("temperature", "37.2")])).unwrap();
    assert_eq!(
        t.get("temperature"),
        Some(&map(json!({"value": 37.2, "unit": "Cel"})))
    );

    let e = body_from_pairs(&c, &pairs(&[("heart-rate", "fast")])).unwrap_err();
    assert!(matches!(e, SchemaError::WrongType { .. }), "{e}");
    let e = body_from_pairs(&c, &pairs(&[("heart-rate", "72 furlongs")])).unwrap_err();
    assert!(matches!(e, SchemaError::BadUnit { .. }), "{e}");
    let e = body_from_pairs(&c, &pairs(&[("heart-rate", "72"), ("heart-rate", "73")])).unwrap_err();
    assert!(matches!(e, SchemaError::Duplicate { .. }), "{e}");
    let e = body_from_pairs(&c, &pairs(&[("pulse", "72")])).unwrap_err();
    assert!(matches!(e, SchemaError::UnknownField { .. }), "{e}");
}

#[test]
fn other_fields_from_flags() {
    let fh = body_from_pairs(
        &Category::FamilyHistory,
        &pairs(&[
            ("condition", "Breast cancer"),
            ("relative", "mother"),
            ("genomic-markers", "BRCA1, BRCA2"),
            ("genomic-markers", "TP53"),
        ]),
    )
    .unwrap();
    assert_eq!(
        fh.get("genomic-markers"),
        Some(&map(json!(["BRCA1", "BRCA2", "TP53"])))
    );

    let a = body_from_pairs(
        &Category::Allergies,
        &pairs(&[("agent", "Penicillin"), ("severity", "Severe")]),
    )
    .unwrap();
    assert_eq!(a.get("severity"), Some(&Value::Text("severe".into())));

    let qn = body_from_pairs(
        &Category::Questionnaires,
        &pairs(&[
            ("questionnaire", "EQ-5D-5L"),
            ("answers", "Mobility=1; Pain=true;Note=ok"),
            ("score", "0.8"),
        ]),
    )
    .unwrap();
    assert_eq!(
        qn.get("answers"),
        Some(&map(json!([{"question": "Mobility", "answer": 1},
                         {"question": "Pain", "answer": true},
                         {"question": "Note", "answer": "ok"}])))
    );

    let e = body_from_pairs(
        &Category::Documents,
        &pairs(&[("title", "x"), ("data", "/tmp/a.pdf")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("use --json or --file"), "{e}");
    let pre = BTreeMap::from([("data".to_owned(), Value::Bytes(PDF.to_vec()))]);
    let d = body_from_pairs_with(
        &Category::Documents,
        pre,
        &pairs(&[("title", "Letter"), ("media-type", "application/pdf")]),
    )
    .unwrap();
    assert_eq!(d.get("data"), Some(&Value::Bytes(PDF.to_vec())));

    let ext = Category::Extension("ext:uk.respect/respect".into());
    let b = body_from_pairs(&ext, &pairs(&[("cpr", "not for resuscitation")])).unwrap();
    assert_eq!(
        b.get("cpr"),
        Some(&Value::Text("not for resuscitation".into()))
    );
    assert!(matches!(
        body_from_pairs(&ext, &[]),
        Err(SchemaError::Empty { .. })
    ));
}

#[test]
fn document_from_json_with_base64() {
    let c = Category::Documents;
    let j = json!({"title": "Scan", "media-type": "image/png", "data": BASE64.encode(PNG),
                   "date": "2026-11", "description": null});
    let body = body_from_json(&c, &j).unwrap();
    assert_eq!(body.get("data"), Some(&Value::Bytes(PNG.to_vec())));
    assert_eq!(body.get("description"), None);
    // Round trip through Value::to_json.
    assert_eq!(body_from_json(&c, &body.to_json()).unwrap(), body);
    assert_eq!(summary(&c, &body), "Scan (image/png, 12 bytes, 2026-11)");

    let bad = json!({"title": "Scan", "media-type": "image/png", "data": "not base64!"});
    assert!(matches!(
        body_from_json(&c, &bad),
        Err(SchemaError::WrongType { .. })
    ));
    let missing = json!({"title": "Scan", "media-type": "image/png"});
    assert!(matches!(
        body_from_json(&c, &missing),
        Err(SchemaError::AtLeastOne { .. })
    ));
    let half = json!({"title": "Scan", "media-type": "image/png", "url": "https://x.org/a"});
    assert!(matches!(
        body_from_json(&c, &half),
        Err(SchemaError::Together { .. })
    ));
    let nothing = json!({"title": "Scan"});
    assert!(matches!(
        body_from_json(&c, &nothing),
        Err(SchemaError::AtLeastOne { .. })
    ));
    body_from_json(
        &c,
        &json!({"title": "Scan", "url": "https://example.org/scan"}),
    )
    .unwrap();
    assert!(matches!(
        body_from_json(&c, &json!([1])),
        Err(SchemaError::NotAMap { got: "a list", .. })
    ));

    let v = body_from_json(
        &Category::VitalSigns,
        &json!({"heart-rate": 72, "spo2": {"value": 98, "unit": "%"}}),
    )
    .unwrap();
    assert_eq!(
        v.get("heart-rate"),
        Some(&map(json!({"value": 72, "unit": "/min"})))
    );
}

#[test]
fn dicom_opendocument_and_text_are_recognised_by_their_content() {
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM\x02\x00\x00\x00");
    assert_eq!(sniff(&dicom), Some("application/dicom"));
    // A preamble too short for the marker.
    assert_eq!(sniff(&dicom[..130]), None);
    let odf = |mime: &str| {
        let mut b = b"PK\x03\x04".to_vec();
        b.resize(30, 0);
        b.extend_from_slice(b"mimetype");
        b.extend_from_slice(mime.as_bytes());
        b.extend_from_slice(b"PK\x03\x04");
        b
    };
    assert_eq!(
        sniff(&odf("application/vnd.oasis.opendocument.text")),
        Some("application/vnd.oasis.opendocument.text")
    );
    assert_eq!(
        sniff(&odf("application/vnd.oasis.opendocument.spreadsheet")),
        Some("application/vnd.oasis.opendocument.spreadsheet")
    );
    // A template, or any other zip, is not a document cophr accepts.
    assert_eq!(
        sniff(&odf("application/vnd.oasis.opendocument.text-template")),
        None
    );
    assert_eq!(sniff(b"PK\x03\x04 just a zip"), None);
    assert_eq!(
        sniff("Discharge summary\r\n\tMetformin 500 mg – twice daily\n".as_bytes()),
        Some("text/plain")
    );
    // A multi-byte character cut by the end of the sample is still text.
    let cut = "café".as_bytes();
    assert_eq!(sniff(&cut[..cut.len() - 1]), Some("text/plain"));
    assert_eq!(sniff(b"binary\x00data"), None);
    assert_eq!(sniff(&[0xC3, 0x28]), None);
    assert_eq!(sniff(b""), None);
}

#[test]
fn a_document_is_one_file_inline_or_stored_apart_with_its_media_type() {
    use crate::blob::{BlobHash, DocumentFile};
    let c = Category::Documents;
    let file = DocumentFile {
        hash: BlobHash::of(b"stored"),
        size: 7_000_000,
        key: None,
    };
    let with = |pairs: &[(&str, Value)]| {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    };
    let title = ("title", Value::Text("CT scan".into()));
    let pdf = ("media-type", Value::Text("application/pdf".into()));
    let dicom = ("media-type", Value::Text("application/dicom".into()));
    // Stored apart, larger than any inline file.
    assert_eq!(
        validate(
            &c,
            &with(&[title.clone(), dicom.clone(), ("file", file.to_value())])
        ),
        Ok(())
    );
    assert!(matches!(
        validate(&c, &with(&[title.clone(), ("file", file.to_value())])),
        Err(SchemaError::Together { .. })
    ));
    assert!(matches!(
        validate(
            &c,
            &with(&[
                title.clone(),
                pdf.clone(),
                ("url", Value::Text("https://x".into()))
            ])
        ),
        Err(SchemaError::Together { .. })
    ));
    let both = with(&[
        title.clone(),
        pdf.clone(),
        ("data", Value::Bytes(PDF.to_vec())),
        ("file", file.to_value()),
    ]);
    assert!(matches!(validate(&c, &both), Err(SchemaError::Rule(_))));
    let mut bad = file.to_value();
    if let Value::Map(m) = &mut bad {
        m.insert("size".into(), Value::Int(-1));
    }
    assert!(matches!(
        validate(&c, &with(&[title.clone(), dicom.clone(), ("file", bad)])),
        Err(SchemaError::Rule(_))
    ));
    // From app JSON: the hash as shown (hex), or as bodies are written out (base64).
    let j = json!({"title": "CT scan", "media-type": "application/dicom",
        "file": {"hash": file.hash.to_hex(), "size": 7_000_000}});
    let body = body_from_json(&c, &j).unwrap();
    assert_eq!(
        DocumentFile::from_value(body.get("file").unwrap()).unwrap(),
        file
    );
    let round = body_from_json(&c, &body.to_json()).unwrap();
    assert_eq!(round, body);
    let j = json!({"title": "CT scan", "media-type": "application/dicom",
        "file": {"hash": "zz", "size": 1}});
    assert!(matches!(
        body_from_json(&c, &j),
        Err(SchemaError::WrongType { .. })
    ));
    // Its summary shows the size.
    assert!(
        summary(&c, &body).contains("6.7 MiB"),
        "{}",
        summary(&c, &body)
    );
}
