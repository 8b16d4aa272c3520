//! George's access matrix (BRIEF "The acceptance scenario", blueprint Appendix 1), played
//! with the `cophr` command by separate people, each with their own home, keys and store,
//! exchanging the record through export files.
//!
//! - Mary (wife, main carer): delete level on everything, audit and delegate rights.
//! - Patricia and Alex (children): view everything and the audit trail, write nothing.
//! - Home care: write vital signs, wound care (procedures) and blood-test requests (lab
//!   results), nothing else.
//! - Renal consultant and diabetes nurse: write everything, no audit trail.
//! - Pharmacist: view problems, medications and allergies.
//!
//! Allowed writes succeed; every disallowed one exits 3 with a clear message and stores
//! nothing. Run `cargo build -p cophr` first.

mod cli_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use cli_support::{has_item, Person};
use serde_json::Value;
use tempfile::TempDir;

/// Everyone in the scenario, after George granted each their access and each imported his
/// export.
struct Family {
    files: TempDir,
    george: Person,
    mary: Person,
    patricia: Person,
    alex: Person,
    home_care: Person,
    consultant: Person,
    nurse: Person,
    pharmacist: Person,
    home_care_grant: String,
    /// George's initial entries by category.
    initial: Vec<(String, String)>,
}

impl Family {
    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// George exports; each of `people` imports.
    fn share(&self, from: &Person, name: &str, people: &[&Person]) {
        let f = self.file(name);
        from.export(&f);
        for p in people {
            p.import(&f);
        }
    }

    fn everyone_but_george(&self) -> Vec<&Person> {
        vec![
            &self.mary,
            &self.patricia,
            &self.alex,
            &self.home_care,
            &self.consultant,
            &self.nurse,
            &self.pharmacist,
        ]
    }
}

fn grant(george: &Person, who: &Person, args: &[&str]) -> String {
    let mut all = vec!["grant", who.actor.as_str()];
    all.extend_from_slice(args);
    let id = george.ok(&all).trim().to_owned();
    assert!(id.starts_with("e-"), "grant printed {id}");
    id
}

fn setup() -> Family {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let mary = Person::new("Mary Jones", "carer", None);
    let patricia = Person::new("Patricia Jones", "family", None);
    let alex = Person::new("Alex Jones", "family", None);
    let home_care = Person::new("Sam Patel", "home-care", Some("Leeds Home Care"));
    let consultant = Person::new("Dr Ruth Okafor", "consultant", Some("Leeds Renal Unit"));
    let nurse = Person::new("Jo Wright", "nurse", Some("Leeds Diabetes Service"));
    let pharmacist = Person::new("Ali Khan", "pharmacist", Some("Headingley Pharmacy"));

    grant(
        &george,
        &mary,
        &[
            "--level",
            "delete",
            "--categories",
            "all",
            "--audit",
            "--delegate",
            "--label",
            "Mary (wife, main carer)",
        ],
    );
    for child in [&patricia, &alex] {
        grant(
            &george,
            child,
            &[
                "--level",
                "view",
                "--categories",
                "all",
                "--audit",
                "--label",
                "child",
            ],
        );
    }
    let home_care_grant = grant(
        &george,
        &home_care,
        &[
            "--level",
            "write",
            "--categories",
            "vital-signs,procedures,lab-results",
            "--label",
            "Home care: vital signs, wound care, blood-test requests",
        ],
    );
    for clinician in [&consultant, &nurse] {
        grant(
            &george,
            clinician,
            &["--level", "write", "--categories", "all"],
        );
    }
    grant(
        &george,
        &pharmacist,
        &[
            "--level",
            "view",
            "--categories",
            "problems,medications,allergies",
        ],
    );

    let initial = vec![
        (
            "about-me",
            george.add(&["about-me", "--thing-1", "I am deaf in my left ear"]),
        ),
        (
            "problems",
            george.add(&[
                "problems",
                "--problem",
                "Type 2 diabetes",
                "--onset",
                "2012",
            ]),
        ),
        (
            "problems",
            george.add(&["problems", "--problem", "Hypertension"]),
        ),
        (
            "problems",
            george.add(&["problems", "--problem", "Chronic kidney disease stage 3"]),
        ),
        (
            "medications",
            george.add(&[
                "medications",
                "--medication",
                "Metformin",
                "--dose",
                "500 mg twice daily",
            ]),
        ),
        (
            "allergies",
            george.add(&[
                "allergies",
                "--agent",
                "Penicillin",
                "--reaction",
                "rash",
                "--severity",
                "severe",
            ]),
        ),
        (
            "vital-signs",
            george.add(&["vital-signs", "--systolic", "150", "--diastolic", "95"]),
        ),
        ("lifestyle", george.add(&["lifestyle", "--alcohol", "none"])),
    ]
    .into_iter()
    .map(|(c, id)| (c.to_owned(), id))
    .collect();

    let family = Family {
        files: TempDir::new().expect("a directory for export files"),
        george,
        mary,
        patricia,
        alex,
        home_care,
        consultant,
        nurse,
        pharmacist,
        home_care_grant,
        initial,
    };
    family.share(
        &family.george,
        "george-1.cophr",
        &family.everyone_but_george(),
    );
    family
}

