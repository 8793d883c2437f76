//! A running VM's files and whether its processes live.
//!
//! Liveness is never judged by a pid alone, which the kernel reuses:
//! - the supervisor holds an exclusive `flock` on `supervisor.lock` for its whole life; the
//!   kernel drops it when the process dies, however it dies;
//! - QEMU is identified by its pid *and* its start time (field 22 of `/proc/PID/stat`, in
//!   clock ticks since boot), which a later process with the same pid cannot share.
//!
//! ```text
//! <catalog>/run/<uuid>/       mode 0700, root's (the store's owner's)
//!   lock                      lifecycle lock: one state transition of this VM at a time
//!   supervisor.lock           held by the supervisor while it lives
//!   launch.json               what the supervisor starts (written by `start`)       0600
//!   run.json                  the current run's pids (written by the supervisor)    0600
//!   serial.log(.1)            the serial console, rotated at a size bound            0600
//!   qemu.log                  QEMU's stderr, bounded                                 0600
//!   supervisor.log            the supervisor's own messages                          0600
//!   uefi-vars.fd              the VM's UEFI variables (the one file here QEMU's uid owns)
//!   seed.img                  the NoCloud seed, when the image asks for one; QEMU gets a
//!                             read-only descriptor of it                             0600
//!   root/                     the zone's root (a mount point in QEMU's namespace only)
//! <runtime_dir>/<store id>/<uuid>/   mode 0700, root's, every component trusted (safe_fs)
//!   qmp.sock                  QMP for vmpool calls, bound by the supervisor, handed to QEMU
//!   spice.sock                SPICE (unless the store listens on TCP): the supervisor accepts
//!                             and hands each connection to QEMU (QMP `add_client`)
//! ```
//!
//! QEMU owns no directory at all: it gets its sockets as descriptors, and writes only its
//! disk and its UEFI variables, files in directories only root writes. So there is no name a
//! compromised QEMU could turn into a link for a root-run call to follow. Older versions of
//! vmpool gave QEMU `run/<uuid>/qemu/`; a start removes it (by descriptor, never following
//! what a compromised QEMU may have left there).

use crate::error::{Error, IoContext, Result};
use crate::safe_fs::{Dir, TrustRule};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Longest path of a unix socket (`sun_path` holds 108 bytes with its NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// Names in a VM's run directory.
pub mod names {
    /// The lifecycle lock.
    pub const LOCK: &str = "lock";
    /// The supervisor's liveness lock.
    pub const SUPERVISOR_LOCK: &str = "supervisor.lock";
    /// The launch description.
    pub const LAUNCH: &str = "launch.json";
    /// The serial console log.
    pub const SERIAL_LOG: &str = "serial.log";
    /// Its previous part.
    pub const SERIAL_LOG_OLD: &str = "serial.log.1";
    /// QEMU's stderr.
    pub const QEMU_LOG: &str = "qemu.log";
    /// The supervisor's messages.
    pub const SUPERVISOR_LOG: &str = "supervisor.log";
    /// The VM's UEFI variables.
    pub const UEFI_VARS: &str = "uefi-vars.fd";
    /// QEMU's directory in versions before the sockets moved out (removed at start).
    pub const LEGACY_QEMU_DIR: &str = "qemu";
    /// vmpool's QMP socket (in the sockets directory).
    pub const QMP_SOCKET: &str = "qmp.sock";
    /// The SPICE socket (in the sockets directory).
    pub const SPICE_SOCKET: &str = "spice.sock";
    /// vmpool's guest agent socket (in the sockets directory; QEMU accepts on it and
    /// relays to the guest's `org.qemu.guest_agent.0` port).
    pub const AGENT_SOCKET: &str = "agent.sock";
    /// The VM's NoCloud seed (`crate::vm::seed`), handed to QEMU as a read-only descriptor.
    pub const SEED: &str = "seed.img";
}

/// Mode of every file vmpool writes about a run: logs may hold what the guest printed, and
/// the launch file the VM's command line.
pub const PRIVATE: u32 = 0o600;

/// The run directory of one VM, and the directory of its sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    dir: PathBuf,
    sockets: PathBuf,
}

