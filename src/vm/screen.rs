//! What a running VM shows: console tickets for SPICE (a fresh password per request, made to
//! expire, as Proxmox hands them out) and screenshots.

use crate::error::{Error, IoContext, Result};
use crate::store::Store;
use crate::vm::console::{self, Console};
use crate::vm::qmp::Display;
use crate::vm::Op;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

impl Store {
    /// A console ticket valid for `ttl`: a new random SPICE password, set with QMP and made
    /// to expire; the previous ticket stops working.
    pub fn console(&self, uuid: Uuid, ttl: Duration) -> Result<Console> {
        if ttl < console::TTL_MIN || ttl > console::TTL_MAX {
            return Err(Error::invalid(format!(
                "console ttl of {} s is out of range {}..={} s",
                ttl.as_secs(),
                console::TTL_MIN.as_secs(),
                console::TTL_MAX.as_secs()
            )));
        }
        let run = self.run_dir(&uuid);
        let r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, false);
        Op::Console.check(&uuid, live)?;
        let info = self.run_info(&r, &run).ok_or_else(|| {
            Error::InvalidState(format!(
                "VM {uuid} is {}; no run of it is recorded",
                live.as_str()
            ))
        })?;
        let password = console::new_password();
        self.mark_seen(&uuid);
        self.with_qmp(&uuid, &run, "setting the console ticket", |q| {
            q.set_password(Display::Spice, &password)?;
            q.expire_password(Display::Spice, ttl)
        })?;
        let expires = std::time::SystemTime::now() + ttl;
        Ok(Console {
            uri: console::uri(&info.spice),
            vv: console::vv_file(&info.spice, &password, &r.alias),
            addr: info.spice,
            password,
            expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
            expires_at_unix: expires
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// Save the VM's screen as a PNG file at `dest` (QMP `screendump`).
    pub fn screenshot(&self, uuid: Uuid, dest: &Path) -> Result<()> {
        let run = self.run_dir(&uuid);
        let r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, false);
        Op::Screenshot.check(&uuid, live)?;
        // QEMU writes into a memory file of ours that it gets as a descriptor: it names no
        // path, so nothing it controls can redirect where the picture goes or what is read.
        let (mem, wr) = memfd("vmpool-screendump")?;
        self.with_qmp(&uuid, &run, "screendump", |q| {
            let set = q.add_fd(wr.as_fd())?;
            let dumped = q.screendump_png(set);
            let _ = q.remove_fd(set);
            dumped
        })?;
        drop(wr);
        let mut png = Vec::new();
        let mut mem = std::fs::File::from(mem);
        mem.rewind()
            .and_then(|_| mem.take(SCREENSHOT_MAX + 1).read_to_end(&mut png))
            .ctx(|| "reading the screenshot".into())?;
        if png.len() as u64 > SCREENSHOT_MAX || !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(Error::Hypervisor(format!(
                "VM {uuid}: QEMU's screendump is not a PNG of at most {SCREENSHOT_MAX} bytes"
            )));
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dest)
            .ctx(|| format!("opening {}", dest.display()))?;
        out.write_all(&png)
            .ctx(|| format!("writing the screenshot to {}", dest.display()))
    }
}

/// Largest screenshot taken (a 4K screen's PNG is a few MiB).
const SCREENSHOT_MAX: u64 = 64 << 20;

/// A new anonymous memory file, and a write-only descriptor of it (QEMU's `/dev/fdset/N`
/// must be opened with the access mode of the descriptor in the set).
fn memfd(name: &str) -> Result<(OwnedFd, OwnedFd)> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::Internal("NUL in a name".into()))?;
    // SAFETY: memfd_create with a NUL-terminated name and constant flags.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Io {
            context: "memfd_create".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let mem = unsafe { OwnedFd::from_raw_fd(fd) };
    let wr = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .ctx(|| "reopening the screendump file write-only".into())?;
    Ok((mem, OwnedFd::from(wr)))
}
