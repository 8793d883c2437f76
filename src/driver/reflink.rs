//! FICLONE: share all extents of one file with another (XFS with reflink=1, btrfs, bcachefs,
//! OCFS2). Metadata only, whatever the file size.

use std::fs::File;
use std::os::unix::io::AsRawFd;

// FICLONE = _IOW(0x94, 9, int)
nix::ioctl_write_int!(
    /// The raw FICLONE ioctl.
    ficlone,
    0x94,
    9
);

/// Make `dst` (empty, same file system) share `src`'s data.
pub fn clone_file(src: &File, dst: &File) -> nix::Result<()> {
    // SAFETY: both descriptors are open for the call; FICLONE takes the source fd by value.
    unsafe { ficlone(dst.as_raw_fd(), src.as_raw_fd() as libc::c_ulong) }.map(drop)
}

/// Errors meaning "this file system cannot reflink", as opposed to a real failure.
pub fn unsupported(e: nix::errno::Errno) -> bool {
    use nix::errno::Errno::*;
    matches!(e, EOPNOTSUPP | EXDEV | EINVAL | ENOTTY | ENOSYS)
}
