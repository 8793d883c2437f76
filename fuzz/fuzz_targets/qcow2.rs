//! The qcow2 reader on malformed images: header checks, the L1/L2 walk, decompression and
//! expansion to raw, the backing-file name and the format probe. The input is the whole image
//! file, held in a memfd; the raw output goes to a second memfd (a sparse file: writes at
//! any guest offset cost only the pages they touch).
//!
//! However large a virtual size the header claims, the work must stay bounded by the file:
//! the expansion is stopped (by its progress callback, as a caller cancels it) after
//! `MAX_GUEST_BYTES` bytes of guest clusters, so only a reader bug can make a run slow or big.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use vmpool::image::{format, qcow2};

/// Most guest bytes one run expands (the fuzz inputs are at most a few hundred KiB).
const MAX_GUEST_BYTES: u64 = 64 << 20;

fn memfd(name: &std::ffi::CStr) -> File {
    // SAFETY: name is a NUL-terminated string; the returned descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nothing else owns.
    unsafe { File::from_raw_fd(fd) }
}

fuzz_target!(|data: &[u8]| {
    let mut src = memfd(c"qcow2-in");
    src.write_all(data).unwrap();

    let _ = qcow2::backing_file(&src);
    let _ = qcow2::read_header(&src);
    let _ = format::probe(&src, None);

    let Ok(img) = qcow2::Image::open(&src) else {
        return;
    };
    if img.check().is_err() {
        return;
    }
    let dst = memfd(c"qcow2-out");
    let cluster = img.header.cluster_size();
    let mut done = 0u64;
    let mut last = 0u64;
    let r = img.expand_to(&dst, &mut |guest| {
        // Called once per cluster expanded, with the guest offset it ends at: those only grow.
        assert!(guest > last, "progress went from {last} to {guest}");
        done += (guest - last).min(cluster);
        last = guest;
        if done > MAX_GUEST_BYTES {
            return Err(vmpool::error::Error::invalid(
                "fuzz: expansion bound reached",
            ));
        }
        Ok(())
    });
    if r.is_ok() {
        // Nothing is written past the virtual size.
        assert!(dst.metadata().unwrap().len() <= img.header.size);
    }
});
