//! `vmpool_store`: opening and closing a store.

use super::{check_out, ffi_call, opt_str, query, wire};
use super::{vmpool_result, CallError, CallResult};
use crate::store::{uri::URI_MAX, Store};
use std::ffi::c_char;
use std::sync::Arc;

/// An open store (a directory, btrfs or ZFS back end plus its catalog).
///
/// Thread safety: a `vmpool_store` may be used from any number of threads at once, and any
/// number of processes may open the same store; every operation is safe against the others.
///
/// Lifetime: the handle is reference-counted. Every call takes its own reference for as long
/// as it runs, and `vmpool_store_free` drops the caller's: freeing the handle while other
/// threads are inside calls on it is safe (the store is released when the last of those calls
/// returns). Starting a call *after* `vmpool_store_free` has begun is a use after free, as with
/// any freed pointer.
pub struct vmpool_store {
    pub(crate) inner: Store,
}

/// A reference to the store behind `p`, held for the duration of one call.
pub(crate) fn store_ref(p: *const vmpool_store) -> CallResult<Arc<vmpool_store>> {
    if p.is_null() {
        return Err(CallError::NullPointer("store"));
    }
    // SAFETY: p came from Arc::into_raw in vmpool_store_open and, by the handle's contract,
    // the caller's reference has not been dropped yet (free has not begun). Incrementing
    // first and rebuilding an Arc from it gives this call its own reference, released when
    // the call returns, so a concurrent vmpool_store_free cannot free the store under it.
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
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
        let raw = Arc::into_raw(Arc::new(vmpool_store { inner })).cast_mut();
        // SAFETY: store_out was checked non-NULL above; the caller passed a writable pointer.
        unsafe { *store_out = raw };
        Ok(())
    })
}

/// Release the caller's reference to a store handle. NULL is allowed and ignored. Calls in
/// flight on other threads finish normally (they hold their own references); the handle
/// must not be passed to any function after this.
#[no_mangle]
pub extern "C" fn vmpool_store_free(store: *mut vmpool_store) {
    if store.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: store came from Arc::into_raw in vmpool_store_open; this drops exactly the
        // reference that call handed out.
        unsafe { drop(Arc::from_raw(store.cast_const())) }
    }));
}

/// Describe the store as JSON: `uri`, `driver`, `catalog`, `details`, `limits`,
/// `last_recovery`, `version`, `capabilities`.
///
/// Keys written: `uri`, `driver`, `catalog`, `details`, `limits`, `last_recovery`, `version`,
/// `capabilities`.
#[no_mangle]
pub extern "C" fn vmpool_store_info(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            Ok(wire::to_string(&wire::StoreInfoOut::from(&s.info()))?)
        })
    })
}

/// Clean up after operations whose process died (also done by `vmpool_store_open`). Writes
/// `{"cleaned": [...], "errors": [...], "kept": [...]}` describing what was done.
///
/// Keys written: `cleaned`, `errors`, `kept`.
#[no_mangle]
pub extern "C" fn vmpool_store_recover(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            Ok(wire::to_string(&wire::RecoveryOut::from(&s.recover()?))?)
        })
    })
}

/// After the host booted (the `vmpool.service` unit's `ExecStart`): recovery, then every VM
/// marked to run whose run ended with the host is started (a pool's desktop as its owner's
/// acquire would bring it back), VMs of no pool that `vmpool_host_stop` suspended wake, and
/// every pool is refilled; desktops asleep stay asleep until their owner's acquire. Blocks
/// until done. Errors of single VMs and pools are listed in the report; the call fails only
/// if the store cannot be read.
///
/// Keys written: `recovered`, `started`, `woken`, `asleep`, `refilled`, `suspended`, `ended`,
/// `errors`.
#[no_mangle]
pub extern "C" fn vmpool_host_start(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            Ok(wire::to_string(&wire::HostOut::from(&s.host_start()?))?)
        })
    })
}

/// Before the host shuts down (the unit's `ExecStop`): every VM that runs is suspended to the
/// store (reason `"host stop"`), spares and VMs without a session of their own are ended.
/// Blocks until no QEMU of the store runs (but those it could not end: see `errors`).
///
/// Keys written: `recovered`, `started`, `woken`, `asleep`, `refilled`, `suspended`, `ended`,
/// `errors`.
#[no_mangle]
pub extern "C" fn vmpool_host_stop(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            Ok(wire::to_string(&wire::HostOut::from(&s.host_stop()?))?)
        })
    })
}
