//! Where programs are: the supervisor binary (found by the caller, next to the library) and
//! QEMU (found by the supervisor on PATH).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The absolute path of `program` (searched on PATH when it has no slash): `execve` in the
/// zone does not search.
pub fn find_program(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Hypervisor(format!("{} is not on PATH", program.display())))
}

/// Where the `vmpool-supervisor` binary is: `$VMPOOL_SUPERVISOR`; else next to the binary or
/// shared library that holds this code (`target/debug/`, `/usr/local/lib/`), one level up
/// (test binaries live in `target/debug/deps/`) or in `../libexec/vmpool/` (`make install`);
/// else on `PATH`.
pub fn binary() -> Result<PathBuf> {
    const NAME: &str = "vmpool-supervisor";
    if let Some(p) = std::env::var_os("VMPOOL_SUPERVISOR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    if let Some(here) = own_image() {
        if let Some(dir) = here.parent() {
            for c in [
                dir.join(NAME),
                dir.join("..").join(NAME),
                dir.join("../libexec/vmpool").join(NAME),
            ] {
                if c.is_file() {
                    return Ok(c);
                }
                tried.push(c.display().to_string());
            }
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let c = dir.join(NAME);
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(Error::Unsupported(format!(
        "cannot find {NAME} (tried {} and PATH); install it (make install) or set VMPOOL_SUPERVISOR",
        tried.join(", ")
    )))
}

/// The file (shared library or executable) this code was loaded from.
fn own_image() -> Option<PathBuf> {
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the address (of a function in this object) and writes the
    // struct we own; on success dli_fname is a NUL-terminated path owned by the loader.
    let ok = unsafe { libc::dladdr(binary as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: see above; copied at once.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let p = PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()),
    );
    std::fs::canonicalize(&p).ok().or(Some(p))
}
