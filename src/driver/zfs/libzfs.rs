//! Safe layer over `sys`: owns libzfs and nvlist handles (released on `Drop`) and turns every
//! failure into an [`Error`] naming the dataset.
//!
//! libzfs handles are not thread-safe, so the process has one, created on first use and used
//! under a mutex ([`with`]). libzfs_core calls are plain ioctls on a shared descriptor and are
//! thread-safe; the hot path (clone) uses them without the mutex.
//!
//! Errors are translated per call, as OpenZFS's pyzfs does
//! (`contrib/pyzfs/libzfs_core/_error_translation.py`): the same errno means different things
//! in different calls (`ENOENT` from `lzc_create` is a missing *parent*; `EEXIST` from
//! `lzc_destroy_snaps` is a snapshot with clones, from `lzc_destroy` a dataset with children).

use super::sys;
use crate::error::{Error, Result};
use once_cell::sync::Lazy;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Mutex;

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{s:?} contains a NUL byte")))
}

/// The process-wide libzfs handle.
pub struct Libzfs {
    hdl: *mut sys::libzfs_handle_t,
}

// SAFETY: the handle is only ever used with the mutex below held, so moving it between
// threads never lets two use it at once.
unsafe impl Send for Libzfs {}

impl Drop for Libzfs {
    fn drop(&mut self) {
        // SAFETY: hdl came from libzfs_init and is released once, here.
        unsafe { sys::libzfs_fini(self.hdl) }
    }
}

/// Created on first use; the error (no kernel module, no /dev/zfs) is kept and reported by
/// every later call.
static LIBZFS: Lazy<Result<Mutex<Libzfs>, String>> = Lazy::new(|| {
    // SAFETY: libzfs_init has no preconditions; NULL is checked.
    let hdl = unsafe { sys::libzfs_init() };
    if hdl.is_null() {
        let e = std::io::Error::last_os_error();
        return Err(format!("ZFS is not usable on this host: libzfs_init failed ({e}); is the zfs kernel module loaded and /dev/zfs present?"));
    }
    // SAFETY: libzfs_core_init has no preconditions.
    if unsafe { sys::libzfs_core_init() } != 0 {
        // SAFETY: hdl is the valid handle from above, released once.
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
        // SAFETY: hdl is valid (we hold the mutex); the description is a static or
        // handle-owned NUL-terminated string, copied before the mutex is released.
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
        // SAFETY: hdl is valid under the mutex; c is NUL-terminated and outlives the call.
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
        // SAFETY: hdl valid under the mutex; c and props live across the call; libzfs does
        // not keep the props pointer.
        if unsafe { sys::zfs_create(self.hdl, c.as_ptr(), kind, props.0) } != 0 {
            return Err(self.error(format!("creating {name}")));
        }
        Ok(())
    }
}

/// An open dataset, closed on drop.
pub struct Dataset<'a> {
    zhp: *mut sys::zfs_handle_t,
    /// Its name.
    pub name: String,
    lib: &'a Libzfs,
}

impl Drop for Dataset<'_> {
    fn drop(&mut self) {
        // SAFETY: zhp came from zfs_open and is closed once, here.
        unsafe { sys::zfs_close(self.zhp) }
    }
}

fn prop_number(name: &str) -> Result<sys::zfs_prop_t> {
    let c = cstring(name)?;
    // SAFETY: c is NUL-terminated; the lookup only reads it.
    let prop = unsafe { sys::zfs_name_to_prop(c.as_ptr()) };
    if prop == sys::ZPROP_INVAL {
        return Err(Error::Internal(format!(
            "{name} is not a native ZFS property"
        )));
    }
    Ok(prop)
}

