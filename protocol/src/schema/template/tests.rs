//! Template-based definitions: the shipped OPT and web templates read into definitions
//! that keep the template's shape; compositions of the template both ways; every bound at
//! its limit; unsupported nodes and malformed input refused naming what is wrong.

use serde_json::{json, Value as Json};

use super::*;
use crate::ids::EntryId;
use crate::openehr::{self, flat, Composer, Meta};
use crate::schema::{body_from_json_in, WOUND_OPT};
use crate::value::Value;

fn wound() -> ExtensionSchema {
    ExtensionSchema::from_opt(WOUND_OPT, None, 1).expect("the shipped OPT reads")
}

fn meta() -> Meta {
    Meta {
        uid: Some(openehr::version_uid(&EntryId([3; 32]), 1)),
        start_time: "2026-12-01T09:00:00.000Z".into(),
        composer: Composer {
            name: Some("Nurse Bea".into()),
            actor: "a-test".into(),
        },
    }
}

fn body(def: &ExtensionSchema, j: Json) -> Value {
    def.with_view(|s| body_from_json_in(&def.category, Some(s), &j))
        .expect("a valid body")
}

fn good_body(def: &ExtensionSchema) -> Value {
    body(
        def,
        json!({"body-site": "left heel", "wound-type": "Pressure ulcer",
               "pressure-ulcer-category": 2, "length": {"value": 3.5, "unit": "cm"},
               "signs-of-infection": false, "synopsis": "foam dressing, reposition 2-hourly",
               "next-review": "2026-12-08"}),
    )
}

#[test]
fn the_shipped_opt_reads_into_a_definition_keeping_the_template_s_shape() {
    let d = wound();
    assert_eq!(d.category.name(), "ext:openehr/wound-assessment");
    assert_eq!(d.version, 1);
    assert_eq!(d.title, "Wound assessment");
    let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "body-site",
            "wound-type",
            "pressure-ulcer-category",
            "length",
            "width",
            "signs-of-infection",
            "clinical-description",
            "synopsis",
            "next-review"
        ]
    );
    let f = |n: &str| d.field(n).expect(n);
    // Mandatory from min: the element and every node up to its entry at least once.
    assert!(f("body-site").required && f("wound-type").required);
    assert!(!f("length").required);
    // The plan's entry is optional (0..1): its elements are not required.
    assert!(!f("synopsis").required);
    assert_eq!(f("wound-type").ty, ExtensionType::Code);
    assert_eq!(
        f("wound-type").codes,
        [
            "Pressure ulcer",
            "Venous leg ulcer",
            "Surgical wound",
            "Other"
        ]
    );
    assert_eq!(f("length").ty, ExtensionType::Quantity);
    assert_eq!(f("length").units, ["cm", "mm"]);
    assert_eq!(
        (f("length").min, f("length").max),
        (Some(0.0), Some(5000.0))
    );
    assert_eq!(f("pressure-ulcer-category").ty, ExtensionType::Integer);
    assert_eq!(
        (
            f("pressure-ulcer-category").min,
            f("pressure-ulcer-category").max
        ),
        (Some(1.0), Some(4.0))
    );
    assert_eq!(f("signs-of-infection").ty, ExtensionType::Bool);
    assert_eq!(f("next-review").ty, ExtensionType::Date);
    let t = d.template.as_ref().expect("a template map");
    assert_eq!(t.id, "Wound assessment.v1");
    assert_eq!(t.composition, "openEHR-EHR-COMPOSITION.encounter.v1");
    assert_eq!(t.entries.len(), 2);
    assert_eq!(t.entries[0].archetype, "openEHR-EHR-OBSERVATION.exam.v1");
    assert_eq!(t.entries[0].rm_type, "OBSERVATION");
    assert_eq!(
        t.entries[0].event.as_deref(),
        Some("/data[at0001]/events[at0002]")
    );
    assert_eq!(t.entries[1].rm_type, "EVALUATION");
    assert_eq!(
        t.fields[1].path,
        "/data[at0001]/events[at0002]/data[at0003]/items[at0100]"
    );
    assert_eq!(t.fields[1].codes, ["at0101", "at0102", "at0103", "at0104"]);
    assert_eq!(
        t.code_id(&d, "wound-type", "Surgical wound"),
        Some("at0103")
    );
    // It passes the gate's structural check and round-trips as the stored form.
    assert_eq!(d.check(), Ok(()));
    let cbor = crate::entry::to_cbor(&d);
    let back: ExtensionSchema = crate::entry::from_cbor_canonical(&cbor).expect("decodes");
    assert_eq!(back, d);
}