impl RunDir {
    /// The run directory of VM `vm` in the store whose catalog is `catalog`, its sockets
    /// below `sockets_root` (`<runtime_dir>/<store id>`).
    pub fn new(catalog: &Path, sockets_root: &Path, vm: &Uuid) -> RunDir {
        RunDir {
            dir: catalog.join("run").join(vm.to_string()),
            sockets: sockets_root.join(vm.to_string()),
        }
    }

    /// The run directory at `dir` with sockets in `sockets` (the supervisor is given them).
    pub fn at(dir: &Path, sockets: &Path) -> RunDir {
        RunDir {
            dir: dir.to_owned(),
            sockets: sockets.to_owned(),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Lifecycle lock file.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(names::LOCK)
    }
    /// The supervisor's liveness lock.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.dir.join(names::SUPERVISOR_LOCK)
    }
    /// The launch description.
    pub fn launch(&self) -> PathBuf {
        self.dir.join(names::LAUNCH)
    }
    /// The directory of the VM's sockets.
    pub fn sockets(&self) -> &Path {
        &self.sockets
    }
    /// vmpool's QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.sockets.join(names::QMP_SOCKET)
    }
    /// The SPICE socket.
    pub fn spice(&self) -> PathBuf {
        self.sockets.join(names::SPICE_SOCKET)
    }
    /// The serial console log (newest part).
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join(names::SERIAL_LOG)
    }
    /// The supervisor's messages.
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join(names::SUPERVISOR_LOG)
    }
    /// The UEFI variable store of the VM.
    pub fn uefi_vars(&self) -> PathBuf {
        self.dir.join(names::UEFI_VARS)
    }

    /// Create the run directory (mode 0700) if missing. Its locks work at any path length.
    pub fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let run = self.dir.parent().unwrap_or(&self.dir);
        for d in [run, self.dir.as_path()] {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    crate::fsutil::mkdirs(d)?;
                }
                Err(e) => return Err(e).ctx(|| format!("creating directory {}", d.display())),
            }
            // Made by an older version with 0755: logs may hold what the guest printed.
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .ctx(|| format!("chmod {}", d.display()))?;
        }
        Ok(())
    }

    /// The run directory, opened (its last component never a link).
    pub fn open(&self) -> Result<Dir> {
        self.ensure()?;
        Dir::open_path(&self.dir)
    }

    /// The sockets directory, made afresh (with its trusted path) for a new run.
    pub fn fresh_sockets(&self) -> Result<Dir> {
        let rule = TrustRule::current();
        let parent = self.sockets.parent().unwrap_or(&self.sockets);
        let root = Dir::trusted(parent, rule, Some(0o700))?;
        let name = self.sockets_name();
        root.remove(&name)?;
        Dir::trusted(&self.sockets, rule, Some(0o700))
    }

    /// The sockets directory of the current run, if there is one.
    pub fn open_sockets(&self) -> Result<Option<Dir>> {
        match Dir::trusted(&self.sockets, TrustRule::current(), None) {
            Ok(d) => Ok(Some(d)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn sockets_name(&self) -> String {
        self.sockets
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Check that the run's sockets can be reached by path: clients (remote-viewer, a
    /// console proxy) connect to `spice.sock`, whose path holds at most [`SOCKET_PATH_MAX`]
    /// bytes. Only a long `runtime_dir` can exceed it; the catalog's path does not matter.
    pub fn check_sockets(&self) -> Result<()> {
        let longest = self.spice();
        if longest.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(Error::Unsupported(format!(
                "the store's runtime_dir is too long for unix sockets ({} is {} bytes; at most {SOCKET_PATH_MAX}); choose a shorter runtime_dir",
                longest.display(),
                longest.as_os_str().len()
            )));
        }
        Ok(())
    }

    /// Remove the files of a run that ended (sockets, launch, intent, pids), keeping the logs.
    pub fn clean_after_run(&self) {
        if let Ok(d) = self.open() {
            for name in [
                names::LAUNCH,
                crate::vm::supervisor::INTENT,
                crate::vm::supervisor::RUN_INFO,
                crate::vm::supervisor::clients::CLIENTS,
                crate::vm::supervisor::clients::SEEN,
            ] {
                let _ = d.remove(name);
            }
        }
        if let Some(parent) = self.sockets.parent() {
            if let Ok(root) = Dir::trusted(parent, TrustRule::current(), None) {
                let _ = root.remove(&self.sockets_name());
            }
        }
    }

    /// Remove everything (the VM is being deleted).
    pub fn remove(&self) -> Result<()> {
        self.clean_after_run();
        let Some(parent) = self.dir.parent() else {
            return Ok(());
        };
        let parent = match Dir::open_path(parent) {
            Ok(d) => d,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        parent.remove(&name).map(drop)
    }
}

/// The fields of a `/proc/PID/stat` line after the command name, from field 3 (the state)
/// on. The name (field 2) is the process's own to choose: any bytes, valid UTF-8 or not,
/// spaces and parentheses included; it ends at the last `)`, and what follows is the kernel's
/// ASCII.
pub(crate) fn stat_fields(raw: &[u8]) -> Option<Vec<&str>> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&raw[close + 1..]).ok()?;
    Some(rest.split_whitespace().collect())
}

/// Start time of process `pid` in clock ticks since boot (`/proc/PID/stat` field 22), or
/// `None` if there is no such process.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 is the 20th from field 3.
    stat_fields(&stat)?.get(19)?.parse().ok()
}

