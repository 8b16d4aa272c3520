//! Whole-practice FHIR exports through the real binary (issue 16): a seeded generator
//! writes a bulk export of several patients (NDJSON per type, with the export's own
//! `log.ndjson`), the way a GP system's export looks, and update cycles of it. Each failure
//! mode the issue lists for imports is a test here: another patient's data stored in the
//! record, one bad resource or a log file stopping the whole import, the 10,000-item and
//! 4,096-resource caps, unmapped types dropped so references dangle, changed resources
//! stored beside the old ones, `meta`-only changes stored again, the same data as NDJSON
//! and then as a Bundle stored twice. Run `cargo build -p cophr` first.

mod cli_support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use cli_support::Person;
use serde_json::{json, Value};
use tempfile::TempDir;

use cophr_tests::practice::{obs_hr, Practice, NHS};

fn patient() -> Person {
    let p = Person::new("George Jones", "patient", None);
    p.ok(&["record", "create"]);
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// Every resource of an NDJSON export directory.
fn exported(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in fs::read_dir(dir).expect("dir") {
        let text = fs::read_to_string(f.expect("entry").path()).expect("read");
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json")),
        );
    }
    out
}

/// Every `reference` string in a resource.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    if let Some(r) = x.as_str() {
                        out.push(r.to_owned());
                    }
                }
                references(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

#[test]
fn a_practice_export_of_13_patients_stores_only_the_records_patient_and_loses_nothing() {
    let mut g = Practice::new(16);
    g.shared();
    for n in 0..13 {
        g.patient(n, 5);
    }
    let dir = TempDir::new().expect("tmp");
    g.write(dir.path());
    let p = patient();
    let empty = p.entries_held();

    // The record has no Patient yet and the export holds 13: the record's patient must be
    // named; nothing is stored until it is.
    let err = p.fails(5, &["fhir", "import", s(dir.path())]);
    assert!(
        err.contains("13 patients") && err.contains("--patient"),
        "{err}"
    );
    assert_eq!(p.entries_held(), empty);

    let george = &g.patients[3];
    let who = format!("{NHS}|{}", george.1);
    let report = p.json(&["fhir", "import", s(dir.path()), "--patient", &who]);
    // The practice's own: organisation, location, 2 practitioners, 2 roles, a medication
    // and a device (about no patient: stored with the record's patient's data).
    let shared = 8;
    assert_eq!(
        report["created"].as_u64(),
        Some((george.2 + shared) as u64),
        "{report}"
    );
    // The 12 others are reported, each with its count, and not stored.
    let others = report["other_patients"].as_object().expect("others");
    assert_eq!(others.len(), 12, "{report}");
    for (id, _, n) in g.patients.iter().filter(|(id, _, _)| *id != george.0) {
        assert_eq!(
            others[&format!("Patient/{id}")].as_u64(),
            Some(*n as u64),
            "{id}"
        );
    }
    assert_eq!(
        report["created"].as_u64().unwrap_or_default()
            + report["other_patients_resources"]
                .as_u64()
                .unwrap_or_default(),
        g.count() as u64
    );
    // The export's log and manifest are not FHIR: skipped with a note, not an error.
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains("log.ndjson") && skipped.contains("manifest.json"),
        "{skipped}"
    );
    // Nothing lost: the unmapped types are kept whole, each in its own category.
    for ty in [
        "Encounter",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "Medication",
        "Device",
        "Provenance",
        "Claim",
    ] {
        assert!(report["by_type"][ty].as_u64() >= Some(1), "{ty}: {report}");
    }
    assert_eq!(report["by_category"]["ext:fhir/encounter"], 2, "{report}");
    // The prescription names its drug only by reference (`Medication/med1`): it shows the
    // referenced Medication's name, and still exports as it came (below).
    let shown = p.ok(&["show"]);
    assert!(shown.contains("Metformin 500 MG"), "{shown}");
    assert!(!shown.contains("Medication/med1"), "{shown}");

    // The record's patient is now known: importing the export again stores nothing, and
    // another patient's Bundle is refused whole.
    let held = p.entries_held();
    let again = p.json(&["fhir", "import", s(dir.path())]);
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(again["amended"], 0, "{again}");
    assert_eq!(
        again["unchanged"].as_u64(),
        Some((george.2 + shared) as u64)
    );
    assert_eq!(p.entries_held(), held);

    // Exported as NDJSON, every reference that resolved in the input resolves in the
    // output (the patient's own resources and the practice's shared ones).
    let out = TempDir::new().expect("tmp");
    p.ok(&["fhir", "export", "--ndjson", s(out.path())]);
    let back = exported(out.path());
    assert_eq!(back.len(), george.2 + shared);
    let ids: BTreeSet<String> = back
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut refs = Vec::new();
    for r in &back {
        references(r, &mut refs);
    }
    assert!(refs.len() > 20, "{refs:?}");
    let dangling: Vec<&String> = refs.iter().filter(|r| !ids.contains(*r)).collect();
    assert!(dangling.is_empty(), "dangling after export: {dangling:?}");
    let encounter_refs = refs.iter().filter(|r| r.starts_with("Encounter/")).count();
    assert!(encounter_refs >= 5, "{encounter_refs}");
    // Every exported resource is one that came in, equal.
    let input: BTreeSet<String> = g
        .by_type
        .values()
        .flatten()
        .map(|r| serde_json::to_string(r).expect("ser"))
        .collect();
    for r in &back {
        assert!(
            input.contains(&serde_json::to_string(r).expect("ser")),
            "{r}"
        );
    }
}