fn item<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("no item {id} among {items:#?}"))
}

/// A refused write: exit 3, a message saying why, and nothing stored.
fn refused(p: &Person, args: &[&str], expect: &str) {
    let before = p.entries_held();
    let err = p.fails(3, args);
    assert!(err.contains("not authorised"), "{}: {err}", p.name);
    assert!(
        err.contains(expect),
        "{}: `cophr {}` should say `{expect}`: {err}",
        p.name,
        args.join(" ")
    );
    assert_eq!(
        p.entries_held(),
        before,
        "{}: a refused write stored something",
        p.name
    );
}

#[test]
fn allowed_writes_succeed_and_reach_george_with_their_authors() {
    let f = setup();

    // Mary adds a blood-pressure reading on her own node and sends it to George.
    let bp = f.mary.add(&[
        "vital-signs",
        "--systolic",
        "138",
        "--diastolic",
        "86",
        "--heart-rate",
        "70",
    ]);
    f.share(&f.mary, "mary-1.cophr", &[&f.george]);
    let items = f.george.items();
    let mine = item(&items, &bp);
    assert_eq!(mine["author"]["name"], "Mary Jones");
    assert_eq!(mine["author"]["role"], "carer");
    assert_eq!(mine["device"], "carer-device");
    assert!(
        mine["summary"].as_str().unwrap().contains("138/86"),
        "{mine}"
    );
    let shown = f.george.ok(&["show"]);
    assert!(shown.contains("Mary Jones (carer)"), "{shown}");

    // Home care writes vital signs, wound care and a blood-test request.
    let hc = [
        f.home_care
            .add(&["vital-signs", "--temperature", "37.1", "--spo2", "96"]),
        f.home_care.add(&[
            "procedures",
            "--procedure",
            "Wound dressing, left shin",
            "--outcome",
            "healing",
        ]),
        f.home_care.add(&[
            "lab-results",
            "--test",
            "U&E (blood test request)",
            "--result",
            "requested",
        ]),
    ];
    // The consultant and the nurse write anywhere.
    let cons = f.consultant.add(&[
        "problems",
        "--problem",
        "Renal anaemia",
        "--status",
        "active",
    ]);
    let nurse = f
        .nurse
        .add(&["vital-signs", "--blood-glucose", "7.8 mmol/L"]);
    let nurse_note = f.nurse.add(&[
        "medications",
        "--medication",
        "Gliclazide",
        "--dose",
        "40 mg daily",
    ]);
    f.share(&f.home_care, "hc-1.cophr", &[&f.george]);
    f.share(&f.consultant, "cons-1.cophr", &[&f.george]);
    f.share(&f.nurse, "nurse-1.cophr", &[&f.george]);

    let items = f.george.items();
    for id in hc.iter().chain([&cons, &nurse, &nurse_note]) {
        assert!(has_item(&items, id), "George does not see {id}");
    }
    assert_eq!(
        item(&items, &hc[0])["author"]["organisation"],
        "Leeds Home Care"
    );
    assert_eq!(item(&items, &cons)["author"]["role"], "consultant");

    // Mary, with the delete level and as George's proxy, may amend and delete George's entries.
    let med = &f
        .initial
        .iter()
        .find(|(c, _)| c == "medications")
        .unwrap()
        .1;
    f.mary.ok(&["amend", med, "--dose", "1 g twice daily"]);
    let lifestyle = &f.initial.iter().find(|(c, _)| c == "lifestyle").unwrap().1;
    f.mary
        .ok(&["delete", lifestyle, "--reason", "entered in error"]);
    // George annotates the consultant's entry.
    f.george
        .ok(&["annotate", &cons, "--text", "Diagnosed at the March clinic"]);
    let history = f.george.json(&["history", &cons]);
    let kinds: Vec<&str> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["create", "annotate"]);
}

