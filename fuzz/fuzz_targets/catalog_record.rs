//! Catalog records (`images/<uuid>.json`, `vms/<uuid>.json`) as stored on disk: decoding
//! never panics, and a record that decodes survives an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use vmpool::store::catalog::records::{decode, encode, ImageRecord, VmRecord};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/record.json");
    if let Ok(r) = decode::<VmRecord>(data, path) {
        let bytes = encode(&r).expect("a decoded VM record encodes");
        let again: VmRecord = decode(&bytes, path).expect("an encoded VM record decodes");
        assert_eq!(again, r);
    }
    if let Ok(r) = decode::<ImageRecord>(data, path) {
        let bytes = encode(&r).expect("a decoded image record encodes");
        let again: ImageRecord = decode(&bytes, path).expect("an encoded image record decodes");
        assert_eq!(again, r);
    }
});
