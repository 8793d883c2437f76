//! The zone's configuration through libzonecfg: a handle that frees itself, the calls that
//! fill it, and the zone's state.

use super::sys;
use super::values::{AttrType, Mount, Rctl};
use crate::error::{Error, Result};
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

/// libzonecfg keeps libxml2 state in globals (`zonecfg_init_handle` sets libxml's defaults)
/// and its zone index is a shared file: calls are made one at a time.
static LIB: Mutex<()> = Mutex::new(());

pub(super) fn locked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _g = LIB.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

pub(super) fn cstring(s: &[u8], what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}

/// Copy `src` and a NUL into a fixed C array.
pub(super) fn fill(dst: &mut [c_char], src: &[u8], what: &str) -> Result<()> {
    if src.contains(&0) {
        return Err(Error::invalid(format!("{what} contains a NUL byte")));
    }
    if src.len() >= dst.len() {
        return Err(Error::invalid(format!(
            "{what} is longer than the {} bytes libzonecfg stores",
            dst.len() - 1
        )));
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s as c_char;
    }
    dst[src.len()] = 0;
    Ok(())
}

/// A libzonecfg return code as an [`Error`], with libzonecfg's own text.
pub(super) fn zerr(code: c_int, zone: &str, what: &str) -> Error {
    // Z_SYSTEM means "see errno": read it before anything else can change it.
    let os = std::io::Error::last_os_error();
    // SAFETY: zonecfg_strerror returns a static (or strerror's) NUL-terminated string for
    // any code; it is copied at once, under the library lock the callers hold.
    let text = unsafe { CStr::from_ptr(sys::zonecfg_strerror(code)) }
        .to_string_lossy()
        .into_owned();
    let msg = format!("zone {zone}: {what}: {text}");
    match code {
        sys::z::Z_NO_ZONE => Error::not_found("zone", zone),
        sys::z::Z_ACCES => Error::Io {
            context: format!("zone {zone}: {what}"),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        },
        sys::z::Z_SYSTEM => Error::Io {
            context: format!("zone {zone}: {what}"),
            source: os,
        },
        sys::z::Z_NAME_IN_USE => Error::AlreadyExists(msg),
        sys::z::Z_BAD_ZONE_STATE => Error::InvalidState(msg),
        sys::z::Z_BOGUS_ZONE_NAME | sys::z::Z_INVAL | sys::z::Z_TOO_BIG => Error::invalid(msg),
        _ => Error::Backend(msg),
    }
}

pub(super) fn check(code: c_int, zone: &str, what: &str) -> Result<()> {
    if code == sys::z::Z_OK {
        Ok(())
    } else {
        Err(zerr(code, zone, what))
    }
}

/// A configuration being written: a libzonecfg handle, freed on drop. Used under [`LIB`].
pub(super) struct Handle {
    h: sys::zone_dochandle_t,
    zone: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: h came from zonecfg_init_handle and is freed once, here.
        unsafe { sys::zonecfg_fini_handle(self.h) }
    }
}

/// An rctl resource being built; owns its value list (malloc'd, freed by libzonecfg).
struct RctlTab(sys::zone_rctltab);

impl Drop for RctlTab {
    fn drop(&mut self) {
        // SAFETY: the list is NULL or values this layer calloc'd and linked through
        // zonecfg_add_rctl_value; libzonecfg's free walks and free()s it once.
        unsafe { sys::zonecfg_free_rctl_value_list(self.0.zone_rctl_valptr) }
    }
}

/// An fs resource being built; owns its option list (allocated by libzonecfg).
struct FsTab(Box<sys::zone_fstab>);

impl Drop for FsTab {
    fn drop(&mut self) {
        // SAFETY: the list is NULL or built by zonecfg_add_fs_option; freed once, here.
        unsafe { sys::zonecfg_free_fs_option_list(self.0.zone_fs_options) }
    }
}

impl Handle {
    /// A new configuration for zone `zone`, from template `template`.
    pub(super) fn from_template(template: &str, zone: &str) -> Result<Handle> {
        let t = cstring(template.as_bytes(), "template name")?;
        let z = cstring(zone.as_bytes(), "zone name")?;
        // SAFETY: no arguments; NULL is checked.
        let h = unsafe { sys::zonecfg_init_handle() };
        if h.is_null() {
            return Err(Error::Backend(format!(
                "zone {zone}: zonecfg_init_handle: out of memory"
            )));
        }
        let handle = Handle {
            h,
            zone: zone.to_owned(),
        };
        // SAFETY: valid handle; both strings NUL-terminated and alive for the call (libxml
        // copies them into the document).
        let rc = unsafe { sys::zonecfg_get_template_handle(t.as_ptr(), z.as_ptr(), handle.h) };
        check(rc, zone, &format!("loading template {template}"))?;
        Ok(handle)
    }