#[test]
fn disallowed_writes_fail_with_exit_3_and_store_nothing() {
    let f = setup();
    let bp = f
        .mary
        .add(&["vital-signs", "--systolic", "138", "--diastolic", "86"]);
    f.share(&f.mary, "mary-1.cophr", &[&f.george]);
    f.share(&f.george, "george-2.cophr", &f.everyone_but_george());
    let george_sees = f.george.items().len();

    // The children view but add nothing.
    refused(
        &f.patricia,
        &["add", "vital-signs", "--heart-rate", "60"],
        "vital-signs",
    );
    refused(
        &f.alex,
        &["add", "about-me", "--thing-1", "Dad likes tea"],
        "about-me",
    );
    // A child annotating is refused too (annotate needs more than view).
    refused(
        &f.patricia,
        &["annotate", &bp, "--text", "looks high"],
        "annotate",
    );
    // Home care writes only its categories.
    refused(
        &f.home_care,
        &["add", "medications", "--medication", "Aspirin"],
        "medications",
    );
    refused(
        &f.home_care,
        &["add", "problems", "--problem", "Fall"],
        "problems",
    );
    // The pharmacist only views.
    refused(
        &f.pharmacist,
        &["add", "medications", "--medication", "Ramipril"],
        "medications",
    );
    refused(
        &f.pharmacist,
        &["add", "allergies", "--agent", "Latex"],
        "allergies",
    );
    // Only the author (or their proxy) amends or deletes: not the consultant, on Mary's entry.
    refused(
        &f.consultant,
        &["amend", &bp, "--systolic", "140"],
        "only the original author",
    );
    // The nurse writes but may not delete (write level).
    let glucose = f.nurse.add(&["vital-signs", "--blood-glucose", "8.1"]);
    refused(
        &f.nurse,
        &["delete", &glucose, "--reason", "duplicate"],
        "delete",
    );

    // Nothing reached George.
    for (p, name) in [
        (&f.patricia, "p.cophr"),
        (&f.alex, "a.cophr"),
        (&f.home_care, "hc.cophr"),
        (&f.pharmacist, "ph.cophr"),
        (&f.consultant, "c.cophr"),
    ] {
        f.share(p, name, &[&f.george]);
    }
    assert_eq!(f.george.items().len(), george_sees);
    let items = f.george.items();
    assert_eq!(item(&items, &bp)["body"]["systolic"]["value"], 138);
}

