//! QEMU's output into bounded logs in the run directory: the serial console (`serial.log`,
//! rotated to `serial.log.1`) and QEMU's stderr (`qemu.log`, its newest half kept). Every
//! file is opened through the run directory's descriptor (`safe_fs`), mode 0600.

use crate::safe_fs::Dir;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Bytes of QEMU's stderr kept for an exit reason.
pub const STDERR_TAIL: usize = 2048;

/// Appends to `name`, moving it to `old` once it passes `max` bytes.
pub struct RotatingLog {
    dir: Arc<Dir>,
    name: &'static str,
    old: Option<&'static str>,
    max: u64,
    file: Option<File>,
    size: u64,
}

impl RotatingLog {
    /// A log `name` in `dir`, rotated to `old` (or halved when there is none) at `max`.
    pub fn new(dir: Arc<Dir>, name: &'static str, old: Option<&'static str>, max: u64) -> Self {
        RotatingLog {
            dir,
            name,
            old,
            max,
            file: None,
            size: 0,
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.file.is_none() {
            self.file = self.dir.append(self.name, crate::vm::runtime::PRIVATE).ok();
            self.size = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(data);
            self.size += data.len() as u64;
        }
        if self.size >= self.max {
            self.file = None;
            match self.old {
                Some(old) => {
                    let _ = self.dir.rename(self.name, old);
                }
                // No previous part: keep the newest half.
                None => {
                    if let Ok(Some(b)) = self.dir.read(self.name, self.max.saturating_mul(4)) {
                        let keep = &b[b.len() / 2..];
                        let _ = self
                            .dir
                            .write_atomic(self.name, keep, crate::vm::runtime::PRIVATE);
                    }
                }
            }
        }
    }
}

/// Copy `from` into `log` until it ends; the last [`STDERR_TAIL`] bytes also into `tail`.
pub fn copy_stream(
    mut from: impl Read,
    mut log: RotatingLog,
    tail: Option<Arc<Mutex<VecDeque<u8>>>>,
) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                log.write(&buf[..n]);
                if let Some(t) = &tail {
                    let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                    t.extend(&buf[..n]);
                    while t.len() > STDERR_TAIL {
                        t.pop_front();
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// The last five lines of `tail`, joined, for an exit reason.
pub fn tail_text(t: &Arc<Mutex<VecDeque<u8>>>) -> String {
    let t = t.lock().unwrap_or_else(|p| p.into_inner());
    let bytes: Vec<u8> = t.iter().copied().collect();
    let lines: Vec<&str> = std::str::from_utf8(&bytes)
        .map(|s| s.lines().collect())
        .unwrap_or_default();
    if lines.is_empty() {
        let lossy = String::from_utf8_lossy(&bytes);
        let l: Vec<&str> = lossy.lines().collect();
        return l[l.len().saturating_sub(5)..].join(" | ");
    }
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
