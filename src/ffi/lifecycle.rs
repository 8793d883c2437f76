//! `vmpool_vm_start` and the other calls that run VMs: stop, kill, reboot, pause, resume,
//! status, update, log, console, screenshot.
//!
//! Each returns the VM as JSON (the same object as `vmpool_vm_get`, with its live `state`)
//! through `vm_json_out`, which may be NULL when the caller does not need it.

use super::store::{store_ref, vmpool_store};
use super::{arg_str, check_out, ffi_call, opt_str, put_string, wire, ID_MAX, JSON_MAX, PATH_MAX};
use super::{vmpool_result, CallResult};
use crate::error::Result;
use crate::validate;
use crate::vm::Vm;
use crate::Store;
use std::ffi::c_char;
use std::time::Duration;
use uuid::Uuid;

/// A call's checked store and VM uuid.
fn vm_args(
    store: *const vmpool_store,
    uuid: *const c_char,
) -> CallResult<(std::sync::Arc<vmpool_store>, Uuid)> {
    let s = store_ref(store)?;
    let u = validate::uuid("VM uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
    Ok((s, u))
}

/// The shape of every lifecycle call: a checked store and uuid, the operation, and the VM it
/// returns handed out when the caller asked for it.
fn vm_call(
    store: *const vmpool_store,
    uuid: *const c_char,
    out: *mut *mut c_char,
    op: impl FnOnce(&Store, Uuid) -> Result<Vm>,
) -> CallResult<()> {
    let (s, u) = vm_args(store, uuid)?;
    let vm = op(&s.inner, u)?;
    if !out.is_null() {
        put_string(out, wire::to_string(&wire::VmOut::from(&vm))?)?;
    }
    Ok(())
}

/// The shape of the calls that report on a VM (status, stats): a checked store and uuid, a
/// required output, and the report's JSON.
fn vm_report(
    store: *const vmpool_store,
    uuid: *const c_char,
    json_out: *mut *mut c_char,
    report: impl FnOnce(&Store, Uuid) -> Result<String>,
) -> CallResult<()> {
    let (s, u) = vm_args(store, uuid)?;
    check_out(json_out, "json_out")?;
    put_string(json_out, report(&s.inner, u)?)
}

/// Start a VM: QEMU under its own supervisor, detached from the caller (it keeps running when
/// the calling process exits, and any process using the store can control it). Returns once
/// QEMU's monitor answers; the guest then boots. `options_json` may be NULL or
/// `{"accel": "auto"|"kvm"|"tcg"}`. `VMPOOL_RESULT_ALREADY_RUNNING` if it runs;
/// `VMPOOL_RESULT_HYPERVISOR` with QEMU's own words if QEMU cannot start.
///
/// Keys of `options_json`: `accel`.
/// Keys written: `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`,
/// `created_at`, `state`, `disk_path`, `disk_format`, `disk_size_bytes`, `clone_method`,
/// `firmware`, `accel`, `mac`, `vmgenid`, `last_exit`, `caps`, `pool`, `user`, `suspended`, `autoboot`, `session_ends_at`.
#[no_mangle]
pub extern "C" fn vmpool_vm_start(
    store: *const vmpool_store,
    uuid: *const c_char,
    options_json: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let opts = wire::start_options(opt_str(options_json, "options_json", JSON_MAX)?)?;
        vm_call(store, uuid, vm_json_out, |s, u| s.start_vm(u, &opts))
    })
}

/// Shut a VM down: the ACPI power button, then, if the guest has not powered off within
/// `timeout_seconds`, kill QEMU. Blocks until QEMU has ended. A VM that does not run is left
/// as it is (success).
#[no_mangle]
pub extern "C" fn vmpool_vm_stop(
    store: *const vmpool_store,
    uuid: *const c_char,
    timeout_seconds: u32,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        vm_call(store, uuid, vm_json_out, |s, u| {
            s.stop_vm(u, Duration::from_secs(u64::from(timeout_seconds)))
        })
    })
}

/// Kill a VM's QEMU at once (SIGKILL). A VM that does not run is left as it is.
#[no_mangle]
pub extern "C" fn vmpool_vm_kill(
    store: *const vmpool_store,
    uuid: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ vm_call(store, uuid, vm_json_out, |s, u| s.kill_vm(u)) })
}

/// Reset a running VM (as its reset button). `VMPOOL_RESULT_INVALID_STATE` if it does not run.
#[no_mangle]
pub extern "C" fn vmpool_vm_reboot(
    store: *const vmpool_store,
    uuid: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ vm_call(store, uuid, vm_json_out, |s, u| s.reboot_vm(u)) })
}

/// Pause a running VM's CPUs (memory stays). `VMPOOL_RESULT_INVALID_STATE` if it does not run.
#[no_mangle]
pub extern "C" fn vmpool_vm_pause(
    store: *const vmpool_store,
    uuid: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ vm_call(store, uuid, vm_json_out, |s, u| s.pause_vm(u)) })
}

/// Continue a paused VM. `VMPOOL_RESULT_INVALID_STATE` if it does not run.
#[no_mangle]
pub extern "C" fn vmpool_vm_resume(
    store: *const vmpool_store,
    uuid: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({ vm_call(store, uuid, vm_json_out, |s, u| s.resume_vm(u)) })
}