#[test]
fn each_sees_only_what_they_are_granted_and_only_some_read_the_audit_trail() {
    let f = setup();
    let all: BTreeSet<String> = f.initial.iter().map(|(c, _)| c.clone()).collect();

    // The pharmacist sees problems, medications and allergies, all of them.
    let want: BTreeSet<String> = ["problems", "medications", "allergies"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(f.pharmacist.categories(), want);
    assert_eq!(f.pharmacist.items().len(), 5);
    // Home care sees only its categories (George holds vital signs among them).
    let hc = f.home_care.categories();
    let allowed: BTreeSet<String> = ["vital-signs", "procedures", "lab-results"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert!(
        hc.is_subset(&allowed) && hc.contains("vital-signs"),
        "{hc:?}"
    );
    // Everyone with access to all categories sees everything George wrote.
    for p in [&f.mary, &f.patricia, &f.alex, &f.consultant, &f.nurse] {
        assert_eq!(p.categories(), all, "{}", p.name);
    }
    // A category filter narrows further; asking for more than granted shows nothing more.
    let only = f
        .pharmacist
        .json(&["show", "--category", "allergies,vital-signs"]);
    let cats: Vec<&str> = only["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["category"].as_str().unwrap())
        .collect();
    assert_eq!(cats, ["allergies"]);
    // Someone with no grant sees nothing.
    let stranger = Person::new("Eve Stranger", "gp", None);
    stranger.import(&f.file("george-1.cophr"));
    let err = stranger.fails(3, &["show"]);
    assert!(err.contains("no access to this record"), "{err}");

    // The consultant, the nurse, the pharmacist and home care may not read the audit trail.
    for p in [&f.consultant, &f.nurse, &f.pharmacist, &f.home_care] {
        let err = p.fails(3, &["audit"]);
        assert!(err.contains("audit right"), "{}: {err}", p.name);
    }

    // The pharmacist's view reaches George with the pharmacist's export; the children, with
    // the audit right, then see who viewed what.
    f.share(&f.pharmacist, "ph.cophr", &[&f.george]);
    f.share(&f.george, "george-2.cophr", &[&f.patricia]);
    let audit = f.patricia.json(&["audit"]);
    let events = audit["events"].as_array().unwrap();
    let views: Vec<&Value> = events.iter().filter(|e| e["action"] == "view").collect();
    assert!(
        views
            .iter()
            .any(|e| e["actor"]["name"] == "Ali Khan" && e["actor"]["role"] == "pharmacist"),
        "no view by the pharmacist in {events:#?}"
    );
    assert!(events.iter().any(|e| e["action"] == "grant"));
    assert!(events.iter().any(|e| e["action"] == "add"));
    // Reading the audit trail is itself audited.
    let again = f
        .patricia
        .json(&["audit", "--all", "--action", "audit-read"]);
    assert!(!again["events"].as_array().unwrap().is_empty());
    let table = f.patricia.ok(&["audit"]);
    assert!(
        table.contains("Ali Khan (pharmacist, Headingley Pharmacy)"),
        "{table}"
    );
    // Mary (audit right) and George read it too.
    f.mary.ok(&["audit"]);
    f.george.ok(&["audit"]);
}

#[test]
fn revoking_home_care_stops_only_future_access() {
    let f = setup();
    let before = f.home_care.add(&["vital-signs", "--heart-rate", "88"]);
    let wound = f
        .home_care
        .add(&["procedures", "--procedure", "Wound dressing"]);
    f.share(&f.home_care, "hc-1.cophr", &[&f.george]);
    let george_bp = &f
        .initial
        .iter()
        .find(|(c, _)| c == "vital-signs")
        .unwrap()
        .1;

    // George revokes home care's grant, then adds a reading.
    f.george.ok(&[
        "revoke",
        &f.home_care_grant,
        "--reason",
        "care package ended",
    ]);
    let grants = f.george.json(&["grants"]);
    let hc = grants["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant"].as_str() == Some(f.home_care_grant.as_str()))
        .expect("the home-care grant is listed");
    assert_eq!(hc["status"], "revoked");
    let after = f
        .george
        .add(&["vital-signs", "--systolic", "142", "--diastolic", "88"]);
    f.share(&f.george, "george-2.cophr", &[&f.home_care]);

    // Home care can write nothing more, and stores nothing trying.
    refused(
        &f.home_care,
        &["add", "vital-signs", "--heart-rate", "90"],
        "revoked",
    );
    refused(
        &f.home_care,
        &["amend", &before, "--heart-rate", "86"],
        "revoked",
    );
    // It keeps what it had seen and wrote, and sees nothing new.
    let items = f.home_care.items();
    assert!(has_item(&items, &before), "home care lost its own entry");
    assert!(has_item(&items, &wound));
    assert!(
        has_item(&items, george_bp),
        "home care lost what it had seen"
    );
    assert!(
        !has_item(&items, &after),
        "home care sees an entry made after the revocation"
    );
    // George still sees home care's entries.
    let items = f.george.items();
    assert!(has_item(&items, &before) && has_item(&items, &wound) && has_item(&items, &after));
    // Others' access is untouched.
    f.mary.add(&["vital-signs", "--heart-rate", "75"]);
}

#[test]
fn amend_delete_history_and_state_at_a_past_time() {
    let f = setup();
    let med = f.george.add(&[
        "medications",
        "--medication",
        "Ramipril",
        "--dose",
        "2.5 mg daily",
    ]);
    let between = cli_support::tick();
    let amended = f
        .george
        .ok(&["amend", &med, "--dose", "5 mg daily"])
        .trim()
        .to_owned();
    assert!(amended.starts_with("e-") && amended != med);

    // Now: the new dose, two versions. Before the amend: the old dose.
    let now = f.george.items();
    assert_eq!(item(&now, &med)["body"]["dose"], "5 mg daily");
    assert_eq!(item(&now, &med)["versions"], 2);
    assert_eq!(item(&now, &med)["version"].as_str(), Some(amended.as_str()));
    let past = f.george.json(&["show", "--at", &between]);
    assert_eq!(
        item(past["items"].as_array().unwrap(), &med)["body"]["dose"],
        "2.5 mg daily"
    );
    // A date before the record existed: nothing; and Mary had no access then.
    let empty = f.george.json(&["show", "--at", "2020-01-01"]);
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);
    let err = f.mary.fails(3, &["show", "--at", "2020-01-01"]);
    assert!(
        err.contains("no access to this record at that time"),
        "{err}"
    );

    // The history holds both versions, with who and when; any version's id (or a prefix
    // of it, as tables show) finds it.
    let short = &amended[..12];
    let h = f.george.json(&["history", short]);
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["kind"], "create");
    assert_eq!(versions[0]["content"]["dose"], "2.5 mg daily");
    assert_eq!(versions[1]["kind"], "amend");
    assert_eq!(versions[1]["content"]["dose"], "5 mg daily");
    assert_eq!(versions[1]["current"], true);
    assert_eq!(versions[1]["author"]["name"], "George Jones");

    // Mary annotates; George deletes: gone from the current state, kept in history.
    f.share(&f.george, "g.cophr", &[&f.mary]);
    f.mary
        .ok(&["annotate", &med, "--note", "GP increased the dose"]);
    f.share(&f.mary, "m.cophr", &[&f.george]);
    f.george.ok(&["delete", &med, "--reason", "stopped: cough"]);
    let shown = f.george.json(&["show"]);
    assert!(!has_item(shown["items"].as_array().unwrap(), &med));
    assert_eq!(shown["deleted"], 1);
    let h = f.george.json(&["history", &med]);
    let versions = h["versions"].as_array().unwrap();
    let kinds: Vec<&str> = versions
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["create", "amend", "annotate", "delete"]);
    assert_eq!(versions[0]["content"]["dose"], "2.5 mg daily");
    assert_eq!(versions[2]["author"]["name"], "Mary Jones");
    assert_eq!(versions[2]["content"], "GP increased the dose");
    assert_eq!(versions[3]["content"], "stopped: cough");
    let text = f.george.ok(&["history", &med]);
    assert!(
        text.contains("reason: stopped: cough") && text.contains("Mary Jones (carer)"),
        "{text}"
    );
    // Deleted items cannot be amended.
    f.george.fails(5, &["amend", &med, "--dose", "1 mg"]);
}
