//! `cophr audit`: who else looked. The patient's own reads are hidden unless asked for;
//! filters by person, action and time; pages. Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::Person;
use serde_json::Value;
use tempfile::TempDir;

fn events(v: &Value) -> Vec<Value> {
    v["events"].as_array().expect("events").clone()
}

fn actors(v: &Value) -> Vec<String> {
    events(v)
        .iter()
        .map(|e| e["actor"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// George's record, viewed by George (twice) and by Mary (whose view reaches George with
/// her export).
fn setup() -> (Person, Person, TempDir) {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["allergies", "--agent", "Penicillin"]);
    let mary = Person::new("Mary Jones", "carer", None);
    george.ok(&[
        "grant",
        mary.actor.as_str(),
        "--level",
        "view",
        "--categories",
        "all",
    ]);
    let dir = TempDir::new().unwrap();
    let g1 = dir.path().join("g1.cophr");
    george.export(&g1);
    mary.import(&g1);
    mary.ok(&["show"]);
    let m1 = dir.path().join("m1.cophr");
    mary.export(&m1);
    george.import(&m1);
    george.ok(&["show"]);
    george.ok(&["show"]);
    (george, mary, dir)
}

#[test]
fn the_patient_sees_who_else_looked_and_their_own_reads_on_asking() {
    let (george, mary, _dir) = setup();

    let others = george.json(&["audit"]);
    let who = actors(&others);
    assert!(
        events(&others)
            .iter()
            .any(|e| e["action"] == "view" && e["actor"]["id"] == mary.actor.as_str()),
        "{others:#}"
    );
    // George's own views and audit reads are hidden; his writes are not.
    assert!(events(&others)
        .iter()
        .all(|e| e["actor"]["id"] != george.actor.as_str()
            || (e["action"] != "view" && e["action"] != "audit-read")));
    assert!(who.contains(&george.actor), "his own additions are shown");

    // --all shows his own reads; --mine only his own events.
    let all = george.json(&["audit", "--all"]);
    assert!(events(&all)
        .iter()
        .any(|e| e["action"] == "view" && e["actor"]["id"] == george.actor.as_str()));
    assert!(events(&all).len() > events(&others).len());
    let mine = george.json(&["audit", "--mine"]);
    assert!(actors(&mine).iter().all(|a| *a == george.actor));
    assert!(events(&mine).iter().any(|e| e["action"] == "view"));
    george.fails(2, &["audit", "--all", "--mine"]);

    // Every event is kept: the trail grew by the first audit read.
    assert_eq!(all["trail"], others["trail"].as_u64().unwrap() + 1);

    // The table says so when only his own reads are there to show.
    let table = george.ok(&["audit", "--action", "audit-read"]);
    assert!(table.contains("--all"), "{table}");
}

#[test]
fn filters_by_person_action_and_time_and_pages() {
    let (george, mary, _dir) = setup();

    // By name or by id.
    let by_name = george.json(&["audit", "--actor", "mary"]);
    assert!(!events(&by_name).is_empty());
    assert!(actors(&by_name).iter().all(|a| *a == mary.actor));
    let by_id = george.json(&["audit", "--actor", mary.actor.as_str()]);
    assert_eq!(events(&by_id).len(), events(&by_name).len());
    let err = george.fails(4, &["audit", "--actor", "Nobody Atall"]);
    assert!(err.contains("no one"), "{err}");

    // By action (repeatable or comma-separated).
    let grants = george.json(&["audit", "--action", "grant"]);
    assert!(!events(&grants).is_empty());
    assert!(events(&grants).iter().all(|e| e["action"] == "grant"));
    let two = george.json(&["audit", "--action", "grant,add"]);
    assert!(events(&two).len() > events(&grants).len());
    george.fails(5, &["audit", "--action", "peek"]);

    // By time: nothing before the record existed, everything since.
    let before = george.json(&["audit", "--until", "2000-01-01"]);
    assert!(events(&before).is_empty());
    let since = george.json(&["audit", "--all", "--since", "2000-01-01"]);
    assert_eq!(since["matched"], since["trail"]);
    george.fails(
        5,
        &["audit", "--since", "2026-03-02", "--until", "2026-03-01"],
    );

    // Pages: every line on exactly one page, newest first.
    let whole = george.json(&["audit", "--mine", "--action", "add,grant,import"]);
    let n = events(&whole).len();
    assert!(n >= 3, "{whole:#}");
    let mut paged = Vec::new();
    for page in 1..=n {
        let p = george.json(&[
            "audit",
            "--mine",
            "--action",
            "add,grant,import",
            "--limit",
            "1",
            "--page",
            &page.to_string(),
        ]);
        assert_eq!(p["pages"], n);
        paged.extend(events(&p).into_iter().map(|e| e["id"].clone()));
    }
    let ids: Vec<Value> = events(&whole)
        .into_iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(paged, ids);
    let oldest = george.json(&[
        "audit",
        "--mine",
        "--action",
        "add,grant,import",
        "--oldest-first",
    ]);
    let mut rev: Vec<Value> = events(&oldest)
        .into_iter()
        .map(|e| e["id"].clone())
        .collect();
    rev.reverse();
    assert_eq!(rev, ids);
    george.fails(5, &["audit", "--page", "0"]);
    george.fails(5, &["audit", "--limit", "0"]);
}
