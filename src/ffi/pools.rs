//! `vmpool_pool_*`: pools of ready VMs handed to owners (create, list, get, update, delete,
//! acquire, release, refill).
//!
//! A pool is named (the same rule as VM aliases). Its JSON is the payload's keys plus
//! `created_at`, `updated_at`, `status` (`spares_ready`, `spares_warming`, `spares_cold`,
//! `owned`, `total`) and `template` (`image_uuid`, `made_at`, `memory`, or null).

use super::store::{store_ref, vmpool_store};
use super::vmpool_result;
use super::{arg_str, check_out, ffi_call, opt_str, put_string, query, wire, ID_MAX, JSON_MAX};
use crate::pool::RefillProgress;
use crate::validate;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

/// Progress of a refill: spares ready, the target, spares being made or warmed. Return 0 to
/// go on, anything else to stop early (the refill then returns what it did so far, with
/// success). Called on the calling thread or on the refill's worker threads, never two at
/// a time.
pub type vmpool_refill_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, ready: u32, target: u32, working: u32) -> c_int,
>;

/// Create a pool from a JSON payload: `{"name": "desk", "image_uuid": "...", "vcpus": 2,
/// "ram_mib": 2048, "max_vms": 50}` plus, optionally, `disk_gib`, `spares` (how many kept
/// ready; 0), `max_per_owner` (1), `warmth` (`"disk"`, `"paused"` or `"template"`),
/// `on_release` (`"destroy"` or `"reset"`), `on_logout` (`"keep"` or `"refresh"`: what an
/// owner's logout does with their desktop, see `vmpool_pool_logout`), `ready_marker` (text on the guest's serial
/// console that says it is ready), `ready_delay_s`, `ready_timeout_s` (300), `accel`, `home_gib` (each owner's home volume,
/// GiB: see `vmpool_home_create`), `idle_suspend_after_s` (suspend a handed-out desktop nobody
/// has looked at for that long; checked at each refill), `max_session_s` (the longest a desktop
/// stays with its owner in one go; then `on_logout` ends the session: keep suspends, refresh
/// releases; the VM's `session_ends_at` says when).
/// Unknown keys are refused. Spares are made by `vmpool_pool_refill`. On success
/// `*pool_json_out` (may be NULL) receives the pool.
///
/// Keys of `payload_json`: `name`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`, `spares`,
/// `max_vms`, `max_per_owner`, `warmth`, `on_release`, `on_logout`, `ready_marker`, `ready_delay_s`,
/// `ready_timeout_s`, `accel`, `home_gib`, `idle_suspend_after_s`, `max_session_s`.
/// Keys written: `name`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`, `spares`, `max_vms`,
/// `max_per_owner`, `warmth`, `on_release`, `on_logout`, `ready_marker`, `ready_delay_s`, `ready_timeout_s`,
/// `accel`, `home_gib`, `idle_suspend_after_s`, `max_session_s`, `created_at`, `updated_at`, `status`, `template`.
#[no_mangle]
pub extern "C" fn vmpool_pool_create(
    store: *const vmpool_store,
    payload_json: *const c_char,
    pool_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let spec = wire::pool_spec(arg_str(payload_json, "payload_json", JSON_MAX)?)?;
        let p = s.inner.create_pool(&spec)?;
        if !pool_json_out.is_null() {
            put_string(pool_json_out, wire::to_string(&wire::PoolOut::from(&p))?)?;
        }
        Ok(())
    })
}

/// All pools as a JSON array, by name.
///
/// Keys written (each element): `name`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`, `spares`,
/// `max_vms`, `max_per_owner`, `warmth`, `on_release`, `on_logout`, `ready_marker`, `ready_delay_s`,
/// `ready_timeout_s`, `accel`, `home_gib`, `idle_suspend_after_s`, `max_session_s`, `created_at`, `updated_at`,
/// `status`, `template`.
#[no_mangle]
pub extern "C" fn vmpool_pool_list(
    store: *const vmpool_store,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ query(store, json_out, |s| Ok(wire::pools(&s.pools()?)?)) })
}

/// One pool as JSON; `VMPOOL_RESULT_NOT_FOUND` if there is none named `name`.
///
/// Keys written: `name`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`, `spares`, `max_vms`,
/// `max_per_owner`, `warmth`, `on_release`, `on_logout`, `ready_marker`, `ready_delay_s`, `ready_timeout_s`,
/// `accel`, `home_gib`, `idle_suspend_after_s`, `max_session_s`, `created_at`, `updated_at`, `status`, `template`.
#[no_mangle]
pub extern "C" fn vmpool_pool_get(
    store: *const vmpool_store,
    name: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        query(store, json_out, |s| {
            let p = s.pool(arg_str(name, "name", ID_MAX)?)?;
            Ok(wire::to_string(&wire::PoolOut::from(&p))?)
        })
    })
}

/// Change a pool: `changes_json` has any of the create keys except `name` (`disk_gib`, `home_gib`,
/// `ready_marker` and `accel` may be `null`). VMs held by owners keep theirs; spares that no
/// longer fit are replaced by the next refill. `*pool_json_out` (may be NULL) receives the
/// pool.
///
/// Keys of `changes_json`: `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`, `spares`, `max_vms`,
/// `max_per_owner`, `warmth`, `on_release`, `on_logout`, `ready_marker`, `ready_delay_s`, `ready_timeout_s`,
/// `accel`, `home_gib`, `idle_suspend_after_s`, `max_session_s`.
/// Keys written: `name`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`, `spares`, `max_vms`,
/// `max_per_owner`, `warmth`, `on_release`, `on_logout`, `ready_marker`, `ready_delay_s`, `ready_timeout_s`,
/// `accel`, `home_gib`, `idle_suspend_after_s`, `max_session_s`, `created_at`, `updated_at`, `status`, `template`.
#[no_mangle]
pub extern "C" fn vmpool_pool_update(
    store: *const vmpool_store,
    name: *const c_char,
    changes_json: *const c_char,
    pool_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let name = arg_str(name, "name", ID_MAX)?;
        let u = wire::pool_update(arg_str(changes_json, "changes_json", JSON_MAX)?)?;
        let p = s.inner.update_pool(name, &u)?;
        if !pool_json_out.is_null() {
            put_string(pool_json_out, wire::to_string(&wire::PoolOut::from(&p))?)?;
        }
        Ok(())
    })
}

