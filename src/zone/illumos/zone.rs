//! Booting and halting a VM's zone through zoneadmd, and waiting for its QEMU (see the
//! module above for what a zone is here).

use super::config::{cstring, destroy_config, locked, set_state, state, Handle};
use super::{sys, values};
use crate::error::{Error, IoContext, Result};
use crate::zone::{Booted, Zone, ZoneSpec};
use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use values::{Mount, Platform};

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

    // A zone's usage is in its kstats (`zones:<id>:<name>` and `memory_cap`), read with
    // libkstat; not built: nothing here can run it. The process's own figures still count.
    fn usage(&self, _vm: &uuid::Uuid, _pid: u32) -> Option<crate::zone::ZoneUsage> {
        None
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