#[test]
fn a_record_with_a_patient_refuses_another_patients_bundle_and_takes_its_own_by_nhs_number() {
    let mut g = Practice::new(7);
    g.patient(1, 2);
    g.patient(2, 2);
    let bundle = |ids: &[&str]| -> Value {
        let entries: Vec<Value> = g
            .by_type
            .values()
            .flatten()
            .filter(|r| {
                let refd = r["subject"]["reference"].as_str().or(r["patient"]["reference"].as_str());
                ids.iter().any(|id| {
                    r["id"] == *id || refd == Some(&format!("Patient/{id}"))
                })
            })
            .map(|r| json!({"fullUrl": format!("urn:uuid:{}", r["id"].as_str().unwrap_or("")), "resource": r}))
            .collect();
        json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
    };
    let dir = TempDir::new().expect("tmp");
    let mine = dir.path().join("mine.json");
    let theirs = dir.path().join("theirs.json");
    fs::write(&mine, bundle(&["p1"]).to_string()).expect("write");
    fs::write(&theirs, bundle(&["p2"]).to_string()).expect("write");
    let p = patient();
    let r = p.json(&["fhir", "import", s(&mine)]);
    // Everything about p1 but its Provenance (which names it as a target, not a subject).
    assert_eq!(
        r["created"].as_u64(),
        Some(g.patients[0].2 as u64 - 1),
        "{r}"
    );
    let held = p.entries_held();
    let r = p.json(&["fhir", "import", s(&theirs)]);
    assert_eq!(r["created"], 0, "{r}");
    assert_eq!(
        r["other_patients"]["Patient/p2"].as_u64(),
        Some(g.patients[1].2 as u64 - 1),
        "{r}"
    );
    assert_eq!(p.entries_held(), held);
    // The same patient from another system (another id, the same NHS number) is the
    // record's: its data is stored.
    let other_system = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:x1", "resource": {"resourceType": "Patient", "id": "hosp-77",
            "identifier": [{"system": NHS, "value": g.patients[0].1}]}},
        {"fullUrl": "urn:uuid:x2", "resource": obs_hr("hosp-77", "hosp-hr", 71, 0)}]});
    let f = dir.path().join("hospital.json");
    fs::write(&f, other_system.to_string()).expect("write");
    let r = p.json(&["fhir", "import", s(&f)]);
    assert_eq!(r["created"], 2, "{r}");
    assert_eq!(r["other_patients"], json!({}), "{r}");
    // The person importing may say another patient of the input is the record's (the
    // same person in a system with other ids and no shared identifier).
    let r = p.json(&["fhir", "import", s(&theirs), "--patient", "Patient/p2"]);
    assert_eq!(
        r["created"].as_u64(),
        Some(g.patients[1].2 as u64 - 1),
        "{r}"
    );
    assert_eq!(r["other_patients"], json!({}), "{r}");
    let err = p.fails(
        5,
        &["fhir", "import", s(&theirs), "--patient", "Patient/nobody"],
    );
    assert!(err.contains("no such patient"), "{err}");
}

