//! Sealed content through the command line: a grant gives the categories' history unless
//! `--from-now`, and what a person holds but may not open is counted, not shown. (The
//! export carries the record as signed; importing it is how these people receive it here,
//! with no network.)

mod cli_support;

use cli_support::{has_item, Person};
use tempfile::TempDir;

#[test]
fn a_grant_from_now_on_opens_nothing_written_before_it() {
    let george = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    let gp = Person::new("Dr Khan", "gp", Some("Oakwood Surgery"));
    george.ok(&["record", "create"]);
    let before = george.add(&["allergies", "--agent", "Penicillin"]);
    // Mary: allergies from now on; the GP: allergies, with their history (the default).
    george.ok(&[
        "grant",
        &mary.actor,
        "--level",
        "view",
        "--categories",
        "allergies",
        "--from-now",
    ]);
    george.ok(&[
        "grant",
        &gp.actor,
        "--level",
        "view",
        "--categories",
        "allergies",
    ]);
    let after = george.add(&["allergies", "--agent", "Latex"]);
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("george.cophr");
    george.export(&file);

    mary.import(&file);
    let items = mary.items();
    assert!(has_item(&items, &after), "{items:?}");
    assert!(!has_item(&items, &before), "{items:?}");
    let shown = mary.json(&["show"]);
    assert_eq!(shown["locked"], 1, "{shown}");
    let text = mary.ok(&["show"]);
    assert!(
        text.contains("1 item is sealed with keys not held here"),
        "{text}"
    );

    gp.import(&file);
    let items = gp.items();
    assert!(
        has_item(&items, &before) && has_item(&items, &after),
        "{items:?}"
    );
    assert_eq!(gp.json(&["show"])["locked"], 0);

    // Both files verify without keys; Mary's home opens only what she was given.
    let v = mary.json(&["verify", file.to_str().unwrap()]);
    assert_eq!(v["content"]["opened"], 1, "{v}");
    assert_eq!(v["content"]["locked"], 1, "{v}");
}

#[test]
fn relay_is_a_level_and_an_unknown_one_is_explained() {
    let george = Person::new("George Jones", "patient", None);
    let host = Person::new("Backup", "host", None);
    george.ok(&["record", "create"]);
    george.add(&["allergies", "--agent", "Penicillin"]);
    george.ok(&[
        "grant",
        &host.actor,
        "--level",
        "relay",
        "--categories",
        "all",
    ]);
    let grants = george.ok(&["grants"]);
    assert!(grants.contains("relay"), "{grants}");
    let err = george.fails(
        2,
        &[
            "grant",
            &host.actor,
            "--level",
            "admin",
            "--categories",
            "all",
        ],
    );
    assert!(
        err.contains("relay, view, annotate, write or delete"),
        "{err}"
    );
    // The relay, holding the record, reads nothing of it.
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("george.cophr");
    george.export(&file);
    host.import(&file);
    let shown = host.json(&["show"]);
    assert_eq!(shown["items"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["locked"], 1, "{shown}");
}
