//! The other signed objects peers send: audit events and home pointers.
#![no_main]

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::home::SignedPointer;
use cophr_protocol::testkit::key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SignedAudit::decode(data);
    let _ = SignedPointer::decode(data, &key(1, "George").actor());
});