    /// Call a setter that takes a string (libzonecfg's `char *` setters only read it).
    pub(super) fn set(
        &mut self,
        f: unsafe extern "C" fn(sys::zone_dochandle_t, *mut c_char) -> c_int,
        value: &[u8],
        what: &str,
    ) -> Result<()> {
        let c = cstring(value, what)?;
        // SAFETY: valid handle; the setter copies the NUL-terminated string into the XML
        // document and does not write through the pointer (setrootattr in libzonecfg.c).
        let rc = unsafe { f(self.h, c.as_ptr().cast_mut()) };
        check(rc, &self.zone, &format!("setting {what}"))
    }

    pub(super) fn set_zonepath(&mut self, p: &Path) -> Result<()> {
        self.set(
            sys::zonecfg_set_zonepath,
            p.as_os_str().as_bytes(),
            "zonepath",
        )
    }

    pub(super) fn set_brand(&mut self, brand: &str) -> Result<()> {
        self.set(sys::zonecfg_set_brand, brand.as_bytes(), "brand")
    }

    pub(super) fn set_limitpriv(&mut self, privs: &str) -> Result<()> {
        self.set(sys::zonecfg_set_limitpriv, privs.as_bytes(), "limitpriv")
    }

    pub(super) fn set_autoboot(&mut self, on: bool) -> Result<()> {
        let b = if on { sys::B_TRUE } else { sys::B_FALSE };
        // SAFETY: valid handle.
        let rc = unsafe { sys::zonecfg_set_autoboot(self.h, b) };
        check(rc, &self.zone, "setting autoboot")
    }

    pub(super) fn add_attr(&mut self, name: &str, ty: AttrType, value: &str) -> Result<()> {
        let mut t = Box::new(sys::zone_attrtab {
            zone_attr_name: [0; sys::MAXNAMELEN],
            zone_attr_type: [0; sys::MAXNAMELEN],
            zone_attr_value: [0; 2 * sys::BUFSIZ],
        });
        fill(&mut t.zone_attr_name, name.as_bytes(), "attribute name")?;
        fill(
            &mut t.zone_attr_type,
            ty.as_str().as_bytes(),
            "attribute type",
        )?;
        fill(&mut t.zone_attr_value, value.as_bytes(), "attribute value")?;
        // SAFETY: valid handle; t is a complete, NUL-terminated zone_attrtab that libzonecfg
        // only reads during the call.
        let rc = unsafe { sys::zonecfg_add_attr(self.h, &mut *t) };
        check(rc, &self.zone, &format!("adding attribute {name}"))
    }

    pub(super) fn add_rctl(&mut self, r: &Rctl) -> Result<()> {
        let mut tab = RctlTab(sys::zone_rctltab {
            zone_rctl_name: [0; sys::MAXNAMELEN],
            zone_rctl_valptr: std::ptr::null_mut(),
        });
        fill(&mut tab.0.zone_rctl_name, r.name.as_bytes(), "rctl name")?;
        // libzonecfg free()s the values, so they come from the C allocator.
        // SAFETY: calloc of one zeroed zone_rctlvaltab (all-zero is valid: empty strings,
        // NULL next); NULL is checked.
        let val: *mut sys::zone_rctlvaltab =
            unsafe { libc::calloc(1, std::mem::size_of::<sys::zone_rctlvaltab>()) }.cast();
        if val.is_null() {
            return Err(Error::Backend(format!(
                "zone {}: out of memory for rctl {}",
                self.zone, r.name
            )));
        }
        // Owned by `single` until zonecfg_add_rctl_value links it into `tab`.
        let mut single = RctlTab(sys::zone_rctltab {
            zone_rctl_name: [0; sys::MAXNAMELEN],
            zone_rctl_valptr: val,
        });
        // SAFETY: val is a valid, exclusively owned allocation of the right size.
        let v = unsafe { &mut *val };
        fill(
            &mut v.zone_rctlval_priv,
            r.privilege.as_str().as_bytes(),
            "rctl privilege",
        )?;
        fill(
            &mut v.zone_rctlval_limit,
            r.limit.to_string().as_bytes(),
            "rctl limit",
        )?;
        fill(
            &mut v.zone_rctlval_action,
            r.action.as_str().as_bytes(),
            "rctl action",
        )?;
        // SAFETY: both point to live structs; on success libzonecfg links val into tab's
        // list (tab then owns it), on failure it leaves it unlinked (still `single`'s).
        let rc = unsafe { sys::zonecfg_add_rctl_value(&mut tab.0, val) };
        if rc == sys::z::Z_OK {
            single.0.zone_rctl_valptr = std::ptr::null_mut();
        }
        check(
            rc,
            &self.zone,
            &format!("value {} of rctl {}", r.limit, r.name),
        )?;
        // SAFETY: valid handle; tab and its list are read during the call only.
        let rc = unsafe { sys::zonecfg_add_rctl(self.h, &mut tab.0) };
        check(rc, &self.zone, &format!("adding rctl {}", r.name))
    }

