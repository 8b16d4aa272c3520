//! A DICOM file's first bytes as `cophr attach` and the HTTP upload read them
//! (`node/src/dicom.rs`): never panics, and never lets the parser take what an element
//! declares beyond the bytes given (the lengths are checked with the crates' header decoder
//! first); a header read names at most short, printable fields.
#![no_main]

use cophr_node::dicom::DicomHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Most inputs are not DICOM at all: give the fuzzer the preamble and marker for free.
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend_from_slice(data);
    for bytes in [data, &file[..]] {
        if let Some(h) = DicomHeader::read(bytes) {
            for f in [&h.patient, &h.study, &h.modality, &h.date]
                .into_iter()
                .flatten()
            {
                assert!(f.chars().count() <= 200 * 5 + 4);
                assert!(!f.chars().any(char::is_control));
            }
        }
    }
});
