//! Directories whose whole path is trusted: every component from `/` down owned by root (or
//! by the user vmpool runs as) and writable by nobody else, so no other uid can swap a
//! component for a link, as OpenSSH checks the path of an `authorized_keys` file and tmux the
//! path of its socket directory.

use super::dir::{fchown, fstat, refused, type_name, Dir, Kind};
use crate::error::{Error, Result};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Who may own the directories of a trusted path besides root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustRule {
    /// The uid vmpool runs as (root's own rule is just root).
    pub owner: u32,
}

impl TrustRule {
    /// The rule for this process: root, and the effective uid.
    pub fn current() -> TrustRule {
        TrustRule {
            // SAFETY: geteuid has no preconditions.
            owner: unsafe { libc::geteuid() },
        }
    }

    /// Why `st` (of `path`) may not be part of a trusted path, if it may not: it belongs to
    /// another uid, or another uid may write it (a sticky directory of root's, such as `/tmp`
    /// or `/dev/shm`, is fine: nobody else can rename or remove what we made in it).
    pub fn objection(&self, path: &Path, st: &libc::stat) -> Option<String> {
        if st.st_uid != 0 && st.st_uid != self.owner {
            return Some(format!(
                "{} belongs to uid {}, not root{}; another user made it: remove it, or choose another directory",
                path.display(),
                st.st_uid,
                if self.owner == 0 {
                    String::new()
                } else {
                    format!(" or uid {}", self.owner)
                }
            ));
        }
        let others_write = st.st_mode & 0o022 != 0;
        let sticky_root = st.st_mode & libc::S_ISVTX != 0 && st.st_uid == 0;
        if others_write && !sticky_root {
            return Some(format!(
                "{} can be written by other users (mode {:o}); refusing to keep vmpool's files there",
                path.display(),
                st.st_mode & 0o7777
            ));
        }
        None
    }
}

fn io_err(context: String, e: io::Error) -> Error {
    Error::Io { context, source: e }
}

fn open_at(dir: Option<&OwnedFd>, name: &CString, flags: i32) -> io::Result<OwnedFd> {
    let base = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat with a valid directory descriptor (or AT_FDCWD for an absolute name)
    // and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            base,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_DIRECTORY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Dir {
    /// Open the directory `path` after checking each of its components with `rule`, from `/`
    /// down (none may be a link). With `create`, missing components are made with that mode
    /// (owned by this process) and the last one is set to it. The result is opened for
    /// listing; later operations on it use its descriptor, never the path.
    pub fn trusted(path: &Path, rule: TrustRule, create: Option<u32>) -> Result<Dir> {
        if !path.is_absolute() {
            return Err(Error::invalid(format!(
                "{} is not an absolute path",
                path.display()
            )));
        }
        let mut cur = open_at(None, &CString::new("/").expect("no NUL"), libc::O_PATH)
            .map_err(|e| io_err("opening /".into(), e))?;
        let mut at = PathBuf::from("/");
        let check = |fd: &OwnedFd, at: &Path| -> Result<()> {
            let st = fstat(fd.as_fd()).map_err(|e| io_err(format!("fstat {}", at.display()), e))?;
            match rule.objection(at, &st) {
                Some(why) => Err(refused(why)),
                None => Ok(()),
            }
        };
        check(&cur, &at)?;
        let comps: Vec<_> = path.components().collect();
        let mut made_last = false;
        for (i, comp) in comps.iter().enumerate() {
            let name = match comp {
                Component::RootDir => continue,
                Component::Normal(n) => *n,
                _ => {
                    return Err(Error::invalid(format!(
                        "{} has a '.' or '..' component",
                        path.display()
                    )))
                }
            };
            let last = i + 1 == comps.len();
            let c = CString::new(name.as_bytes())
                .map_err(|_| Error::invalid(format!("{} contains NUL", path.display())))?;
            at.push(name);
            let flags = if last { libc::O_RDONLY } else { libc::O_PATH };
            let next = match open_at(Some(&cur), &c, flags) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create.is_some() => {
                    let mode = create.unwrap_or(0o700);
                    // SAFETY: mkdirat with a valid directory descriptor and a NUL-terminated
                    // name.
                    let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), mode) };
                    if rc != 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(io_err(format!("creating {}", at.display()), e));
                        }
                    } else {
                        made_last = last;
                    }
                    open_at(Some(&cur), &c, flags)
                        .map_err(|e| io_err(format!("opening {}", at.display()), e))?
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::ELOOP)
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    let what = std::fs::symlink_metadata(&at)
                        .map(|m| {
                            use std::os::unix::fs::MetadataExt;
                            type_name(m.mode())
                        })
                        .unwrap_or("not a directory");
                    return Err(refused(format!(
                        "{} is {what}, where vmpool expects a directory of its own; remove it",
                        at.display()
                    )));
                }
                Err(e) => return Err(io_err(format!("opening {}", at.display()), e)),
            };
            check(&next, &at)?;
            cur = next;
        }
        if let (Some(mode), true) = (create, made_last) {
            // umask may have narrowed it; the mode asked for is the one meant.
            // SAFETY: fchmod of a descriptor we own.
            if unsafe { libc::fchmod(cur.as_raw_fd(), mode) } != 0 {
                return Err(io_err(
                    format!("chmod {}", at.display()),
                    io::Error::last_os_error(),
                ));
            }
        }
        Ok(Dir::from_fd(cur, path.to_owned()))
    }
}

/// Give the file at `path` (a VM's disk, in a directory only root writes) to `uid`:`gid` if it
/// is `kind`; its last component is never followed (a link there is refused).
pub fn chown_path(path: &Path, uid: u32, gid: u32, kind: Kind) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("{} contains NUL", path.display())))?;
    // SAFETY: open of a NUL-terminated path with constant flags.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io_err(
            format!("opening {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(fd.as_fd()).map_err(|e| io_err(format!("fstat {}", path.display()), e))?;
    if !kind.matches(st.st_mode) {
        return Err(refused(format!(
            "{} is {}; refusing to change its owner",
            path.display(),
            type_name(st.st_mode)
        )));
    }
    fchown(fd.as_fd(), uid, gid).map_err(|e| io_err(format!("chown {}", path.display()), e))
}

impl Dir {
    /// Open the directory at `path`, whose last component must not be a link (its ancestors
    /// are the caller's, e.g. a store's catalog that its owner chose).
    pub fn open_path(path: &Path) -> Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::invalid(format!("{} contains NUL", path.display())))?;
        let fd = open_at(None, &c, libc::O_RDONLY).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(format!(
                    "refusing to follow {}: it is a symbolic link where vmpool expects a directory",
                    path.display()
                ))
            } else {
                io_err(format!("opening {}", path.display()), e)
            }
        })?;
        Ok(Dir::from_fd(fd, path.to_owned()))
    }
}
