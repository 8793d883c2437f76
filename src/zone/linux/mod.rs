//! The Linux zone of a VM: a cgroup with its limits ([`cgroup`]), a PID namespace of its own
//! (made by the supervisor, whose one child QEMU is its PID 1), and the jail QEMU's process
//! enters before `exec` ([`jail`]): mount, UTS and IPC namespaces, a root showing only what
//! it needs, an unprivileged uid, no capabilities, `no_new_privs`, rlimits. QEMU's own seccomp
//! filter (`-sandbox`) is on its command line. Needs root (the supervisor keeps it; QEMU never
//! has it).

pub mod cgroup;
pub mod jail;

use super::{Booted, Zone, ZoneSpec};
use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

/// The Linux implementation of [`Zone`].
#[derive(Debug, Default)]
pub struct LinuxZone;

fn cgroup_of(spec: &ZoneSpec) -> Result<cgroup::Cgroup> {
    Ok(cgroup::Cgroup::new(cgroup::detect()?, &spec.vm))
}

/// The name of the jail's root directory in the run directory.
const ROOT: &str = "root";

/// The jail's root directory (a mount point in QEMU's mount namespace only).
pub fn root_dir(spec: &ZoneSpec) -> PathBuf {
    spec.run_dir.join(ROOT)
}

/// (major, minor) of the block device a disk lives on (the device itself for a zvol).
fn disk_device(p: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(p).ok()?;
    let dev = if m.file_type().is_block_device() {
        m.rdev()
    } else {
        m.dev()
    };
    Some((libc::major(dev), libc::minor(dev)))
}

impl Zone for LinuxZone {
    fn create(&self, spec: &ZoneSpec) -> Result<()> {
        let cg = cgroup_of(spec)?;
        let disk = spec
            .writable
            .iter()
            .chain(&spec.devices)
            .find(|p| !p.is_dir())
            .and_then(|p| disk_device(p));
        cg.create(&spec.limits, disk)?;
        // QEMU owns the files it writes; what it only reads stays as it is (images are
        // world-readable, 0444). Each is changed through a descriptor of what was checked to
        // be a file (or a zvol's node), never by following a name.
        use crate::safe_fs::{chown_path, Kind};
        for p in &spec.writable {
            chown_path(p, spec.uid, spec.gid, Kind::File)?;
        }
        for p in spec.devices.iter().filter(|p| is_zvol_or_tap(p)) {
            chown_path(p, spec.uid, spec.gid, Kind::Block)?;
        }
        // The zone's root is a mount point in QEMU's namespace only; whatever else holds the
        // name in the run directory is removed, not followed.
        crate::safe_fs::Dir::open_path(&spec.run_dir)?.make_dir(ROOT, 0o755)
    }