/// Put a running (or paused) VM to sleep: its memory and device state saved to the store,
/// its QEMU ended, its RAM freed; the VM is then `suspended`. `reason` (NULL: "on request")
/// is recorded. A start (or resume, or its owner's acquire) wakes it where it was.
/// `VMPOOL_RESULT_INVALID_STATE` if it does not run; on any failure the guest goes on as it
/// was.
///
/// Keys written: `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`,
/// `created_at`, `state`, `disk_path`, `disk_format`, `disk_size_bytes`, `clone_method`,
/// `firmware`, `accel`, `mac`, `vmgenid`, `last_exit`, `caps`, `pool`, `user`, `suspended`, `autoboot`, `session_ends_at`.
#[no_mangle]
pub extern "C" fn vmpool_vm_suspend(
    store: *const vmpool_store,
    uuid: *const c_char,
    reason: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let why = opt_str(reason, "reason", 200)?.unwrap_or("on request");
        vm_call(store, uuid, vm_json_out, |s, u| s.suspend_vm(u, why))
    })
}

/// A VM's live state and its current run as JSON: `{"vm": {...}, "run": {"supervisor_pid",
/// "qemu_pid", "qemu_start", "started_at", "accel", "spice"} or null, "uptime_s", "serial_log"}`.
///
/// Keys written: `vm`, `run`, `uptime_s`, `serial_log`.
#[no_mangle]
pub extern "C" fn vmpool_vm_status(
    store: *const vmpool_store,
    uuid: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        vm_report(store, uuid, json_out, |s, u| {
            wire::to_string(&wire::VmStatusOut::from(&s.vm_status(u)?))
        })
    })
}

/// What a VM uses now, as JSON: counters to take two samples of and divide (CPU time in
/// microseconds, bytes, requests), never rates; they restart when QEMU does (a start or a
/// wake). `cpu_time_us`, `cpu_source` (`zone` or `process`: compare two samples only if
/// it is the same), `uptime_s` and `memory` are null and `disks` empty unless the VM runs.
/// It changes nothing and waits at most half a second for QEMU's monitor (then `disks` is
/// empty): a scraper may call it often.
///
/// Keys written: `uuid`, `alias`, `owner`, `pool`, `state`, `vcpus`, `ram_mib`,
/// `sampled_at`, `uptime_s`, `cpu_time_us`, `cpu_source`, `memory` (`rss_bytes`, `pss_bytes`,
/// `private_bytes`, `zone_bytes`, `zone_peak_bytes`, `zone_limit_bytes`), `disks` (each
/// `id`, `rd_bytes`, `wr_bytes`, `rd_operations`, `wr_operations`).
#[no_mangle]
pub extern "C" fn vmpool_vm_stats(
    store: *const vmpool_store,
    uuid: *const c_char,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        vm_report(store, uuid, json_out, |s, u| {
            wire::to_string(&s.vm_stats(u)?)
        })
    })
}

/// Change a stopped VM: `update_json` is `{"vcpus": N, "ram_mib": N, "disk_gib": N}` (any of
/// them). The disk only grows. `VMPOOL_RESULT_INVALID_STATE` while the VM runs.
///
/// Keys of `update_json`: `vcpus`, `ram_mib`, `disk_gib`.
/// Keys written: `uuid`, `alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`, `disk_gib`,
/// `created_at`, `state`, `disk_path`, `disk_format`, `disk_size_bytes`, `clone_method`,
/// `firmware`, `accel`, `mac`, `vmgenid`, `last_exit`, `caps`, `pool`, `user`, `suspended`, `autoboot`, `session_ends_at`.
#[no_mangle]
pub extern "C" fn vmpool_vm_update(
    store: *const vmpool_store,
    uuid: *const c_char,
    update_json: *const c_char,
    vm_json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let u = wire::vm_update(arg_str(update_json, "update_json", JSON_MAX)?)?;
        vm_call(store, uuid, vm_json_out, |s, id| s.update_vm(id, &u))
    })
}

/// The last `max_bytes` of the VM's serial console log, as text (bytes that are not UTF-8
/// become U+FFFD; NUL bytes are dropped). The log is kept across runs and rotated at the
/// store's `serial_log_kib`.
#[no_mangle]
pub extern "C" fn vmpool_vm_log(
    store: *const vmpool_store,
    uuid: *const c_char,
    max_bytes: u64,
    text_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let u = validate::uuid("VM uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
        check_out(text_out, "text_out")?;
        let mut bytes = s.inner.vm_log(u, max_bytes)?;
        bytes.retain(|b| *b != 0);
        put_string(text_out, String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// A SPICE console ticket for a running VM, valid for `ttl_seconds` (1 to 86400): a fresh
/// random password that replaces the previous one. JSON: `{"kind": "unix"|"tcp", "path" |
/// "host"+"port", "uri", "password", "expires_at", "expires_at_unix", "vv"}` where `vv` is
/// the text of a remote-viewer connection file.
///
/// Keys written: `kind`, `path`, `host`, `port`, `uri`, `password`, `expires_at`,
/// `expires_at_unix`, `vv`.
#[no_mangle]
pub extern "C" fn vmpool_vm_console(
    store: *const vmpool_store,
    uuid: *const c_char,
    ttl_seconds: u32,
    json_out: *mut *mut c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let u = validate::uuid("VM uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
        check_out(json_out, "json_out")?;
        let c = s
            .inner
            .console(u, Duration::from_secs(u64::from(ttl_seconds)))?;
        put_string(json_out, wire::to_string(&wire::ConsoleOut::from(&c))?)
    })
}

/// Save a running VM's screen as a PNG file at `png_path` (replaced if it exists).
#[no_mangle]
pub extern "C" fn vmpool_vm_screenshot(
    store: *const vmpool_store,
    uuid: *const c_char,
    png_path: *const c_char,
) -> vmpool_result {
    ffi_call!({
        let s = store_ref(store)?;
        let u = validate::uuid("VM uuid", arg_str(uuid, "uuid", ID_MAX)?)?;
        let p = arg_str(png_path, "png_path", PATH_MAX)?;
        Ok(s.inner.screenshot(u, std::path::Path::new(p))?)
    })
}
