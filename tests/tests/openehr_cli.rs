//! `cophr openehr export|import`: the record's compositions out as files (canonical and
//! FLAT), and composition files in as entries through the same gate as every write, all
//! checked before any is written; exit codes as the CLI's others (2 usage, 4 not found, 5
//! invalid).

mod cli_support;

use std::path::Path;

use cli_support::Person;
use serde_json::Value;

fn files(dir: &Path) -> Vec<Value> {
    let mut out: Vec<Value> = std::fs::read_dir(dir)
        .expect("the export directory")
        .map(|e| {
            let text = std::fs::read_to_string(e.expect("an entry").path()).expect("a file");
            serde_json::from_str(&text).expect("JSON")
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

fn problems(p: &Person) -> Vec<String> {
    p.json(&["show", "--category", "problems"])["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["body"]["problem"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn openehr_compositions_go_out_and_come_in_through_the_cli() {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["problems", "--problem", "Asthma", "--status", "active"]);
    george.add(&["allergies", "--agent", "Latex", "--reaction", "rash"]);
    george.add(&["messages", "--text", "not a composition"]);

    // Export: one canonical COMPOSITION per mapped item (the message has no template).
    let out = george.dir().join("openehr");
    let v = george.json(&["openehr", "export", out.to_str().unwrap()]);
    assert_eq!(v["compositions"], 2, "{v}");
    let all = files(&out);
    assert!(all.iter().all(|c| c["_type"] == "COMPOSITION"), "{all:?}");
    let problem = all
        .iter()
        .find(|c| c.to_string().contains("\"Asthma\""))
        .expect("the problem")
        .clone();
    // FLAT: the same items as FLAT keys.
    let flat_dir = george.dir().join("flat");
    george.ok(&[
        "openehr",
        "export",
        "--format",
        "flat",
        flat_dir.to_str().unwrap(),
    ]);
    let flat = files(&flat_dir);
    assert_eq!(flat.len(), 2);
    let allergy = flat
        .iter()
        .find(|c| c.to_string().contains("\"Latex\""))
        .expect("the allergy")
        .clone();
    assert!(
        allergy
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("ctx/")),
        "{allergy}"
    );

    // Import: a canonical composition and a FLAT one (with its template) become entries.
    let work = george.dir().join("in");
    std::fs::create_dir_all(&work).unwrap();
    let eczema = work.join("eczema.json");
    std::fs::write(&eczema, problem.to_string().replace("Asthma", "Eczema")).unwrap();
    let peanut = work.join("peanut.flat.json");
    std::fs::write(&peanut, allergy.to_string().replace("Latex", "Peanut")).unwrap();
    george.ok(&["openehr", "import", eczema.to_str().unwrap()]);
    let v = george.json(&[
        "openehr",
        "import",
        "--template",
        "cophr.allergies.v1",
        peanut.to_str().unwrap(),
    ]);
    assert_eq!(v["imported"].as_array().unwrap().len(), 1, "{v}");
    assert!(problems(&george).contains(&"Eczema".to_owned()));
    let agents: Vec<Value> = george.json(&["show", "--category", "allergies"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["body"]["agent"].clone())
        .collect();
    assert!(agents.contains(&Value::from("Peanut")), "{agents:?}");

    // Refused, nothing written: a file that is not there (4); a composition its template
    // refuses (5), even beside a good one (every file is checked first); FLAT without its
    // template (2).
    let before = george.entries_held();
    let wrong = work.join("wrong.json");
    let mut bad = problem.clone();
    bad["content"][0]["archetype_node_id"] = "openEHR-EHR-EVALUATION.nonsense.v1".into();
    std::fs::write(&wrong, bad.to_string()).unwrap();
    let good = work.join("good.json");
    std::fs::write(&good, problem.to_string().replace("Asthma", "Gout")).unwrap();
    george.fails(
        4,
        &[
            "openehr",
            "import",
            work.join("missing.json").to_str().unwrap(),
        ],
    );
    let err = george.fails(
        5,
        &[
            "openehr",
            "import",
            good.to_str().unwrap(),
            wrong.to_str().unwrap(),
        ],
    );
    assert!(err.contains("wrong.json"), "{err}");
    george.fails(2, &["openehr", "import", peanut.to_str().unwrap()]);
    let not_json = work.join("not.json");
    std::fs::write(&not_json, "{").unwrap();
    george.fails(5, &["openehr", "import", not_json.to_str().unwrap()]);
    assert_eq!(george.entries_held(), before, "nothing was written");
    assert!(!problems(&george).contains(&"Gout".to_owned()));
    // Usage: import needs a file.
    george.fails(2, &["openehr", "import"]);
}