impl Dataset<'_> {
    /// ZFS_TYPE_* of the dataset.
    pub fn kind(&self) -> sys::zfs_type_t {
        // SAFETY: zhp is a valid open handle.
        unsafe { sys::zfs_get_type(self.zhp) }
    }

    /// `zfs_prop_get` as text (`literal`: exact numbers rather than "1.5G"); `None` when it
    /// returns -1, which for the properties read here means "does not apply" (libzfs reads
    /// the values cached at open and sets no error).
    fn prop_text(&self, name: &str) -> Result<Option<String>> {
        let prop = prop_number(name)?;
        let mut buf = vec![0 as c_char; sys::ZFS_MAXPROPLEN];
        // SAFETY: zhp is valid; buf is writable for its length; NULL source/statbuf are
        // allowed (statlen 0).
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
        // SAFETY: on success libzfs wrote a NUL-terminated string into buf.
        Ok(Some(
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        ))
    }

    /// A string property that must have a value (e.g. `mountpoint`).
    pub fn prop(&self, name: &str) -> Result<String> {
        self.prop_text(name)?.ok_or_else(|| {
            Error::Backend(format!("property {name} of {} cannot be read", self.name))
        })
    }

    /// The snapshot this dataset is a clone of; `None` when it is not a clone.
    pub fn origin(&self) -> Result<Option<String>> {
        // zfs_prop_get returns -1 for `origin` exactly when the dataset is not a clone
        // (the kernel omits the property); we only open filesystems and volumes here.
        self.prop_text("origin")
    }

    /// A numeric property; every failure is an error (never a made-up default).
    pub fn prop_u64(&self, name: &str) -> Result<u64> {
        let prop = prop_number(name)?;
        let mut v = 0u64;
        // SAFETY: zhp valid; v writable; NULL source and statbuf are allowed.
        let rc = unsafe {
            sys::zfs_prop_get_numeric(
                self.zhp,
                prop,
                &mut v,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 {
            return Err(self
                .lib
                .error(format!("reading property {name} of {}", self.name)));
        }
        Ok(v)
    }

    /// Set several properties in one call (one transaction group sync).
    pub fn set_props(&self, props: &NvList) -> Result<()> {
        // SAFETY: zhp and props are valid for the call; libzfs does not keep props.
        if unsafe { sys::zfs_prop_set_list(self.zhp, props.0) } != 0 {
            return Err(self
                .lib
                .error(format!("setting properties of {}", self.name)));
        }
        Ok(())
    }

    /// Names of the child filesystems and volumes (not snapshots, not grandchildren).
    pub fn children(&self) -> Result<Vec<String>> {
        /// Collects each child's name into the `Vec<String>` behind `data`.
        unsafe extern "C" fn collect(zhp: *mut sys::zfs_handle_t, data: *mut c_void) -> c_int {
            // SAFETY: `data` is the `&mut Vec<String>` passed below, alive for the whole
            // iteration; zhp is a valid handle libzfs hands us to close; its name is a
            // NUL-terminated string owned by the handle, copied before the close.
            unsafe {
                let names = &mut *data.cast::<Vec<String>>();
                names.push(
                    CStr::from_ptr(sys::zfs_get_name(zhp))
                        .to_string_lossy()
                        .into_owned(),
                );
                sys::zfs_close(zhp);
            }
            0
        }
        let mut names: Vec<String> = Vec::new();
        // SAFETY: zhp is valid (the mutex is held); the callback matches zfs_iter_f and only
        // touches `names`, which outlives the call.
        let rc = unsafe {
            sys::zfs_iter_filesystems(
                self.zhp,
                sys::zfs_iter_f(collect),
                (&mut names as *mut Vec<String>).cast(),
            )
        };
        if rc != 0 {
            return Err(self
                .lib
                .error(format!("listing the children of {}", self.name)));
        }
        Ok(names)
    }

    /// Whether a user property of this name is set (its value is not needed: markers carry
    /// their information in the name).
    pub fn has_user_prop(&self, name: &str) -> Result<bool> {
        let c = cstring(name)?;
        // SAFETY: zhp is valid; the returned list belongs to the handle (not freed here).
        let props = unsafe { sys::zfs_get_user_props(self.zhp) };
        if props.is_null() {
            return Ok(false);
        }
        let mut out: *mut sys::nvlist_t = std::ptr::null_mut();
        // SAFETY: props is the handle's valid list; c is NUL-terminated; out is writable.
        Ok(unsafe { sys::nvlist_lookup_nvlist(props, c.as_ptr(), &mut out) } == 0)
    }

    /// Where the dataset is mounted, if it is.
    pub fn mounted_at(&self) -> Option<std::path::PathBuf> {
        let mut at: *mut c_char = std::ptr::null_mut();
        // SAFETY: zhp is valid; `at` receives a malloc'd string or stays NULL.
        let mounted = unsafe { sys::zfs_is_mounted(self.zhp, &mut at) } != sys::B_FALSE;
        let path = if at.is_null() {
            None
        } else {
            // SAFETY: `at` is a NUL-terminated string malloc'd by libzfs; we copy it, then
            // free it once.
            let p = unsafe { CStr::from_ptr(at) }.to_string_lossy().into_owned();
            // SAFETY: see above.
            unsafe { libc::free(at.cast()) };
            Some(std::path::PathBuf::from(p))
        };
        if mounted {
            path
        } else {
            None
        }
    }

    /// Mount the dataset at its mountpoint.
    pub fn mount(&self) -> Result<()> {
        // SAFETY: zhp is valid; NULL options are allowed.
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
        // SAFETY: the list is ours (allocated by nvlist_alloc or handed to us by an lzc call)
        // and freed once; nvlist_free(NULL) is a no-op.
        unsafe { sys::nvlist_free(self.0) }
    }
}

impl NvList {
    /// An empty list with unique names.
    pub fn new() -> Result<Self> {
        let mut p = std::ptr::null_mut();
        // SAFETY: p is a valid out pointer.
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

    /// Add a string.
    pub fn string(self, key: &str, val: &str) -> Result<Self> {
        let (k, v) = (cstring(key)?, cstring(val)?);
        Self::check(
            // SAFETY: the list is valid; k and v are NUL-terminated and copied by nvpair.
            unsafe { sys::nvlist_add_string(self.0, k.as_ptr(), v.as_ptr()) },
            key,
        )?;
        Ok(self)
    }

    /// Add a number.
    pub fn uint64(self, key: &str, val: u64) -> Result<Self> {
        let k = cstring(key)?;
        Self::check(
            // SAFETY: the list is valid; k is NUL-terminated and copied.
            unsafe { sys::nvlist_add_uint64(self.0, k.as_ptr(), val) },
            key,
        )?;
        Ok(self)
    }

    /// Add a name without a value (how lzc calls take lists of names).
    pub fn flag(self, key: &str) -> Result<Self> {
        let k = cstring(key)?;
        // SAFETY: the list is valid; k is NUL-terminated and copied.
        Self::check(unsafe { sys::nvlist_add_boolean(self.0, k.as_ptr()) }, key)?;
        Ok(self)
    }

    /// The `name -> int32 errno` pairs of an lzc error list. The kernel may add an
    /// `N_MORE_ERRORS` pair when it trimmed the list; it is returned like the others.
    fn errors(&self) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        let mut pair: *mut sys::nvpair_t = std::ptr::null_mut();
        loop {
            // SAFETY: the list is valid; pair is NULL or a pair of this list.
            pair = unsafe { sys::nvlist_next_nvpair(self.0, pair) };
            if pair.is_null() {
                break;
            }
            // SAFETY: pair is a valid pair; its name is a NUL-terminated string owned by
            // the list, copied here.
            let name = unsafe { CStr::from_ptr(sys::nvpair_name(pair)) }
                .to_string_lossy()
                .into_owned();
            let mut v = 0i32;
            // SAFETY: pair is valid; v is writable. A non-int32 pair returns EINVAL.
            if unsafe { sys::nvpair_value_int32(pair, &mut v) } == 0 {
                out.push((name, v));
            }
        }
        out
    }
}

/// An errno every lzc call can return with the same meaning, or `None`.
fn common(what: &str, name: &str, errno: c_int) -> Option<Error> {
    let os = std::io::Error::from_raw_os_error(errno);
    match errno {
        // No space, a quota or limit, no permission, a read-only pool: the codes NO_SPACE
        // and PERMISSION_DENIED, with the system's words.
        libc::ENOSPC | libc::EDQUOT | libc::EPERM | libc::EACCES | libc::EROFS => Some(Error::Io {
            context: format!("{what} {name}"),
            source: os,
        }),
        libc::EAGAIN => Some(Error::Busy(format!(
            "{what} {name}: the pool is suspended ({os})"
        ))),
        _ => None,
    }
}

fn other(what: &str, name: &str, errno: c_int) -> Error {
    let os = std::io::Error::from_raw_os_error(errno);
    Error::Backend(format!("{what} {name}: {os} (errno {errno})"))
}

/// The parent of a dataset name (`tank/a/b` -> `tank/a`).
fn parent(name: &str) -> &str {
    name.rsplit_once('/').map_or(name, |(p, _)| p)
}

/// Whether a dataset, volume or snapshot of this name exists. `false` is not proof of
/// absence (lzc_exists also answers false on I/O errors), so callers use it to pick an
/// error message or to skip work, never to decide what to destroy.
pub fn exists(name: &str) -> Result<bool> {
    let c = cstring(name)?;
    // SAFETY: c is NUL-terminated; libzfs_core is initialised by every caller (ensure_init
    // or with()).
    Ok(unsafe { sys::lzc_exists(c.as_ptr()) } != sys::B_FALSE)
}

/// `lzc_clone`: one ioctl; one transaction group sync, plus one when `props` are given (the
/// kernel sets them after cloning, and removes the clone again if that fails).
pub fn clone(name: &str, origin: &str, props: Option<&NvList>) -> Result<()> {
    let (n, o) = (cstring(name)?, cstring(origin)?);
    let p = props.map_or(std::ptr::null_mut(), |p| p.0);
    // SAFETY: n and o are NUL-terminated; p is NULL or a valid list; none is kept.
    let rc = unsafe { sys::lzc_clone(n.as_ptr(), o.as_ptr(), p) };
    if rc == 0 {
        return Ok(());
    }
    Err(match rc {
        libc::EEXIST => Error::AlreadyExists(format!("dataset {name} already exists")),
        // The kernel says ENOENT for a missing origin and for a missing parent alike.
        libc::ENOENT if !exists(origin)? => Error::not_found("snapshot", origin),
        libc::ENOENT => Error::not_found("parent dataset", parent(name)),
        libc::EXDEV => Error::Backend(format!(
            "cloning {name} from {origin}: the origin is in another pool"
        )),
        libc::EINVAL => Error::Backend(format!(
            "cloning {name} from {origin}: invalid name, origin or property"
        )),
        rc => common("cloning", name, rc).unwrap_or_else(|| other("cloning", name, rc)),
    })
}

/// Call an lzc function that reports per-snapshot errors through an `nvlist_t **` (which
/// lzc_snapshot always writes, so it must not be NULL); returns the errno and the list.
fn with_errlist(f: impl FnOnce(*mut *mut sys::nvlist_t) -> c_int) -> (c_int, Vec<(String, i32)>) {
    let mut errlist: *mut sys::nvlist_t = std::ptr::null_mut();
    let rc = f(&mut errlist);
    // The list is ours to free (NvList's Drop); NULL when the error came before the handler.
    let list = NvList(errlist);
    let errors = if errlist.is_null() {
        Vec::new()
    } else {
        list.errors()
    };
    (rc, errors)
}

/// The errno to explain: the list's entry for `name` if there is one (the return code is
/// one of the list's values, but not said which).
fn per_name(rc: c_int, errors: &[(String, i32)], name: &str) -> c_int {
    errors
        .iter()
        .find(|(n, _)| n == name)
        .map_or(rc, |(_, e)| *e)
}

/// Take one snapshot (`fs@snap`).
pub fn snapshot(snap: &str) -> Result<()> {
    let snaps = NvList::new()?.flag(snap)?;
    // SAFETY: snaps is a valid list; NULL props are allowed; the errlist out pointer is
    // valid.
    let (rc, errors) =
        with_errlist(|e| unsafe { sys::lzc_snapshot(snaps.0, std::ptr::null_mut(), e) });
    if rc == 0 {
        return Ok(());
    }
    let fs = snap.split('@').next().unwrap_or(snap);
    Err(match per_name(rc, &errors, snap) {
        libc::EEXIST => Error::AlreadyExists(format!("snapshot {snap} already exists")),
        libc::ENOENT => Error::not_found("dataset", fs),
        libc::EBUSY => Error::Busy(format!("snapshotting {snap}: {fs} is being received into")),
        e => common("snapshotting", snap, e).unwrap_or_else(|| other("snapshotting", snap, e)),
    })
}

/// Destroy one snapshot. A snapshot with clones is [`Error::InUse`]; one with a user hold
/// (or being sent) is [`Error::Busy`]; a missing one is no error (the kernel skips it).
pub fn destroy_snapshot(snap: &str) -> Result<()> {
    let snaps = NvList::new()?.flag(snap)?;
    // SAFETY: snaps is valid; the errlist out pointer is valid and initialised to NULL
    // (lzc_destroy_snaps may not write it).
    let (rc, errors) =
        with_errlist(|e| unsafe { sys::lzc_destroy_snaps(snaps.0, sys::B_FALSE, e) });
    if rc == 0 {
        return Ok(());
    }
    Err(match per_name(rc, &errors, snap) {
        libc::EEXIST => Error::InUse(format!("snapshot {snap} has dependent clones")),
        libc::EBUSY => Error::Busy(format!(
            "snapshot {snap} is held (a user hold, or a send in progress)"
        )),
        libc::ENOENT => Error::not_found("pool of snapshot", snap),
        e => common("destroying", snap, e).unwrap_or_else(|| other("destroying", snap, e)),
    })
}

/// Rename a dataset (same parent or another one in the same pool).
pub fn rename(from: &str, to: &str) -> Result<()> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: both names are NUL-terminated and outlive the call.
    let rc = unsafe { sys::lzc_rename(f.as_ptr(), t.as_ptr()) };
    if rc == 0 {
        return Ok(());
    }
    Err(match rc {
        libc::EEXIST => Error::AlreadyExists(format!("dataset {to} already exists")),
        libc::ENOENT if !exists(from)? => Error::not_found("dataset", from),
        libc::ENOENT => Error::not_found("parent dataset", parent(to)),
        libc::EXDEV => Error::Backend(format!("renaming {from} to {to}: not within one pool")),
        sys::ZFS_ERR_WRONG_PARENT => Error::Backend(format!(
            "renaming {from} to {to}: {} is not a filesystem",
            parent(to)
        )),
        rc => common("renaming", from, rc).unwrap_or_else(|| other("renaming", from, rc)),
    })
}

