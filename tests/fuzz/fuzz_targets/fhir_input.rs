//! FHIR R4 input (resources, Bundles, NDJSON) from GP systems and apps: parsing, Bundle
//! reading, mapping to entries, and what an importer of whole exports does with them
//! (patients matched, identities and digests, references localised) never panic.
#![no_main]

use cophr_protocol::fhir;
use libfuzzer_sys::fuzz_target;

/// What `cophr fhir import` does with the resources of one input.
fn ingest(resources: &[(Option<String>, serde_json::Value)]) {
    let mut index = fhir::PatientIndex::default();
    for (url, r) in resources {
        if r["resourceType"] == "Patient" {
            let _ = index.add(r, url.as_deref());
        }
    }
    let mut items = Vec::new();
    for (url, r) in resources {
        let _ = index.owner(r, url.as_deref());
        let _ = fhir::identity(r);
        let _ = fhir::content_hash(r);
        items.push((url.clone().unwrap_or_default(), "e-x".to_owned(), r.clone()));
    }
    fhir::localise_references(&mut items);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = fhir::parse(data) {
        let _ = fhir::import(&json, Some("fuzz"));
        if let Ok(items) = fhir::bundle_items(&json) {
            let mut all = Vec::new();
            for item in items {
                let _ = fhir::import(&item.resource, None);
                all.push((item.full_url, item.resource));
            }
            ingest(&all);
        } else {
            ingest(&[(None, json)]);
        }
    }
    if let Ok(lines) = fhir::parse_ndjson(data) {
        for r in lines.iter().take(64) {
            let _ = fhir::import(r, None);
        }
        let all: Vec<_> = lines.into_iter().take(64).map(|r| (None, r)).collect();
        ingest(&all);
    }
});
