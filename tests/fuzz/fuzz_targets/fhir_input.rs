//! FHIR R4 input (resources, Bundles, NDJSON) from GP systems and apps: parsing, Bundle
//! reading and mapping to entries never panic.
#![no_main]

use cophr_protocol::fhir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = fhir::parse(data) {
        let _ = fhir::import(&json, Some("fuzz"));
        if let Ok(items) = fhir::bundle_items(&json) {
            for item in items {
                let _ = fhir::import(&item.resource, None);
            }
        }
    }
    if let Ok(lines) = fhir::parse_ndjson(data) {
        for r in lines.iter().take(64) {
            let _ = fhir::import(r, None);
        }
    }
});