#[test]
fn files_past_the_old_caps_import_in_chunks_and_a_second_run_stores_nothing() {
    let dir = TempDir::new().expect("tmp");
    // 10,001 resources in one NDJSON file (the old cap was 10,000 items)…
    let mut text = String::from(
        "{\"resourceType\":\"Patient\",\"id\":\"big\",\"name\":[{\"family\":\"Big\"}]}\n",
    );
    for o in 0..10_000 {
        text.push_str(&obs_hr("big", &format!("hr{o}"), 60 + (o % 30) as u32, o).to_string());
        text.push('\n');
    }
    fs::write(dir.path().join("Observation.ndjson"), text).expect("write");
    // …and a transaction of 4,261 (the old cap was 4,096 at once).
    let entries: Vec<Value> = (0..4_261)
        .map(|o| {
            json!({"fullUrl": format!("urn:uuid:t{o}"), "resource": obs_hr("big", &format!("tx{o}"), 70, o),
                "request": {"method": "POST", "url": "Observation"}})
        })
        .collect();
    let tx = dir.path().join("tx.json");
    fs::write(
        &tx,
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string(),
    )
    .expect("write");
    let p = patient();
    let r = p.json(&["fhir", "import", s(dir.path())]);
    assert_eq!(r["created"], 10_001 + 4_261, "{}", r["refused"]);
    assert_eq!(r["refused_count"], 0);
    let held = p.entries_held();
    // The writes went in chunks (each one audited), none more than the store takes.
    let audit = p.ok(&["audit"]);
    assert!(
        audit.matches("FHIR import: 1000 resources").count() >= 14,
        "{}",
        &audit[..audit.len().min(2000)]
    );
    // A second run (as after a crash midway) stores nothing twice.
    let r = p.json(&["fhir", "import", s(dir.path())]);
    assert_eq!(r["created"], 0, "{r}");
    assert_eq!(r["unchanged"], 10_001 + 4_261);
    assert_eq!(p.entries_held(), held);
}

#[test]
fn keep_going_stores_the_valid_resources_and_reports_each_invalid_one() {
    let dir = TempDir::new().expect("tmp");
    let mut lines: Vec<String> = vec![json!({"resourceType": "Patient", "id": "k"}).to_string()];
    for o in 0..50 {
        lines.push(obs_hr("k", &format!("k{o}"), 65, o).to_string());
    }
    // One bad date among them, one line that is not JSON.
    let mut bad = obs_hr("k", "bad-date", 65, 0);
    bad["effectiveDateTime"] = json!("2024-13-45");
    lines.insert(20, bad.to_string());
    lines.insert(30, "{not json".into());
    let f = dir.path().join("Observation.ndjson");
    fs::write(&f, lines.join("\n")).expect("write");
    let p = patient();
    let empty = p.entries_held();
    let err = p.fails(5, &["fhir", "import", s(&f)]);
    assert!(
        err.contains("2 invalid") && err.contains("nothing was stored"),
        "{err}"
    );
    assert!(err.contains("line 21") && err.contains("line 31"), "{err}");
    assert!(err.contains("--keep-going"), "{err}");
    assert_eq!(p.entries_held(), empty);

    let r = p.json(&["fhir", "import", s(&f), "--keep-going"]);
    assert_eq!(r["created"], 51, "{r}");
    assert_eq!(r["refused_count"], 2, "{r}");
    let refused = r["refused"].as_array().expect("refused");
    assert_eq!(refused[0]["at"], "line 21");
    assert_eq!(refused[0]["id"], "bad-date");
    assert_eq!(refused[0]["outcome"]["resourceType"], "OperationOutcome");
    let issue = &refused[0]["outcome"]["issue"][0];
    assert_eq!(issue["severity"], "error");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("2024-13-45"),
        "{issue}"
    );
    assert_eq!(refused[1]["at"], "line 31");
    assert_eq!(refused[1]["outcome"]["issue"][0]["code"], "structure");
    // The text report lists them too.
    let text = p.ok(&["fhir", "import", s(&f), "--keep-going"]);
    assert!(text.contains("Refused 2 invalid resources"), "{text}");
    assert!(text.contains("51 unchanged"), "{text}");
}