    fn boot(
        &self,
        spec: &ZoneSpec,
        program: &Path,
        args: &[String],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<Booted> {
        let cg = cgroup_of(spec)?;
        let jail = jail::Jail::plan(spec, &root_dir(spec), &cg.procs_files())?;
        let _ = std::fs::remove_file(spec.run_dir.join(jail::ERROR_FILE));
        // QEMU is PID 1 of a namespace of its own: it sees no other process, and no other
        // VM sees it.
        clone_into(&jail, program, args, &[("PATH", "/usr/bin:/bin")], fds).map_err(|e| {
            let step =
                std::fs::read_to_string(spec.run_dir.join(jail::ERROR_FILE)).unwrap_or_default();
            Error::Hypervisor(if step.is_empty() {
                format!("cannot start QEMU in the VM's zone: {e}")
            } else {
                format!("cannot start QEMU in the VM's zone: {step}: {e}")
            })
        })
    }

    fn oom_killed(&self, spec: &ZoneSpec) -> bool {
        cgroup_of(spec).is_ok_and(|c| c.oom_kills() > 0)
    }

    fn usage(&self, vm: &uuid::Uuid, pid: u32) -> Option<super::ZoneUsage> {
        cgroup::Cgroup::new(cgroup::detect().ok()?, vm).usage(pid)
    }

    fn destroy(&self, spec: &ZoneSpec) -> Result<()> {
        cgroup_of(spec)?.remove()?;
        match crate::safe_fs::Dir::open_path(&spec.run_dir) {
            Ok(run) => run.remove(ROOT).map(drop),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Device nodes that belong to one VM (a zvol, a tap device) and so are given to its uid;
/// shared ones (`/dev/kvm`) are reached through a group instead.
fn is_zvol_or_tap(p: &Path) -> bool {
    let name = p.to_string_lossy();
    name.starts_with("/dev/zd") || name.starts_with("/dev/zvol/") || name.starts_with("/dev/tap")
}

/// Start `program` with `args` and `env` as PID 1 of a new PID namespace (`clone` with
/// `CLONE_NEWPID`, so the caller keeps its own namespace and may go on making threads), the
/// child entering `jail` before `execve`. Its stdin is /dev/null; stdout and stderr are pipes
/// to the caller; `fds` become its descriptors 3, 4, ... A failure before `exec` is reported
/// with its errno (and the jail step in the run directory's `zone-error`).
pub fn clone_into(
    jail: &jail::Jail,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<Booted> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| Error::invalid("an argument of QEMU contains a NUL byte"))
    };
    let prog = c(program.as_os_str().as_bytes())?;
    let mut argv_c: Vec<CString> = vec![prog.clone()];
    for a in args {
        argv_c.push(c(a.as_bytes())?);
    }
    let envp_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
        .collect::<Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_c.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe2".into());
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .ctx(|| "opening /dev/null".into())?;
    let (null_fd, out_fd, err_fd, status_fd) = (
        null.as_raw_fd(),
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
        status_w.as_raw_fd(),
    );
    let passed = crate::zone::PassedFds::new(fds)?;
    let mut stack = vec![0u8; 1 << 20];
    let child = move || -> isize {
        // Runs in the new process, before exec: only system calls on data made above.
        let fail = |errno: i32| -> isize {
            let b = errno.to_ne_bytes();
            // SAFETY: write of a stack buffer to a pipe we hold, then _exit.
            unsafe {
                libc::write(status_fd, b.as_ptr().cast(), b.len());
                libc::_exit(127)
            }
        };
        // SAFETY: dup2 on descriptors valid in this process (inherited from the caller).
        let ok = unsafe {
            libc::dup2(null_fd, 0) >= 0 && libc::dup2(out_fd, 1) >= 0 && libc::dup2(err_fd, 2) >= 0
        };
        if !ok || !passed.install() {
            return fail(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            );
        }
        if let Err(e) = jail.enter() {
            return fail(e.raw_os_error().unwrap_or(libc::EIO));
        }
        // SAFETY: NULL-terminated arrays of pointers to C strings that outlive the call.
        unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
        fail(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    };
    let flags = nix::sched::CloneFlags::CLONE_NEWPID;
    // SAFETY: the child runs `child` on its own stack, which makes only system calls; the
    // caller's memory it reads (argv, envp, the jail plan, the descriptors) stays alive and
    // unchanged until the child has exec'd or exited (we wait on the status pipe below).
    let pid = unsafe { nix::sched::clone(Box::new(child), &mut stack, flags, Some(libc::SIGCHLD)) }
        .ctx(|| "clone(CLONE_NEWPID) for the VM's zone".into())?;
    drop((out_w, err_w, status_w));
    // The status pipe closes on exec (CLOEXEC) with nothing written, or carries an errno.
    let mut st = std::fs::File::from(status_r);
    let mut b = [0u8; 4];
    let n = std::io::Read::read(&mut st, &mut b).unwrap_or(0);
    drop(stack);
    // SAFETY: the descriptors are ours (pipe2 above) and handed over once.
    let (stdout, stderr) = unsafe {
        (
            std::fs::File::from_raw_fd(out_r.into_raw_fd()),
            std::fs::File::from_raw_fd(err_r.into_raw_fd()),
        )
    };
    if n == 4 {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(Error::Io {
            context: "starting QEMU in the VM's zone".into(),
            source: std::io::Error::from_raw_os_error(i32::from_ne_bytes(b)),
        });
    }
    Ok(Booted {
        pid: pid.as_raw() as u32,
        stdout,
        stderr,
    })
}
