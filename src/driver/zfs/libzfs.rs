//! Safe layer over `sys`: owns libzfs and nvlist handles (released on `Drop`) and turns every
//! failure into an [`Error`] naming the dataset.
//!
//! libzfs handles are not thread-safe, so the process has one, created on first use and used
//! under a mutex ([`with`]). libzfs_core calls are plain ioctls on a shared descriptor and are
//! thread-safe; the hot path (clone) uses them without the mutex.

use super::sys;
use crate::error::{Error, Result};
use once_cell::sync::Lazy;
use std::ffi::{c_char, CStr, CString};
use std::sync::Mutex;

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{s:?} contains a NUL byte")))
}

/// The process-wide libzfs handle.
pub struct Libzfs {
    hdl: *mut sys::libzfs_handle_t,
}

// The handle is only ever used with the mutex below held.
unsafe impl Send for Libzfs {}

impl Drop for Libzfs {
    fn drop(&mut self) {
        unsafe { sys::libzfs_fini(self.hdl) }
    }
}

/// Created on first use; the error (no kernel module, no /dev/zfs) is kept and reported by
/// every later call.
static LIBZFS: Lazy<Result<Mutex<Libzfs>, String>> = Lazy::new(|| {
    let hdl = unsafe { sys::libzfs_init() };
    if hdl.is_null() {
        let e = std::io::Error::last_os_error();
        return Err(format!("ZFS is not usable on this host: libzfs_init failed ({e}); is the zfs kernel module loaded and /dev/zfs present?"));
    }
    if unsafe { sys::libzfs_core_init() } != 0 {
        unsafe { sys::libzfs_fini(hdl) };
        return Err("ZFS is not usable on this host: libzfs_core_init failed".into());
    }
    Ok(Mutex::new(Libzfs { hdl }))
});

/// Run `f` with the libzfs handle held (one caller at a time).
pub fn with<T>(f: impl FnOnce(&Libzfs) -> Result<T>) -> Result<T> {
    let m = LIBZFS
        .as_ref()
        .map_err(|msg| Error::Unsupported(msg.clone()))?;
    let guard = m.lock().unwrap_or_else(|p| p.into_inner());
    f(&guard)
}

/// Make sure libzfs (and so libzfs_core) is initialised before lzc_* calls. Takes no lock.
pub fn ensure_init() -> Result<()> {
    LIBZFS
        .as_ref()
        .map(drop)
        .map_err(|msg| Error::Unsupported(msg.clone()))
}

impl Libzfs {
    /// libzfs's own description of its last error, with what we were doing.
    fn error(&self, what: String) -> Error {
        let desc = unsafe { CStr::from_ptr(sys::libzfs_error_description(self.hdl)) }
            .to_string_lossy()
            .into_owned();
        Error::Backend(format!("{what}: {desc}"))
    }

    /// Open a dataset of one of `types` (ZFS_TYPE_* bits).
    pub fn open(&self, name: &str, types: sys::zfs_type_t) -> Result<Dataset<'_>> {
        let c = cstring(name)?;
        if !exists(name)? {
            return Err(Error::not_found("dataset", name));
        }
        let zhp = unsafe { sys::zfs_open(self.hdl, c.as_ptr(), types) };
        if zhp.is_null() {
            return Err(self.error(format!("opening {name}")));
        }
        Ok(Dataset {
            zhp,
            name: name.to_owned(),
            lib: self,
        })
    }

    /// Create a filesystem or volume with `props` (validated by libzfs).
    pub fn create(&self, name: &str, kind: sys::zfs_type_t, props: &NvList) -> Result<()> {
        let c = cstring(name)?;
        if exists(name)? {
            return Err(Error::AlreadyExists(format!(
                "dataset {name} already exists"
            )));
        }
        if unsafe { sys::zfs_create(self.hdl, c.as_ptr(), kind, props.0) } != 0 {
            return Err(self.error(format!("creating {name}")));
        }
        Ok(())
    }
}

/// An open dataset, closed on drop.
pub struct Dataset<'a> {
    zhp: *mut sys::zfs_handle_t,
    pub name: String,
    lib: &'a Libzfs,
}

