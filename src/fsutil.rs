//! File-system helpers the stores share: atomic replacement, directory fsync, hole-aware reads.

use crate::error::{Error, IoContext, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A short random token for temp names and ownership markers.
pub fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Prefix of every temp file the library writes; recovery removes stale ones.
pub const TMP_PREFIX: &str = ".tmp-";

/// Write `bytes` to `dir/name` so that readers see either the old file or the whole new one,
/// and the new one survives a power cut once this returns: temp file, fsync, rename, fsync dir.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}-{name}", token()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
        let dest = dir.join(name);
        fs::rename(&tmp, &dest)
            .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Make a directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// A new file at `path` that appears only whole: `fill` writes it while it has no name (an
/// `O_TMPFILE` in `path`'s directory), then it is synced and linked in, failing with
/// `AlreadyExists` if the name is taken. A process killed at any moment leaves either no file
/// or the whole one, never a half-written file that a recovery could not tell from one it did
/// not make. Where the file system has no `O_TMPFILE`, it is made in place (`create_new`) and
/// removed if `fill` fails.
pub fn create_whole(path: &Path, fill: impl FnOnce(&File) -> Result<()>) -> Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    let f = match unnamed {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR)
            ) =>
        {
            let f = create_new(path)?;
            if let Err(e) = fill(&f) {
                let _ = remove_file_if_exists(path);
                return Err(e);
            }
            return Ok(f);
        }
        Err(e) => {
            return Err(Error::Io {
                context: format!("creating an unnamed file in {}", dir.display()),
                source: e,
            })
        }
    };
    fill(&f)?;
    f.sync_all()
        .ctx(|| format!("syncing the new {}", path.display()))?;
    // linkat through /proc: linking an O_TMPFILE by its descriptor (AT_EMPTY_PATH) needs
    // CAP_DAC_READ_SEARCH; the /proc link does not. It never replaces an existing name.
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(|_| Error::Internal("a /proc path with a NUL".into()))?;
    let to = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::invalid(format!("{} has a NUL byte", path.display())))?;
    // SAFETY: both paths are NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            Error::AlreadyExists(format!("{} already exists", path.display()))
        } else {
            Error::Io {
                context: format!("linking the new {}", path.display()),
                source: e,
            }
        });
    }
    Ok(f)
}

/// Create a new file (mode 0644) open for reading and writing; a name that is taken is
/// `AlreadyExists`, never replaced.
pub fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::AlreadyExists(format!("{} already exists", path.display()))
            } else {
                Error::Io {
                    context: format!("creating {}", path.display()),
                    source: e,
                }
            }
        })
}

/// Rename `from` to `to`, refusing to replace anything at `to` (`AlreadyExists`).
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    nix::fcntl::renameat2(
        None,
        from,
        None,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| {
        if e == nix::errno::Errno::EEXIST {
            Error::AlreadyExists(format!("{} already exists", to.display()))
        } else {
            Error::Io {
                context: format!("renaming {} to {}", from.display(), to.display()),
                source: e.into(),
            }
        }
    })
}

/// Create a directory and any missing parents, with mode 0755.
pub fn mkdirs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("creating directory {}", dir.display()))
}

/// Remove a file, treating "already gone" as success (another process may be cleaning too).
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("removing {}", path.display())),
    }
}

/// Read a whole small file; `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
    }
}