#[test]
fn changed_resources_become_versions_and_meta_alone_is_no_change() {
    let mut g = Practice::new(3);
    g.patient(0, 3);
    let v1 = TempDir::new().expect("tmp");
    g.write(v1.path());
    let p = patient();
    let first = p.json(&["fhir", "import", s(v1.path())]);
    let n = g.patients[0].2 as u64;
    assert_eq!(first["created"].as_u64(), Some(n), "{first}");
    let held = p.entries_held();

    // The next export: the condition resolved, one heart rate corrected, another with only
    // a new meta.lastUpdated and versionId.
    let cond = &mut g.by_type.get_mut("Condition").expect("conditions")[0];
    cond["clinicalStatus"]["coding"][0]["code"] = json!("resolved");
    cond["abatementDateTime"] = json!("2024-01-20");
    let obs = g.by_type.get_mut("Observation").expect("observations");
    obs[0]["valueQuantity"]["value"] = json!(77);
    obs[1]["meta"] = json!({"versionId": "9", "lastUpdated": "2024-03-01T00:00:00Z"});
    let v2 = TempDir::new().expect("tmp");
    g.write(v2.path());
    let second = p.json(&["fhir", "import", s(v2.path())]);
    assert_eq!(second["created"], 0, "{second}");
    assert_eq!(second["amended"], 2, "{second}");
    assert_eq!(second["unchanged"].as_u64(), Some(n - 2), "{second}");
    // Two new versions, no new items.
    assert_eq!(p.entries_held(), held + 2);
    let items = p.items();
    assert_eq!(items.len() as u64, n);
    let conds: Vec<&Value> = items
        .iter()
        .filter(|i| i["category"] == "problems")
        .collect();
    assert_eq!(conds.len(), 1);
    assert!(conds[0]["body"]["fhir-resource"]
        .as_str()
        .unwrap_or_default()
        .contains("resolved"));
    let history = p.json(&["history", conds[0]["id"].as_str().expect("id")]);
    assert_eq!(
        history["versions"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );

    // The same data again as a Bundle stores nothing.
    let entries: Vec<Value> = g
        .by_type
        .values()
        .flatten()
        .map(|r| json!({"fullUrl": format!("urn:uuid:{}", r["id"].as_str().unwrap_or("")), "resource": r}))
        .collect();
    let b = v2.path().join("bundle.json");
    fs::write(
        &b,
        json!({"resourceType": "Bundle", "type": "collection", "entry": entries}).to_string(),
    )
    .expect("write");
    let third = p.json(&["fhir", "import", s(&b)]);
    assert_eq!(third["created"], 0, "{third}");
    assert_eq!(third["amended"], 0, "{third}");
    assert_eq!(third["unchanged"].as_u64(), Some(n));
    assert_eq!(p.entries_held(), held + 2);
}

#[test]
fn a_bundle_without_ids_exports_as_ndjson_with_ids_and_references_that_resolve() {
    // A Bundle as many systems send it: no ids, references by `urn:uuid:` fullUrl.
    let u = |n: u32| format!("urn:uuid:7d9c1c2e-0000-4000-8000-{n:012}");
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": u(1), "resource": {"resourceType": "Patient", "name": [{"family": "Jones"}]}},
        {"fullUrl": u(2), "resource": {"resourceType": "Medication",
            "code": {"text": "Metformin 500 MG"}}},
        {"fullUrl": u(3), "resource": {"resourceType": "Encounter", "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": u(1)}}},
        {"fullUrl": u(4), "resource": {"resourceType": "MedicationRequest", "status": "active",
            "intent": "order", "medicationReference": {"reference": u(2)},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(3)}}}]});
    let dir = TempDir::new().expect("tmp");
    let f = dir.path().join("b.json");
    fs::write(&f, bundle.to_string()).expect("write");
    let p = patient();
    let r = p.json(&["fhir", "import", s(&f)]);
    assert_eq!(r["created"], 4, "{r}");
    let out = TempDir::new().expect("tmp");
    p.ok(&["fhir", "export", "--ndjson", s(out.path())]);
    let back = exported(out.path());
    assert_eq!(back.len(), 4);
    let ids: BTreeSet<String> = back
        .iter()
        .map(|r| {
            let id = r["id"].as_str().expect("every resource has an id");
            format!("{}/{id}", r["resourceType"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(
        ids.contains("Medication/7d9c1c2e-0000-4000-8000-000000000002"),
        "{ids:?}"
    );
    let mut refs = Vec::new();
    for r in &back {
        references(r, &mut refs);
    }
    assert_eq!(refs.len(), 4, "{refs:?}");
    for r in &refs {
        assert!(ids.contains(r), "{r} dangles in {ids:?}");
    }
    // The Bundle export keeps the fullUrls the references name.
    let b = out.path().join("bundle.json");
    p.ok(&["fhir", "export", "-o", s(&b)]);
    let exported: Value = serde_json::from_slice(&fs::read(&b).expect("read")).expect("json");
    let urls: BTreeSet<&str> = exported["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["fullUrl"].as_str())
        .collect();
    assert_eq!(
        urls,
        (1..=4)
            .map(u)
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
}

#[test]
fn an_import_killed_midway_is_finished_by_running_it_again_storing_nothing_twice() {
    // 6,001 resources: six chunks of a thousand (about 1.2 MB of log each), each written
    // (and fsync'd) whole.
    const N: usize = 6_000;
    let dir = TempDir::new().expect("tmp");
    let mut text = String::from(
        "{\"resourceType\":\"Patient\",\"id\":\"big\",\"name\":[{\"family\":\"Big\"}]}\n",
    );
    for o in 0..N {
        text.push_str(&obs_hr("big", &format!("hr{o}"), 60 + (o % 30) as u32, o).to_string());
        text.push('\n');
    }
    fs::write(dir.path().join("Observation.ndjson"), text).expect("write");
    let p = patient();
    let before = p.entries_held();
    let items_before = p.json(&["show", "--json"])["items"]
        .as_array()
        .map(Vec::len)
        .expect("items");
    let log = p.dir().join("store").join("log");
    let size = || fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let at_start = size();

    // The import runs in its own process; it is killed (SIGKILL) once its log holds more
    // than two chunks' bytes (so at least one chunk is whole), while the rest are still
    // to come.
    let mut child = std::process::Command::new(cli_support::cophr_bin())
        .arg("--home")
        .arg(p.dir())
        .args(["fhir", "import", s(dir.path())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cophr fhir import starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the import ended ({status}) before it could be killed midway");
        }
        if size() > at_start + 2_500_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import wrote nothing"
        );
        std::thread::yield_now();
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let partly = p.entries_held() - before;
    assert!(
        partly > 0 && partly < N as u64 + 1,
        "killed midway: {partly} entries stored"
    );
    // What was stored verifies.
    p.ok(&["verify"]);

    // Run again: it finishes what was left, stores nothing twice, and the record verifies.
    let r = p.json(&["fhir", "import", s(dir.path())]);
    assert_eq!(r["refused_count"], 0, "{r}");
    let created = r["created"].as_u64().expect("created");
    let unchanged = r["unchanged"].as_u64().expect("unchanged");
    assert_eq!(created + unchanged, N as u64 + 1, "{r}");
    assert!(unchanged > 0 && created > 0, "{r}");
    let held = p.entries_held();
    assert!(held > before + N as u64, "{held}");
    // Each resource is one item: none stored twice.
    let items = p.json(&["show", "--json"])["items"]
        .as_array()
        .map(Vec::len)
        .expect("items");
    assert_eq!(items, items_before + N + 1);
    p.ok(&["verify"]);
}

/// A Patient resource of someone's own, with their NHS number.
fn own_patient(dir: &Path, name: &str, nhs: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.json"));
    fs::write(
        &path,
        json!({"resourceType": "Patient", "id": format!("self-{name}"),
            "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": name}]})
        .to_string(),
    )
    .expect("write");
    path
}

#[test]
fn a_practice_export_on_a_provider_node_goes_into_each_shared_patients_record() {
    use cophr_protocol::trust::attestation::{
        Attestation, Attributes, Method, NationalNumber, ATTESTATION_VERSION,
    };
    use cophr_protocol::trust::AssuranceLevel;
    let mut g = Practice::new(19);
    g.shared();
    for n in 0..6 {
        g.patient(n, 3);
    }
    // Mary's NHS number is attested, so it must pass its check digit (the generator's
    // need not): give her patient a valid one.
    let valid = "9434765919";
    for p in g.by_type.get_mut("Patient").expect("patients") {
        if p["id"] == "p1" {
            p["identifier"][0]["value"] = json!(valid);
        }
    }
    g.patients[1].1 = valid.to_owned();
    let dir = TempDir::new().expect("tmp");
    g.write(dir.path());
    let files = TempDir::new().expect("tmp");
    let gp = Person::new("Dr Anna Shah", "gp", Some("Riverside Surgery"));
    let ais = cophr_protocol::testkit::key(19, "Leeds AIS");
    gp.ok(&[
        "trust",
        "add",
        &ais.actor().to_string(),
        "--name",
        "Leeds AIS",
        "--max-level",
        "P9",
    ]);

    // Three of the practice's patients share their records with the GP's node: George and
    // Sam are known by the NHS number of a Patient resource in their record; Mary by the
    // NHS number an identity assurance service the GP trusts attests. Sam lets the GP
    // view only.
    let people = [
        ("George", 0, "write"),
        ("Mary", 1, "write"),
        ("Sam", 2, "view"),
    ];
    let mut records = Vec::new();
    for (name, n, level) in people {
        let p = Person::new(name, "patient", None);
        p.ok(&["record", "create"]);
        let nhs = &g.patients[n].1;
        if name == "Mary" {
            let a = Attestation {
                v: ATTESTATION_VERSION,
                issuer: ais.actor(),
                subject: p.actor.parse().expect("actor"),
                attributes: Attributes::Person {
                    name: "Mary Patel".into(),
                    birth_date: None,
                    national_number: Some(NationalNumber {
                        system: "nhs".into(),
                        value: nhs.clone(),
                    }),
                },
                level: AssuranceLevel::P9,
                method: Method::InPerson,
                not_before: 1_769_904_000_000,
                not_after: 1_769_904_000_000 + 365 * 24 * 3600 * 1000,
                serial: vec![19; 16],
            }
            .sign(&ais)
            .expect("signed");
            let att = files.path().join("mary.att");
            fs::write(&att, a.to_text()).expect("write");
            p.ok(&["identity", "add", s(&att)]);
        } else {
            p.ok(&["fhir", "import", s(&own_patient(files.path(), name, nhs))]);
        }
        p.ok(&["grant", &gp.actor, "--level", level, "--categories", "all"]);
        let file = files.path().join(format!("{name}.cophr"));
        p.export(&file);
        gp.import(&file);
        records.push((p, n));
    }

    let r = gp.json(&["fhir", "import", s(dir.path()), "--all-records"]);
    let stored: std::collections::BTreeMap<String, u64> = r["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|x| {
            (
                x["record"].as_str().expect("record").to_owned(),
                x["stored"].as_u64().expect("stored"),
            )
        })
        .collect();
    // The practice's own resources (organisation, location, practitioners, roles, a
    // medication, a device) go into each record with the patient's own.
    let shared = 8u64;
    for (p, n) in &records[..2] {
        assert_eq!(
            stored.get(&p.actor),
            Some(&(g.patients[*n].2 as u64 + shared)),
            "{}: {r}",
            p.name
        );
    }
    // Sam's record: matched, but the GP may not write in it: each resource reported.
    let sam = &records[2].0;
    assert_eq!(stored.get(&sam.actor), Some(&0), "{r}");
    let no_write: u64 = r["no_write"]
        .as_object()
        .expect("no_write")
        .values()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(no_write, g.patients[2].2 as u64 + shared, "{r}");
    // The three patients no record here is for: reported, not stored.
    let others = r["other_patients"].as_object().expect("others");
    for (id, _, n) in &g.patients[3..] {
        assert_eq!(
            others[&format!("Patient/{id}")].as_u64(),
            Some(*n as u64),
            "{r}"
        );
    }
    assert_eq!(others.len(), 3, "{r}");
    // Each record holds its own patient's data only.
    let held = gp
        .json(&["--record", &records[0].0.actor, "show", "--json"])
        .to_string();
    assert!(held.contains(&g.patients[0].1), "George's NHS number");
    assert!(!held.contains(&g.patients[1].1), "not Mary's");
    // Run again: nothing stored twice.
    let again = gp.json(&["fhir", "import", s(dir.path()), "--all-records"]);
    assert_eq!(again["created"], 0, "{again}");
    // --all-records names no single patient.
    gp.fails(
        2,
        &[
            "fhir",
            "import",
            s(dir.path()),
            "--all-records",
            "--patient",
            "Patient/p0",
        ],
    );
}

/// The summary `cophr show --json` gives the item of category `cat` whose summary
/// contains `has`.
fn summary_of(p: &Person, cat: &str, has: &str) -> String {
    let shown = p.json(&["show", "--json"]);
    let items = shown["items"].as_array().expect("items");
    items
        .iter()
        .filter(|i| i["category"] == cat)
        .filter_map(|i| i["summary"].as_str())
        .find(|s| s.contains(has))
        .unwrap_or_else(|| panic!("no {cat} item with {has:?} in {shown}"))
        .to_owned()
}

#[test]
fn summaries_name_the_visit_the_clinician_and_the_drug_their_references_point_at() {
    let u = |n: u32| format!("urn:uuid:5c1e0000-0000-4000-8000-{n:012}");
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": u(1), "resource": {"resourceType": "Patient", "id": "pt",
            "name": [{"family": "Jones"}]}},
        {"fullUrl": u(2), "resource": {"resourceType": "Practitioner", "id": "dr-smith",
            "name": [{"given": ["Anna"], "family": "Smith"}]}},
        {"fullUrl": u(3), "resource": {"resourceType": "Encounter", "id": "visit1",
            "status": "finished", "class": {"code": "AMB"},
            "type": [{"text": "Diabetes review"}],
            "period": {"start": "2026-03-02T09:30:00Z"},
            "subject": {"reference": u(1)}}},
        {"fullUrl": u(4), "resource": {"resourceType": "Medication", "id": "met",
            "code": {"text": "Metformin 500 MG"}}},
        {"fullUrl": u(5), "resource": {"resourceType": "Condition",
            "code": {"text": "Type 2 diabetes"},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(3)},
            "asserter": {"reference": u(2)}}},
        {"fullUrl": u(6), "resource": {"resourceType": "MedicationRequest", "status": "active",
            "intent": "order", "medicationReference": {"reference": u(4)},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(3)}}}]});
    let dir = TempDir::new().expect("tmp");
    let f = dir.path().join("b.json");
    fs::write(&f, bundle.to_string()).expect("write");
    let p = patient();
    let r = p.json(&["fhir", "import", s(&f)]);
    assert_eq!(r["created"], 6, "{r}");
    let condition = summary_of(&p, "problems", "Type 2 diabetes");
    assert!(
        condition.contains("Encounter: Diabetes review (2026-03-02)")
            && condition.contains("Practitioner: Anna Smith"),
        "{condition}"
    );
    let request = summary_of(&p, "medications", "Metformin 500 MG");
    assert!(
        request.contains("Encounter: Diabetes review (2026-03-02)"),
        "{request}"
    );
    assert!(!request.contains("Medication:"), "named once: {request}");

    // A later import naming the Practitioner the record already holds, by id: named too.
    let later = json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "Foot check"}, "valueString": "normal",
        "subject": {"reference": "Patient/pt"},
        "performer": [{"reference": "Practitioner/dr-smith"}]});
    let f2 = dir.path().join("later.json");
    fs::write(&f2, later.to_string()).expect("write");
    let r = p.json(&["fhir", "import", s(&f2)]);
    assert_eq!(r["created"], 1, "{r}");
    let shown = p.json(&["show", "--json"]);
    let foot = shown["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["summary"].as_str())
        .find(|s| s.contains("normal"))
        .unwrap_or_else(|| panic!("no foot check in {shown}"))
        .to_owned();
    assert!(foot.contains("Practitioner: Anna Smith"), "{foot}");

    // The same Bundle again (its names now also found in the record): nothing stored.
    let again = p.json(&["fhir", "import", s(&f)]);
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(again["amended"], 0, "{again}");
    assert_eq!(
        summary_of(&p, "problems", "Type 2 diabetes"),
        condition,
        "the summary is unchanged"
    );
}
