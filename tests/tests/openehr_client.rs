//! An independent openEHR client talks to a cophr node: oehrpy (PyPI, an openEHR SDK whose
//! client is built for EHRbase-compatible servers; pinned in
//! `tests/openehr-client/requirements.txt`, installed into `tests/openehr-client/.venv` by
//! `.ci/deps`) runs `tests/openehr-client/smoke.py` against a real `cophr node run`: the EHR
//! by subject, EHR_STATUS, compositions created, read, versioned, queried with AQL (POST,
//! GET, and a query stored on the node and run by name) and deleted, an EHR not created
//! (409), bad ones refused; version history and contributions; a web template, FLAT in
//! and out; a procedure added through the CLI found with AQL. What it wrote through openEHR
//! then reads back through the CLI. A missing python or library fails the test: it is never skipped.

mod cli_support;

use std::path::PathBuf;
use std::process::Command;

use cli_support::node::Node;
use cli_support::Person;
use serde_json::Value;

fn client_python() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openehr-client");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the openEHR client (oehrpy) is not installed in {}: run bash .ci/deps",
        dir.join(".venv").display()
    );
    (dir, python)
}

#[test]
fn an_independent_openehr_client_creates_versions_queries_and_deletes_compositions() {
    let (dir, python) = client_python();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let node = Node::start(&george, &[]);
    assert!(node.http().is_some(), "the node serves HTTP");
    // A procedure added through the CLI, for the client to find through openEHR.
    george.live_add(&[
        "procedures",
        "--procedure",
        "Appendicectomy",
        "--date",
        "2011-07-14",
    ]);
    // Wound care defined as data (the shipped example), for the client to write through
    // its generic template.
    let wound = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/src/schema/examples/wound-care.json");
    george.live_ok(&["schema", "define", wound.to_str().expect("utf-8 path")]);
    let out = Command::new(&python)
        .arg(dir.join("smoke.py"))
        .env("COPHR_HOME", node.home())
        .env(
            "WOUND_TEMPLATE",
            "cophr.ext.uk.nhs.tissue-viability.wound-care.v1",
        )
        .env(
            "WOUND_OPT",
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../protocol/src/schema/examples/wound-assessment.opt"),
        )
        .env("PROCEDURE", "Appendicectomy")
        .env("PROCEDURE_DATE", "2011-07-14")
        .output()
        .expect("the client's python runs: .ci/deps installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the openEHR client failed:\n{stdout}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the client's last line is its JSON summary ({e}):\n{stdout}"));
    assert_eq!(v["ok"], true, "{v}");
    let done: Vec<&str> = v["done"]
        .as_array()
        .expect("done")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for step in [
        "EHR",
        "EHR_STATUS",
        "create",
        "update",
        "stale 412",
        "AQL",
        "GET AQL",
        "stored query",
        "EHR exists 409",
        "versioned composition",
        "version by uid",
        "revision history",
        "contribution",
        "stale contribution 412",
        "422",
        "delete",
        "problem kept",
        "web template",
        "FLAT create",
        "FLAT read",
        "FLAT 422",
        "procedure from the CLI",
        "lab result",
        "lab result AQL",
        "extension template",
        "extension create",
        "extension AQL",
        "extension 422",
        "OPT upload",
        "OPT create",
        "OPT AQL",
        "OPT 409",
    ] {
        assert!(done.contains(&step), "the client did not check {step}: {v}");
    }
    // The template-based extension the client defined and wrote reads back through the CLI.
    let shown = george.live_json(&["show", "--category", "ext:openehr/wound-assessment"]);
    let wound = &shown["items"][0]["body"];
    assert_eq!(wound["body-site"], "sacrum", "{shown}");
    assert_eq!(wound["wound-type"], "Pressure ulcer", "{shown}");
    // What the client wrote through openEHR (and left in place) reads back through the CLI.
    let shown = george.live_json(&["show", "--category", "problems"]);
    let items = shown["items"].as_array().expect("items");
    let problem = items
        .iter()
        .find(|i| i["body"]["problem"] == "Type 2 diabetes mellitus")
        .unwrap_or_else(|| panic!("the problem written through openEHR: {shown}"));
    assert_eq!(problem["body"]["status"], v["problem_status"], "{problem}");
    let shown = george.live_json(&["show", "--category", "immunisations"]);
    let imm = shown["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["body"]["immunisation"] == v["immunisation"])
        .unwrap_or_else(|| panic!("the immunisation written in FLAT: {shown}"));
    assert_eq!(imm["body"]["date"], "2025-10-03", "{imm}");
    assert_eq!(imm["body"]["status"], "completed", "{imm}");
    // The wound assessment written through its extension's template, and the lab result.
    let shown = george.live_json(&[
        "show",
        "--category",
        "ext:uk.nhs.tissue-viability/wound-care",
    ]);
    let wound = &shown["items"][0]["body"];
    assert_eq!(wound["location"], "left heel", "{shown}");
    assert_eq!(wound["pain-score"], 4, "{shown}");
    let shown = george.live_json(&["show", "--category", "lab-results"]);
    assert_eq!(shown["items"][0]["body"]["result"], "48", "{shown}");
    assert_eq!(shown["items"][0]["body"]["unit"], "mmol/mol", "{shown}");
}
