//! What QEMU's process does between `fork` and `exec` to enter its zone, in this order:
//!
//! 1. join the VM's cgroup (it is charged from its first page);
//! 2. new mount, UTS and IPC namespaces (its PID namespace was made by the supervisor, whose
//!    next child is PID 1 of it); mounts private, so nothing leaks back to the host;
//! 3. a root of its own on a small tmpfs: read-only binds of `/usr`, `/etc` and the `/bin`,
//!    `/lib` links; a `/dev` with only `null`, `zero`, `full`, `random`, `urandom` and the
//!    devices it is given (`/dev/kvm`, a zvol's node); `/proc` of its PID namespace; `/tmp`;
//!    its run directory and its disk read-write, the image its disk is a clone of read-only,
//!    each at the same path as on the host (so no argument changes). Not the store, not the
//!    other VMs, and no directory of the host it could write: its sockets are descriptors;
//! 4. `pivot_root` into it, the old root detached;
//! 5. its own host name; rlimits (no core files, a bounded number of files);
//! 6. every capability out of its bounding set; no supplementary groups but those given; its
//!    unprivileged uid and gid (which clears the permitted and effective sets);
//!    `no_new_privs`; the parent-death signal (cleared by the uid change, so set after it).
//!
//! Everything is computed beforehand ([`Jail::plan`]); the child only makes system calls
//! (no allocation), as is required after `fork`.

use crate::error::{Error, IoContext, Result};
use crate::zone::ZoneSpec;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

enum Op {
    Mkdir(CString),
    Touch(CString),
    Symlink(CString, CString),
    Bind {
        src: CString,
        dst: CString,
        readonly: bool,
    },
    Tmpfs(CString, CString),
    Proc(CString),
}

/// A planned jail, ready to be entered by QEMU's child process.
pub struct Jail {
    root: CString,
    old_root: CString,
    cgroup_procs: Vec<CString>,
    ops: Vec<Op>,
    hostname: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    last_cap: libc::c_int,
    cwd: CString,
    error_file: CString,
}

impl std::fmt::Debug for Jail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jail")
            .field("root", &self.root)
            .field("uid", &self.uid)
            .field("steps", &self.ops.len())
            .finish()
    }
}

fn cs(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("{} contains a NUL byte", p.display())))
}

/// The directories between `/` and `p` (exclusive of `/`, inclusive of `p`).
fn chain(p: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = p.ancestors().map(Path::to_owned).collect();
    out.reverse();
    out.retain(|a| a.as_os_str() != "/");
    out
}

/// Where the failing step of entering a jail is written (read by the supervisor).
pub const ERROR_FILE: &str = "zone-error";

