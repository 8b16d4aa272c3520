//! Whole-practice FHIR exports through the real binary (issue 16): a seeded generator
//! writes a bulk export of several patients (NDJSON per type, with the export's own
//! `log.ndjson`), the way a GP system's export looks, and update cycles of it. Each failure
//! mode the issue lists for imports is a test here: another patient's data stored in the
//! record, one bad resource or a log file stopping the whole import, the 10,000-item and
//! 4,096-resource caps, unmapped types dropped so references dangle, changed resources
//! stored beside the old ones, `meta`-only changes stored again, the same data as NDJSON
//! and then as a Bundle stored twice. Run `cargo build -p cophr` first.

mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use cli_support::Person;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};
use tempfile::TempDir;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// A seeded generator of a practice's bulk export.
struct Practice {
    rng: ChaCha8Rng,
    /// Resources by type, in order.
    by_type: BTreeMap<String, Vec<Value>>,
    /// Per patient id: its NHS number and how many resources are about it (its Patient
    /// included).
    patients: Vec<(String, String, usize)>,
}

impl Practice {
    fn new(seed: u64) -> Practice {
        Practice {
            rng: ChaCha8Rng::seed_from_u64(seed),
            by_type: BTreeMap::new(),
            patients: Vec::new(),
        }
    }

    fn pick(&mut self, n: u32) -> u32 {
        self.rng.next_u32() % n
    }

    fn push(&mut self, r: Value) {
        let ty = r["resourceType"].as_str().expect("type").to_owned();
        self.by_type.entry(ty).or_default().push(r);
    }

    /// The practice's shared resources: its organisation, location, practitioners and
    /// medications.
    fn shared(&mut self) {
        self.push(json!({"resourceType": "Organization", "id": "org1",
            "name": "Riverside Surgery", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}]}));
        self.push(
            json!({"resourceType": "Location", "id": "loc1", "name": "Riverside Surgery, Room 2",
            "managingOrganization": {"reference": "Organization/org1"}}),
        );
        for (i, (given, family)) in [("Anna", "Shah"), ("Tom", "Evans")].iter().enumerate() {
            self.push(
                json!({"resourceType": "Practitioner", "id": format!("pr{i}"),
                "name": [{"family": family, "given": [given], "prefix": ["Dr"]}]}),
            );
            self.push(
                json!({"resourceType": "PractitionerRole", "id": format!("role{i}"),
                "practitioner": {"reference": format!("Practitioner/pr{i}")},
                "organization": {"reference": "Organization/org1"}}),
            );
        }
        self.push(json!({"resourceType": "Medication", "id": "med1",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "861007", "display": "Metformin 500 MG Oral Tablet"}], "text": "Metformin 500 MG"}}));
        self.push(json!({"resourceType": "Device", "id": "dev1", "deviceName": [{"name": "Omron M3", "type": "model-name"}]}));
    }

    /// One patient and `obs` heart rates, with encounters, a condition, a prescription, a
    /// claim and a provenance.
    fn patient(&mut self, n: usize, obs: usize) -> String {
        let id = format!("p{n}");
        let nhs = format!("94{:08}", 34_765_900 + n);
        let family = ["Jones", "Patel", "Smith", "Okafor", "Nowak"][n % 5];
        let birth = format!(
            "19{:02}-0{}-1{}",
            40 + self.pick(50),
            1 + self.pick(9),
            self.pick(10)
        );
        self.push(json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": family, "given": [format!("Test{n}")]}],
            "gender": if n.is_multiple_of(2) { "male" } else { "female" },
            "birthDate": birth,
            "generalPractitioner": [{"reference": "Practitioner/pr0"}],
            "managingOrganization": {"reference": "Organization/org1"}}));
        let subject = json!({"reference": format!("Patient/{id}")});
        let mut count = 1;
        for e in 0..2 {
            self.push(json!({"resourceType": "Encounter", "id": format!("{id}-enc{e}"), "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": subject, "participant": [{"individual": {"reference": "Practitioner/pr1"}}],
                "location": [{"location": {"reference": "Location/loc1"}}],
                "serviceProvider": {"reference": "Organization/org1"},
                "period": {"start": format!("2024-0{}-10T09:00:00Z", e + 1)}}));
            count += 1;
        }
        for o in 0..obs {
            let hr = 55 + self.pick(40);
            self.push(obs_hr(&id, &format!("{id}-hr{o}"), hr, o));
            count += 1;
        }
        self.push(json!({"resourceType": "Condition", "id": format!("{id}-cond"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Type 2 diabetes mellitus"}]},
            "subject": subject, "encounter": {"reference": format!("Encounter/{id}-enc0")},
            "onsetDateTime": "2023-05-01"}));
        self.push(json!({"resourceType": "MedicationRequest", "id": format!("{id}-rx"), "status": "active",
            "intent": "order", "medicationReference": {"reference": "Medication/med1"},
            "subject": subject, "encounter": {"reference": format!("Encounter/{id}-enc0")},
            "requester": {"reference": "Practitioner/pr0"}, "authoredOn": "2024-01-10"}));
        self.push(json!({"resourceType": "Claim", "id": format!("{id}-claim"), "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "use": "claim", "patient": subject, "created": "2024-01-10",
            "provider": {"reference": "Organization/org1"}, "priority": {"coding": [{"code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "NHS"}}]}));
        self.push(json!({"resourceType": "Provenance", "id": format!("{id}-prov"),
            "target": [{"reference": format!("Encounter/{id}-enc0")}, {"reference": format!("Patient/{id}")}],
            "recorded": "2024-01-10T09:30:00Z",
            "agent": [{"who": {"reference": "Practitioner/pr0"}, "onBehalfOf": {"reference": "Organization/org1"}}]}));
        count += 4;
        self.patients.push((id.clone(), nhs, count));
        id
    }

    /// Writes the export: `Type.ndjson` per type and the export's `log.ndjson`.
    fn write(&self, dir: &Path) {
        for (ty, rs) in &self.by_type {
            let text: String = rs.iter().map(|r| format!("{r}\n")).collect();
            fs::write(dir.join(format!("{ty}.ndjson")), text).expect("write");
        }
        fs::write(
            dir.join("log.ndjson"),
            "{\"fileUrl\":\"Patient.ndjson\",\"eventId\":\"transfer_complete\",\"count\":13}\n",
        )
        .expect("write log");
        fs::write(
            dir.join("manifest.json"),
            json!({"transactionTime": "2024-02-01T00:00:00Z", "request": "$export", "output": []})
                .to_string(),
        )
        .expect("write manifest");
    }

    fn count(&self) -> usize {
        self.by_type.values().map(Vec::len).sum()
    }
}

fn obs_hr(patient: &str, id: &str, hr: u32, o: usize) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "meta": {"versionId": "1", "lastUpdated": "2024-02-01T00:00:00Z"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{patient}-enc{}", o % 2)},
        "effectiveDateTime": format!("2024-01-{:02}T08:{:02}:00Z", 1 + o % 28, o % 60),
        "valueQuantity": {"value": hr, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

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
