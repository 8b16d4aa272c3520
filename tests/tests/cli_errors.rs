//! Bad input to the `cophr` command gets a clear error, a meaningful exit code, and stores
//! nothing. Run `cargo build -p cophr` first.

mod cli_support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use cli_support::{cophr, Person};
use tempfile::TempDir;

/// A patient with a record holding one entry.
fn patient() -> Person {
    let p = Person::new("George Jones", "patient", None);
    p.ok(&["record", "create"]);
    p.add(&["allergies", "--agent", "Penicillin"]);
    p
}

#[test]
fn unknown_category_is_invalid_input() {
    let p = patient();
    let before = p.entries_held();
    let err = p.fails(5, &["add", "allergy", "--agent", "Penicillin"]);
    assert!(err.contains("unknown category `allergy`"), "{err}");
    assert!(err.contains("cophr schema"), "{err}");
    p.fails(5, &["schema", "vitals"]);
    p.fails(5, &["show", "--category", "vitals"]);
    assert_eq!(p.entries_held(), before);
}

#[test]
fn malformed_json_body_is_invalid_input() {
    let p = patient();
    let before = p.entries_held();
    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("bad.json");
    fs::write(&bad, b"{\"agent\": \"Latex\",").unwrap();
    let err = p.fails(5, &["add", "allergies", "--json", bad.to_str().unwrap()]);
    assert!(err.contains("malformed JSON"), "{err}");
    fs::write(&bad, b"[1, 2]").unwrap();
    let err = p.fails(5, &["add", "allergies", "--json", bad.to_str().unwrap()]);
    assert!(err.contains("object"), "{err}");
    fs::write(&bad, b"{\"agent\": 7}").unwrap();
    p.fails(5, &["add", "allergies", "--json", bad.to_str().unwrap()]);
    assert_eq!(p.entries_held(), before);

    // A good JSON body works, from a file or standard input.
    let good = dir.path().join("good.json");
    fs::write(&good, br#"{"agent": "Latex", "reaction": "hives"}"#).unwrap();
    p.add(&["allergies", "--json", good.to_str().unwrap()]);
    let out = cophr()
        .arg("--home")
        .arg(p.dir())
        .args(["add", "vital-signs", "--json", "-"])
        .write_stdin(r#"{"heart-rate": 64}"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two entries, and the vital-signs stream's first epoch, opened with its first entry
    // (the allergies stream was opened by `patient()`).
    assert_eq!(p.entries_held(), before + 3);
}

#[test]
fn missing_required_field_and_unknown_field_are_invalid_input() {
    let p = patient();
    let before = p.entries_held();
    let err = p.fails(5, &["add", "allergies", "--reaction", "rash"]);
    assert!(err.contains("field `agent` is required"), "{err}");
    let err = p.fails(
        5,
        &["add", "allergies", "--agent", "Latex", "--colour", "red"],
    );
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(
        err.contains("agent, reaction"),
        "the valid fields are listed: {err}"
    );
    let err = p.fails(5, &["add", "vital-signs", "--heart-rate", "fast"]);
    assert!(err.contains("heart-rate"), "{err}");
    let err = p.fails(5, &["add", "vital-signs", "--heart-rate", "900"]);
    assert!(err.contains("plausible range"), "{err}");
    let err = p.fails(
        5,
        &[
            "add",
            "allergies",
            "--severity",
            "extreme",
            "--agent",
            "Latex",
        ],
    );
    assert!(err.contains("severity"), "{err}");
    let err = p.fails(5, &["add", "allergies", "stray", "--agent", "Latex"]);
    assert!(err.contains("unexpected argument `stray`"), "{err}");
    let err = p.fails(5, &["add", "vital-signs"]);
    assert!(err.contains("no fields given"), "{err}");
    assert_eq!(p.entries_held(), before);
}

#[test]
fn bad_ids_times_and_unknown_entries() {
    let p = patient();
    p.fails(5, &["history", "not-an-id"]);
    p.fails(
        4,
        &[
            "history",
            "e-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ],
    );
    p.fails(4, &["history", "e-zzzzzz"]);
    p.fails(5, &["show", "--at", "yesterday"]);
    p.fails(
        5,
        &["grant", "a-nope", "--level", "view", "--categories", "all"],
    );
    p.fails(
        2,
        &[
            "grant",
            &p.actor,
            "--level",
            "superuser",
            "--categories",
            "all",
        ],
    );
    let other = Person::new("Mary Jones", "carer", None);
    p.fails(
        5,
        &[
            "grant",
            &other.actor,
            "--level",
            "view",
            "--categories",
            "vitals",
        ],
    );
    p.fails(4, &["--record", &other.actor, "show"]);
    let err = other.fails(4, &["show"]);
    assert!(err.contains("no record is held"), "{err}");
}

#[test]
fn key_files_are_private_and_loose_permissions_are_refused() {
    let p = patient();
    let key = p.dir().join("identity.key");
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "identity.key is created 0600");
    let node = p.dir().join("node.key");
    assert_eq!(
        fs::metadata(&node).unwrap().permissions().mode() & 0o777,
        0o600
    );

    Person::chmod(&key, 0o644);
    let err = p.fails(1, &["whoami"]);
    assert!(
        err.contains("refusing to use key file") && err.contains("chmod 600"),
        "{err}"
    );
    p.fails(1, &["add", "allergies", "--agent", "Latex"]);
    Person::chmod(&key, 0o600);
    p.ok(&["whoami"]);
    Person::chmod(&node, 0o640);
    let err = p.fails(1, &["show"]);
    assert!(err.contains("node.key"), "{err}");
}

#[test]
fn missing_identity_gets_a_clear_error() {
    let home = TempDir::new().unwrap();
    for args in [
        &["whoami"][..],
        &["show"],
        &["record", "create"],
        &["add", "allergies", "--agent", "x"],
    ] {
        let out = cophr()
            .arg("--home")
            .arg(home.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("cophr init"), "{args:?}: {err}");
    }
    // An existing identity is not overwritten without --force.
    let p = Person::new("George Jones", "patient", None);
    let err = p.fails(7, &["init", "--name", "Someone", "--role", "patient"]);
    assert!(err.contains("--force"), "{err}");
    let old = p.actor.clone();
    p.ok(&[
        "init",
        "--name",
        "George Jones",
        "--role",
        "patient",
        "--force",
    ]);
    assert_ne!(p.json(&["whoami"])["actor"].as_str().unwrap(), old);
}

#[test]
fn a_changed_byte_in_an_export_is_detected_and_nothing_is_imported() {
    let p = patient();
    p.add(&["vital-signs", "--systolic", "140", "--diastolic", "90"]);
    let dir = TempDir::new().unwrap();
    let good = dir.path().join("george.cophr");
    p.export(&good);
    let bytes = fs::read(&good).unwrap();
    let ok = cophr().arg("verify").arg(&good).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));
    // The content is sealed: the patient's home opens and checks all of it; a home whose
    // identity was given no key opens none of it, and the file still verifies.
    let mine = p.json(&["verify", good.to_str().unwrap()]);
    assert_eq!(mine["content"]["sealed"], 2, "{mine}");
    assert_eq!(mine["content"]["opened"], 2, "{mine}");
    assert_eq!(mine["content"]["flagged"], serde_json::json!([]), "{mine}");
    let stranger = Person::new("Stan Ger", "carer", None);
    let theirs = stranger.json(&["verify", good.to_str().unwrap()]);
    assert_eq!(theirs["content"]["locked"], 2, "{theirs}");
    assert_eq!(theirs["content"]["opened"], 0, "{theirs}");
    let text = stranger.ok(&["verify", good.to_str().unwrap()]);
    assert!(
        text.contains("2 sealed entries: 0 opened and valid, 0 flagged, 2 not opened"),
        "{text}"
    );

    let reader = Person::new("Mary Jones", "carer", None);
    let bad = dir.path().join("bad.cophr");
    let step = (bytes.len() / 40).max(1);
    let positions: Vec<usize> = (0..bytes.len())
        .step_by(step)
        .chain([bytes.len() - 1])
        .collect();
    for (n, pos) in positions.iter().enumerate() {
        let mut b = bytes.clone();
        b[*pos] ^= 0x01;
        fs::write(&bad, &b).unwrap();
        let out = cophr().arg("verify").arg(&bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(6),
            "byte {pos} changed, verify said: {err}"
        );
        assert!(err.starts_with("error: verification failed: "), "{err}");
        if n % 8 == 0 {
            let err = reader.fails(6, &["import", bad.to_str().unwrap()]);
            assert!(err.contains("verification failed"), "{err}");
        }
    }
    // A truncated file and a file that is not an export at all.
    fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    reader.fails(6, &["import", bad.to_str().unwrap()]);
    let mut f = fs::File::create(&bad).unwrap();
    f.write_all(b"hello").unwrap();
    reader.fails(6, &["verify", bad.to_str().unwrap()]);
    // Nothing was stored.
    assert_eq!(reader.entries_held(), 0);
    assert!(reader.json(&["records"])["records"]
        .as_array()
        .unwrap()
        .is_empty());
    // The good file still imports.
    reader.import(&good);
    assert_eq!(reader.entries_held(), p.entries_held());
}