/// Remove `.tmp-*` files older than `min_age` left in `dir` by crashed writers.
pub fn remove_stale_temps(dir: &Path, min_age: std::time::Duration) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if old && remove_file_if_exists(&entry.path())? {
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Size in bytes of a regular file or a block device.
pub fn byte_size(f: &File) -> Result<u64> {
    let md = f.metadata().ctx(|| "stat of image source".into())?;
    use std::os::unix::fs::FileTypeExt;
    if md.file_type().is_block_device() {
        let mut size: u64 = 0;
        // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
        nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
        // SAFETY: f is open; size is a writable u64, the size the ioctl number encodes.
        unsafe { blkgetsize64(f.as_raw_fd(), &mut size) }.ctx(|| "BLKGETSIZE64".into())?;
        Ok(size)
    } else {
        Ok(md.len())
    }
}

/// Extents of data in a file, as (offset, length), found with SEEK_DATA/SEEK_HOLE so that a
/// sparse file is read only where it has data. Falls back to one extent covering the file when
/// the file system does not support hole seeking (or the file is a device).
pub fn data_extents(f: &File, len: u64) -> Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    let end = len as i64;
    while pos < end {
        let data = match lseek(fd, pos, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole from here to the end
            Err(nix::errno::Errno::EINVAL) if pos == 0 => return Ok(vec![(0, len)]),
            Err(e) => return Err(e).ctx(|| "SEEK_DATA".into()),
        };
        if data >= end {
            break;
        }
        let hole = lseek(fd, data, Whence::SeekHole)
            .ctx(|| "SEEK_HOLE".into())?
            .min(end);
        out.push((data as u64, (hole - data) as u64));
        pos = hole;
    }
    Ok(out)
}

/// Whether a buffer is all zero bytes (such blocks are left as holes when copying).
pub fn is_zero(buf: &[u8]) -> bool {
    // SAFETY: every bit pattern is a valid u128, and align_to only reinterprets the aligned
    // middle of the buffer.
    let (prefix, words, suffix) = unsafe { buf.align_to::<u128>() };
    prefix.iter().all(|&b| b == 0)
        && words.iter().all(|&w| w == 0)
        && suffix.iter().all(|&b| b == 0)
}

/// `pread` until the buffer is full; a short file is reported as corruption by the caller.
pub fn read_exact_at(f: &File, buf: &mut [u8], off: u64, what: &str) -> Result<()> {
    f.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::CorruptImage(format!(
                "{what}: file ends before offset {}",
                off + buf.len() as u64
            ))
        } else {
            Error::Io {
                context: format!("reading {what} at offset {off}"),
                source: e,
            }
        }
    })
}

/// File-system magic of the file system holding `path` (statfs f_type).
pub fn fs_magic(path: &Path) -> Result<i64> {
    let st = nix::sys::statfs::statfs(path).ctx(|| format!("statfs {}", path.display()))?;
    Ok(st.filesystem_type().0 as i64)
}

/// The type and source (`/proc/self/mountinfo`'s fields) of the mounted file system holding
/// `path`, found by its device number: whatever is mounted over what, this is the one whose
/// files `path` reaches. `None` when no mount has that device.
pub fn mount_of(path: &Path) -> Result<Option<(String, String)>> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(path)
        .ctx(|| format!("stat {}", path.display()))?
        .dev();
    let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let info =
        fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo".into())?;
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\134", "\\")
    };
    Ok(info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if left.split(' ').nth(2)? != want {
            return None;
        }
        let mut r = right.split(' ');
        Some((r.next()?.to_owned(), unescape(r.next()?)))
    }))
}

/// Set an extended attribute on an open file (replacing its value).
pub fn set_xattr(f: &File, name: &str, value: &[u8]) -> io::Result<()> {
    let n = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the descriptor is open for the call; name is NUL-terminated and value is a
    // valid buffer of value.len() bytes.
    let rc = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An extended attribute's value (at most 256 bytes); `None` when the file has none of that
/// name or the file system has no extended attributes.
pub fn get_xattr(f: &File, name: &str) -> io::Result<Option<Vec<u8>>> {
    let n = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; 256];
    // SAFETY: the descriptor is open; name is NUL-terminated; buf is writable for its length.
    let rc = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if rc >= 0 {
        buf.truncate(rc as usize);
        return Ok(Some(buf));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
        _ => Err(e),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn mount_of_names_the_file_system_holding_a_path() {
        let (fstype, source) = mount_of(Path::new("/proc/self")).unwrap().unwrap();
        assert_eq!((fstype.as_str(), source.as_str()), ("proc", "proc"));
        let (fstype, _) = mount_of(Path::new("/sys/kernel")).unwrap().unwrap();
        assert_eq!(fstype, "sysfs");
    }
}