impl Drop for Dataset<'_> {
    fn drop(&mut self) {
        unsafe { sys::zfs_close(self.zhp) }
    }
}

impl Dataset<'_> {
    pub fn kind(&self) -> sys::zfs_type_t {
        unsafe { sys::zfs_get_type(self.zhp) }
    }

    /// A native property as a string (`literal`: exact numbers rather than "1.5G"); `None`
    /// when it does not apply (e.g. `origin` of a dataset that is not a clone).
    pub fn prop(&self, name: &str) -> Result<Option<String>> {
        let c = cstring(name)?;
        let prop = unsafe { sys::zfs_name_to_prop(c.as_ptr()) };
        if prop == sys::ZPROP_INVAL {
            return Err(Error::Internal(format!(
                "{name} is not a native ZFS property"
            )));
        }
        let mut buf = vec![0 as c_char; sys::ZFS_MAXPROPLEN];
        let rc = unsafe {
            sys::zfs_prop_get(
                self.zhp,
                prop,
                buf.as_mut_ptr(),
                buf.len(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                sys::B_TRUE,
            )
        };
        if rc != 0 {
            return Ok(None);
        }
        Ok(Some(
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        ))
    }

    /// Set several properties in one call (one transaction group sync).
    pub fn set_props(&self, props: &NvList) -> Result<()> {
        if unsafe { sys::zfs_prop_set_list(self.zhp, props.0) } != 0 {
            return Err(self
                .lib
                .error(format!("setting properties of {}", self.name)));
        }
        Ok(())
    }

    /// Whether a user property of this name is set (its value is not needed: markers carry
    /// their information in the name).
    pub fn has_user_prop(&self, name: &str) -> Result<bool> {
        let c = cstring(name)?;
        let props = unsafe { sys::zfs_get_user_props(self.zhp) };
        if props.is_null() {
            return Ok(false);
        }
        let mut out: *mut sys::nvlist_t = std::ptr::null_mut();
        Ok(unsafe { sys::nvlist_lookup_nvlist(props, c.as_ptr(), &mut out) } == 0)
    }

    /// Where the dataset is mounted, if it is.
    pub fn mounted_at(&self) -> Option<std::path::PathBuf> {
        let mut at: *mut c_char = std::ptr::null_mut();
        let mounted = unsafe { sys::zfs_is_mounted(self.zhp, &mut at) } != sys::B_FALSE;
        let path = if at.is_null() {
            None
        } else {
            let p = unsafe { CStr::from_ptr(at) }.to_string_lossy().into_owned();
            unsafe { libc::free(at.cast()) };
            Some(std::path::PathBuf::from(p))
        };
        if mounted {
            path
        } else {
            None
        }
    }

    pub fn mount(&self) -> Result<()> {
        if unsafe { sys::zfs_mount(self.zhp, std::ptr::null(), 0) } != 0 {
            return Err(self.lib.error(format!("mounting {}", self.name)));
        }
        Ok(())
    }
}

/// An nvlist we own.
pub struct NvList(*mut sys::nvlist_t);

impl Drop for NvList {
    fn drop(&mut self) {
        unsafe { sys::nvlist_free(self.0) }
    }
}

impl NvList {
    pub fn new() -> Result<Self> {
        let mut p = std::ptr::null_mut();
        let rc = unsafe { sys::nvlist_alloc(&mut p, sys::NV_UNIQUE_NAME, 0) };
        if rc != 0 {
            return Err(Error::Io {
                context: "nvlist_alloc".into(),
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        Ok(NvList(p))
    }

    fn check(rc: i32, key: &str) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::Io {
                context: format!("nvlist add {key}"),
                source: std::io::Error::from_raw_os_error(rc),
            })
        }
    }

    pub fn string(self, key: &str, val: &str) -> Result<Self> {
        let (k, v) = (cstring(key)?, cstring(val)?);
        Self::check(
            unsafe { sys::nvlist_add_string(self.0, k.as_ptr(), v.as_ptr()) },
            key,
        )?;
        Ok(self)
    }