/// Whether the process `pid` that started at `ticks` still runs (and is not a zombie).
pub fn alive(pid: u32, ticks: u64) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(f) = stat_fields(&stat) else {
        return false;
    };
    let state = f.first().copied().unwrap_or("");
    let start = f.get(19).and_then(|s| s.parse::<u64>().ok());
    start == Some(ticks) && state != "Z" && state != "X"
}

/// Whether someone holds an exclusive `flock` on `path` (without waiting). A missing file is
/// not held.
pub fn lock_held(path: &Path) -> Result<bool> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        // A link planted under a lock's name is no lock anyone holds.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e).ctx(|| format!("opening {}", path.display())),
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => Ok(false),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, e)) => Err(Error::Io {
            context: format!("testing the lock {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Take the exclusive lock at `path` (created if missing) without waiting; `None` when it is
/// held by another process (or another open file description of ours).
pub fn try_lock(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>> {
    let f = crate::lock::open_lock_file(path)?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::Io {
            context: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Facts about a VM's current run, kept in its record while QEMU runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunInfo {
    /// The supervisor's pid (informational; liveness is its lock).
    pub supervisor_pid: u32,
    /// QEMU's pid.
    pub qemu_pid: u32,
    /// QEMU's start time in clock ticks since boot, to recognise it.
    pub qemu_start: u64,
    /// When it was started, RFC 3339 UTC.
    pub started_at: String,
    /// The accelerator in use.
    pub accel: crate::vm::Accel,
    /// Where SPICE listens.
    pub spice: crate::vm::config::SpiceAddr,
}

impl RunInfo {
    /// Whole seconds since the run started (`None` if `started_at` does not parse or lies
    /// ahead).
    pub fn uptime_s(&self) -> Option<u64> {
        humantime::parse_rfc3339(&self.started_at)
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map(|d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_recognised() {
        let me = std::process::id();
        let t = start_ticks(me).unwrap();
        assert!(alive(me, t));
        assert!(!alive(me, t + 1), "another start time is another process");
        assert!(!alive(0, t));
        assert!(start_ticks(u32::MAX).is_none());
    }

    #[test]
    fn a_command_name_of_any_bytes_is_skipped() {
        // QEMU names itself: bytes that are not UTF-8, and what looks like more fields.
        let mut line = b"42 (q\xff\xfe) 1 2 (x".to_vec();
        line.extend_from_slice(b") S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 777 1000");
        let f = stat_fields(&line).unwrap();
        assert_eq!((f[0], f[19]), ("S", "777"));
        assert!(stat_fields(b"no parenthesis").is_none());
        assert!(stat_fields(b"1 (a) \xff").is_none());
    }

    #[test]
    fn locks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        assert!(!lock_held(&p).unwrap());
        let held = try_lock(&p).unwrap().unwrap();
        assert!(lock_held(&p).unwrap());
        assert!(try_lock(&p).unwrap().is_none());
        drop(held);
        assert!(!lock_held(&p).unwrap());
    }
}
