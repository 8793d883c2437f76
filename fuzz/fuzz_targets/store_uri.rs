//! Store URIs (`dir:/path?max_vcpus=8`, `zfs:pool/ds`), and each option of a parsed URI
//! applied to the default limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmpool::validate::Limits;

fuzz_target!(|s: &str| {
    if let Ok(uri) = vmpool::store::uri::parse(s) {
        let mut limits = Limits::default();
        for (k, v) in &uri.options {
            let _ = limits.set(k, v);
        }
    }
    let _ = vmpool::store::uri::dataset_name(s);
});
