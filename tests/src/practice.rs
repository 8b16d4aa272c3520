//! A seeded generator of a practice's FHIR bulk export (issue 16), for the tests
//! (`tests/tests/fhir_bulk.rs`) and the import benchmark (`fhir_practice` binary,
//! `docs/benchmarks.md`): NDJSON per resource type, several patients with NHS numbers,
//! the practice's shared resources, and the export's own `log.ndjson` and manifest.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};

/// The NHS number's identifier system.
pub const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// A seeded generator of a practice's bulk export.
#[derive(Debug)]
pub struct Practice {
    rng: ChaCha8Rng,
    /// Resources by type, in order.
    pub by_type: BTreeMap<String, Vec<Value>>,
    /// Per patient id: its NHS number and how many resources are about it (its Patient
    /// included).
    pub patients: Vec<(String, String, usize)>,
}

impl Practice {
    /// A practice with no resources yet.
    pub fn new(seed: u64) -> Practice {
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
    pub fn shared(&mut self) {
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
    pub fn patient(&mut self, n: usize, obs: usize) -> String {
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
    pub fn write(&self, dir: &Path) {
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

    /// How many resources it holds.
    pub fn count(&self) -> usize {
        self.by_type.values().map(Vec::len).sum()
    }
}

/// A heart rate Observation of `patient`.
pub fn obs_hr(patient: &str, id: &str, hr: u32, o: usize) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "meta": {"versionId": "1", "lastUpdated": "2024-02-01T00:00:00Z"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{patient}-enc{}", o % 2)},
        "effectiveDateTime": format!("2024-01-{:02}T08:{:02}:00Z", 1 + o % 28, o % 60),
        "valueQuantity": {"value": hr, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}})
}
