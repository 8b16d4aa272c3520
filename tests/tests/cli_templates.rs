//! `cophr schema define` with an openEHR template (issue 17): an OPT or web template
//! defines an extension whose fields `cophr add` writes; a later JSON version that reorders
//! fields keeps their archetype nodes; bad and unsupported templates are refused clearly,
//! storing nothing. Run `cargo build -p cophr` first.

mod cli_support;

use std::fs;

use cli_support::Person;
use tempfile::TempDir;

fn patient() -> Person {
    let p = Person::new("George Jones", "patient", None);
    p.ok(&["record", "create"]);
    p
}

const CAT: &str = "ext:uk.nhs.tissue-viability/wound-assessment";

#[test]
fn an_opt_defines_an_extension_that_cophr_add_writes() {
    let p = patient();
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("wound-assessment.opt");
    let path = file.to_str().unwrap();
    let opt = cophr_protocol::schema::WOUND_OPT;
    // An unsupported data type: refused naming the node, nothing stored.
    let before = p.entries_held();
    fs::write(
        &file,
        opt.replacen(
            "<rm_type_name>DV_BOOLEAN</rm_type_name>",
            "<rm_type_name>DV_MULTIMEDIA</rm_type_name>",
            1,
        ),
    )
    .unwrap();
    let err = p.fails(5, &["schema", "define", path, "--category", CAT]);
    assert!(
        err.contains("DV_MULTIMEDIA at /content[openEHR-EHR-OBSERVATION.exam.v1]")
            && err.contains("items[at0130] is not supported"),
        "{err}"
    );
    fs::write(&file, "<template><unclosed></template>").unwrap();
    let err = p.fails(5, &["schema", "define", path]);
    assert!(err.contains("not XML"), "{err}");
    assert_eq!(p.entries_held(), before, "nothing stored");
    // The OPT itself: version 1 of the category given.
    fs::write(&file, opt).unwrap();
    let out = p.json(&["schema", "define", path, "--category", CAT]);
    assert_eq!(out["category"], CAT);
    assert_eq!(out["version"], 1);
    assert_eq!(out["template"], "Wound assessment.v1");
    let shown = p.ok(&["schema", CAT]);
    assert!(
        shown.contains("--wound-type") && shown.contains("--body-site"),
        "{shown}"
    );
    let id = p.add(&[
        CAT,
        "--body-site",
        "left heel",
        "--wound-type",
        "Pressure ulcer",
        "--length",
        "3.5 cm",
    ]);
    let items = p.items();
    let item = items
        .iter()
        .find(|i| i["id"] == id.as_str())
        .expect("added");
    assert_eq!(item["body"]["wound-type"], "Pressure ulcer", "{item}");
    // A code not in the template's value set is refused.
    let err = p.fails(
        5,
        &["add", CAT, "--body-site", "heel", "--wound-type", "Burn"],
    );
    assert!(err.contains("wound-type"), "{err}");
    // The same file again is the next version (compatible: nothing changed).
    let out = p.json(&["schema", "define", path, "--category", CAT]);
    assert_eq!(out["version"], 2);
}

#[test]
fn a_later_json_version_that_reorders_fields_keeps_their_nodes() {
    let p = patient();
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("def.json");
    let path = file.to_str().unwrap();
    let v1 = r#"{"category": "ext:test.ns/thing", "version": 1, "title": "Thing",
        "fields": [{"name": "a", "title": "A", "type": "text"},
                   {"name": "b", "title": "B", "type": "integer"}]}"#;
    fs::write(&file, v1).unwrap();
    p.ok(&["schema", "define", path]);
    // Version 2 puts `b` first and adds `c` between: accepted, each field on its node.
    let v2 = r#"{"category": "ext:test.ns/thing", "version": 2, "title": "Thing",
        "fields": [{"name": "b", "title": "B", "type": "integer"},
                   {"name": "c", "title": "C", "type": "bool"},
                   {"name": "a", "title": "A", "type": "text"}]}"#;
    fs::write(&file, v2).unwrap();
    p.ok(&["schema", "define", path]);
    let shown = p.json(&["schema", "show", "ext:test.ns/thing"]);
    let text = shown.to_string();
    assert!(
        text.contains("\"node\":1002") && text.contains("\"node\":1003"),
        "{text}"
    );
}
