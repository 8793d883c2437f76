#![allow(non_camel_case_types, clippy::not_unsafe_ptr_arg_deref)]

//! The C ABI (`include/vmpool.h`, generated from this module by cbindgen).
//!
//! Conventions, after rustls-ffi:
//! - every function is `vmpool_<noun>_<verb>` and returns a [`vmpool_result`] (a few accessors
//!   return static strings);
//! - every pointer and string argument is checked before anything is done; outputs go
//!   through `*_out` parameters written only on success;
//! - no panic crosses the boundary: each entry point runs inside `ffi_call!`, which turns a
//!   panic into `VMPOOL_RESULT_PANIC`;
//! - structured data crosses as JSON strings, owned by the caller and released with
//!   `vmpool_string_free`; [`wire`] owns their format (parsing and serialising), the rest of
//!   the library is typed;
//! - the message of the last failure is per thread (like `errno`): `vmpool_last_error()`.

mod homes;
mod images;
mod lifecycle;
mod pools;
pub mod result;
mod store;
mod vms;
/// The JSON wire format (not part of the C header).
///
/// cbindgen:ignore
pub mod wire;

pub use homes::*;
pub use images::*;
pub use lifecycle::*;
pub use pools::*;
pub use store::*;
pub use vms::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_cargo() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(VMPOOL_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(VMPOOL_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(VMPOOL_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
    }
}

use crate::error::Error;
pub use result::{vmpool_result, CallError, CallResult};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// Major version of the library (the `X` of `X.Y.Z`); the SONAME is `libvmpool.so.X`.
pub const VMPOOL_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const VMPOOL_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const VMPOOL_VERSION_PATCH: u32 = 0;

/// Limits on argument lengths (not part of the C header).
///
/// cbindgen:ignore
pub(crate) mod limits {
    /// Longest path argument (PATH_MAX).
    pub const PATH_MAX: usize = 4096;
    /// Longest JSON argument.
    pub const JSON_MAX: usize = 1 << 20;
    /// Longest identifier argument (uuid, owner).
    pub const ID_MAX: usize = 256;
}
pub(crate) use limits::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; never panic here (this runs
    // outside the panic boundary).
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = c);
}

/// Run an entry point's body: clear the thread's last error, contain panics, record the
/// message of a failure, return its code.
macro_rules! ffi_call {
    ($body:block) => {{
        $crate::ffi::begin_call();
        let r = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> $crate::ffi::CallResult<()> { $body },
        ));
        $crate::ffi::end_call(r)
    }};
}
pub(crate) use ffi_call;

#[doc(hidden)]
pub fn begin_call() {
    set_last_error("");
}

#[doc(hidden)]
pub fn end_call(r: std::thread::Result<CallResult<()>>) -> vmpool_result {
    match r {
        Ok(Ok(())) => vmpool_result::VMPOOL_RESULT_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.code()
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let e = CallError::Panic(what);
            set_last_error(&e.to_string());
            e.code()
        }
    }
}

/// A required string argument: not NULL, NUL-terminated within `max` bytes, UTF-8.
pub(crate) fn arg_str<'a>(p: *const c_char, what: &'static str, max: usize) -> CallResult<&'a str> {
    if p.is_null() {
        return Err(CallError::NullPointer(what));
    }
    opt_str(p, what, max).map(|s| s.unwrap_or_default())
}

/// An optional string argument: NULL means `None`.
pub(crate) fn opt_str<'a>(
    p: *const c_char,
    what: &'static str,
    max: usize,
) -> CallResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // Never read past max+1 bytes looking for the terminator.
    // SAFETY: p is non-NULL and, by each function's contract, points to a string readable
    // up to its NUL; strnlen reads no further than that or max+1 bytes.
    let len = unsafe { libc::strnlen(p, max + 1) };
    if len > max {
        return Err(Error::StringTooLong { what, max }.into());
    }
    // SAFETY: a NUL was found within len+1 readable bytes.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|_| CallError::InvalidUtf8(what))
}

/// Check an output pointer up front, so a NULL is refused before any work is done.
pub(crate) fn check_out<T>(p: *mut T, what: &'static str) -> CallResult<()> {
    if p.is_null() {
        Err(CallError::NullPointer(what))
    } else {
        Ok(())
    }
}

/// Hand a string to the caller through a checked `*_out`.
pub(crate) fn put_string(out: *mut *mut c_char, s: String) -> CallResult<()> {
    let c = CString::new(s).map_err(|_| Error::Internal("output contains a NUL byte".into()))?;
    // SAFETY: out was checked non-NULL by check_out before any work; the caller passed a
    // writable `char **`.
    unsafe { *out = c.into_raw() };
    Ok(())
}

/// The shape of every query: a checked store, a checked `json_out`, and the JSON `f`
/// produces (it checks its own arguments first) handed out through it.
pub(crate) fn query(
    store: *const vmpool_store,
    out: *mut *mut c_char,
    f: impl FnOnce(&crate::Store) -> CallResult<String>,
) -> CallResult<()> {
    let s = store::store_ref(store)?;
    check_out(out, "json_out")?;
    put_string(out, f(&s.inner)?)
}

/// The library version, e.g. `"0.1.0"`. Static; do not free.
#[no_mangle]
pub extern "C" fn vmpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Message of the most recent failed `vmpool_*` call **on the calling thread**, or `""` if the
/// most recent call succeeded. The pointer stays valid until the next `vmpool_*` call on the
/// same thread; copy it if you need it longer. Never NULL; do not free.
#[no_mangle]
pub extern "C" fn vmpool_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|l| l.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Symbolic name of a result code without its prefix (`"NOT_FOUND"`), or `"UNKNOWN"` for a
/// number that is not a `vmpool_result`. Static; do not free.
#[no_mangle]
pub extern "C" fn vmpool_result_name(code: u32) -> *const c_char {
    // Every name is a 'static literal; keep NUL-terminated copies alongside, made once.
    static NAMES: once_cell::sync::Lazy<Vec<(u32, CString)>> = once_cell::sync::Lazy::new(|| {
        vmpool_result::all()
            .map(|r| (r as u32, CString::new(r.name()).unwrap_or_default()))
            .collect()
    });
    NAMES
        .iter()
        .find(|(n, _)| *n == code)
        .map_or(c"UNKNOWN".as_ptr(), |(_, c)| c.as_ptr())
}

/// Free a string returned through a `*_out` parameter. NULL is allowed and ignored. Freeing
/// anything else, or twice, is undefined behaviour.
#[no_mangle]
pub extern "C" fn vmpool_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: by contract s came from CString::into_raw in put_string and is freed once.
    let _ = std::panic::catch_unwind(|| unsafe { drop(CString::from_raw(s)) });
}
