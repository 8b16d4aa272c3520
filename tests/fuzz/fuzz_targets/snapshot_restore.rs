//! A record snapshot as a node finds it on its disk (`protocol/src/record/snapshot.rs`),
//! with a correct hash over any body: restoring never panics; a snapshot it accepts is a
//! record that answers every question (entries, heads, folds, a past state, its own
//! snapshot again) without panicking, and takes or refuses a new entry without panicking.
#![no_main]

use std::sync::Arc;

use cophr_protocol::fold;
use cophr_protocol::record::Record;
use cophr_protocol::testkit::{bp, key, MemSource};
use cophr_protocol::{Category, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let mut bytes = b"COPHR-SNAP".to_vec();
    bytes.extend_from_slice(blake3::hash(body).as_bytes());
    bytes.extend_from_slice(body);
    let george = key(1, "George");
    let source = Arc::new(MemSource::of(std::iter::empty()));
    let Ok(mut r) = Record::restore(george.actor(), &bytes, source) else {
        return;
    };
    let _ = (r.len(), r.heads(), r.streams());
    for e in r.entries() {
        let _ = (
            r.status(&e.id()),
            r.category_of(&e.id()),
            r.stream_of(&e.id()),
        );
    }
    let v = r.viewer(&george.actor(), 1 << 40);
    let _ = fold::current(&r, &v);
    let _ = fold::current(&r.at_time(1 << 20), &v);
    let _ = r.snapshot();
    r.unlock(&george);
    if let Ok(all) = r.prepare_all(
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(120, 80),
        },
        1 << 41,
        None,
    ) {
        for e in all {
            let _ = r.apply(e);
        }
    }
});
