//! `vmpool_image_*`: importing, listing and deleting images.

use super::store::{store_ref, vmpool_store};
use super::vmpool_result;
use super::{arg_str, check_out, ffi_call, opt_str, put_string, query, wire};
use super::{ID_MAX, JSON_MAX, PATH_MAX};
use crate::validate;
use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

/// Progress of a long call: called with bytes done and bytes in total. Return 0 to go on,
/// anything else to cancel (the call then fails with `VMPOOL_RESULT_CANCELLED` and leaves
/// nothing behind). Called on the thread that made the call.
pub type vmpool_progress_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, done: u64, total: u64) -> c_int>;

/// Import the raw or qcow2 image file at `path` as a read-only template.
///
/// `manifest_json` may be NULL or an object with any of `uuid`, `name`, `version`, `os`,
/// `sha256` (verified; computed when absent), `format` (`"raw"`/`"qcow2"`, verified),
/// `size_bytes` (verified virtual size) and `tags` (object); unknown keys are refused.
/// The data is streamed, holes are kept, and nothing is visible until the image is complete
/// and verified. On success `*manifest_out` receives the manifest as JSON.
///
/// Keys of `manifest_json`: `uuid`, `name`, `version`, `os`, `sha256`, `format`, `size_bytes`,
/// `tags`.
/// Keys written: `uuid`, `name`, `version`, `os`, `format`, `size_bytes`, `sha256`, `created_at`,
/// `tags`, `disk_format`, `disk`.
#[no_mangle]
pub extern "C" fn vmpool_image_import(
    store: *const vmpool_store,
    path: *const c_char,
    manifest_json: *const c_char,
    manifest_out: *mut *mut c_char,
) -> vmpool_result {
    vmpool_image_import_with_progress(
        store,
        path,
        manifest_json,
        None,
        std::ptr::null_mut(),
        manifest_out,
    )
}

/// `vmpool_image_import` with a progress callback (may be NULL) and its `userdata`.
#[no_mangle]
pub extern "C" fn vmpool_image_import_with_progress(
    store: *const vmpool_store,
    path: *const c_char,
    manifest_json: *const c_char,
    progress: vmpool_progress_cb,
    userdata: *mut c_void,
    manifest_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let path = arg_str(path, "path", PATH_MAX)?;
        let req = wire::import_request(opt_str(manifest_json, "manifest_json", JSON_MAX)?)?;
        check_out(manifest_out, "manifest_out")?;
        let mut cb = |done: u64, total: u64| match progress {
            // SAFETY: the caller gave this function pointer and userdata for this call, on
            // this thread; we call it with the documented arguments.
            Some(f) => unsafe { f(userdata, done, total) == 0 },
            None => true,
        };
        let m = s.inner.import_image(Path::new(path), &req, Some(&mut cb))?;
        put_string(manifest_out, wire::to_string(&wire::ImageOut::from(&m))?)
    })
}

/// All images as a JSON array of manifests, sorted by name and version.
///
/// Keys written (each element): `uuid`, `name`, `version`, `os`, `format`, `size_bytes`, `sha256`,
/// `created_at`, `tags`, `disk_format`, `disk`.
#[no_mangle]
pub extern "C" fn vmpool_image_list(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ query(store, json_out, |s| Ok(wire::images(&s.images()?)?)) })
}

/// One image's manifest as JSON; `VMPOOL_RESULT_NOT_FOUND` if there is none with `uuid`.
///
/// Keys written: `uuid`, `name`, `version`, `os`, `format`, `size_bytes`, `sha256`, `created_at`,
/// `tags`, `disk_format`, `disk`.
#[no_mangle]
pub extern "C" fn vmpool_image_get(
    store: *const vmpool_store,
    uuid: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            let u = validate::uuid("image uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
            Ok(wire::to_string(&wire::ImageOut::from(&s.image(u)?))?)
        })
    })
}

/// Delete an image. Fails with `VMPOOL_RESULT_IN_USE`, naming them, while any VM's disk is a
/// clone of it; there is no way to force it.
#[no_mangle]
pub extern "C" fn vmpool_image_delete(
    store: *const vmpool_store,
    uuid: *const c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let u = validate::uuid("image uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
        Ok(s.inner.delete_image(u)?)
    })
}
