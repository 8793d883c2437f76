//! `vmpool_store`: opening and closing a store.

use super::{check_out, ffi_call, opt_str, query};
use crate::error::{vmpool_result, Error, Result};
use crate::store::{uri::URI_MAX, Store};
use std::ffi::c_char;

/// An open store (a directory, btrfs or ZFS back end plus its catalog).
///
/// Thread safety: a `vmpool_store` may be used from any number of threads at once, and any
/// number of processes may open the same store; every operation is safe against the others.
/// Only `vmpool_store_free` must not race with other calls on the same handle.
pub struct vmpool_store {
    pub(crate) inner: Store,
}

pub(crate) fn store_ref<'a>(p: *const vmpool_store) -> Result<&'a Store> {
    if p.is_null() {
        return Err(Error::NullPointer("store"));
    }
    Ok(unsafe { &(*p).inner })
}

/// Open (creating if needed) the store named by `uri`: `dir:/path`, `btrfs:/path` or
/// `zfs:pool/dataset`, optionally followed by `?option=value&...`. `uri` may be NULL for the
/// default store (`$VMPOOL_STORE`, else `dir:$VMPOOL_HOME`, else `dir:/var/lib/vmpool`).
/// Leftovers of operations whose process died are cleaned up. On success `*store_out` receives
/// a handle to release with `vmpool_store_free`.
#[no_mangle]
pub extern "C" fn vmpool_store_open(
    uri: *const c_char,
    store_out: *mut *mut vmpool_store,
) -> vmpool_result {
    ffi_call!({
        check_out(store_out, "store_out")?;
        let uri = opt_str(uri, "uri", URI_MAX)?;
        let inner = Store::open(uri)?;
        unsafe { *store_out = Box::into_raw(Box::new(vmpool_store { inner })) };
        Ok(())
    })
}

/// Close a store handle. NULL is allowed and ignored. The handle must not be used afterwards.
#[no_mangle]
pub extern "C" fn vmpool_store_free(store: *mut vmpool_store) {
    if store.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        drop(Box::from_raw(store))
    }));
}

/// Describe the store as JSON: `uri`, `driver`, `catalog`, `details`, `limits`,
/// `last_recovery`, `version`.
#[no_mangle]
pub extern "C" fn vmpool_store_info(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ query(store, json_out, |s| Ok(s.info())) })
}

/// Clean up after operations whose process died (also done by `vmpool_store_open`). Writes
/// `{"cleaned": [...], "errors": [...]}` describing what was done.
#[no_mangle]
pub extern "C" fn vmpool_store_recover(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ query(store, json_out, |s| s.recover()) })
}
