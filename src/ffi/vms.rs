//! `vmpool_vm_*`: creating, listing and deleting VMs.

use super::store::{store_ref, vmpool_store};
use super::vmpool_result;
use super::{arg_str, check_out, ffi_call, opt_str, put_string, query, wire, ID_MAX, JSON_MAX};
use crate::validate;
use std::ffi::c_char;

/// Create a VM from a JSON payload:
/// `{"alias": "...", "owner": "...", "image_uuid": "...", "vcpus": 2, "ram_mib": 2048,
/// "disk_gib": 20}` (`uuid` and `disk_gib` optional; unknown keys refused). The disk is a
/// copy-on-write clone of the image, grown to `disk_gib` (never below the image size), made in
/// time independent of the image size. On success `*vm_json_out` receives the VM record.
///
/// Keys of `payload_json`: `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`,
/// `firmware` (`"bios"`/`"uefi"`), `accel` (`"auto"`/`"kvm"`/`"tcg"`), `cpu_cap_pct`,
/// `memory_cap_mib`, `io` (`{"read_bps", "write_bps", "read_iops", "write_iops"}`), `prealloc`,
/// `user` (`{"login", "full_name", "password_hash", "ssh_keys", "locale", "keyboard",
/// "timezone"}`: the person the VM is for, applied in guests whose image has a NoCloud seed or
/// an `on_clone` program; each field checked, a bad one refused by name).
/// Keys written: `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`,
/// `created_at`, `state`, `disk_path`, `disk_format`, `disk_size_bytes`, `clone_method`,
/// `firmware`, `accel`, `mac`, `vmgenid`, `last_exit`, `caps`, `pool`, `user`, `suspended`, `autoboot`, `session_ends_at`.
#[no_mangle]
pub extern "C" fn vmpool_vm_create(
    store: *const vmpool_store,
    payload_json: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let spec = wire::vm_spec(arg_str(payload_json, "payload_json", JSON_MAX)?)?;
        check_out(vm_json_out, "vm_json_out")?;
        let vm = s.inner.create_vm(&spec)?;
        put_string(vm_json_out, wire::to_string(&wire::VmOut::from(&vm))?)
    })
}

/// One VM's record as JSON; `VMPOOL_RESULT_NOT_FOUND` if there is none with `uuid`.
///
/// Keys written: `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`,
/// `created_at`, `state`, `disk_path`, `disk_format`, `disk_size_bytes`, `clone_method`,
/// `firmware`, `accel`, `mac`, `vmgenid`, `last_exit`, `caps`, `pool`, `user`, `suspended`, `autoboot`, `session_ends_at`.
#[no_mangle]
pub extern "C" fn vmpool_vm_get(
    store: *const vmpool_store,
    uuid: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            let u = validate::uuid("VM uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
            Ok(wire::to_string(&wire::VmOut::from(&s.vm(u)?))?)
        })
    })
}

/// VM records as a JSON array, oldest first: all of them, or only those whose owner is
/// `owner_or_null` when it is not NULL.
///
/// Keys written (each element): `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`,
/// `disk_gib`, `created_at`, `state`, `disk_path`, `disk_format`, `disk_size_bytes`,
/// `clone_method`, `firmware`, `accel`, `mac`, `vmgenid`, `last_exit`, `caps`, `pool`, `user`, `suspended`, `autoboot`, `session_ends_at`.
#[no_mangle]
pub extern "C" fn vmpool_vm_list(
    store: *const vmpool_store,
    owner_or_null: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            Ok(wire::vms(&s.vms(opt_str(
                owner_or_null,
                "owner",
                ID_MAX,
            )?)?)?)
        })
    })
}

/// Delete a VM: its record and its disk. `VMPOOL_RESULT_NOT_FOUND` for an unknown uuid.
#[no_mangle]
pub extern "C" fn vmpool_vm_delete(
    store: *const vmpool_store,
    uuid: *const c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let u = validate::uuid("VM uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
        Ok(s.inner.delete_vm(u)?)
    })
}