#[test]
fn help_works_for_every_subcommand() {
    let top = cophr().arg("--help").output().unwrap();
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        text.contains("Exit codes:") && text.contains("3  not authorised"),
        "{text}"
    );
    let subcommands: &[&[&str]] = &[
        &["init"],
        &["whoami"],
        &["token"],
        &["record"],
        &["record", "create"],
        &["records"],
        &["schema"],
        &["add"],
        &["show"],
        &["history"],
        &["amend"],
        &["delete"],
        &["annotate"],
        &["grant"],
        &["revoke"],
        &["grants"],
        &["audit"],
        &["export"],
        &["import"],
        &["verify"],
        &["repair"],
        &["share"],
        &["share", "create"],
        &["share", "list"],
        &["share", "end"],
    ];
    for sub in subcommands {
        let out = cophr().args(*sub).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub:?} --help failed");
        assert!(text.contains("Usage: cophr"), "{sub:?}: {text}");
        let out = cophr().arg("help").args(*sub).output().unwrap();
        assert!(out.status.success(), "help {sub:?} failed");
    }
    // Usage errors exit 2.
    assert_eq!(
        cophr().arg("frobnicate").output().unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        cophr()
            .args(["show", "--bogus"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn schema_lists_categories_and_fields() {
    let out = cophr().args(["schema", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cats = v["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 22);
    assert!(cats.iter().any(|c| c["category"] == "appointments"));
    assert!(cats.iter().any(|c| c["category"] == "tasks"));
    assert!(cats.iter().any(|c| c["category"] == "vital-signs"
        && c["archetype"].as_str().unwrap().starts_with("openEHR-EHR-")));
    let out = cophr()
        .args(["schema", "vital-signs", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sys = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "systolic")
        .unwrap();
    assert_eq!(sys["type"], "quantity");
    assert_eq!(sys["units"][0], "mm[Hg]");
    let text = cophr().args(["schema", "allergies"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("--agent") && text.contains("yes"), "{text}");
}

#[test]
fn verify_and_repair_the_local_store() {
    let p = patient();
    let out = p.ok(&["verify"]);
    assert!(out.contains("OK"), "{out}");
    let v = p.json(&["verify"]);
    assert_eq!(v["ok"], true);
    // The genesis, the allergy and its stream's first epoch (see `patient()`).
    assert_eq!(v["entries"], 3);
    p.ok(&["repair"]);
    p.ok(&["verify"]);

    let backup = TempDir::new().unwrap();
    let export = backup.path().join("backup.cophr");
    p.export(&export);

    // Damage a byte of the first entry in the store's log (valid frames follow, so this is
    // damage to acknowledged data, not a torn tail): every command refuses with exit 6;
    // repair keeps what precedes the damage.
    let log = p.dir().join("store").join("log");
    let mut bytes = fs::read(&log).unwrap();
    bytes[40] ^= 0x01;
    fs::write(&log, &bytes).unwrap();
    let err = p.fails(6, &["verify"]);
    assert!(err.contains("corrupt"), "{err}");
    p.fails(6, &["show"]);
    let out = p.ok(&["repair"]);
    assert!(out.contains("Cut"), "{out}");
    p.ok(&["verify"]);
    // The damage was in the first entry, so nothing is left; an export restores it.
    p.fails(4, &["show"]);
    p.import(&export);
    assert_eq!(p.items().len(), 1);
    p.ok(&["verify"]);
}

#[test]
fn questionnaire_answers_are_one_per_pair_and_a_malformed_pair_is_invalid_input() {
    let p = patient();
    let id = p.add(&[
        "questionnaires",
        "--questionnaire",
        "EQ-5D-5L",
        "--answers",
        "Mobility=2,Self-care=1; Pain=true",
    ]);
    let items = p.items();
    let item = items.iter().find(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(
        item["body"]["answers"],
        serde_json::json!([
            {"question": "Mobility", "answer": 2},
            {"question": "Self-care", "answer": 1},
            {"question": "Pain", "answer": true}
        ]),
        "{item}"
    );
    let before = p.entries_held();
    for bad in [
        "Mobility=2,Self-care",
        "Mobility=2,=1",
        "Mobility=",
        "Mobility=2=3",
    ] {
        let err = p.fails(
            5,
            &[
                "add",
                "questionnaires",
                "--questionnaire",
                "EQ-5D-5L",
                "--answers",
                bad,
            ],
        );
        assert!(err.contains("is not an answer"), "{bad}: {err}");
        assert!(err.contains("question=answer"), "{bad}: {err}");
    }
    assert_eq!(p.entries_held(), before);
}

#[test]
fn bad_extension_definitions_are_refused_clearly_and_store_nothing() {
    let p = patient();
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("def.json");
    let path = file.to_str().unwrap();
    let before = p.entries_held();
    let wound = cophr_protocol::schema::EXAMPLES[1].1;
    let cases: [(String, &str); 5] = [
        ("{not json".into(), "is not valid"),
        (
            wound.replace("ext:uk.nhs.tissue-viability/wound-care", "allergies"),
            "allergies is a core category",
        ),
        (
            wound.replacen("\"version\": 1,", "\"version\": 1, \"access\": \"all\",", 1),
            "no say on access",
        ),
        (
            wound.replacen("\"version\": 1,", "\"version\": 2,", 1),
            "version 2 is not the next version (expected 1)",
        ),
        (
            wound.replacen("\"name\": \"location\"", "\"name\": \"Body Site\"", 1),
            "field name `Body Site`",
        ),
    ];
    for (text, needle) in cases {
        fs::write(&file, &text).unwrap();
        let err = p.fails(5, &["schema", "define", path]);
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let huge = " ".repeat(cophr_protocol::schema::MAX_DEFINITION_BYTES + 1);
    fs::write(&file, huge).unwrap();
    let err = p.fails(5, &["schema", "define", path]);
    assert!(err.contains("limit"), "{err}");
    assert_eq!(p.entries_held(), before, "nothing stored");
    p.fails(
        4,
        &["schema", "show", "ext:uk.nhs.tissue-viability/wound-care"],
    );
    // Defined, it is shown; a core category is not an extension.
    fs::write(&file, wound).unwrap();
    p.ok(&["schema", "define", path]);
    let shown = p.ok(&["schema", "ext:uk.nhs.tissue-viability/wound-care"]);
    assert!(shown.contains("--wound-type"), "{shown}");
    p.fails(5, &["schema", "show", "allergies"]);
    let err = p.fails(
        5,
        &[
            "add",
            "ext:uk.nhs.tissue-viability/wound-care",
            "--location",
            "heel",
        ],
    );
    assert!(err.contains("field `wound-type` is required"), "{err}");
}
