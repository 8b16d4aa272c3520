//! Signed entries from the network, files and logs: decoding and verifying never panics,
//! and what decodes re-encodes to the same bytes (only the canonical encoding is accepted).
#![no_main]

use cophr_protocol::SignedEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = SignedEntry::decode(data) {
        assert_eq!(
            e.bytes(),
            data,
            "accepted bytes are the entry's own encoding"
        );
        let _ = e.verify();
    }
});
