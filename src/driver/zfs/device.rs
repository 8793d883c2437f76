//! Finding a zvol's block device without udev: `/dev/zvol/<name>` when udev made it, else the
//! `/dev/zdN` whose BLKZNAME answer is the dataset name. Needs no libzfs, so it is always built.

use crate::error::{Error, Result};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ZFS_MAX_DATASET_NAME_LEN: usize = 256;
// BLKZNAME = _IOR(0x12, 125, char[ZFS_MAX_DATASET_NAME_LEN])
nix::ioctl_read!(blkzname, 0x12, 125, [u8; ZFS_MAX_DATASET_NAME_LEN]);

/// Where udev would put the device of zvol `name`.
pub fn zvol_path(name: &str) -> String {
    format!("/dev/zvol/{name}")
}

fn scan(name: &str) -> Option<PathBuf> {
    let rd = std::fs::read_dir("/dev").ok()?;
    for e in rd.flatten() {
        let fname = e.file_name();
        let f = fname.to_string_lossy();
        // Whole devices only: zd0, zd16, ... (partitions are zd0p1).
        if !f.starts_with("zd") || !f[2..].bytes().all(|b| b.is_ascii_digit()) || f.len() == 2 {
            continue;
        }
        let Ok(dev) = std::fs::File::open(e.path()) else {
            continue;
        };
        let mut buf = [0u8; ZFS_MAX_DATASET_NAME_LEN];
        // SAFETY: dev is open; buf is a writable array of the size the ioctl number encodes.
        if unsafe { blkzname(dev.as_raw_fd(), &mut buf) }.is_ok() {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            if &buf[..end] == name.as_bytes() {
                return Some(e.path());
            }
        }
    }
    None
}

/// The device node of zvol `name`, waiting up to `timeout` for it to appear (the kernel
/// creates zvol minors asynchronously after a create or clone).
pub fn zvol_device(name: &str, timeout: Duration) -> Result<PathBuf> {
    let start = Instant::now();
    let udev = PathBuf::from(zvol_path(name));
    let mut pause = Duration::from_millis(1);
    loop {
        if udev.exists() {
            return Ok(udev);
        }
        if let Some(p) = scan(name) {
            return Ok(p);
        }
        if start.elapsed() >= timeout {
            return Err(Error::Backend(format!(
                "zvol {name}: no device node appeared within {} ms",
                timeout.as_millis()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A VM disk path as recorded (`/dev/zvol/<name>` for ZFS) turned into an openable path.
pub fn resolve_device(path: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        return Ok(p);
    }
    match path.strip_prefix("/dev/zvol/") {
        Some(name) => zvol_device(name, Duration::from_secs(10)),
        None => Err(Error::not_found("device", path)),
    }
}
