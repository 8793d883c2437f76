//! The JSON Schema of the C ABI's payloads: what each entry point accepts and what it writes
//! back, generated from the very types that parse and print them (so it cannot drift from
//! them). `docs/vmpool.schema.json` is this document; `tests/it/schema.rs` checks that the file,
//! the header's key lists and both bindings agree with it.

use super::homes::HomeOut;
use super::pools::{
    AcquireIn, AcquiredOut, LogoutOut, PoolChanges, PoolOut, PoolPayload, RefillIn, RefillOut,
};
use super::{
    ConsoleOut, HostOut, ImageOut, ImportManifest, RecoveryOut, StartIn, StoreInfoOut, UpdateIn,
    VmOut, VmPayload, VmStatusOut,
};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// What one entry point takes (`input`, the JSON argument it parses) and gives (`output`, the
/// JSON it writes to its `*_json_out`); list outputs are arrays of the output.
struct Entry {
    name: &'static str,
    input: Option<(&'static str, Value)>,
    output: Option<Value>,
}

fn r<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn list<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    json!({"type": "array", "items": r::<T>(g)})
}

/// The schema document (deterministic: keys sorted, as `serde_json` keeps them).
pub fn schema() -> Value {
    let mut g = SchemaGenerator::default();
    let vm = r::<VmOut<'static>>(&mut g);
    let pool = r::<PoolOut<'static>>(&mut g);
    let image = r::<ImageOut<'static>>(&mut g);
    let e = |name, input, output| Entry {
        name,
        input,
        output,
    };
    let entries = vec![
        e(
            "vmpool_store_info",
            None,
            Some(r::<StoreInfoOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_store_recover",
            None,
            Some(r::<RecoveryOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_host_start",
            None,
            Some(r::<HostOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_host_stop",
            None,
            Some(r::<HostOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_image_import",
            Some(("manifest_json", r::<ImportManifest>(&mut g))),
            Some(image.clone()),
        ),
        e("vmpool_image_get", None, Some(image.clone())),
        e(
            "vmpool_image_list",
            None,
            Some(list::<ImageOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_vm_create",
            Some(("payload_json", r::<VmPayload>(&mut g))),
            Some(vm.clone()),
        ),
        e("vmpool_vm_get", None, Some(vm.clone())),
        e("vmpool_vm_list", None, Some(list::<VmOut<'static>>(&mut g))),
        e(
            "vmpool_vm_start",
            Some(("options_json", r::<StartIn>(&mut g))),
            Some(vm.clone()),
        ),
        e("vmpool_vm_suspend", None, Some(vm.clone())),
        e(
            "vmpool_vm_update",
            Some(("update_json", r::<UpdateIn>(&mut g))),
            Some(vm.clone()),
        ),
        e(
            "vmpool_vm_status",
            None,
            Some(r::<VmStatusOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_vm_stats",
            None,
            Some(r::<crate::vm::stats::VmStats>(&mut g)),
        ),
        e(
            "vmpool_vm_console",
            None,
            Some(r::<ConsoleOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_pool_create",
            Some(("payload_json", r::<PoolPayload>(&mut g))),
            Some(pool.clone()),
        ),
        e(
            "vmpool_pool_update",
            Some(("changes_json", r::<PoolChanges>(&mut g))),
            Some(pool.clone()),
        ),
        e("vmpool_pool_get", None, Some(pool.clone())),
        e(
            "vmpool_pool_list",
            None,
            Some(list::<PoolOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_pool_acquire",
            Some(("options_json", r::<AcquireIn>(&mut g))),
            Some(r::<AcquiredOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_pool_logout",
            None,
            Some(r::<LogoutOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_home_create",
            None,
            Some(r::<HomeOut<'static>>(&mut g)),
        ),
        e("vmpool_home_get", None, Some(r::<HomeOut<'static>>(&mut g))),
        e(
            "vmpool_home_resize",
            None,
            Some(r::<HomeOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_home_list",
            None,
            Some(list::<HomeOut<'static>>(&mut g)),
        ),
        e(
            "vmpool_pool_refill",
            Some(("options_json", r::<RefillIn>(&mut g))),
            Some(r::<RefillOut<'static>>(&mut g)),
        ),
    ];
    let mut points = Map::new();
    for en in entries {
        let mut m = Map::new();
        if let Some((arg, s)) = en.input {
            m.insert("argument".into(), arg.into());
            m.insert("input".into(), s);
        }
        if let Some(o) = en.output {
            m.insert("output".into(), o);
        }
        points.insert(en.name.into(), Value::Object(m));
    }
    let defs: Map<String, Value> = g
        .definitions()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "vmpool C ABI: JSON arguments and results",
        "description": "Generated from the types that parse and print them (src/ffi/wire). \
            Inputs refuse unknown keys; outputs may gain keys in later versions.",
        "entry_points": points,
        "$defs": defs,
    })
}
