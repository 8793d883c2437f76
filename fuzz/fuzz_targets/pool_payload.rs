//! The pool JSON of the C ABI: create payloads, updates (with their null-to-clear keys),
//! acquire and refill options. Parsing arbitrary UTF-8 must never panic, and an update that
//! parses must apply to a pool.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmpool::ffi::wire;

fuzz_target!(|json: &str| {
    let spec = wire::pool_spec(json).ok();
    if let Ok(u) = wire::pool_update(json) {
        let base = spec.unwrap_or_else(|| vmpool::pool::PoolSpec::new("p", uuid::Uuid::nil()));
        let applied = u.apply(&base);
        assert_eq!(applied.name, base.name, "an update never renames");
    }
    let _ = wire::acquire_options(Some(json));
    let _ = wire::refill_options(Some(json));
});
