//! Extension schemas defined as data across real `cophr node run` processes on 127.0.0.1
//! (issue 17, `docs/extensions.md`): the home-care service, granted write on its two
//! extension categories, defines the shipped wound-care and blood-test-request schemas in
//! George's record (hosted by a blind community host) and writes entries in them from
//! command-line flags converted by those schemas; a bad entry is refused naming its field,
//! nothing stored; George's node (a second replica) pulls the definitions and the entries,
//! opens them and checks them against the schema in effect at each entry's position (none
//! flagged), lists and shows the schemas; his export carries them as data and a replica
//! made from it alone knows them. Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use cophr_protocol::schema::EXAMPLES;
use serde_json::Value;

const WOUND: &str = "ext:uk.nhs.tissue-viability/wound-care";
const BLOODS: &str = "ext:uk.nhs.pathology/blood-test-request";

fn example_file(dir: &std::path::Path, name: &str) -> String {
    let json = EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, j)| *j)
        .expect("a shipped example");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json).expect("write the definition");
    path.to_str().expect("utf-8 path").to_owned()
}

/// The item of entry `id` in `who`'s `show --json`, if shown.
fn item(who: &Person, id: &str) -> Option<Value> {
    let v: Value = who.live_json(&["show"]);
    v["items"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id || i["current"] == id)
        .cloned()
}

#[test]
fn the_home_care_service_writes_entries_validated_by_its_schemas_on_every_replica() {
    let george = Person::new("George Jones", "patient", None);
    let nurse = Person::new(
        "Leeds Community Nursing",
        "home-care",
        Some("Leeds Community Healthcare"),
    );
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &nurse.actor,
        "--level",
        "write",
        "--categories",
        &format!("{WOUND},{BLOODS}"),
    ]);
    george.live_ok(&["host", &host_node.addr()]);
    let _nurse_node = Node::start(&nurse, &[]);
    nurse.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    let dir = tempfile::TempDir::new().expect("a directory");

    // The service defines its two schemas (write on those extensions lets it).
    eventually("the nurse's replica to hold George's grant", || {
        nurse
            .live(&["schema", "define", &example_file(dir.path(), "wound-care")])
            .code
            == 0
    });
    nurse.live_ok(&[
        "schema",
        "define",
        &example_file(dir.path(), "blood-test-request"),
    ]);
    // ReSPECT is not an extension its grant covers: refused, nothing stored.
    let r = nurse.live(&["schema", "define", &example_file(dir.path(), "respect")]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("outside the grant's scope"),
        "{}",
        r.stderr
    );

    // Entries from flags, converted by the schema (a quantity with its unit, a list).
    let wound = nurse.live_add(&[
        WOUND,
        "--wound-type",
        "pressure-ulcer",
        "--location",
        "left heel",
        "--pressure-ulcer-category",
        "category-2",
        "--length",
        "3.5 cm",
        "--pain-score",
        "3",
        "--assessed",
        "2026-12-01T10:00:00Z",
    ]);
    let bloods = nurse.live_add(&[
        BLOODS,
        "--tests",
        "FBC, U&E, CRP",
        "--clinical-details",
        "Wound slow to heal; check for infection and renal function",
        "--urgency",
        "routine",
        "--requested-by",
        "Nurse Kay Amos",
        "--collection-setting",
        "home-visit",
    ]);
    // A bad entry: refused on the writer's node naming the field; nothing stored.
    let r = nurse.live(&[
        "add",
        WOUND,
        "--wound-type",
        "bruise",
        "--location",
        "shin",
        "--assessed",
        "2026-12-01T10:00:00Z",
    ]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr.contains("field `wound-type` must be one of"),
        "{}",
        r.stderr
    );
    let r = nurse.live(&["add", BLOODS, "--tests", "FBC", "--urgency", "routine"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr.contains("field `clinical-details` is required"),
        "{}",
        r.stderr
    );

    // George's node: the definitions and both entries arrive; opened and checked against
    // the schema in effect at each entry's position, neither is flagged.
    eventually("George's node to hold both entries", || {
        george.sees(&wound) && george.sees(&bloods)
    });
    for id in [&wound, &bloods] {
        let i = item(&george, id).expect("shown");
        assert!(
            i["flag"].is_null(),
            "checked and valid on George's replica: {i}"
        );
    }
    let w = item(&george, &wound).expect("shown");
    assert_eq!(w["body"]["length"]["unit"], "cm", "{w}");
    assert_eq!(w["body"]["pain-score"], 3, "{w}");
    let b = item(&george, &bloods).expect("shown");
    assert_eq!(b["body"]["tests"].as_array().map(Vec::len), Some(3), "{b}");
    let list: Value = george.live_json(&["schema", "list"]);
    let cats: Vec<&str> = list["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .filter_map(|s| s["category"].as_str())
        .collect();
    assert_eq!(cats, vec![BLOODS, WOUND]);
    let shown: Value = george.live_json(&["schema", "show", WOUND]);
    assert_eq!(shown["definition"]["version"], 1);
    assert_eq!(shown["defined_by"]["name"], "Leeds Community Nursing");
    // George, as the patient, gives a compatible version 2; an incompatible one is refused.
    let mut v2: Value = serde_json::from_value(shown["definition"].clone()).expect("JSON");
    v2["version"] = 2.into();
    v2["fields"][0]["codes"]
        .as_array_mut()
        .expect("codes")
        .push("burn".into());
    let v2_file = dir.path().join("wound-v2.json");
    std::fs::write(&v2_file, v2.to_string()).expect("write");
    george.live_ok(&["schema", "define", v2_file.to_str().expect("utf-8")]);
    v2["version"] = 3.into();
    v2["fields"][0]["required"] = false.into();
    v2["fields"][12]["required"] = true.into();
    std::fs::write(&v2_file, v2.to_string()).expect("write");
    let r = george.live(&["schema", "define", v2_file.to_str().expect("utf-8")]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr.contains("field `pain-score` becomes required"),
        "{}",
        r.stderr
    );
    eventually("the nurse's replica to see version 2", || {
        let s: Value = nurse.live_json(&["schema", "show", WOUND]);
        s["definition"]["version"] == 2
    });
    nurse.live_add(&[
        WOUND,
        "--wound-type",
        "burn",
        "--location",
        "right hand",
        "--assessed",
        "2026-12-02T09:00:00Z",
    ]);

    // The export carries the definitions as data: a replica made from it alone (a GP
    // George lets view wound care) knows them.
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    george.live_ok(&["grant", &gp.actor, "--level", "view", "--categories", WOUND]);
    let file = dir.path().join("george.cophr");
    george.live_ok(&["export", file.to_str().expect("utf-8")]);
    george.live_ok(&["verify", file.to_str().expect("utf-8")]);
    gp.import(&file);
    let list: Value = gp.json(&["schema", "list"]);
    let listed: Vec<&str> = list["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .filter_map(|s| s["category"].as_str())
        .collect();
    assert!(listed.contains(&WOUND), "{list}");
    let shown: Value = gp.json(&["schema", "show", WOUND, "--schema-version", "1"]);
    assert_eq!(shown["versions"], serde_json::json!([1, 2]));
    assert_eq!(shown["definition"]["version"], 1);
}