    pub fn uint64(self, key: &str, val: u64) -> Result<Self> {
        let k = cstring(key)?;
        Self::check(
            unsafe { sys::nvlist_add_uint64(self.0, k.as_ptr(), val) },
            key,
        )?;
        Ok(self)
    }

    pub fn flag(self, key: &str) -> Result<Self> {
        let k = cstring(key)?;
        Self::check(unsafe { sys::nvlist_add_boolean(self.0, k.as_ptr()) }, key)?;
        Ok(self)
    }
}

/// Map an errno from libzfs_core to our errors, naming the dataset.
pub fn lzc_error(what: &str, name: &str, errno: i32) -> Error {
    let os = std::io::Error::from_raw_os_error(errno);
    match errno {
        libc::EEXIST => Error::AlreadyExists(format!("dataset {name} already exists")),
        libc::ENOENT => Error::not_found("dataset", name),
        libc::EBUSY => Error::Busy(format!("{what} {name}: dataset is busy ({os})")),
        libc::ENOSPC | libc::EDQUOT | libc::EPERM | libc::EACCES | libc::EROFS => Error::Io {
            context: format!("{what} {name}"),
            source: os,
        },
        _ => Error::Backend(format!("{what} {name}: {os}")),
    }
}

fn lzc(what: &str, name: &str, rc: i32) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(lzc_error(what, name, rc))
    }
}

pub fn exists(name: &str) -> Result<bool> {
    let c = cstring(name)?;
    Ok(unsafe { sys::lzc_exists(c.as_ptr()) } != sys::B_FALSE)
}

/// `lzc_clone`: one ioctl; one transaction group sync, plus one when `props` are given (the
/// kernel sets them after cloning, and removes the clone again if that fails).
pub fn clone(name: &str, origin: &str, props: Option<&NvList>) -> Result<()> {
    let (n, o) = (cstring(name)?, cstring(origin)?);
    let p = props.map_or(std::ptr::null_mut(), |p| p.0);
    lzc("cloning", name, unsafe {
        sys::lzc_clone(n.as_ptr(), o.as_ptr(), p)
    })
}

/// Call an lzc function that reports per-snapshot errors through an `nvlist_t **` (which it
/// always writes, so it must not be NULL); the list is freed here, the errno returned.
fn with_errlist(f: impl FnOnce(*mut *mut sys::nvlist_t) -> i32) -> i32 {
    let mut errlist: *mut sys::nvlist_t = std::ptr::null_mut();
    let rc = f(&mut errlist);
    if !errlist.is_null() {
        drop(NvList(errlist));
    }
    rc
}

pub fn snapshot(snap: &str) -> Result<()> {
    let snaps = NvList::new()?.flag(snap)?;
    lzc(
        "snapshotting",
        snap,
        with_errlist(|e| unsafe { sys::lzc_snapshot(snaps.0, std::ptr::null_mut(), e) }),
    )
}

pub fn destroy_snapshot(snap: &str) -> Result<()> {
    let snaps = NvList::new()?.flag(snap)?;
    lzc(
        "destroying",
        snap,
        with_errlist(|e| unsafe { sys::lzc_destroy_snaps(snaps.0, sys::B_FALSE, e) }),
    )
}

pub fn rename(from: &str, to: &str) -> Result<()> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    match unsafe { sys::lzc_rename(f.as_ptr(), t.as_ptr()) } {
        0 => Ok(()),
        libc::EEXIST => Err(Error::AlreadyExists(format!("dataset {to} already exists"))),
        rc => Err(lzc_error("renaming", from, rc)),
    }
}

pub fn destroy(name: &str) -> Result<()> {
    let c = cstring(name)?;
    lzc("destroying", name, unsafe { sys::lzc_destroy(c.as_ptr()) })
}

/// Create a volume through libzfs_core (props are passed through unvalidated, so callers give
/// exact values: a volsize that is a multiple of the volblocksize).
pub fn create_volume(name: &str, props: &NvList) -> Result<()> {
    let c = cstring(name)?;
    lzc("creating", name, unsafe {
        sys::lzc_create(
            c.as_ptr(),
            sys::LZC_DATSET_TYPE_ZVOL,
            props.0,
            std::ptr::null_mut(),
            0,
        )
    })
}
