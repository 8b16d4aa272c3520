//! `cophr worklist` across real processes: two patients share their records with a nurse,
//! whose node holds replicas (imported from their exports); the nurse's worklist lists both,
//! searches by name, counts what changed since she last looked (reset by `cophr show`),
//! counts an unreviewed lab result and an open referral, refuses a search beyond the bound,
//! and each row shown is audited on the nurse's node as a view of the record.

mod cli_support;

use cli_support::Person;
use serde_json::Value;

fn rows(v: &Value) -> Vec<Value> {
    v["rows"].as_array().expect("rows").clone()
}

fn row_of<'a>(rows: &'a [Value], record: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["record"] == record)
        .unwrap_or_else(|| panic!("no row for {record} in {rows:?}"))
}

/// `patient`'s record, exported and imported into `to` (how a replica arrives without a
/// network).
fn replicate(patient: &Person, to: &Person, dir: &std::path::Path) {
    let file = dir.join(format!("{}.cophr", patient.actor));
    let _ = std::fs::remove_file(&file);
    patient.export(&file);
    to.import(&file);
}

#[test]
fn a_nurse_works_through_the_records_shared_with_her() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let nurse = Person::new("Nia Patel", "nurse", Some("Leeds Home Care"));
    let george = Person::new("George Jones", "patient", None);
    let ann = Person::new("Ann Smith", "patient", None);
    for p in [&george, &ann] {
        p.ok(&["record", "create"]);
        p.ok(&[
            "grant",
            &nurse.actor,
            "--level",
            "write",
            "--categories",
            "all",
            "--audit",
        ]);
    }
    george.add(&["lab-results", "--test", "Potassium", "--result", "5.9"]);
    george.add(&["vital-signs", "--heart-rate", "66"]);
    george.ok(&[
        "task",
        "send",
        "--kind",
        "referral",
        "--to",
        &nurse.actor,
        "--description",
        "Leg ulcer dressing",
    ]);
    replicate(&george, &nurse, dir.path());
    replicate(&ann, &nurse, dir.path());

    // Both listed; the rows George's record needs attention come first.
    let all = nurse.json(&["worklist"]);
    assert_eq!(all["total"], 2, "{all}");
    let list = rows(&all);
    assert_eq!(list[0]["record"], george.actor.as_str(), "{all}");
    let g = row_of(&list, &george.actor);
    assert_eq!(g["name"], "George Jones");
    assert_eq!(g["unreviewed_results"], 1);
    assert_eq!(g["open_tasks"], 1);
    assert_eq!(g["changed"]["lab-results"], 1);
    assert_eq!(g["changed"]["vital-signs"], 1);
    assert_eq!(g["changed"]["tasks"], 1);
    assert!(g.get("shows").is_some());

    // Search by name, any case.
    let found = nurse.json(&["worklist", "--search", "SMITH"]);
    assert_eq!(found["total"], 1);
    assert_eq!(rows(&found)[0]["record"], ann.actor.as_str());
    let none = nurse.ok(&["worklist", "--search", "nobody"]);
    assert!(none.contains("No patient"), "{none}");

    // The table for people.
    let table = nurse.ok(&["worklist"]);
    assert!(
        table.contains("George Jones") && table.contains("Ann Smith"),
        "{table}"
    );
    assert!(table.contains("2 patients shared with you"), "{table}");

    // Opening George's record is looking at it: nothing changed since; then a new entry.
    nurse.ok(&["show", "--record", &george.actor]);
    let after = nurse.json(&["worklist", "--search", "george"]);
    assert_eq!(rows(&after)[0]["changed_total"], 0, "{after}");
    george.add(&["vital-signs", "--heart-rate", "91"]);
    replicate(&george, &nurse, dir.path());
    let after = nurse.json(&["worklist", "--search", "george"]);
    assert_eq!(rows(&after)[0]["changed_total"], 1, "{after}");
    assert_eq!(rows(&after)[0]["changed"]["vital-signs"], 1, "{after}");

    // The nurse reviews the result (a note): no longer unreviewed.
    let shown = nurse.json(&[
        "show",
        "--record",
        &george.actor,
        "--category",
        "lab-results",
    ]);
    let result = shown["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a lab result item: {shown}"))
        .to_owned();
    nurse.ok(&[
        "annotate",
        "--record",
        &george.actor,
        &result,
        "--text",
        "Reviewed: repeat in a week",
    ]);
    let after = nurse.json(&["worklist", "--search", "george"]);
    assert_eq!(rows(&after)[0]["unreviewed_results"], 0, "{after}");

    // Bounds: a search text beyond the limit and an oversized page are refused (exit 5).
    let long = "x".repeat(65);
    let err = nurse.fails(5, &["worklist", "--search", &long]);
    assert!(err.contains("at most 64"), "{err}");
    nurse.fails(5, &["worklist", "--limit", "101"]);

    // Each row shown is in the record's audit trail on the nurse's node, as a view.
    let events = nurse.json(&["audit", "--record", &ann.actor, "--all", "--limit", "1000"]);
    let text = events.to_string();
    assert!(text.contains("worklist row (CLI)"), "{text}");
}
