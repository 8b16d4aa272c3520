//! FHIR bundle import in resources/s: parse a collection Bundle, map each resource to its
//! category (checking it), sign each entry, and write them all durably through
//! [`Store::write_all`] (one fsync for the Bundle, with its audit event) — what
//! `cophr fhir import` does per file.
//!
//! The Bundle is synthetic and seeded (no test data needed): a patient, and a mix of vital
//! signs, laboratory results, conditions, medications, allergies and immunisations, about
//! 1 KB of JSON each. Run: `cargo bench -p cophr-node --bench fhir`
//! (`COPHR_BENCH_FHIR_RESOURCES`, default 200 resources per Bundle).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cophr_node::store::{BatchInfo, Store};
use cophr_protocol::audit::Action;
use cophr_protocol::fhir::{self, ImportMeta};
use cophr_protocol::testkit::{key, profile};
use cophr_protocol::{Keypair, Payload};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value as Json};

/// A deterministic pseudo-random sequence (splitmix64), so the Bundle is the same every run.
struct Seq(u64);

impl Seq {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn resource(i: usize, s: &mut Seq) -> Json {
    let subject = json!({"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"});
    let day = format!("2025-{:02}-{:02}", 1 + s.below(12), 1 + s.below(28));
    let when = format!("{day}T{:02}:{:02}:00Z", s.below(24), s.below(60));
    let narrative = json!({"status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">Resource {i}: generated for the FHIR import benchmark, seeded.</div>")});
    match i % 6 {
        0 => json!({"resourceType": "Observation", "id": format!("hr-{i}"), "text": narrative,
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
            "subject": subject, "effectiveDateTime": when,
            "valueQuantity": {"value": 50 + s.below(60), "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        1 => json!({"resourceType": "Observation", "id": format!("lab-{i}"), "text": narrative,
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "59261-8", "display": "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"}]},
            "subject": subject, "effectiveDateTime": when, "issued": when,
            "valueQuantity": {"value": 30 + s.below(50), "unit": "mmol/mol", "system": "http://unitsofmeasure.org", "code": "mmol/mol"},
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}],
            "referenceRange": [{"low": {"value": 20, "unit": "mmol/mol"}, "high": {"value": 42, "unit": "mmol/mol"}}]}),
        2 => json!({"resourceType": "Condition", "id": format!("cond-{i}"), "text": narrative,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}]},
            "subject": subject, "onsetDateTime": day}),
        3 => {
            json!({"resourceType": "MedicationStatement", "id": format!("med-{i}"), "text": narrative,
            "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "325278007", "display": "Metformin 500 mg tablet"}]},
            "subject": subject, "effectivePeriod": {"start": day},
            "dosage": [{"text": "One tablet twice a day", "route": {"text": "Oral"}}]})
        }
        4 => {
            json!({"resourceType": "AllergyIntolerance", "id": format!("allergy-{i}"), "text": narrative,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "764146007", "display": "Penicillin"}]},
            "patient": subject, "criticality": "high",
            "reaction": [{"manifestation": [{"text": "Urticaria"}], "severity": "moderate"}]})
        }
        _ => json!({"resourceType": "Immunization", "id": format!("imm-{i}"), "text": narrative,
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza, seasonal"}]},
            "patient": subject, "occurrenceDateTime": day}),
    }
}

/// A collection Bundle of `n` resources, as JSON bytes.
pub fn bundle(n: usize, seed: u64) -> Vec<u8> {
    let mut s = Seq(seed);
    let entries: Vec<Json> = (0..n)
        .map(|i| json!({"fullUrl": format!("urn:uuid:00000000-0000-0000-0001-{i:012}"), "resource": resource(i, &mut s)}))
        .collect();
    serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "collection", "entry": entries}))
        .expect("serialise")
}

/// Parses a Bundle and maps every resource (no signing, no writing).
pub fn map_only(bundle: &[u8]) -> Vec<Payload> {
    let json = fhir::parse(bundle).expect("parse");
    let items = fhir::bundle_items(&json).expect("bundle");
    items
        .iter()
        .map(|item| {
            let i = fhir::import_with(
                &item.resource,
                &ImportMeta {
                    source: Some("benchmark"),
                    full_url: item.full_url.as_deref(),
                    names: None,
                },
            )
            .expect("import");
            Payload::Create {
                category: i.category,
                body: i.body,
            }
        })
        .collect()
}

/// Imports a Bundle into `author`'s record: parse, map, sign, write durably. Returns how
/// many entries were written.
pub fn import(store: &Store, author: &Keypair, bundle: &[u8], now: u64) -> usize {
    let payloads = map_only(bundle);
    let info = BatchInfo {
        action: Action::Import,
        detail: Some(format!("FHIR import: {} resources", payloads.len())),
    };
    store
        .write_all(&author.actor(), author, payloads, info, now, None)
        .expect("write")
        .len()
}

/// A fresh patient record in `store` to import into.
pub fn fresh_record(store: &Store, n: u64) -> Keypair {
    let p = key(n, "fhir-bench-patient");
    store
        .create_record(&p, profile("P", "patient", None), 1, None)
        .expect("create record");
    p
}

fn resources() -> usize {
    std::env::var("COPHR_BENCH_FHIR_RESOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn fhir_import(c: &mut Criterion) {
    let n = resources();
    let bytes = bundle(n, 42);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(&dir.path().join("store"), key(0, "node")).expect("open");
    let records = AtomicU64::new(0);
    let mut group = c.benchmark_group("fhir_bundle_import");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("collection_{n}_resources"), |b| {
        b.iter_batched(
            || fresh_record(&store, records.fetch_add(1, Ordering::Relaxed)),
            |p| black_box(import(&store, &p, &bytes, 2)),
            BatchSize::PerIteration,
        );
    });
    // The same Bundle parsed and mapped only: what the import costs beyond signing and
    // the durable write, measured in the same run.
    group.bench_function(format!("map_only_{n}_resources"), |b| {
        b.iter(|| black_box(map_only(&bytes)));
    });
    group.finish();
}

criterion_group!(benches, fhir_import);
criterion_main!(benches);
