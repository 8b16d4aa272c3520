//! Export files from anyone: offline verification never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cophr_protocol::export::verify(data);
});
