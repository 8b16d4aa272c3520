//! Sync requests and responses off the wire: bounded, canonical decoding never panics, and
//! what decodes encodes back to the same bytes.
#![no_main]

use cophr_protocol::sync::{decode, encode, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode::<Request>(data) {
        assert_eq!(encode(&r), data);
    }
    if let Ok(r) = decode::<Response>(data) {
        assert_eq!(encode(&r), data);
    }
});