#[test]
fn a_definition_without_a_template_still_decodes_and_has_none() {
    let old = ExtensionSchema::from_json(crate::schema::EXAMPLES[1].1).expect("json");
    assert!(old.template.is_none());
    let cbor = crate::entry::to_cbor(&old);
    let back: ExtensionSchema = crate::entry::from_cbor_canonical(&cbor).expect("decodes");
    assert_eq!(back, old);
}

#[test]
fn its_entries_are_compositions_of_the_template_both_ways_canonical_and_flat() {
    let d = wound();
    let exts = [d.clone()];
    let b = good_body(&d);
    let c = openehr::to_composition_in(&exts, &d.category, &b, &meta()).expect("composes");
    assert_eq!(
        c["archetype_details"]["template_id"]["value"],
        "Wound assessment.v1"
    );
    assert_eq!(
        c["archetype_node_id"],
        "openEHR-EHR-COMPOSITION.encounter.v1"
    );
    let exam = &c["content"][0];
    assert_eq!(exam["_type"], "OBSERVATION");
    assert_eq!(exam["archetype_node_id"], "openEHR-EHR-OBSERVATION.exam.v1");
    let event = &exam["data"]["events"][0];
    assert_eq!(event["archetype_node_id"], "at0002");
    assert_eq!(event["time"]["value"], "2026-12-01T09:00:00.000Z");
    let items = event["data"]["items"].as_array().expect("items");
    let wt = items
        .iter()
        .find(|e| e["archetype_node_id"] == "at0100")
        .expect("wound type");
    assert_eq!(wt["value"]["value"], "Pressure ulcer");
    assert_eq!(wt["value"]["defining_code"]["code_string"], "at0101");
    assert_eq!(
        wt["value"]["defining_code"]["terminology_id"]["value"],
        "local"
    );
    assert_eq!(
        c["content"][1]["archetype_node_id"],
        "openEHR-EHR-EVALUATION.clinical_synopsis.v1"
    );
    // Read back: the same body.
    let (cat, back) = openehr::from_composition_in(&exts, &c).expect("reads");
    assert_eq!((cat, back), (d.category.clone(), b.clone()));
    // A composition naming the code by its at-code alone (another tool's text) reads too;
    // an at-code the template does not list is refused naming the element.
    let mut other = c.clone();
    let p = items
        .iter()
        .position(|e| e["archetype_node_id"] == "at0100")
        .expect("p");
    other["content"][0]["data"]["events"][0]["data"]["items"][p]["value"]["value"] =
        json!("Pressure ulcer (PU)");
    assert_eq!(
        openehr::from_composition_in(&exts, &other).map(|x| x.1),
        Ok(b.clone())
    );
    other["content"][0]["data"]["events"][0]["data"]["items"][p]["value"]["defining_code"]
        ["code_string"] = json!("at0999");
    let err = openehr::from_composition_in(&exts, &other).expect_err("unknown code");
    assert!(err.to_string().contains("at0100"), "{err}");
    // FLAT, with the web template's ids as its keys.
    let fl = flat::to_flat_in(&exts, &d.category, &b, &meta()).expect("flat");
    assert_eq!(
        fl["wound_assessment/wound_examination/any_event/wound_type|code"],
        "at0101"
    );
    assert_eq!(
        fl["wound_assessment/wound_examination/any_event/length|magnitude"],
        3.5
    );
    let (_, again) = flat::from_flat_in(&exts, "Wound assessment.v1", &fl).expect("reads");
    assert_eq!(again, b);
    // A FLAT composition as a client writes it: codes by at-code.
    let client = json!({
        "ctx/language": "en", "ctx/territory": "GB",
        "wound_assessment/wound_examination/any_event/time": "2026-12-02T10:00:00Z",
        "wound_assessment/wound_examination/any_event/body_site": "sacrum",
        "wound_assessment/wound_examination/any_event/wound_type|code": "at0102",
        "wound_assessment/wound_examination/any_event/width|magnitude": 12,
        "wound_assessment/wound_examination/any_event/width|unit": "mm",
    });
    let (_, got) = flat::from_flat_in(&exts, "Wound assessment.v1", &client).expect("client");
    let j = got.to_json();
    assert_eq!(j["wound-type"], "Venous leg ulcer");
    assert_eq!(j["width"], json!({"value": 12, "unit": "mm"}));
    // The web template served lists the local codes with their labels.
    let wt = flat::web_template_in(&exts, "Wound assessment.v1").expect("web template");
    assert!(wt
        .to_string()
        .contains(r#"{"label":"Venous leg ulcer","value":"at0102"}"#));
}

#[test]
fn a_web_template_reads_into_the_same_definition_as_its_opt() {
    let d = wound();
    let wt = flat::web_template_in(std::slice::from_ref(&d), "Wound assessment.v1").expect("wt");
    let back = ExtensionSchema::from_web_template(&wt.to_string(), None, 1).expect("reads");
    assert_eq!(back.fields, d.fields);
    assert_eq!(back.template, d.template);
    assert_eq!(sniff_template(&wt.to_string()), TemplateKind::WebTemplate);
    assert_eq!(sniff_template(WOUND_OPT), TemplateKind::Opt);
    assert_eq!(
        sniff_template(crate::schema::EXAMPLES[0].1),
        TemplateKind::Description
    );
}

/// A small EHRbase-style web template: `inContext` nodes, an ELEMENT with its value type
/// collapsed, `localizedName`, an event `time`; `extra` is added under the observation's
/// event data.
fn ehrbase_wt(extra: Json) -> String {
    let entry = "/content[openEHR-EHR-OBSERVATION.pulse.v2]";
    let ev = format!("{entry}/data[at0002]/events[at0003]");
    let mut kids = vec![
        json!({"id": "rate", "name": "Rate", "localizedName": "Rate", "rmType": "DV_QUANTITY",
               "nodeId": "at0004", "min": 0, "max": 1,
               "aqlPath": format!("{ev}/data[at0001]/items[at0004]/value"),
               "inputs": [{"suffix": "magnitude", "type": "DECIMAL",
                           "validation": {"range": {"minOp": ">=", "min": 0, "maxOp": "<=", "max": 1000}}},
                          {"suffix": "unit", "type": "CODED_TEXT",
                           "list": [{"value": "/min", "label": "/min"}]}]}),
        json!({"id": "regularity", "name": "Regularity", "rmType": "DV_CODED_TEXT",
               "nodeId": "at0005", "min": 1, "max": 1,
               "aqlPath": format!("{ev}/data[at0001]/items[at0005,'Regularity']/value"),
               "inputs": [{"suffix": "code", "type": "CODED_TEXT", "terminology": "local",
                           "list": [{"value": "at0006", "label": "Regular"},
                                    {"value": "at0007", "label": "Irregular"}]}]}),
        json!({"id": "time", "rmType": "DV_DATE_TIME", "min": 1, "max": 1,
               "aqlPath": format!("{ev}/time"), "inContext": true}),
    ];
    if !extra.is_null() {
        kids.push(extra);
    }
    json!({
        "templateId": "Pulse check",
        "version": "2.3",
        "tree": {"id": "pulse_check", "name": "Pulse check", "rmType": "COMPOSITION",
                 "nodeId": "openEHR-EHR-COMPOSITION.encounter.v1", "min": 1, "max": 1, "aqlPath": "",
                 "children": [
                    {"id": "category", "rmType": "DV_CODED_TEXT", "min": 1, "max": 1,
                     "aqlPath": "/category", "inContext": true},
                    {"id": "pulse", "name": "Pulse", "rmType": "OBSERVATION",
                     "nodeId": "openEHR-EHR-OBSERVATION.pulse.v2", "min": 1, "max": 1, "aqlPath": entry,
                     "children": [
                        {"id": "any_event", "name": "Any event", "rmType": "EVENT", "nodeId": "at0003",
                         "min": 0, "max": -1, "aqlPath": ev, "children": kids},
                        {"id": "language", "rmType": "CODE_PHRASE", "min": 1, "max": 1,
                         "aqlPath": format!("{entry}/language"), "inContext": true}
                     ]}
                 ]}
    })
    .to_string()
}

#[test]
fn an_ehrbase_style_web_template_reads_in_context_nodes_left_out() {
    let d = ExtensionSchema::from_web_template(&ehrbase_wt(Json::Null), None, 1).expect("reads");
    assert_eq!(d.category.name(), "ext:openehr/pulse-check");
    let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["rate", "regularity"]);
    assert_eq!(d.fields[0].units, ["/min"]);
    assert_eq!(
        (d.fields[0].min, d.fields[0].max),
        (Some(0.0), Some(1000.0))
    );
    // Mandatory needs the whole chain: the event is 0..*, so nothing here is required.
    assert!(!d.fields[1].required);
    let t = d.template.expect("map");
    assert_eq!(
        t.fields[1].path,
        "/data[at0002]/events[at0003]/data[at0001]/items[at0005]"
    );
    // A category may be given.
    let c: Category = "ext:org.example/pulse".parse().expect("category");
    let d = ExtensionSchema::from_web_template(&ehrbase_wt(Json::Null), Some(c.clone()), 3)
        .expect("reads");
    assert_eq!((d.category, d.version), (c, 3));
}

fn refused(extra: Json) -> String {
    ExtensionSchema::from_web_template(&ehrbase_wt(extra), None, 1)
        .expect_err("refused")
        .to_string()
}

#[test]
fn unsupported_nodes_are_refused_naming_the_node_and_the_reason() {
    let ev = "/content[openEHR-EHR-OBSERVATION.pulse.v2]/data[at0002]/events[at0003]";
    let m = refused(
        json!({"id": "image", "rmType": "DV_MULTIMEDIA", "min": 0, "max": 1,
        "aqlPath": format!("{ev}/data[at0001]/items[at0009]/value")}),
    );
    assert_eq!(
        m,
        format!("DV_MULTIMEDIA at {ev}/data[at0001]/items[at0009] is not supported: the data types supported are DV_TEXT, DV_CODED_TEXT (local codes), DV_QUANTITY, DV_COUNT, DV_BOOLEAN, DV_DATE and DV_DATE_TIME")
    );
    let m = refused(
        json!({"id": "note", "rmType": "DV_TEXT", "min": 0, "max": -1,
        "aqlPath": format!("{ev}/data[at0001]/items[at0010]")}),
    );
    assert!(
        m.starts_with("a repeating DV_TEXT at ") && m.contains("at0010"),
        "{m}"
    );
    let m = refused(
        json!({"id": "finding", "rmType": "DV_CODED_TEXT", "min": 0, "max": 1,
        "aqlPath": format!("{ev}/data[at0001]/items[at0011]"),
        "inputs": [{"suffix": "code", "type": "CODED_TEXT", "terminology": "SNOMED-CT"}]}),
    );
    assert!(
        m.contains("DV_CODED_TEXT at ") && m.contains("SNOMED-CT"),
        "{m}"
    );
    let m = refused(
        json!({"id": "thing", "rmType": "WIDGET", "min": 0, "max": 1,
        "aqlPath": format!("{ev}/data[at0001]/items[at0012]")}),
    );
    assert!(
        m.starts_with("WIDGET at ") && m.contains("not an RM type"),
        "{m}"
    );
    // A SECTION is not an entry cophr holds.
    let wt = ehrbase_wt(Json::Null).replace("\"rmType\":\"OBSERVATION\"", "\"rmType\":\"SECTION\"");
    let m = ExtensionSchema::from_web_template(&wt, None, 1)
        .expect_err("section")
        .to_string();
    assert!(
        m.starts_with("SECTION at /content[openEHR-EHR-OBSERVATION.pulse.v2]"),
        "{m}"
    );
}

#[test]
fn malformed_input_is_refused_clearly() {
    for (text, want) in [
        ("<template><oops></template>", "not XML"),
        ("{\"templateId\": \"x\", \"tree\": ", "not JSON"),
        ("<notatemplate/>", "root element is <template>"),
        ("<template/>", "<template_id>"),
        (
            "{\"templateId\": \"x\", \"tree\": {\"id\": \"r\"}}",
            "no rmType",
        ),
        (
            "{\"templateId\": \"x\", \"tree\": {\"rmType\": \"OBSERVATION\"}}",
            "root is a COMPOSITION",
        ),
    ] {
        let e = ExtensionSchema::from_any(text, None, 1)
            .expect_err(text)
            .to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
    // No DTD (and so no entity expansion).
    let dtd = "<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY a \"aaaa\">]><template>&a;</template>";
    let e = ExtensionSchema::from_opt(dtd, None, 1).expect_err("dtd");
    assert!(matches!(e, DefinitionError::Malformed(_)), "{e}");
}

#[test]
fn the_size_bound_holds_at_its_limit() {
    let base = WOUND_OPT.trim_end();
    let pad = |n: usize| format!("{base}{}", " ".repeat(n - base.len()));
    assert!(ExtensionSchema::from_opt(&pad(MAX_TEMPLATE_BYTES), None, 1).is_ok());
    let e = ExtensionSchema::from_opt(&pad(MAX_TEMPLATE_BYTES + 1), None, 1).expect_err("big");
    assert!(matches!(e, DefinitionError::TemplateTooLarge(_)), "{e}");
}

#[test]
fn the_depth_bound_holds_at_its_limit() {
    // XML: the template's elements nested `n` deep under the root.
    let xml = |n: usize| {
        let nest = format!("{}{}", "<x>".repeat(n - 1), "</x>".repeat(n - 1));
        WOUND_OPT.replacen("<concept>", &format!("{nest}<concept>"), 1)
    };
    assert!(ExtensionSchema::from_opt(&xml(MAX_TEMPLATE_DEPTH), None, 1).is_ok());
    let e = ExtensionSchema::from_opt(&xml(MAX_TEMPLATE_DEPTH + 1), None, 1).expect_err("deep");
    assert!(matches!(e, DefinitionError::TemplateTooLarge(_)), "{e}");
    // JSON: nesting in a key the reader does not use.
    let json = |n: usize| {
        let nest = format!("{}{}", "[".repeat(n - 1), "]".repeat(n - 1));
        ehrbase_wt(Json::Null).replacen('{', &format!("{{\"x\": {nest},"), 1)
    };
    assert!(ExtensionSchema::from_web_template(&json(MAX_TEMPLATE_DEPTH), None, 1).is_ok());
    let e = ExtensionSchema::from_web_template(&json(MAX_TEMPLATE_DEPTH + 1), None, 1)
        .expect_err("deep");
    assert!(matches!(e, DefinitionError::TemplateTooLarge(_)), "{e}");
}

#[test]
fn the_node_count_bound_holds_at_its_limit() {
    let base = ehrbase_wt(Json::Null);
    let mut n = 0usize;
    let v: Json = serde_json::from_str(&base).expect("json");
    super::json_count(&v, &mut n);
    // `{"x": [0, 0, …], …}`: the array and its items add 1 + k values.
    let with = |k: usize| base.replacen('{', &format!("{{\"x\": [{}],", vec!["0"; k].join(",")), 1);
    let k = MAX_TEMPLATE_NODES - n - 1;
    assert!(ExtensionSchema::from_web_template(&with(k), None, 1).is_ok());
    let e = ExtensionSchema::from_web_template(&with(k + 1), None, 1).expect_err("many");
    assert!(matches!(e, DefinitionError::TemplateTooLarge(_)), "{e}");
    // XML: comments are nodes too.
    let xml =
        |k: usize| WOUND_OPT.replacen("<concept>", &format!("{}<concept>", "<!---->".repeat(k)), 1);
    let count = roxmltree::Document::parse(WOUND_OPT)
        .expect("xml")
        .descendants()
        .count();
    let k = MAX_TEMPLATE_NODES - count;
    assert!(ExtensionSchema::from_opt(&xml(k), None, 1).is_ok());
    let e = ExtensionSchema::from_opt(&xml(k + 1), None, 1).expect_err("many");
    assert!(matches!(e, DefinitionError::TemplateTooLarge(_)), "{e}");
}

#[test]
fn a_later_template_version_must_be_compatible() {
    let v1 = wound();
    // v2: a new optional element, the elements in another order: compatible.
    let extra = "<children xsi:type=\"C_COMPLEX_OBJECT\"><rm_type_name>ELEMENT</rm_type_name><node_id>at0140</node_id><occurrences><lower>0</lower><upper>1</upper></occurrences><attributes xsi:type=\"C_SINGLE_ATTRIBUTE\"><rm_attribute_name>value</rm_attribute_name><children xsi:type=\"C_COMPLEX_OBJECT\"><rm_type_name>DV_TEXT</rm_type_name><node_id/></children></attributes></children>";
    let v2_text = WOUND_OPT
        .replacen("<rm_attribute_name>items</rm_attribute_name>", &format!("<rm_attribute_name>items</rm_attribute_name>{extra}"), 1)
        .replacen("<term_definitions code=\"at0130\">", "<term_definitions code=\"at0140\"><items id=\"text\">Odour</items></term_definitions><term_definitions code=\"at0130\">", 1);
    let v2 = ExtensionSchema::from_opt(&v2_text, None, 2).expect("v2");
    assert_eq!(v2.fields[0].name, "odour");
    assert_eq!(v2.compatible_with(&v1), Ok(()));
    // A body of v1 reads as v2's composition at the same paths.
    let exts = [v2.clone()];
    let c = openehr::to_composition_in(&exts, &v2.category, &good_body(&v1), &meta()).expect("c");
    let (_, b) = openehr::from_composition_in(&exts, &c).expect("reads");
    assert_eq!(b, good_body(&v1));
    // An element removed: incompatible.
    let gone = WOUND_OPT.replacen("<node_id>at0130</node_id>", "<node_id>at0131</node_id>", 1);
    let v2 = ExtensionSchema::from_opt(&gone, None, 2).expect("reads");
    let e = v2.compatible_with(&v1).expect_err("removed").to_string();
    assert!(
        e.contains("signs-of-infection") && e.contains("removed"),
        "{e}"
    );
    // A code's at-code changed: incompatible.
    let recoded = WOUND_OPT
        .replacen(
            "<code_list>at0101</code_list>",
            "<code_list>at0105</code_list>",
            1,
        )
        .replacen(
            "<term_definitions code=\"at0101\">",
            "<term_definitions code=\"at0105\">",
            1,
        );
    let v2 = ExtensionSchema::from_opt(&recoded, None, 2).expect("reads");
    let e = v2.compatible_with(&v1).expect_err("recoded").to_string();
    assert!(
        e.contains("wound-type") && e.contains("Pressure ulcer"),
        "{e}"
    );
    // A JSON description cannot follow a template-based definition.
    let mut plain = v1.clone();
    plain.template = None;
    plain.version = 2;
    let e = plain.compatible_with(&v1).expect_err("kind").to_string();
    assert!(e.contains("template-based"), "{e}");
}

#[test]
fn a_template_map_that_does_not_fit_its_definition_is_refused() {
    let d = wound();
    let mut x = d.clone();
    x.template.as_mut().expect("map").fields[0].path = "/name/value".into();
    assert!(matches!(x.check(), Err(DefinitionError::Template(_))));
    let mut x = d.clone();
    x.template.as_mut().expect("map").fields[1].codes.pop();
    assert!(matches!(x.check(), Err(DefinitionError::Template(_))));
    let mut x = d.clone();
    x.template.as_mut().expect("map").entries[0].rm_type = "SECTION".into();
    assert!(matches!(x.check(), Err(DefinitionError::Template(_))));
    let mut x = d;
    x.template.as_mut().expect("map").fields.pop();
    assert!(matches!(x.check(), Err(DefinitionError::Template(_))));
}
