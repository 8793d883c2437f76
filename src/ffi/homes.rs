//! `vmpool_home_*`: owners' home volumes (create, get, list, resize, delete).
//!
//! A home is one disk per owner per store, attached to each desktop a pool with `home_gib`
//! hands that owner, mounted by the guest at `/home/<login>`. Pools make one on an owner's
//! first acquire; these calls manage them explicitly. Its JSON: `owner`, `uuid`,
//! `size_bytes`, `disk_format`, `disk`, `clone_method`, `created_at`, `attached_to` (the
//! running VM that has it, or null).

use super::store::{store_ref, vmpool_store};
use super::vmpool_result;
use super::{arg_str, ffi_call, put_string, query, wire, ID_MAX};
use std::ffi::c_char;

/// Make `owner`'s home volume of `size_bytes` (at least 64 MiB, at most the store's
/// `max_disk_gib`; rounded up to MiB). `VMPOOL_RESULT_ALREADY_EXISTS` if they have one.
/// `*json_out` (may be NULL) receives it.
///
/// Keys written: `owner`, `uuid`, `size_bytes`, `disk_format`, `disk`, `clone_method`,
/// `created_at`, `attached_to`.
#[no_mangle]
pub extern "C" fn vmpool_home_create(
    store: *const vmpool_store,
    owner: *const c_char,
    size_bytes: u64,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let h = s
            .inner
            .create_home(arg_str(owner, "owner", ID_MAX)?, size_bytes)?;
        if !json_out.is_null() {
            put_string(json_out, wire::to_string(&wire::HomeOut::from(&h))?)?;
        }
        Ok(())
    })
}

/// `owner`'s home volume as JSON; `VMPOOL_RESULT_NOT_FOUND` if they have none.
///
/// Keys written: `owner`, `uuid`, `size_bytes`, `disk_format`, `disk`, `clone_method`,
/// `created_at`, `attached_to`.
#[no_mangle]
pub extern "C" fn vmpool_home_get(
    store: *const vmpool_store,
    owner: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            let h = s.home(arg_str(owner, "owner", ID_MAX)?)?;
            Ok(wire::to_string(&wire::HomeOut::from(&h))?)
        })
    })
}

/// Every home volume of the store as a JSON array, by owner.
///
/// Keys written (each element): `owner`, `uuid`, `size_bytes`, `disk_format`, `disk`,
/// `clone_method`, `created_at`, `attached_to`.
#[no_mangle]
pub extern "C" fn vmpool_home_list(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ query(store, json_out, |s| Ok(wire::homes(&s.homes()?)?)) })
}

/// Grow `owner`'s home volume to `size_bytes` (homes never shrink: a smaller size is
/// `VMPOOL_RESULT_INVALID_ARGUMENT`); `VMPOOL_RESULT_IN_USE` while a running VM has it. The
/// guest grows its file system at the next attach. `*json_out` (may be NULL) receives it.
///
/// Keys written: `owner`, `uuid`, `size_bytes`, `disk_format`, `disk`, `clone_method`,
/// `created_at`, `attached_to`.
#[no_mangle]
pub extern "C" fn vmpool_home_resize(
    store: *const vmpool_store,
    owner: *const c_char,
    size_bytes: u64,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let h = s
            .inner
            .resize_home(arg_str(owner, "owner", ID_MAX)?, size_bytes)?;
        if !json_out.is_null() {
            put_string(json_out, wire::to_string(&wire::HomeOut::from(&h))?)?;
        }
        Ok(())
    })
}

/// Delete `owner`'s home volume and everything on it (the only call that does: pools,
/// releases and crash recovery never remove one). `VMPOOL_RESULT_IN_USE` while a running VM
/// has it.
#[no_mangle]
pub extern "C" fn vmpool_home_delete(
    store: *const vmpool_store,
    owner: *const c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        Ok(s.inner.delete_home(arg_str(owner, "owner", ID_MAX)?)?)
    })
}
