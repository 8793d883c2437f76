//! [`Dir`]: an open directory, and every operation on names directly below it.

use crate::error::{Error, Result};
use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// What a name is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A unix socket.
    Socket,
    /// A block device (a zvol).
    Block,
}

impl Kind {
    /// Whether a `st_mode` is of this kind.
    pub(crate) fn matches(self, mode: libc::mode_t) -> bool {
        let t = mode & libc::S_IFMT;
        t == match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Socket => libc::S_IFSOCK,
            Kind::Block => libc::S_IFBLK,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Socket => "a unix socket",
            Kind::Block => "a block device",
        }
    }
}

/// What a mode's file type is, for messages.
pub(crate) fn type_name(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "of unknown type",
    }
}

/// An error that means "something planted here is not what we made": permission denied,
/// with the reason.
pub(crate) fn refused(what: String) -> Error {
    Error::Io {
        context: what,
        source: io::Error::from_raw_os_error(libc::EPERM),
    }
}

fn io_err(context: String, e: io::Error) -> Error {
    Error::Io { context, source: e }
}

/// `fstat` of a descriptor.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: the descriptor is open for the call; st is a writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() })
}

/// An open directory. Cheap to pass around; its descriptor is closed on drop.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether `openat2` exists on this kernel (5.6 and later); learnt at the first call.
static OPENAT2: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl Dir {
    /// Wrap a directory descriptor opened by the caller (`path` is for messages).
    pub(crate) fn from_fd(fd: OwnedFd, path: PathBuf) -> Dir {
        Dir { fd, path }
    }

    /// Where the directory was when it was opened (for messages and for handing to QEMU).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name`, for messages.
    pub fn display(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    /// `name` as a C string, if it is one plain component.
    fn cname(&self, name: &str) -> Result<CString> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Error::Internal(format!(
                "{name:?} is not a single file name (in {})",
                self.path.display()
            )));
        }
        CString::new(name).map_err(|_| Error::Internal(format!("{name:?} contains NUL")))
    }

    /// Open `name` below this directory without following any link: `openat2` with
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, else `openat` with
    /// `O_NOFOLLOW` (the same for one component). A link gives `ELOOP`.
    fn openat(&self, name: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
        use std::sync::atomic::Ordering;
        let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            let mut how: libc::open_how = {
                // SAFETY: open_how is plain data; all-zero is a valid value of it.
                unsafe { std::mem::zeroed() }
            };
            how.flags = flags as u64;
            how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
                u64::from(mode)
            } else {
                0
            };
            how.resolve =
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
            // SAFETY: openat2 with a valid directory descriptor, a NUL-terminated name and an
            // open_how of the size passed.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    name.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                OPENAT2.store(1, Ordering::Relaxed);
                // SAFETY: the kernel returned a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(e);
            }
            OPENAT2.store(2, Ordering::Relaxed);
        }
        // SAFETY: openat with a valid directory descriptor and a NUL-terminated name.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), flags, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Explain a failed open of `name`: a link met where none may be is refused by name.
    fn open_error(&self, name: &str, what: &str, e: io::Error) -> Error {
        if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EXDEV) {
            return refused(format!(
                "refusing to follow {}: it is a symbolic link (or leaves its directory) where vmpool expects {what}",
                self.display(name)
            ));
        }
        io_err(format!("opening {}", self.display(name)), e)
    }

    /// Check that `fd` (opened as `name`) is `kind`.
    fn expect(&self, fd: BorrowedFd<'_>, name: &str, kind: Kind) -> Result<libc::stat> {
        let st = fstat(fd).map_err(|e| io_err(format!("fstat {}", self.display(name)), e))?;
        if !kind.matches(st.st_mode) {
            return Err(refused(format!(
                "{} is {}, not {}; refusing to use it",
                self.display(name),
                type_name(st.st_mode),
                kind.name()
            )));
        }
        Ok(st)
    }

    /// Open `name` for reading if it exists; it must be `kind`. The name is first opened
    /// `O_PATH` (which opens nothing: no FIFO blocks, no device acts) and checked, then
    /// reopened through that descriptor, so what is read is what was checked.
    pub fn open(&self, name: &str, kind: Kind) -> Result<Option<File>> {
        self.open_flags(name, kind, libc::O_RDONLY)
    }

    /// [`Dir::open`] an existing `name` with access mode `flags` (`O_WRONLY`, `O_RDWR`);
    /// missing is `NotFound`.
    pub fn open_with(&self, name: &str, kind: Kind, flags: i32) -> Result<File> {
        self.open_flags(name, kind, flags)?.ok_or_else(|| {
            io_err(
                format!("opening {}", self.display(name)),
                io::Error::from_raw_os_error(libc::ENOENT),
            )
        })
    }

    fn open_flags(&self, name: &str, kind: Kind, access: i32) -> Result<Option<File>> {
        let c = self.cname(name)?;
        let path = match self.openat(&c, libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.open_error(name, kind.name(), e)),
        };
        self.expect(path.as_fd(), name, kind)?;
        let flags = access
            | libc::O_CLOEXEC
            | if kind == Kind::Dir {
                libc::O_DIRECTORY
            } else {
                0
            };
        let proc = CString::new(format!("/proc/self/fd/{}", path.as_raw_fd()))
            .map_err(|_| Error::Internal("NUL in a /proc path".into()))?;
        // SAFETY: open of a NUL-terminated path with constant flags.
        let fd = unsafe { libc::open(proc.as_ptr(), flags) };
        if fd < 0 {
            return Err(io_err(
                format!("opening {}", self.display(name)),
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: open returned a new descriptor that nothing else owns.
        Ok(Some(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Make the directory `name` (`mode`) unless there is one; anything else under the name
    /// (a link, a FIFO, a file) is removed first, never followed.
    pub fn make_dir(&self, name: &str, mode: u32) -> Result<()> {
        match self.stat(name)? {
            Some(st) if Kind::Dir.matches(st.st_mode) => return Ok(()),
            Some(_) => {
                self.remove(name)?;
            }
            None => {}
        }
        let c = self.cname(name)?;
        // SAFETY: mkdirat with a valid directory descriptor and a NUL-terminated name.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_err(format!("creating {}", self.display(name)), e));
            }
        }
        Ok(())
    }

    /// A sub-directory, if it exists (a link of that name is refused).
    pub fn subdir(&self, name: &str) -> Result<Option<Dir>> {
        Ok(self.open(name, Kind::Dir)?.map(|f| Dir {
            fd: OwnedFd::from(f),
            path: self.path.join(name),
        }))
    }

    /// Read a regular file of at most `max` bytes; `None` when it does not exist.
    pub fn read(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.open(name, Kind::File)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| io_err(format!("reading {}", self.display(name)), e))?;
        if out.len() as u64 > max {
            return Err(refused(format!(
                "{} is larger than {max} bytes",
                self.display(name)
            )));
        }
        Ok(Some(out))
    }

    /// Create `name` as a new regular file (`O_EXCL`: whatever holds the name, a dangling
    /// link included, makes this fail with `AlreadyExists`).
    pub fn create(&self, name: &str, mode: u32) -> Result<File> {
        let c = self.cname(name)?;
        match self.openat(&c, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode) {
            Ok(fd) => Ok(File::from(fd)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists(
                format!("{} already exists", self.display(name)),
            )),
            Err(e) => Err(io_err(format!("creating {}", self.display(name)), e)),
        }
    }

    /// Create `name` afresh: whatever had the name before (a file, a link, a FIFO, a tree)
    /// is removed first, never followed.
    pub fn replace(&self, name: &str, mode: u32) -> Result<File> {
        self.remove(name)?;
        self.create(name, mode)
    }

    /// Open `name` for appending, creating it (`mode`) if missing. Anything but a regular
    /// file under the name is removed and a new file made: a log is never written through a
    /// link, into a FIFO or onto a device.
    pub fn append(&self, name: &str, mode: u32) -> Result<File> {
        match self.stat(name)? {
            Some(st) if Kind::File.matches(st.st_mode) => {}
            Some(_) => return self.replace(name, mode),
            None => {}
        }
        let c = self.cname(name)?;
        let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK;
        let fd = self
            .openat(&c, flags, mode)
            .map_err(|e| self.open_error(name, Kind::File.name(), e))?;
        self.expect(fd.as_fd(), name, Kind::File)?;
        clear_nonblock(&fd);
        Ok(File::from(fd))
    }

    /// Write `bytes` to `name` atomically (a temp file, fsync, rename over, fsync of the
    /// directory) with `mode`.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let tmp = format!(
            "{}{}-{name}",
            crate::fsutil::TMP_PREFIX,
            crate::fsutil::token()
        );
        let res = (|| {
            let mut f = self.create(&tmp, mode)?;
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| io_err(format!("writing {}", self.display(&tmp)), e))?;
            self.rename(&tmp, name)?;
            self.sync()
        })();
        if res.is_err() {
            let _ = self.remove(&tmp);
        }
        res
    }

    /// Rename `from` to `to` within this directory (replacing `to`; links are renamed, not
    /// followed).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.cname(from)?, self.cname(to)?);
        // SAFETY: renameat with valid directory descriptors and NUL-terminated names.
        let rc = unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                f.as_ptr(),
                self.fd.as_raw_fd(),
                t.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io_err(
                format!("renaming {} to {to}", self.display(from)),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Make the directory's entries durable.
    pub fn sync(&self) -> Result<()> {
        // SAFETY: fsync of a descriptor we own.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } != 0 {
            return Err(io_err(
                format!("syncing {}", self.path.display()),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// `lstat` of `name` (a link is reported as a link); `None` when absent.
    pub fn stat(&self, name: &str) -> Result<Option<libc::stat>> {
        let c = self.cname(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: fstatat with a valid directory descriptor, a NUL-terminated name and a
        // writable stat buffer.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(io_err(format!("stat {}", self.display(name)), e));
        }
        // SAFETY: fstatat succeeded and filled the buffer.
        Ok(Some(unsafe { st.assume_init() }))
    }

    /// Give `name` to `uid`:`gid` if it is `kind`; a link, or anything else under the name,
    /// is refused and left as it is.
    pub fn chown(&self, name: &str, uid: u32, gid: u32, kind: Kind) -> Result<()> {
        let c = self.cname(name)?;
        let fd = self
            .openat(&c, libc::O_PATH, 0)
            .map_err(|e| self.open_error(name, kind.name(), e))?;
        self.expect(fd.as_fd(), name, kind)?;
        fchown(fd.as_fd(), uid, gid).map_err(|e| io_err(format!("chown {}", self.display(name)), e))
    }

    /// Set the mode of `name` if it is `kind` (through a descriptor of what was checked).
    pub fn chmod(&self, name: &str, kind: Kind, mode: u32) -> Result<()> {
        let c = self.cname(name)?;
        let fd = self
            .openat(&c, libc::O_PATH, 0)
            .map_err(|e| self.open_error(name, kind.name(), e))?;
        self.expect(fd.as_fd(), name, kind)?;
        let proc = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|_| Error::Internal("NUL in a /proc path".into()))?;
        // SAFETY: chmod of a NUL-terminated path (the magic link of our own descriptor).
        if unsafe { libc::chmod(proc.as_ptr(), mode) } != 0 {
            return Err(io_err(
                format!("chmod {}", self.display(name)),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Remove `name`, whatever it is (a directory with everything below it); links are
    /// removed, never followed. Whether there was something.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let c = self.cname(name)?;
        // SAFETY: unlinkat with a valid directory descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(false),
            Some(libc::EISDIR) | Some(libc::EPERM) => {
                let Some(st) = self.stat(name)? else {
                    return Ok(false);
                };
                if !Kind::Dir.matches(st.st_mode) {
                    return Err(io_err(format!("removing {}", self.display(name)), e));
                }
                self.remove_tree(name)
            }
            _ => Err(io_err(format!("removing {}", self.display(name)), e)),
        }
    }

    /// Remove the directory `name` and everything below it, walking descriptors: a link
    /// inside is removed as a link, and a mount point below is not descended into (the
    /// removal then fails on it rather than emptying another file system).
    pub fn remove_tree(&self, name: &str) -> Result<bool> {
        let Some(sub) = self.subdir(name)? else {
            return Ok(false);
        };
        let mine = fstat(self.fd.as_fd())
            .map_err(|e| io_err(format!("fstat {}", self.path.display()), e))?;
        let theirs = fstat(sub.fd.as_fd())
            .map_err(|e| io_err(format!("fstat {}", sub.path.display()), e))?;
        if mine.st_dev != theirs.st_dev {
            return Err(refused(format!(
                "{} is a mount point; refusing to empty another file system",
                sub.path.display()
            )));
        }
        for entry in sub.entries()? {
            let Some(e) = entry.to_str() else {
                // Not UTF-8: remove it by its bytes (it is no name of ours).
                sub.remove_raw(&entry)?;
                continue;
            };
            sub.remove(e)?;
        }
        let c = self.cname(name)?;
        // SAFETY: unlinkat with a valid directory descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(io_err(format!("removing {}", self.display(name)), e));
            }
        }
        Ok(true)
    }

    /// Remove an entry whose name is not UTF-8 (only ever something planted).
    fn remove_raw(&self, name: &std::ffi::OsStr) -> Result<()> {
        let c = CString::new(name.as_bytes()).map_err(|_| Error::Internal("NUL in name".into()))?;
        for flags in [0, libc::AT_REMOVEDIR] {
            // SAFETY: unlinkat with a valid directory descriptor and a NUL-terminated name.
            if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), flags) } == 0 {
                return Ok(());
            }
        }
        Err(io_err(
            format!("removing {:?} in {}", name, self.path.display()),
            io::Error::last_os_error(),
        ))
    }

    /// The names in the directory (without `.` and `..`).
    pub fn entries(&self) -> Result<Vec<OsString>> {
        let d = nix::dir::Dir::openat(
            Some(self.fd.as_raw_fd()),
            ".",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| io_err(format!("listing {}", self.path.display()), e.into()))?;
        let mut out = Vec::new();
        for e in d {
            let e = e.map_err(|e| io_err(format!("listing {}", self.path.display()), e.into()))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsString::from_vec(n.to_vec()));
            }
        }
        Ok(out)
    }

    /// The short path that reaches `name` in this directory through our descriptor
    /// (`/proc/self/fd/N/name`): for `bind` and `connect`, whose paths hold 107 bytes.
    fn proc_path(&self, name: &str) -> String {
        format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd())
    }

    /// Listen on a unix socket `name` here (a stale one of the name is removed first).
    pub fn bind(&self, name: &str) -> Result<UnixListener> {
        self.remove(name)?;
        UnixListener::bind(self.proc_path(name))
            .map_err(|e| io_err(format!("binding {}", self.display(name)), e))
    }

    /// Connect to the unix socket `name` here, if it is one (and owned by `owner` when
    /// given): the name is opened `O_PATH | O_NOFOLLOW` and checked first, then connected
    /// through that very descriptor, so nothing can be swapped in between.
    pub fn connect(&self, name: &str, owner: Option<u32>) -> Result<UnixStream> {
        let c = self.cname(name)?;
        let fd = self
            .openat(&c, libc::O_PATH, 0)
            .map_err(|e| self.open_error(name, Kind::Socket.name(), e))?;
        let st = self.expect(fd.as_fd(), name, Kind::Socket)?;
        if let Some(o) = owner {
            if st.st_uid != o {
                return Err(refused(format!(
                    "{} belongs to uid {}, not {o}; refusing to connect",
                    self.display(name),
                    st.st_uid
                )));
            }
        }
        UnixStream::connect(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| io_err(format!("connecting to {}", self.display(name)), e))
    }
}

/// `fchown` of any descriptor, `O_PATH` ones included (`fchownat` with `AT_EMPTY_PATH`).
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchownat on a descriptor open for the call with an empty name.
    let rc = unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clear `O_NONBLOCK` (set while opening so that a FIFO could not block the open).
fn clear_nonblock(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}
