//! `vmpool_image_import`'s manifest JSON: never panics, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|json: &str| {
    if let Ok(req) = vmpool::ffi::wire::import_request(Some(json)) {
        if let Some(n) = req.size_bytes {
            let _ = vmpool::validate::Limits::default().image_bytes(n);
        }
        if let Some(s) = &req.sha256 {
            let _ = vmpool::validate::sha256_hex(s);
        }
        if let Some(s) = &req.name {
            let _ = vmpool::validate::name("name", s);
        }
        if let Some(s) = &req.version {
            let _ = vmpool::validate::version(s);
        }
        if let Some(s) = &req.os {
            let _ = vmpool::validate::os(s);
        }
    }
});
