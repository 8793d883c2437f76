//! A running VM's files (`<catalog>/run/<uuid>/`) and whether its processes live.
//!
//! Liveness is never judged by a pid alone, which the kernel reuses:
//! - the supervisor holds an exclusive `flock` on `supervisor.lock` for its whole life; the
//!   kernel drops it when the process dies, however it dies;
//! - QEMU is identified by its pid *and* its start time (field 22 of `/proc/PID/stat`, in
//!   clock ticks since boot), which a later process with the same pid cannot share.
//!
//! ```text
//! run/<uuid>/lock             lifecycle lock: one state transition of this VM at a time
//! run/<uuid>/supervisor.lock  held by the supervisor while it lives
//! run/<uuid>/launch.json      what the supervisor starts (written by `start`)
//! run/<uuid>/run.json         the current run's pids (written by the supervisor)
//! run/<uuid>/serial.log(.1)   the serial console, rotated at a size bound
//! run/<uuid>/qemu.log         QEMU's stderr, bounded
//! run/<uuid>/supervisor.log   the supervisor's own messages
//! run/<uuid>/root/            the zone's root (a mount point in QEMU's namespace only)
//! run/<uuid>/qemu/            QEMU's own directory, owned by its uid, the only one it writes:
//!   qmp.sock                  QMP for vmpool calls (one client at a time, per QEMU)
//!   events.sock               a second QMP monitor, the supervisor's, for events
//!   spice.sock                SPICE (unless the store listens on TCP)
//!   uefi-vars.fd              the VM's UEFI variables
//! ```
//!
//! Everything vmpool trusts (locks, pids, logs, what to launch) is root's, in a directory QEMU
//! neither owns nor sees: a compromised QEMU cannot rewrite what vmpool acts on.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Longest path of a unix socket (`sun_path` holds 108 bytes with its NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// The run directory of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// The run directory of VM `vm` in the store whose catalog is `catalog`.
    pub fn new(catalog: &Path, vm: &Uuid) -> RunDir {
        RunDir {
            dir: catalog.join("run").join(vm.to_string()),
        }
    }

    /// The run directory at `dir` (the supervisor is given it).
    pub fn at(dir: &Path) -> RunDir {
        RunDir {
            dir: dir.to_owned(),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Lifecycle lock file.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// The supervisor's liveness lock.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }
    /// The launch description.
    pub fn launch(&self) -> PathBuf {
        self.dir.join("launch.json")
    }
    /// QEMU's own directory (the only one it may write).
    pub fn qemu_dir(&self) -> PathBuf {
        self.dir.join("qemu")
    }
    /// vmpool's QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.qemu_dir().join("qmp.sock")
    }
    /// The supervisor's QMP event socket.
    pub fn events(&self) -> PathBuf {
        self.qemu_dir().join("events.sock")
    }
    /// The SPICE socket.
    pub fn spice(&self) -> PathBuf {
        self.qemu_dir().join("spice.sock")
    }
    /// The serial console log (newest part).
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    /// The serial console log's previous part.
    pub fn serial_log_old(&self) -> PathBuf {
        self.dir.join("serial.log.1")
    }
    /// QEMU's stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// The supervisor's messages.
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// The UEFI variable store of the VM.
    pub fn uefi_vars(&self) -> PathBuf {
        self.qemu_dir().join("uefi-vars.fd")
    }

    /// Create the directory (and `run/`). Its locks work at any path length; only a start
    /// needs [`RunDir::check_sockets`].
    pub fn ensure(&self) -> Result<()> {
        fsutil::mkdirs(&self.qemu_dir())
    }

    /// Check that the run's sockets can be bound: a unix socket path holds at most
    /// [`SOCKET_PATH_MAX`] bytes, which a store at a long path exceeds. Only starting QEMU
    /// needs this; everything else (locks, stop, delete, pools of disk spares) works there.
    pub fn check_sockets(&self) -> Result<()> {
        let longest = self.events();
        if longest.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(Error::Unsupported(format!(
                "the store's path is too long for unix sockets ({} is {} bytes; at most {SOCKET_PATH_MAX}); move the store to a shorter path",
                longest.display(),
                longest.as_os_str().len()
            )));
        }
        Ok(())
    }

    /// Remove the files of a run that ended (sockets, launch), keeping the logs.
    pub fn clean_after_run(&self) {
        for p in [self.qmp(), self.events(), self.spice(), self.launch()] {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Remove everything (the VM is being deleted).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing {}", self.dir.display())),
        }
    }
}

/// Start time of process `pid` in clock ticks since boot (`/proc/PID/stat` field 22), or
/// `None` if there is no such process.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts at field 3 (state); field 22 is the 20th from there.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `ticks` still runs (and is not a zombie).
pub fn alive(pid: u32, ticks: u64) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut f = stat[close + 1..].split_whitespace();
    let state = f.next().unwrap_or("");
    let start = f.nth(18).and_then(|s| s.parse::<u64>().ok());
    start == Some(ticks) && state != "Z" && state != "X"
}

/// Whether someone holds an exclusive `flock` on `path` (without waiting). A missing file is
/// not held.
pub fn lock_held(path: &Path) -> Result<bool> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
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
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))?;
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