/// Destroy a filesystem or volume (not a snapshot).
pub fn destroy(name: &str) -> Result<()> {
    let c = cstring(name)?;
    // SAFETY: c is NUL-terminated.
    let rc = unsafe { sys::lzc_destroy(c.as_ptr()) };
    if rc == 0 {
        return Ok(());
    }
    Err(match rc {
        libc::ENOENT => Error::not_found("dataset", name),
        libc::EBUSY => Error::Busy(format!(
            "destroying {name}: it has snapshots, or is open (a running VM?) or mounted"
        )),
        libc::EEXIST => Error::InUse(format!("destroying {name}: it has child datasets")),
        rc => common("destroying", name, rc).unwrap_or_else(|| other("destroying", name, rc)),
    })
}

/// Create a volume through libzfs_core (props are passed through unvalidated, so callers give
/// exact values: a volsize that is a multiple of the volblocksize).
pub fn create_volume(name: &str, props: &NvList) -> Result<()> {
    let c = cstring(name)?;
    // SAFETY: c is NUL-terminated; props is valid; no key material (NULL, 0).
    let rc = unsafe {
        sys::lzc_create(
            c.as_ptr(),
            sys::LZC_DATSET_TYPE_ZVOL,
            props.0,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    Err(match rc {
        libc::EEXIST => Error::AlreadyExists(format!("dataset {name} already exists")),
        libc::ENOENT => Error::not_found("parent dataset", parent(name)),
        sys::ZFS_ERR_WRONG_PARENT => Error::Backend(format!(
            "creating {name}: {} is not a filesystem",
            parent(name)
        )),
        libc::EINVAL | libc::EDOM => Error::Backend(format!(
            "creating {name}: invalid name or volume property (size or block size)"
        )),
        rc => common("creating", name, rc).unwrap_or_else(|| other("creating", name, rc)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_meanings() {
        assert_eq!(parent("tank/a/b"), "tank/a");
        let e = common("destroying", "tank/x", libc::ENOSPC).unwrap();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_NO_SPACE);
        let e = common("x", "tank/x", libc::EAGAIN).unwrap();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_BUSY);
        assert!(common("x", "y", libc::EEXIST).is_none());
        assert_eq!(
            per_name(libc::EEXIST, &[("a@b".into(), libc::EBUSY)], "a@b"),
            libc::EBUSY
        );
        assert_eq!(per_name(libc::EEXIST, &[], "a@b"), libc::EEXIST);
    }
}
