//! `vmpool_vm_create`'s JSON payload: parsing arbitrary UTF-8 must never panic, and what
//! parses must go through the size arithmetic the store applies to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmpool::validate::Limits;

fuzz_target!(|json: &str| {
    let limits = Limits::default();
    if let Ok(spec) = vmpool::ffi::wire::vm_spec(json) {
        let _ = limits.vcpus(u64::from(spec.vcpus));
        let _ = limits.ram_mib(spec.ram_mib);
        if let Some(gib) = spec.disk_gib {
            let _ = limits.disk_gib(gib);
            let _ = vmpool::vm::gib_to_bytes(gib);
        }
    }
});