/// Delete a pool with its spares and memory templates. `VMPOOL_RESULT_IN_USE`, naming them,
/// while owners hold VMs of it.
#[no_mangle]
pub extern "C" fn vmpool_pool_delete(
    store: *const vmpool_store,
    name: *const c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        Ok(s.inner.delete_pool(arg_str(name, "name", ID_MAX)?)?)
    })
}

/// Get a running VM of pool `name` for `owner`: the one they hold (the redirect: never a
/// second), else a spare, else one made on the spot. `options_json` may be NULL or
/// `{"console_ttl": 600, "another": false}`: `console_ttl` also makes a console ticket;
/// `another` hands out one more VM up to the pool's `max_per_owner`; `user` (as in
/// `vmpool_vm_create`) is applied in a newly handed-out desktop before this returns.
/// `*json_out` receives
/// `{"vm": {...}, "path": "redirect"|"spare"|"created", "was": "paused"|"waiting"|...,
/// "steps": [{"step": ..., "ms": ...}], "total_ms": ..., "console": {...} or null}`.
/// `VMPOOL_RESULT_POOL_EXHAUSTED` at the pool's maximum (or the owner's).
///
/// Keys of `options_json`: `console_ttl`, `another`, `user`.
/// Keys written: `vm`, `path`, `was`, `steps`, `total_ms`, `console`.
#[no_mangle]
pub extern "C" fn vmpool_pool_acquire(
    store: *const vmpool_store,
    name: *const c_char,
    owner: *const c_char,
    options_json: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let name = arg_str(name, "name", ID_MAX)?;
        let owner = arg_str(owner, "owner", ID_MAX)?;
        let opts = wire::acquire_options(opt_str(options_json, "options_json", JSON_MAX)?)?;
        check_out(json_out, "json_out")?;
        let a = s.inner.acquire(name, owner, &opts)?;
        put_string(json_out, wire::to_string(&wire::AcquiredOut::from(&a))?)
    })
}

/// Give a VM back to its pool: destroyed, or (a pool with `on_release` `reset`) destroyed
/// with a fresh spare made in its place. `VMPOOL_RESULT_INVALID_ARGUMENT` for a VM not from a
/// pool.
#[no_mangle]
pub extern "C" fn vmpool_pool_release(
    store: *const vmpool_store,
    vm_uuid: *const c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let u = validate::uuid("VM uuid", arg_str(vm_uuid, "vm_uuid", ID_MAX)?)?;
        Ok(s.inner.release(u)?)
    })
}

/// The owner logged out (a portal's sign-out): each pool's `on_logout` says what becomes of
/// the desktops they hold there. `keep` leaves them as they are; `refresh` releases them (as
/// `vmpool_pool_release`), so their next acquire gets a fresh desktop. Their home volume stays
/// either way. `*json_out` receives `{"kept": [uuid...], "refreshed": [uuid...]}`.
///
/// Keys written: `kept`, `refreshed`.
#[no_mangle]
pub extern "C" fn vmpool_pool_logout(
    store: *const vmpool_store,
    owner: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let owner = arg_str(owner, "owner", ID_MAX)?;
        check_out(json_out, "json_out")?;
        let r = s.inner.logout(owner)?;
        put_string(json_out, wire::to_string(&wire::LogoutOut::from(&r))?)
    })
}

/// Bring a pool's spares to its target at its warmth (building its memory template first
/// if it needs one). Idempotent; several processes may refill one pool at once. Blocks until
/// done; `progress` (may be NULL) is told how it goes and may stop it. `options_json` may be
/// NULL or `{"parallel": 8}`. `*json_out` receives `{"created", "warmed", "removed",
/// "template_built", "spares", "errors": [...]}` (single spares that failed are reported
/// there; the call still succeeds).
///
/// Keys of `options_json`: `parallel`.
/// Keys written: `created`, `warmed`, `removed`, `template_built`, `suspended`, `sessions_ended`, `spares`,
/// `errors`.
#[no_mangle]
pub extern "C" fn vmpool_pool_refill(
    store: *const vmpool_store,
    name: *const c_char,
    options_json: *const c_char,
    progress: vmpool_refill_cb,
    userdata: *mut c_void,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let name = arg_str(name, "name", ID_MAX)?;
        let opts = wire::refill_options(opt_str(options_json, "options_json", JSON_MAX)?)?;
        check_out(json_out, "json_out")?;
        let stop = AtomicBool::new(false);
        // The callback may come from worker threads: one at a time, and the raw pointer
        // crosses as an address (the caller vouches it may be used for this call).
        let cb = std::sync::Mutex::new(userdata as usize);
        let report = |p: RefillProgress| {
            if let Some(f) = progress {
                let ud = cb.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: the caller gave this function pointer and userdata for this call;
                // calls are serialised by the mutex; arguments are as documented.
                if unsafe { f(*ud as *mut c_void, p.ready, p.target, p.working) } != 0 {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        let r = s.inner.refill(name, &opts, &report, &stop)?;
        put_string(json_out, wire::to_string(&wire::RefillOut::from(&r))?)
    })
}