impl Jail {
    /// Plan the jail of `spec` whose root is `root` (an empty directory the supervisor made).
    pub fn plan(spec: &ZoneSpec, root: &Path, cgroup_procs: &[PathBuf]) -> Result<Jail> {
        let mut ops = Vec::new();
        let mut made: BTreeSet<PathBuf> = BTreeSet::new();
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let mkdirs = |ops: &mut Vec<Op>, made: &mut BTreeSet<PathBuf>, p: &Path| -> Result<()> {
            for d in chain(p) {
                if made.insert(d.clone()) {
                    ops.push(Op::Mkdir(cs(&inside(&d))?));
                }
            }
            Ok(())
        };
        ops.push(Op::Tmpfs(
            cs(root)?,
            CString::new("mode=0755,size=16m").unwrap(),
        ));
        for d in [
            "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
        ] {
            let p = Path::new(d);
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(p).ctx(|| format!("reading link {d}"))?;
                    ops.push(Op::Symlink(cs(&target)?, cs(&inside(p))?));
                    made.insert(p.to_owned());
                }
                Ok(m) if m.is_dir() => {
                    mkdirs(&mut ops, &mut made, p)?;
                    ops.push(Op::Bind {
                        src: cs(p)?,
                        dst: cs(&inside(p))?,
                        readonly: true,
                    });
                }
                _ => {}
            }
        }
        mkdirs(&mut ops, &mut made, Path::new("/dev"))?;
        ops.push(Op::Tmpfs(
            cs(&inside(Path::new("/dev")))?,
            CString::new("mode=0755,size=64k").unwrap(),
        ));
        let mut nodes: Vec<PathBuf> = ["null", "zero", "full", "random", "urandom"]
            .iter()
            .map(|n| Path::new("/dev").join(n))
            .collect();
        nodes.extend(spec.devices.iter().cloned());
        for n in &nodes {
            if let Some(parent) = n.parent() {
                mkdirs(&mut ops, &mut made, parent)?;
            }
            ops.push(Op::Touch(cs(&inside(n))?));
            ops.push(Op::Bind {
                src: cs(n)?,
                dst: cs(&inside(n))?,
                readonly: false,
            });
        }
        for (d, opts) in [
            ("/tmp", "mode=1777,size=64m"),
            ("/dev/shm", "mode=1777,size=64m"),
        ] {
            mkdirs(&mut ops, &mut made, Path::new(d))?;
            ops.push(Op::Tmpfs(
                cs(&inside(Path::new(d)))?,
                CString::new(opts).unwrap(),
            ));
        }
        mkdirs(&mut ops, &mut made, Path::new("/proc"))?;
        ops.push(Op::Proc(cs(&inside(Path::new("/proc")))?));
        for (paths, readonly) in [(&spec.readable, true), (&spec.writable, false)] {
            for p in paths {
                let is_dir = std::fs::metadata(p)
                    .ctx(|| format!("stat {}", p.display()))?
                    .is_dir();
                if is_dir {
                    mkdirs(&mut ops, &mut made, p)?;
                } else {
                    if let Some(parent) = p.parent() {
                        mkdirs(&mut ops, &mut made, parent)?;
                    }
                    ops.push(Op::Touch(cs(&inside(p))?));
                }
                ops.push(Op::Bind {
                    src: cs(p)?,
                    dst: cs(&inside(p))?,
                    readonly,
                });
            }
        }
        let old = root.join(".old");
        ops.push(Op::Mkdir(cs(&old)?));
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        Ok(Jail {
            root: cs(root)?,
            old_root: cs(&old)?,
            cgroup_procs: cgroup_procs.iter().map(|p| cs(p)).collect::<Result<_>>()?,
            ops,
            hostname: CString::new(spec.hostname.as_bytes())
                .map_err(|_| Error::invalid("host name contains a NUL byte"))?,
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            last_cap,
            // QEMU's working directory is the zone's own /tmp: it owns no directory outside.
            cwd: CString::new("/tmp").expect("no NUL"),
            error_file: cs(&spec.run_dir.join(ERROR_FILE))?,
        })
    }

    /// Enter the jail: called in QEMU's child process after `fork`, before `exec`. Only
    /// system calls; on failure the step's name is written to the run directory's
    /// [`ERROR_FILE`] and its errno returned.
    pub fn enter(&self) -> std::io::Result<()> {
        let step = |name: &[u8], ok: bool| -> std::io::Result<()> {
            if ok {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            // SAFETY: async-signal-safe calls on NUL-terminated strings we own; failures to
            // report are ignored (the errno is returned anyway).
            unsafe {
                let fd = libc::open(
                    self.error_file.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_TRUNC
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::write(fd, name.as_ptr().cast(), name.len());
                    libc::close(fd);
                }
            }
            Err(e)
        };
        let mut buf = [0u8; 24];
        // SAFETY: getpid has no preconditions.
        let pid = itoa(unsafe { libc::getpid() } as u64, &mut buf);
        for f in &self.cgroup_procs {
            // SAFETY: open/write/close on a NUL-terminated path we own and a stack buffer.
            let ok = unsafe {
                let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                let ok = fd >= 0
                    && libc::write(fd, pid.as_ptr().cast(), pid.len()) == pid.len() as isize;
                if fd >= 0 {
                    libc::close(fd);
                }
                ok
            };
            step(b"joining the VM's cgroup", ok)?;
        }
        // SAFETY: unshare and mount with constant flags and NULL or owned C strings.
        let ok =
            unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) }
                == 0;
        step(b"unshare(mount, uts, ipc)", ok)?;
        // SAFETY: see above.
        let ok = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        } == 0;
        step(b"making mounts private", ok)?;
        for op in &self.ops {
            // SAFETY: every call takes NUL-terminated strings owned by `self` (alive for the
            // call) and constant flags.
            let ok = unsafe {
                match op {
                    Op::Mkdir(p) => {
                        libc::mkdir(p.as_ptr(), 0o755) == 0
                            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST)
                    }
                    Op::Touch(p) => {
                        let fd = libc::open(
                            p.as_ptr(),
                            libc::O_RDONLY | libc::O_CREAT | libc::O_CLOEXEC,
                            0o644,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd >= 0
                    }
                    Op::Symlink(target, link) => libc::symlink(target.as_ptr(), link.as_ptr()) == 0,
                    Op::Tmpfs(dst, opts) => {
                        libc::mount(
                            c"tmpfs".as_ptr(),
                            dst.as_ptr(),
                            c"tmpfs".as_ptr(),
                            libc::MS_NOSUID,
                            opts.as_ptr().cast(),
                        ) == 0
                    }
                    Op::Proc(dst) => {
                        libc::mount(
                            c"proc".as_ptr(),
                            dst.as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            std::ptr::null(),
                        ) == 0
                    }
                    Op::Bind { src, dst, readonly } => {
                        libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ) == 0
                            && (!readonly
                                || libc::mount(
                                    std::ptr::null(),
                                    dst.as_ptr(),
                                    std::ptr::null(),
                                    libc::MS_BIND
                                        | libc::MS_REMOUNT
                                        | libc::MS_RDONLY
                                        | libc::MS_NOSUID,
                                    std::ptr::null(),
                                ) == 0)
                    }
                }
            };
            step(
                match op {
                    Op::Mkdir(_) => b"creating a directory in the zone's root" as &[u8],
                    Op::Touch(_) => b"creating a mount point in the zone's root",
                    Op::Symlink(..) => b"creating a link in the zone's root",
                    Op::Tmpfs(..) => b"mounting a tmpfs in the zone",
                    Op::Proc(_) => b"mounting /proc in the zone",
                    Op::Bind { .. } => b"bind-mounting a path into the zone",
                },
                ok,
            )?;
        }
        // SAFETY: pivot_root through syscall() with two owned C strings; then chdir, umount2
        // and rmdir on constant or owned strings.
        let ok = unsafe {
            libc::syscall(
                libc::SYS_pivot_root,
                self.root.as_ptr(),
                self.old_root.as_ptr(),
            )
        } == 0;
        step(b"pivot_root into the zone", ok)?;
        // SAFETY: see above.
        let ok = unsafe {
            libc::chdir(c"/".as_ptr()) == 0
                && libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH) == 0
                && libc::rmdir(c"/.old".as_ptr()) == 0
        };
        step(b"detaching the host's root", ok)?;
        // SAFETY: sethostname with an owned buffer and its length; setrlimit with stack structs.
        let ok = unsafe {
            libc::sethostname(self.hostname.as_ptr(), self.hostname.as_bytes().len()) == 0
                && libc::setrlimit(
                    libc::RLIMIT_CORE,
                    &libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    },
                ) == 0
                && libc::setrlimit(
                    libc::RLIMIT_NOFILE,
                    &libc::rlimit {
                        rlim_cur: 4096,
                        rlim_max: 4096,
                    },
                ) == 0
        };
        step(b"setting the host name and rlimits", ok)?;
        for cap in 0..=self.last_cap {
            // SAFETY: prctl with integer arguments.
            let ok = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }
                == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL);
            step(b"dropping capabilities", ok)?;
        }
        // SAFETY: setgroups with a slice we own and its length; set*id with integers.
        let ok = unsafe {
            libc::setgroups(self.groups.len(), self.groups.as_ptr()) == 0
                && libc::setresgid(self.gid, self.gid, self.gid) == 0
                && libc::setresuid(self.uid, self.uid, self.uid) == 0
        };
        step(b"becoming the VM's user", ok)?;
        // SAFETY: prctl with integer arguments; chdir to an owned path.
        let ok = unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0
                && libc::chdir(self.cwd.as_ptr()) == 0
        };
        step(b"no_new_privs, parent-death signal, working directory", ok)
    }
}

/// Decimal digits of `n` in `buf`, without allocating.
fn itoa(mut n: u64, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_chains() {
        let mut b = [0u8; 24];
        assert_eq!(itoa(0, &mut b), b"0");
        assert_eq!(itoa(1234567, &mut b), b"1234567");
        assert_eq!(itoa(u64::MAX, &mut b), b"18446744073709551615");
        assert_eq!(
            chain(Path::new("/var/lib/x")),
            [
                Path::new("/var"),
                Path::new("/var/lib"),
                Path::new("/var/lib/x")
            ]
        );
    }
}
