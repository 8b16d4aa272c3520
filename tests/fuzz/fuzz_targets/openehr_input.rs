//! openEHR input from clients: canonical JSON compositions and AQL queries never panic,
//! and a composition the mapping accepts is written again to one that reads back to the
//! same category and body.
#![no_main]

use cophr_protocol::openehr::{self, aql};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = openehr::parse(data) {
        if let Ok((category, body)) = openehr::from_composition(&json) {
            let meta = openehr::Meta {
                uid: None,
                start_time: "2026-01-01T00:00:00Z".into(),
                composer: openehr::Composer {
                    name: None,
                    actor: "a-fuzz".into(),
                },
            };
            let again = openehr::to_composition(&category, &body, &meta)
                .expect("an accepted body maps back to a composition");
            let (c2, b2) = openehr::from_composition(&again).expect("and reads back");
            assert_eq!(c2, category);
            assert_eq!(b2, body);
            let sources = [aql::Source {
                ehr: serde_json::json!({"ehr_id": {"value": "x"}}),
                composition: again,
            }];
            if let Ok(q) = aql::parse(
                "SELECT c/uid/value, o/data[at0001]/items[at0002]/value/value FROM EHR e \
                 CONTAINS COMPOSITION c CONTAINS EVALUATION o WHERE c/name/value != 'x' \
                 ORDER BY c/uid/value DESC LIMIT 5",
            ) {
                let _ = aql::run(&q, &sources, &serde_json::Map::new());
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(q) = aql::parse(text) {
            let _ = aql::run(&q, &[], &serde_json::Map::new());
        }
    }
});
