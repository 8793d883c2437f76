//! The illumos zone of a VM: a zone of SmartOS's `kvm` brand made with libzonecfg and run by
//! zoneadmd, as SmartOS's `vmadm` runs each KVM guest, but with library calls only (no
//! `zonecfg` or `zoneadm` process; libzonecfg itself starts the zone's zoneadmd daemon when
//! it has none, as zoneadm does).
//!
//! Built on illumos, and type-checked elsewhere with the `zones-typecheck` feature; it has
//! never run: see "illumos zones" in the README for what was and was not verified. The values
//! it writes are computed by [`values`] (compiled and tested on every platform); the raw
//! declarations are in [`sys`].
//!
//! What a zone is here:
//! - **create**: the configuration `vmpool-<uuid>` from the empty template (`SUNWblank`, as
//!   `zonecfg create -b`), brand `kvm`, zonepath `<run dir>/zone`, no autoboot, SmartOS's kvm
//!   privilege limit (keeping `net_access`), the attributes vmadm writes (`ram`, `vcpus`,
//!   `hostname`) and `vmpool-vm`, the rctls of the VM's limits, a `device` for each device
//!   (zvols as `/dev/zvol/rdsk/...`) and a read-only or read-write loopback mount for each
//!   directory QEMU reads or writes. Then what the brand's install hook (`kinstall`) would do:
//!   the zonepath, its `root` and `root/tmp`, and the state set to installed. `zoneadm
//!   install` and its checks (`verify`) are not run.
//! - **boot**: the kvm brand's init is `/startvm` in the zone's root; it is written here
//!   (QEMU's program and arguments, quoted) as vmadm writes it, and zoneadmd is asked to boot
//!   (`Z_BOOT` through `zonecfg_call_zoneadmd`).
//! - **destroy**: halt (`Z_HALT`) if the zone is up, remove the configuration
//!   (`zonecfg_destroy`), remove the zonepath when nothing is mounted below it.
//!
//! What is not carried over from the Linux zone, and why: QEMU runs as the zone's root (the
//! zone and its privilege limit are the boundary, as on SmartOS), so `uid`, `gid` and
//! `groups` are not used; the zone has no network resource, so QEMU's user-mode networking
//! and a SPICE TCP port stay inside the zone; disk bandwidth limits have no zone equivalent
//! and are refused ([`values::unsupported_limits`]). Only SmartOS is supported: the kvm brand
//! with `/startvm` is SmartOS's (OmniOS's kvm and bhyve brands start the hypervisor
//! themselves from zone attributes), and elsewhere every call returns
//! [`Error::Unsupported`].

pub mod sys;

pub use super::illumos_values as values;

use super::{Booted, Zone, ZoneSpec};
use crate::error::{Error, IoContext, Result};
use std::ffi::{c_char, c_int, CStr, CString};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use values::{AttrType, Mount, Platform, Rctl};

/// How long booting may take until `/startvm` runs (zoneadmd readies the zone: mounts,
/// devices, the brand's state-change hooks).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The kvm brand's configuration; its presence says the brand is installed.
const KVM_BRAND_CONFIG: &str = "/usr/lib/brand/kvm/config.xml";

/// The illumos implementation of [`Zone`].
///
/// [`Booted`] means something else here than on Linux. `pid` is the zone's init, which is
/// `/startvm` replaced by QEMU (same pid): a process of the zone, child of the zone's
/// `zsched`, not of the caller, so the caller cannot `waitpid` it. The brand sets
/// `restartinit` false, so (as we read it, not observed) the zone goes down when QEMU exits,
/// and that end is seen in the zone's state, not as a child's exit; the supervisor, written
/// for the Linux zone, does not do this yet. `stdout` and `stderr` are the read ends of two FIFOs in the
/// zone's `/tmp` that `/startvm` connects QEMU's stdout and stderr to: the serial console and
/// QEMU's messages, ending (EOF) when QEMU exits, like the pipes of the Linux zone.
#[derive(Debug, Default)]
pub struct IllumosZone;

/// libzonecfg keeps libxml2 state in globals (`zonecfg_init_handle` sets libxml's defaults)
/// and its zone index is a shared file: calls are made one at a time.
static LIB: Mutex<()> = Mutex::new(());

fn locked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _g = LIB.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

fn cstring(s: &[u8], what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}

