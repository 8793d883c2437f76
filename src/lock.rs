//! Advisory locks between the processes that share a store (Puma workers, CLI runs, scripts).
//!
//! `flock(2)` locks belong to the open file description, so they are released by the kernel
//! when a process dies: a lock that can be taken proves its previous holder is gone. That is
//! what crash recovery relies on.

use crate::error::{Error, IoContext, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// An in-process mutex's guard, also when a thread panicked holding it: every data these
/// mutexes guard (reports, queues, caches) stays whole between statements, so it is used as it
/// is instead of spreading the panic.
pub(crate) fn guard<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared (many readers / creators) or exclusive (one destroyer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any number of holders at once.
    Shared,
    /// One holder, and no shared ones.
    Exclusive,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Held {
    _lock: Flock<File>,
    /// The lock file.
    pub path: PathBuf,
}

/// Open (creating) the lock file at `path`.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    // A lock file is ours: a link, a FIFO or a device planted under its name is removed (never
    // followed or opened for what it is) and a plain file made instead.
    for _ in 0..2 {
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let f = match rw {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
                std::fs::remove_file(path).ctx(|| format!("removing {}", path.display()))?;
                continue;
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EROFS | libc::EACCES | libc::EPERM)
                ) =>
            {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(path)
                    .ctx(|| format!("opening lock file {}", path.display()))?
            }
            Err(e) => return Err(e).ctx(|| format!("opening lock file {}", path.display())),
        };
        if f.metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .is_file()
        {
            return Ok(f);
        }
        std::fs::remove_file(path).ctx(|| format!("removing {}", path.display()))?;
    }
    Err(Error::Io {
        context: format!("lock file {} keeps being replaced", path.display()),
        source: std::io::Error::from_raw_os_error(libc::EPERM),
    })
}

fn arg(mode: Mode, wait: bool) -> FlockArg {
    match (mode, wait) {
        (Mode::Shared, true) => FlockArg::LockShared,
        (Mode::Shared, false) => FlockArg::LockSharedNonblock,
        (Mode::Exclusive, true) => FlockArg::LockExclusive,
        (Mode::Exclusive, false) => FlockArg::LockExclusiveNonblock,
    }
}

/// Take a lock on a long-lived lock file (created if missing), waiting for it.
pub fn lock(path: &Path, mode: Mode) -> Result<Held> {
    let f = open_lock_file(path)?;
    let lock = Flock::lock(f, arg(mode, true))
        .map_err(|(_, e)| e)
        .ctx(|| format!("locking {}", path.display()))?;
    Ok(Held {
        _lock: lock,
        path: path.to_owned(),
    })
}

/// Lock an existing file without waiting. `Ok(None)` when someone else holds it or when the
/// file was unlinked in the meantime (its owner finished).
pub fn try_lock_existing(path: &Path, mode: Mode) -> Result<Option<Flock<File>>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("opening {}", path.display())),
    };
    match Flock::lock(f, arg(mode, false)) {
        Ok(l) => {
            // Still the file at `path`? If it was unlinked (or replaced) we locked a stale inode.
            let ours = l.metadata().ctx(|| format!("stat {}", path.display()))?;
            match std::fs::metadata(path) {
                Ok(now)
                    if now.ino() == ours.ino() && now.dev() == ours.dev() && ours.nlink() > 0 =>
                {
                    Ok(Some(l))
                }
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).ctx(|| format!("stat {}", path.display())),
            }
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::Io {
            context: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Lock a file we just created (before anyone else can see it).
pub fn lock_new(f: File, path: &Path) -> Result<Flock<File>> {
    Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .ctx(|| format!("locking {}", path.display()))
}