    pub(super) fn add_device(&mut self, dev: &Path) -> Result<()> {
        let mut t = Box::new(sys::zone_devtab {
            zone_dev_match: [0; sys::MAXPATHLEN],
            zone_dev_attrp: std::ptr::null_mut(),
        });
        fill(
            &mut t.zone_dev_match,
            dev.as_os_str().as_bytes(),
            "device path",
        )?;
        // SAFETY: valid handle; t is SmartOS's zone_devtab with no properties, which gate's
        // libzonecfg reads as its shorter struct (match only); read during the call only.
        let rc = unsafe { sys::zonecfg_add_dev(self.h, &mut *t) };
        check(rc, &self.zone, &format!("adding device {}", dev.display()))
    }

    pub(super) fn add_lofs(&mut self, m: &Mount) -> Result<()> {
        let mut t = FsTab(Box::new(sys::zone_fstab {
            zone_fs_special: [0; sys::MAXPATHLEN],
            zone_fs_dir: [0; sys::MAXPATHLEN],
            zone_fs_type: [0; sys::FSTYPSZ],
            zone_fs_options: std::ptr::null_mut(),
            zone_fs_raw: [0; sys::MAXPATHLEN],
        }));
        let p = m.dir.as_os_str().as_bytes();
        fill(&mut t.0.zone_fs_special, p, "mounted directory")?;
        fill(&mut t.0.zone_fs_dir, p, "mount point")?;
        fill(&mut t.0.zone_fs_type, b"lofs", "file system type")?;
        for o in m.options() {
            let c = cstring(o.as_bytes(), "mount option")?;
            // SAFETY: t is a live zone_fstab; the option is copied into a node libzonecfg
            // allocates and links into t's list (freed by FsTab's drop).
            let rc = unsafe { sys::zonecfg_add_fs_option(&mut *t.0, c.as_ptr().cast_mut()) };
            check(rc, &self.zone, &format!("mount option {o}"))?;
        }
        // SAFETY: valid handle; t and its options are read during the call only.
        let rc = unsafe { sys::zonecfg_add_filesystem(self.h, &mut *t.0) };
        check(rc, &self.zone, &format!("adding mount {}", m.dir.display()))
    }

    pub(super) fn save(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { sys::zonecfg_save(self.h) };
        check(rc, &self.zone, "saving the configuration")
    }
}

/// The zone's state, `None` when no such zone is configured.
pub(super) fn state(zone: &str) -> Result<Option<sys::zone_state_t>> {
    let z = cstring(zone.as_bytes(), "zone name")?;
    let mut st: sys::zone_state_t = 0;
    // SAFETY: NUL-terminated name (zone_get_state only reads it, despite `char *`); st is
    // ours to write.
    let rc = unsafe { sys::zone_get_state(z.as_ptr().cast_mut(), &mut st) };
    match rc {
        sys::z::Z_OK => Ok(Some(st)),
        sys::z::Z_NO_ZONE => Ok(None),
        _ => Err(zerr(rc, zone, "reading its state")),
    }
}

pub(super) fn set_state(zone: &str, st: sys::zone_state_t) -> Result<()> {
    let z = cstring(zone.as_bytes(), "zone name")?;
    // SAFETY: NUL-terminated name, only read.
    let rc = unsafe { sys::zone_set_state(z.as_ptr().cast_mut(), st) };
    check(rc, zone, "setting its state")
}

/// Remove the configuration (forced: an installed zone is allowed); absent is fine.
pub(super) fn destroy_config(zone: &str) -> Result<()> {
    let z = cstring(zone.as_bytes(), "zone name")?;
    // SAFETY: NUL-terminated name.
    let rc = unsafe { sys::zonecfg_destroy(z.as_ptr(), sys::B_TRUE) };
    match rc {
        sys::z::Z_OK | sys::z::Z_NO_ZONE => Ok(()),
        _ => Err(zerr(rc, zone, "removing its configuration")),
    }
}