/// Copy `src` and a NUL into a fixed C array.
fn fill(dst: &mut [c_char], src: &[u8], what: &str) -> Result<()> {
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
fn zerr(code: c_int, zone: &str, what: &str) -> Error {
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

fn check(code: c_int, zone: &str, what: &str) -> Result<()> {
    if code == sys::z::Z_OK {
        Ok(())
    } else {
        Err(zerr(code, zone, what))
    }
}

/// A configuration being written: a libzonecfg handle, freed on drop. Used under [`LIB`].
struct Handle {
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
    fn from_template(template: &str, zone: &str) -> Result<Handle> {
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
    fn set(
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

    fn set_zonepath(&mut self, p: &Path) -> Result<()> {
        self.set(
            sys::zonecfg_set_zonepath,
            p.as_os_str().as_bytes(),
            "zonepath",
        )
    }

    fn set_brand(&mut self, brand: &str) -> Result<()> {
        self.set(sys::zonecfg_set_brand, brand.as_bytes(), "brand")
    }

    fn set_limitpriv(&mut self, privs: &str) -> Result<()> {
        self.set(sys::zonecfg_set_limitpriv, privs.as_bytes(), "limitpriv")
    }

    fn set_autoboot(&mut self, on: bool) -> Result<()> {
        let b = if on { sys::B_TRUE } else { sys::B_FALSE };
        // SAFETY: valid handle.
        let rc = unsafe { sys::zonecfg_set_autoboot(self.h, b) };
        check(rc, &self.zone, "setting autoboot")
    }

    fn add_attr(&mut self, name: &str, ty: AttrType, value: &str) -> Result<()> {
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

    fn add_rctl(&mut self, r: &Rctl) -> Result<()> {
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

    fn add_device(&mut self, dev: &Path) -> Result<()> {
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

    fn add_lofs(&mut self, m: &Mount) -> Result<()> {
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

    fn save(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { sys::zonecfg_save(self.h) };
        check(rc, &self.zone, "saving the configuration")
    }
}

/// The zone's state, `None` when no such zone is configured.
fn state(zone: &str) -> Result<Option<sys::zone_state_t>> {
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

fn set_state(zone: &str, st: sys::zone_state_t) -> Result<()> {
    let z = cstring(zone.as_bytes(), "zone name")?;
    // SAFETY: NUL-terminated name, only read.
    let rc = unsafe { sys::zone_set_state(z.as_ptr().cast_mut(), st) };
    check(rc, zone, "setting its state")
}

/// Remove the configuration (forced: an installed zone is allowed); absent is fine.
fn destroy_config(zone: &str) -> Result<()> {
    let z = cstring(zone.as_bytes(), "zone name")?;
    // SAFETY: NUL-terminated name.
    let rc = unsafe { sys::zonecfg_destroy(z.as_ptr(), sys::B_TRUE) };
    match rc {
        sys::z::Z_OK | sys::z::Z_NO_ZONE => Ok(()),
        _ => Err(zerr(rc, zone, "removing its configuration")),
    }
}

/// Send `cmd` to the zone's zoneadmd, in the door argument layout of `platform`.
///
/// The zoneadm lock is not taken (`lock` = false): taking it needs
/// `zonecfg_init_lock_file`, which `putenv`s `_ZONEADM_LOCK_HELD` into the process
/// environment, a data race in a multi-threaded Rust process. What the lock prevents is two
/// processes starting a zoneadmd for the same zone at once; vmpool has one supervisor per VM
/// (its lifecycle lock), so only a concurrent `zoneadm` run by hand could race us. When the
/// zone has no zoneadmd, libzonecfg forks and execs `/usr/lib/zones/zoneadmd` from this
/// process, as zoneadm does (`start_zoneadmd` in libzonecfg.c).
fn call_zoneadmd(zone: &str, cmd: sys::zone_cmd_t, platform: Platform) -> Result<()> {
    let z = cstring(zone.as_bytes(), "zone name")?;
    let mut locale = *b"C\0";
    let rc = match platform {
        Platform::SmartOs => {
            let mut arg = sys::zone_cmd_arg_joyent_t {
                uniqid: 0,
                cmd,
                status: 0,
                debug: 0,
                locale: [0; sys::MAXPATHLEN],
                bootbuf: [0; sys::BOOTARGS_MAX],
                pad: 0,
            };
            // SAFETY: NUL-terminated name and locale; arg is the running OS's
            // zone_cmd_arg_t, fully initialised, sent to zoneadmd during the call only.
            unsafe {
                sys::zonecfg_call_zoneadmd(
                    z.as_ptr(),
                    (&mut arg as *mut sys::zone_cmd_arg_joyent_t).cast(),
                    locale.as_mut_ptr().cast(),
                    sys::B_FALSE,
                )
            }
        }
        Platform::Illumos => {
            let mut arg = sys::zone_cmd_arg_t {
                uniqid: 0,
                cmd,
                _pad: 0,
                locale: [0; sys::MAXPATHLEN],
                bootbuf: [0; sys::BOOTARGS_MAX],
            };
            // SAFETY: as above, with illumos-gate's layout.
            unsafe {
                sys::zonecfg_call_zoneadmd(
                    z.as_ptr(),
                    (&mut arg as *mut sys::zone_cmd_arg_t).cast(),
                    locale.as_mut_ptr().cast(),
                    sys::B_FALSE,
                )
            }
        }
    };
    if rc != 0 {
        let name = match cmd {
            sys::Z_BOOT => "boot",
            sys::Z_HALT => "halt",
            sys::Z_REBOOT => "reboot",
            _ => "the command",
        };
        return Err(Error::Backend(format!(
            "zone {zone}: zoneadmd refused to {name} it (its message was printed on this \
             process's stderr by libzonecfg)"
        )));
    }
    Ok(())
}

/// The pid of the zone's init, once there is one.
fn init_pid(zone: &CStr) -> Option<u32> {
    // SAFETY: NUL-terminated name.
    let id = unsafe { sys::getzoneidbyname(zone.as_ptr()) };
    if id < 0 {
        return None;
    }
    let mut pid: sys::pid_t = -1;
    // SAFETY: the buffer is a pid_t of ours and its size is given.
    let n = unsafe {
        sys::zone_getattr(
            id,
            sys::ZONE_ATTR_INITPID,
            (&mut pid as *mut sys::pid_t).cast(),
            std::mem::size_of::<sys::pid_t>(),
        )
    };
    u32::try_from(pid).ok().filter(|p| n >= 0 && *p > 0)
}

/// The running distribution, from `uname -v`.
fn detect_platform() -> Platform {
    // SAFETY: utsname is plain char arrays, valid all-zero; uname fills it and terminates
    // each field.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is ours to write.
    if unsafe { libc::uname(&mut u) } < 0 {
        return Platform::Illumos;
    }
    // SAFETY: uname NUL-terminates version within its array.
    let v = unsafe { CStr::from_ptr(u.version.as_ptr()) };
    values::platform(&v.to_string_lossy())
}

/// The platform, when it is one the kvm brand driven here exists on.
fn require_smartos() -> Result<Platform> {
    let p = detect_platform();
    if p != Platform::SmartOs {
        return Err(Error::Unsupported(
            "illumos zones for VMs are implemented for SmartOS's kvm brand only (its init is \
             the /startvm script vmpool writes); this system is not SmartOS"
                .into(),
        ));
    }
    if !Path::new(KVM_BRAND_CONFIG).exists() {
        return Err(Error::Unsupported(format!(
            "the kvm zone brand is not installed ({KVM_BRAND_CONFIG} is missing)"
        )));
    }
    Ok(p)
}

fn mkdir_mode(dir: &Path, mode: u32) -> Result<()> {
    crate::fsutil::mkdirs(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {mode:o} {}", dir.display()))
}

/// What the kvm brand's install hook makes (`kinstall.ksh`), plus the mount points.
fn prepare_zonepath(spec: &ZoneSpec, mounts: &[Mount]) -> Result<()> {
    let zp = values::zonepath(spec);
    let root = values::zone_root(spec);
    mkdir_mode(&zp, 0o700)?;
    mkdir_mode(&zp.join("config"), 0o755)?;
    mkdir_mode(&root, 0o755)?;
    mkdir_mode(&root.join("tmp"), 0o1777)?;
    for m in mounts {
        crate::fsutil::mkdirs(&values::in_root(&root, &m.dir))?;
    }
    Ok(())
}

/// Replace `path` with a new file (never writing through a symlink planted there).
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    crate::fsutil::remove_file_if_exists(path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .ctx(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, data).ctx(|| format!("writing {}", path.display()))
}

/// A new FIFO at `path`, opened for reading without waiting for a writer.
fn fifo_reader(path: &Path) -> Result<File> {
    crate::fsutil::remove_file_if_exists(path)?;
    let mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
    nix::unistd::mkfifo(path, mode).ctx(|| format!("mkfifo {}", path.display()))?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))
}

fn set_blocking(f: &File, what: &Path) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fd = f.as_raw_fd();
    let flags = fcntl(fd, FcntlArg::F_GETFL).ctx(|| format!("F_GETFL {}", what.display()))?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).ctx(|| format!("F_SETFL {}", what.display()))?;
    Ok(())
}

/// Wait for `/startvm`'s line on the ready FIFO, watching that the zone stays up.
fn wait_ready(zone: &str, ready: &mut File, path: &Path) -> Result<()> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut buf = [0u8; 64];
    loop {
        match ready.read(&mut buf) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        }
        match locked(|| state(zone))? {
            None => return Err(Error::not_found("zone", zone)),
            Some(s) if s <= sys::ZONE_STATE_INSTALLED => {
                return Err(Error::Hypervisor(format!(
                    "zone {zone} went down before /startvm ran (zoneadmd's messages are on \
                     this process's stderr)"
                )))
            }
            Some(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "zone {zone}: /startvm did not start within {} s",
                BOOT_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Zone for IllumosZone {
    fn create(&self, spec: &ZoneSpec) -> Result<()> {
        let platform = require_smartos()?;
        if let Some(msg) = values::unsupported_limits(spec) {
            return Err(Error::Unsupported(msg));
        }
        let zone = values::zone_name(&spec.vm);
        if !values::valid_zone_name(&zone) {
            return Err(Error::Internal(format!("{zone} is not a valid zone name")));
        }
        let zonepath = values::zonepath(spec);
        if !zonepath.is_absolute() {
            return Err(Error::invalid(format!(
                "the zonepath {} is not absolute",
                zonepath.display()
            )));
        }
        for p in spec.writable.iter().chain(&spec.readable) {
            std::fs::metadata(p).ctx(|| format!("zone {zone}: {}", p.display()))?;
        }
        let mounts = values::mounts(spec, |p| p.is_dir())
            .map_err(|e| Error::Unsupported(format!("zone {zone}: {e}")))?;
        let devices = values::devices(spec);
        for (_, d) in &devices {
            if !d.exists() {
                return Err(Error::not_found("device", d.display().to_string()));
            }
        }
        // A zone left by a run that crashed is replaced: the spec may have changed since.
        locked(|| {
            if let Some(st) = state(&zone)? {
                if st > sys::ZONE_STATE_INSTALLED {
                    call_zoneadmd(&zone, sys::Z_HALT, platform)?;
                }
                destroy_config(&zone)?;
            }
            Ok(())
        })?;
        prepare_zonepath(spec, &mounts)?;
        locked(|| {
            let mut h = Handle::from_template(values::TEMPLATE, &zone)?;
            h.set_zonepath(&zonepath)?;
            h.set_brand(values::BRAND)?;
            h.set_autoboot(false)?;
            h.set_limitpriv(values::LIMITPRIV)?;
            for (name, ty, value) in values::attrs(spec) {
                h.add_attr(name, ty, &value)?;
            }
            for r in values::rctls(spec) {
                h.add_rctl(&r)?;
            }
            for (_, d) in &devices {
                h.add_device(d)?;
            }
            for m in &mounts {
                h.add_lofs(m)?;
            }
            h.save()?;
            // What `zoneadm install` records once the brand's install hook succeeded; the
            // hook's work is prepare_zonepath above.
            set_state(&zone, sys::ZONE_STATE_INSTALLED)
        })
    }

    fn boot(
        &self,
        spec: &ZoneSpec,
        program: &Path,
        args: &[String],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<Booted> {
        let platform = require_smartos()?;
        if !fds.is_empty() {
            // zoneadmd boots the zone and its init starts QEMU: there is no process of ours
            // between which could hand QEMU descriptors. Never run here (see the README).
            return Err(Error::Unsupported(
                "handing QEMU its sockets as descriptors is not implemented for illumos zones"
                    .into(),
            ));
        }
        let zone = values::zone_name(&spec.vm);
        if !program.is_absolute() || !values::visible_in_zone(program) {
            return Err(Error::Unsupported(format!(
                "zone {zone}: QEMU at {} is not visible in a kvm zone, which sees the host's \
                 {} only",
                program.display(),
                values::PLATFORM_MOUNTS.join(", ")
            )));
        }
        if let Some((arg, from, to)) = values::stale_device_arg(args, &values::devices(spec)) {
            return Err(Error::Unsupported(format!(
                "zone {zone}: QEMU's argument {arg:?} names {} but on illumos that zvol is {}; \
                 the disk path must be given in its illumos form",
                from.display(),
                to.display()
            )));
        }
        match locked(|| state(&zone))? {
            Some(sys::ZONE_STATE_INSTALLED) => {}
            Some(s) if s > sys::ZONE_STATE_INSTALLED => {
                return Err(Error::AlreadyRunning(format!("zone {zone} is already up")))
            }
            Some(_) => {
                return Err(Error::InvalidState(format!(
                    "zone {zone} is not installed (create it first)"
                )))
            }
            None => return Err(Error::not_found("zone", zone)),
        }
        let root = values::zone_root(spec);
        let script = values::startvm_script(&zone, program, args);
        write_new(&root.join(values::STARTVM), script.as_bytes(), 0o755)?;
        // Readers first: /startvm's redirections then find them and do not block.
        let out_path = root.join(values::STDOUT_FIFO);
        let err_path = root.join(values::STDERR_FIFO);
        let ready_path = root.join(values::READY_FIFO);
        let stdout = fifo_reader(&out_path)?;
        let stderr = fifo_reader(&err_path)?;
        let mut ready = fifo_reader(&ready_path)?;
        locked(|| call_zoneadmd(&zone, sys::Z_BOOT, platform))?;
        let started = (|| {
            wait_ready(&zone, &mut ready, &ready_path)?;
            let z = cstring(zone.as_bytes(), "zone name")?;
            let pid = init_pid(&z).ok_or_else(|| {
                Error::Hypervisor(format!("zone {zone} is up but has no init process"))
            })?;
            set_blocking(&stdout, &out_path)?;
            set_blocking(&stderr, &err_path)?;
            Ok(pid)
        })();
        match started {
            Ok(pid) => Ok(Booted {
                pid,
                stdout,
                stderr,
            }),
            Err(e) => {
                // Do not leave a zone up that nobody reads from.
                let _ = locked(|| match state(&zone)? {
                    Some(s) if s > sys::ZONE_STATE_INSTALLED => {
                        call_zoneadmd(&zone, sys::Z_HALT, platform)
                    }
                    _ => Ok(()),
                });
                Err(e)
            }
        }
    }

    /// Always false, because illumos does not kill for memory. A zone's
    /// `zone.max-physical-memory` is enforced by paging the zone out (zoneadmd's memory
    /// capper on older SmartOS, the kernel's since SmartOS's RFD 38; rcapd for illumos-gate's
    /// `capped-memory`), and `zone.max-swap` by failing the allocation (ENOMEM), after which
    /// QEMU exits by itself. There is no OOM killer whose victims could be counted, so a VM
    /// that ran out of memory shows up as QEMU's own exit, not as `oom_killed`.
    fn oom_killed(&self, _spec: &ZoneSpec) -> bool {
        false
    }

    fn destroy(&self, spec: &ZoneSpec) -> Result<()> {
        let zone = values::zone_name(&spec.vm);
        locked(|| {
            if let Some(st) = state(&zone)? {
                if st > sys::ZONE_STATE_INSTALLED {
                    call_zoneadmd(&zone, sys::Z_HALT, detect_platform())?;
                }
                destroy_config(&zone)?;
            }
            Ok(())
        })?;
        let zp = values::zonepath(spec);
        if !zp.exists() {
            return Ok(());
        }
        // zoneadmd unmounts everything when it halts a zone; should anything be left (a
        // failed unmount), a recursive removal would go through it into host directories.
        let mnttab = std::fs::read_to_string("/etc/mnttab").ctx(|| "reading /etc/mnttab".into())?;
        let left = values::mounts_under(&mnttab, &zp);
        if !left.is_empty() {
            return Err(Error::Busy(format!(
                "zone {zone}: {} is still mounted; not removing {}",
                left[0].display(),
                zp.display()
            )));
        }
        match std::fs::remove_dir_all(&zp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing {}", zp.display())),
        }
    }
}
